#include "cache/disk_budget.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "storage/blob_store.h"
#include "storage/index.h"
#include "tests/storage/indexed_blob.h"
#include "tests/storage/temp_folder.h"

namespace outpost::cache {
namespace {

using storage::Index;
using storage::testing::addIndexedBlob;
using storage::testing::TempFolder;

// A data folder with a blob store and an index, as the server opens them.
class DiskBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<storage::Index>> index = storage::Index::open(folder_.path() / "index");
    ASSERT_TRUE(index) << index.status().toString();
    index_ = std::move(*index);
    Expected<std::unique_ptr<storage::BlobStore>> store = storage::BlobStore::open(folder_.path());
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(*store);
  }

  std::unique_ptr<DiskBudget> makeBudget(uint64_t budget_bytes, uint32_t high_percent = 90,
                                         uint32_t low_percent = 50) {
    return std::make_unique<DiskBudget>(
        *index_, *store_, clock_,
        DiskBudgetOptions{.budget_bytes = budget_bytes,
                          .high_watermark_percent = high_percent,
                          .low_watermark_percent = low_percent,
                          .check_interval_ms = 20});
  }

  // Stores `count` blobs of 100 bytes, each recorded one millisecond after the previous one.
  // Blob i repeats the letter first_letter + i.
  std::vector<Digest> addBlobs(DiskBudget& budget, int count, char first_letter = 'a') {
    std::vector<Digest> digests;
    for (int i = 0; i < count; ++i) {
      std::string content(100, static_cast<char>(first_letter + i));
      Digest digest = addIndexedBlob(*store_, *index_, content);
      budget.recordAccess(digest, content.size());
      clock_.advanceMs(1);
      digests.push_back(digest);
    }
    return digests;
  }

  bool isStored(const Digest& digest) const {
    return store_->contains(digest) && index_->getBlob(digest).hasValue();
  }

  TempFolder folder_;
  ManualClock clock_;
  std::unique_ptr<storage::Index> index_;
  std::unique_ptr<storage::BlobStore> store_;
};

TEST_F(DiskBudgetTest, NoBudgetTracksNothing) {
  std::unique_ptr<DiskBudget> budget = makeBudget(0);
  std::vector<Digest> digests = addBlobs(*budget, 3);

  EXPECT_FALSE(budget->isEnabled());
  EXPECT_EQ(budget->bytesUsed(), 0u);
  EXPECT_EQ(budget->entries(), 0u);
  EXPECT_FALSE(budget->pin(digests[0]).isPinned());
  EXPECT_TRUE(budget->start().isOk());
  EXPECT_EQ(budget->evictIfOverBudget(), 0u);
  for (const Digest& digest : digests) {
    EXPECT_TRUE(isStored(digest)) << digest.str();
  }
}

TEST_F(DiskBudgetTest, KeepsUsageUnderHighWatermark) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);  // high 900, low 500
  std::vector<Digest> digests = addBlobs(*budget, 9);

  EXPECT_EQ(budget->evictIfOverBudget(), 0u);
  for (const Digest& digest : digests) {
    EXPECT_TRUE(isStored(digest)) << digest.str();
  }
}

TEST_F(DiskBudgetTest, EvictsLeastRecentlyUsedDownToLowWatermark) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);  // high 900, low 500
  std::vector<Digest> digests = addBlobs(*budget, 10);
  // A hit makes the oldest blob the newest.
  budget->recordAccess(digests[0], 100);

  EXPECT_EQ(budget->evictIfOverBudget(), 500u);

  EXPECT_EQ(budget->bytesUsed(), 500u);
  EXPECT_TRUE(isStored(digests[0]));
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(store_->contains(digests[i])) << "blob " << i;
    EXPECT_FALSE(index_->getBlob(digests[i]).hasValue()) << "blob " << i;
  }
  for (int i = 6; i < 10; ++i) {
    EXPECT_TRUE(isStored(digests[i])) << "blob " << i;
  }
  EXPECT_EQ(budget->counters().evictions.load(), 5u);
  EXPECT_EQ(budget->counters().evicted_bytes.load(), 500u);
  EXPECT_EQ(budget->counters().eviction_failures.load(), 0u);
}

TEST_F(DiskBudgetTest, SkipsPinnedBlob) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  std::vector<Digest> digests = addBlobs(*budget, 10);
  DiskBudget::Pin pin = budget->pin(digests[0]);
  ASSERT_TRUE(pin.isPinned());

  EXPECT_EQ(budget->evictIfOverBudget(), 500u);

  EXPECT_TRUE(isStored(digests[0]));
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(isStored(digests[i])) << "blob " << i;
  }
  EXPECT_TRUE(isStored(digests[6]));
}

TEST_F(DiskBudgetTest, HeldBlobIsNeverEvicted) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);  // high 900, low 500
  std::vector<Digest> digests = addBlobs(*budget, 10);

  ASSERT_TRUE(budget->hold(digests[0]).isOk());
  EXPECT_EQ(budget->bytesUsed(), 900u);  // a held blob is not counted
  // A read through a remote counts it again, as the newest; the eviction then finds the hold.
  budget->recordAccess(digests[0], 100);
  // Held without the budget knowing, so still counted among the oldest.
  Index::Batch batch;
  batch.putHeldBlob(digests[2]);
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  budget->evictIfOverBudget();

  EXPECT_TRUE(isStored(digests[0]));
  EXPECT_FALSE(isStored(digests[1]));
  EXPECT_TRUE(isStored(digests[2]));
  EXPECT_FALSE(isStored(digests[3]));
  EXPECT_LE(budget->bytesUsed(), 500u);
  EXPECT_EQ(budget->counters().eviction_failures.load(), 0u);
}

TEST_F(DiskBudgetTest, RestoreSkipsHeldBlobs) {
  std::vector<Digest> digests;
  for (int i = 0; i < 4; ++i) {
    digests.push_back(
        addIndexedBlob(*store_, *index_, std::string(100, static_cast<char>('a' + i))));
  }
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  ASSERT_TRUE(budget->hold(digests[1]).isOk());

  ASSERT_TRUE(budget->restore().isOk());

  EXPECT_EQ(budget->entries(), 3u);
  EXPECT_EQ(budget->bytesUsed(), 300u);
}

TEST_F(DiskBudgetTest, HoldWithoutBudgetWritesRecord) {
  std::unique_ptr<DiskBudget> budget = makeBudget(0);
  Digest digest = sha256Of("pushed");

  ASSERT_TRUE(budget->hold(digest).isOk());

  EXPECT_TRUE(index_->isBlobHeld(digest));
}

TEST_F(DiskBudgetTest, ReleasedPinAllowsEviction) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  std::vector<Digest> digests = addBlobs(*budget, 10);
  {
    DiskBudget::Pin pin = budget->pin(digests[0]);
    DiskBudget::Pin moved = std::move(pin);
    EXPECT_FALSE(pin.isPinned());
    EXPECT_TRUE(moved.isPinned());
  }

  budget->evictIfOverBudget();

  EXPECT_FALSE(isStored(digests[0]));
}

TEST_F(DiskBudgetTest, ReservationMakesRoomAhead) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);  // high 900, low 500
  std::vector<Digest> digests = addBlobs(*budget, 6);
  EXPECT_EQ(budget->evictIfOverBudget(), 0u);

  DiskBudget::Reservation reservation = budget->reserve(400);
  EXPECT_EQ(budget->bytesReserved(), 400u);

  // 600 committed and 400 reserved: down to 500 counted, so 100 committed bytes may stay.
  EXPECT_EQ(budget->evictIfOverBudget(), 500u);
  EXPECT_EQ(budget->bytesUsed(), 100u);
  EXPECT_TRUE(isStored(digests[5]));
  EXPECT_FALSE(isStored(digests[4]));
}

TEST_F(DiskBudgetTest, ReleasedReservationCountsNothing) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  std::vector<Digest> digests = addBlobs(*budget, 6);
  {
    DiskBudget::Reservation reservation = budget->reserve(400);
    DiskBudget::Reservation moved = std::move(reservation);
    EXPECT_EQ(reservation.bytes(), 0u);
    EXPECT_EQ(moved.bytes(), 400u);
    EXPECT_EQ(budget->bytesReserved(), 400u);
  }

  EXPECT_EQ(budget->bytesReserved(), 0u);
  EXPECT_EQ(budget->evictIfOverBudget(), 0u);
  EXPECT_TRUE(isStored(digests[0]));
}

TEST_F(DiskBudgetTest, ReservationsAloneEvictEverything) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  std::vector<Digest> digests = addBlobs(*budget, 2);
  DiskBudget::Reservation reservation = budget->reserve(2000);

  EXPECT_EQ(budget->evictIfOverBudget(), 200u);

  EXPECT_EQ(budget->entries(), 0u);
  EXPECT_EQ(budget->bytesReserved(), 2000u);
}

TEST_F(DiskBudgetTest, NoBudgetReservesNothing) {
  std::unique_ptr<DiskBudget> budget = makeBudget(0);

  DiskBudget::Reservation reservation = budget->reserve(400);

  EXPECT_EQ(reservation.bytes(), 0u);
  EXPECT_EQ(budget->bytesReserved(), 0u);
}

TEST_F(DiskBudgetTest, PinOfUnknownBlobIsEmpty) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  DiskBudget::Pin pin = budget->pin(sha256Of("never stored"));

  EXPECT_FALSE(pin.isPinned());
}

TEST_F(DiskBudgetTest, OpenReaderKeepsBytesAfterEviction) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  std::vector<Digest> digests = addBlobs(*budget, 10);
  Expected<storage::BlobFile> file = store_->openBlob(digests[0]);
  ASSERT_TRUE(file) << file.status().toString();

  budget->evictIfOverBudget();
  ASSERT_FALSE(store_->contains(digests[0]));

  std::string bytes(200, '\0');
  ssize_t read_bytes = ::pread(file->fd.get(), bytes.data(), bytes.size(), 0);
  ASSERT_EQ(read_bytes, 100);
  bytes.resize(100);
  EXPECT_EQ(bytes, std::string(100, 'a'));
}

TEST_F(DiskBudgetTest, RestoreKeepsOrderAcrossRestart) {
  // Index records written with access times in the reverse of their key order, as a restart
  // finds them after the access times were flushed.
  std::vector<Digest> digests;
  for (int i = 0; i < 10; ++i) {
    std::string content(100, static_cast<char>('a' + i));
    Digest digest = addIndexedBlob(*store_, *index_, content);
    ASSERT_TRUE(index_->putBlob(digest, storage::BlobRecord{100, 1000, 5000 - i * 10}).isOk());
    digests.push_back(digest);
  }
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);

  ASSERT_TRUE(budget->restore().isOk());
  EXPECT_EQ(budget->bytesUsed(), 1000u);
  EXPECT_EQ(budget->evictIfOverBudget(), 500u);

  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(isStored(digests[i])) << "blob " << i;
  }
  for (int i = 5; i < 10; ++i) {
    EXPECT_FALSE(isStored(digests[i])) << "blob " << i;
  }
}

TEST_F(DiskBudgetTest, ForgottenBlobNoLongerCounted) {
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  std::vector<Digest> digests = addBlobs(*budget, 3);

  budget->forget(digests[1]);
  budget->forget(sha256Of("never stored"));

  EXPECT_EQ(budget->bytesUsed(), 200u);
  EXPECT_EQ(budget->entries(), 2u);
}

TEST_F(DiskBudgetTest, BlobRemovedElsewhereCountsAsEvicted) {
  // The scrub removes a damaged blob without telling the budget, which then finds it gone.
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  std::vector<Digest> digests = addBlobs(*budget, 10);
  ASSERT_TRUE(index_->deleteBlob(digests[1]).isOk());
  ASSERT_TRUE(store_->remove(digests[1]).isOk());

  EXPECT_EQ(budget->evictIfOverBudget(), 500u);

  EXPECT_EQ(budget->counters().eviction_failures.load(), 0u);
  EXPECT_TRUE(isStored(digests[6]));
}

TEST_F(DiskBudgetTest, ThreadRestoresAndEvicts) {
  std::vector<Digest> stored;
  for (int i = 0; i < 5; ++i) {
    stored.push_back(addIndexedBlob(*store_, *index_, std::string(100, static_cast<char>('a' + i))));
  }
  std::unique_ptr<DiskBudget> budget = makeBudget(1000);
  ASSERT_TRUE(budget->start().isOk());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!budget->isRestored() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(budget->isRestored());
  EXPECT_EQ(budget->bytesUsed(), 500u);

  clock_.advanceMs(10'000);
  addBlobs(*budget, 5, 'v');
  while (budget->bytesUsed() > 500 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  budget->stop();

  EXPECT_EQ(budget->bytesUsed(), 500u);
  for (const Digest& digest : stored) {
    EXPECT_FALSE(isStored(digest)) << digest.str();
  }
}

TEST_F(DiskBudgetTest, StartRejectsBadWatermarks) {
  struct Case {
    const char* name;
    uint32_t high_percent;
    uint32_t low_percent;
  };
  const Case cases[] = {
      {"high zero", 0, 0},
      {"high above 100", 101, 50},
      {"low zero", 90, 0},
      {"low equal to high", 80, 80},
      {"low above high", 70, 80},
  };
  for (const Case& test_case : cases) {
    std::unique_ptr<DiskBudget> budget =
        makeBudget(1000, test_case.high_percent, test_case.low_percent);
    Status status = budget->start();
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << test_case.name;
  }
}

}  // namespace
}  // namespace outpost::cache
