// DiskBudget over two disk tiers: demotion, eviction from the last tier, promotion, waiting
// for room, and crashes in the middle of a move.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "cache/disk_budget.h"
#include "storage/blob_store.h"
#include "storage/fsck.h"
#include "storage/index.h"
#include "tests/storage/indexed_blob.h"
#include "tests/storage/temp_folder.h"

namespace outpost::cache {
namespace {

using storage::testing::addIndexedBlob;
using storage::testing::readFile;
using storage::testing::TempFolder;
using storage::testing::writeFile;

constexpr uint64_t kBlobBytes = 100;

class DiskTiersTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open() {
    Expected<std::unique_ptr<storage::Index>> index = storage::Index::open(dataDir() / "index");
    ASSERT_TRUE(index) << index.status().toString();
    index_ = std::move(*index);
    std::filesystem::create_directories(slowDir());
    Expected<std::unique_ptr<storage::BlobStore>> store =
        storage::BlobStore::open({dataDir(), slowDir()});
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(*store);
  }

  void close() {
    store_.reset();
    index_.reset();
  }

  std::filesystem::path dataDir() const { return folder_.path() / "data"; }
  std::filesystem::path slowDir() const { return folder_.path() / "slow"; }

  // Watermarks 90% and 50% on both tiers.
  DiskBudgetOptions options(uint64_t first_budget, uint64_t second_budget,
                            uint32_t promote_after_hits = 2) const {
    return DiskBudgetOptions{.budget_bytes = first_budget,
                             .high_watermark_percent = 90,
                             .low_watermark_percent = 50,
                             .lower_tiers = {DiskTierOptions{second_budget, 90, 50}},
                             .promote_after_hits = promote_after_hits,
                             .check_interval_ms = 20,
                             .space_wait_ms = 200};
  }

  std::unique_ptr<DiskBudget> makeBudget(DiskBudgetOptions budget_options) {
    return std::make_unique<DiskBudget>(*index_, *store_, clock_, std::move(budget_options));
  }

  // Stores `count` blobs of 100 bytes in the first tier, each committed one millisecond after
  // the previous one. Blob i repeats the letter first_letter + i.
  std::vector<Digest> addBlobs(DiskBudget& budget, int count, char first_letter = 'a') {
    std::vector<Digest> digests;
    for (int i = 0; i < count; ++i) {
      std::string content(kBlobBytes, static_cast<char>(first_letter + i));
      Digest digest = addIndexedBlob(*store_, *index_, content);
      budget.recordCommit(digest, content.size());
      clock_.advanceMs(1);
      digests.push_back(digest);
    }
    return digests;
  }

  // The tier the index names for `digest`, or -1 without a record.
  int indexedTier(const Digest& digest) const {
    Expected<storage::BlobRecord> record = index_->getBlob(digest);
    return record ? record->tier : -1;
  }

  bool hasFile(const Digest& digest, uint32_t tier) const {
    return std::filesystem::exists(store_->pathFor(digest, tier));
  }

  TempFolder folder_;
  ManualClock clock_;
  std::unique_ptr<storage::Index> index_;
  std::unique_ptr<storage::BlobStore> store_;
};

TEST_F(DiskTiersTest, DemotesLeastRecentlyUsedToNextTier) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  std::vector<Digest> digests = addBlobs(*budget, 10);

  EXPECT_EQ(budget->evictIfOverBudget(), 500u);

  for (int i = 0; i < 10; ++i) {
    const Digest& digest = digests[static_cast<size_t>(i)];
    uint32_t tier = i < 5 ? 1 : 0;
    EXPECT_EQ(indexedTier(digest), static_cast<int>(tier)) << "blob " << i;
    EXPECT_TRUE(hasFile(digest, tier)) << "blob " << i;
    EXPECT_FALSE(hasFile(digest, 1 - tier)) << "blob " << i;
    Expected<storage::BlobFile> file = store_->openBlob(digest);
    ASSERT_TRUE(file) << "blob " << i;
    EXPECT_EQ(file->tier, tier);
  }
  EXPECT_EQ(readFile(store_->pathFor(digests[0], 1)), std::string(kBlobBytes, 'a'));
  EXPECT_EQ(budget->tierBytesUsed(0), 500u);
  EXPECT_EQ(budget->tierBytesUsed(1), 500u);
  EXPECT_EQ(budget->tierEntries(1), 5u);
  EXPECT_EQ(budget->tierCounters(0).demotions.load(), 5u);
  EXPECT_EQ(budget->tierCounters(0).evictions.load(), 0u);
}

TEST_F(DiskTiersTest, EvictsFromLastTierOnly) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 1000));
  std::vector<Digest> first = addBlobs(*budget, 10, 'a');
  budget->evictIfOverBudget();
  std::vector<Digest> second = addBlobs(*budget, 5, 'k');

  budget->evictIfOverBudget();

  // The five oldest went down first and then out; the next five went down.
  for (int i = 0; i < 5; ++i) {
    const Digest& digest = first[static_cast<size_t>(i)];
    EXPECT_EQ(indexedTier(digest), -1) << "blob " << i;
    EXPECT_FALSE(store_->contains(digest)) << "blob " << i;
  }
  for (int i = 5; i < 10; ++i) {
    EXPECT_EQ(indexedTier(first[static_cast<size_t>(i)]), 1) << "blob " << i;
  }
  for (const Digest& digest : second) {
    EXPECT_EQ(indexedTier(digest), 0);
  }
  EXPECT_EQ(budget->tierCounters(1).evictions.load(), 5u);
  EXPECT_EQ(budget->tierCounters(0).evictions.load(), 0u);
  EXPECT_LE(budget->tierBytesUsed(0), 900u);
  EXPECT_LE(budget->tierBytesUsed(1), 900u);
}

TEST_F(DiskTiersTest, PromotesAfterConfiguredHits) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000, 2));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  budget->evictIfOverBudget();
  ASSERT_EQ(indexedTier(digests[0]), 1);

  budget->recordAccess(digests[0], kBlobBytes, 1);
  budget->evictIfOverBudget();
  EXPECT_EQ(indexedTier(digests[0]), 1) << "one hit is not enough";

  budget->recordAccess(digests[0], kBlobBytes, 1);
  budget->evictIfOverBudget();

  EXPECT_EQ(indexedTier(digests[0]), 0);
  EXPECT_TRUE(hasFile(digests[0], 0));
  EXPECT_FALSE(hasFile(digests[0], 1));
  EXPECT_EQ(budget->tierCounters(0).promotions.load(), 1u);
  EXPECT_EQ(budget->tierCounters(1).hits.load(), 2u);
  EXPECT_EQ(budget->tierBytesUsed(0), 600u);
  EXPECT_EQ(budget->tierBytesUsed(1), 400u);
}

TEST_F(DiskTiersTest, HeadIsNoHit) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000, 2));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  budget->evictIfOverBudget();

  for (int i = 0; i < 3; ++i) {
    budget->recordAccess(digests[0], kBlobBytes, 1, DiskBudget::AccessKind::kRefresh);
  }
  budget->evictIfOverBudget();

  EXPECT_EQ(indexedTier(digests[0]), 1);
  EXPECT_EQ(budget->tierCounters(1).hits.load(), 0u);
}

TEST_F(DiskTiersTest, ZeroHitsNeverPromotes) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000, 0));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  budget->evictIfOverBudget();

  for (int i = 0; i < 5; ++i) {
    budget->recordAccess(digests[0], kBlobBytes, 1);
  }
  budget->evictIfOverBudget();

  EXPECT_EQ(indexedTier(digests[0]), 1);
  EXPECT_EQ(budget->tierCounters(0).promotions.load(), 0u);
}

TEST_F(DiskTiersTest, PinnedBlobStaysInItsTier) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  DiskBudget::Pin pin = budget->pin(digests[0]);
  ASSERT_TRUE(pin.isPinned());

  budget->evictIfOverBudget();

  EXPECT_EQ(indexedTier(digests[0]), 0);
  EXPECT_EQ(indexedTier(digests[5]), 1) << "the next oldest went down instead";
}

TEST_F(DiskTiersTest, RestartKeepsTiersAndOrder) {
  {
    std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
    std::vector<Digest> digests = addBlobs(*budget, 10);
    budget->evictIfOverBudget();
  }
  close();
  open();

  std::unique_ptr<DiskBudget> restored = makeBudget(options(1000, 10'000));
  ASSERT_TRUE(restored->restore().isOk());

  EXPECT_EQ(restored->tierBytesUsed(0), 500u);
  EXPECT_EQ(restored->tierBytesUsed(1), 500u);
  EXPECT_EQ(restored->tierEntries(1), 5u);
}

TEST_F(DiskTiersTest, CorruptBlobIsRemovedInsteadOfMoved) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  std::string damaged(kBlobBytes, 'a');
  damaged[50] = 'X';
  writeFile(store_->pathFor(digests[0], 0), damaged);

  budget->evictIfOverBudget();

  EXPECT_EQ(indexedTier(digests[0]), -1);
  EXPECT_FALSE(store_->contains(digests[0]));
  EXPECT_EQ(budget->tierCounters(0).corrupt_removed.load(), 1u);
  EXPECT_EQ(indexedTier(digests[1]), 1);
}

TEST_F(DiskTiersTest, FailedDemotionEvictsSoFirstTierKeepsBudget) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  // The lower tier cannot take files: its tmp/ is a file, not a folder.
  std::filesystem::remove_all(store_->tempDir(1));
  writeFile(store_->tempDir(1), "not a folder");

  budget->evictIfOverBudget();

  EXPECT_LE(budget->tierBytesUsed(0), 500u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(indexedTier(digests[static_cast<size_t>(i)]), -1) << "blob " << i;
    EXPECT_FALSE(store_->contains(digests[static_cast<size_t>(i)])) << "blob " << i;
  }
  EXPECT_EQ(budget->tierCounters(0).failures.load(), 5u);
  EXPECT_EQ(budget->tierCounters(0).evictions.load(), 5u);
}

TEST_F(DiskTiersTest, HeldBlobIsNotMovedOrEvicted) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 1000));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  ASSERT_TRUE(budget->hold(digests[0]).isOk());

  budget->evictIfOverBudget();
  addBlobs(*budget, 10, 'k');
  budget->evictIfOverBudget();

  EXPECT_EQ(indexedTier(digests[0]), 0);
  EXPECT_TRUE(hasFile(digests[0], 0));
}

TEST_F(DiskTiersTest, DownloadWaitsUntilThreadMakesRoom) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  addBlobs(*budget, 10);
  ASSERT_FALSE(budget->hasRoomForDownload());
  std::promise<bool> admitted;

  ASSERT_TRUE(budget->start().isOk());
  budget->waitForRoom([&admitted](bool has_room) { admitted.set_value(has_room); });
  std::future<bool> result = admitted.get_future();

  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(result.get());
  EXPECT_TRUE(budget->hasRoomForDownload());
  EXPECT_EQ(budget->counters().space_waits.load(), 1u);
  EXPECT_EQ(budget->counters().space_wait_timeouts.load(), 0u);
}

TEST_F(DiskTiersTest, ReservationsCountAgainstRoom) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  addBlobs(*budget, 5);
  EXPECT_TRUE(budget->hasRoomForDownload());

  DiskBudget::Reservation reservation = budget->reserve(500);

  EXPECT_FALSE(budget->hasRoomForDownload());
  reservation = DiskBudget::Reservation();
  EXPECT_TRUE(budget->hasRoomForDownload());
}

TEST_F(DiskTiersTest, DownloadGivesUpWhenNothingCanLeave) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  std::vector<Digest> digests = addBlobs(*budget, 10);
  std::vector<DiskBudget::Pin> pins;
  for (const Digest& digest : digests) {
    pins.push_back(budget->pin(digest));
  }
  std::promise<bool> admitted;

  ASSERT_TRUE(budget->start().isOk());
  budget->waitForRoom([&admitted](bool has_room) { admitted.set_value(has_room); });
  std::future<bool> result = admitted.get_future();

  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_FALSE(result.get());
  EXPECT_EQ(budget->counters().space_wait_timeouts.load(), 1u);
}

TEST_F(DiskTiersTest, WaitersAreReleasedAtStop) {
  std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
  addBlobs(*budget, 10);
  bool called = false;
  bool has_room = true;

  budget->waitForRoom([&](bool room) {
    called = true;
    has_room = room;
  });
  budget->stop();

  EXPECT_TRUE(called);
  EXPECT_FALSE(has_room);
}

TEST_F(DiskTiersTest, RejectsTiersWithoutBudget) {
  DiskBudgetOptions no_first_budget = options(0, 1000);
  EXPECT_EQ(DiskBudget::validate(no_first_budget).code(), StatusCode::kInvalidArgument);
  DiskBudgetOptions no_second_budget = options(1000, 0);
  Status status = DiskBudget::validate(no_second_budget);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("disk tier 1"), std::string_view::npos) << status.toString();
  DiskBudgetOptions bad_watermarks = options(1000, 1000);
  bad_watermarks.lower_tiers[0].low_watermark_percent = 95;
  EXPECT_EQ(DiskBudget::validate(bad_watermarks).code(), StatusCode::kInvalidArgument);

  // A budget with one tier over a store with two does not start.
  std::unique_ptr<DiskBudget> one_tier =
      makeBudget(DiskBudgetOptions{.budget_bytes = 1000, .check_interval_ms = 20});
  EXPECT_EQ(one_tier->start().code(), StatusCode::kInvalidArgument);
}

// Runs a demotion in a child process that stops dead (no destructor, no index close) right
// after one step of the first move, as a kill -9 would.
class DiskTiersCrashTest : public DiskTiersTest, public ::testing::WithParamInterface<MoveStep> {};

TEST_P(DiskTiersCrashTest, InterruptedDemotionLosesNothingAndFsckRepairs) {
  std::vector<Digest> digests;
  {
    std::unique_ptr<DiskBudget> budget = makeBudget(options(1000, 10'000));
    digests = addBlobs(*budget, 10);
  }
  close();

  const MoveStep crash_step = GetParam();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    open();
    DiskBudgetOptions child_options = options(1000, 10'000);
    child_options.on_move_step = [crash_step](MoveStep step, const Digest&) {
      if (step == crash_step) {
        ::_exit(0);
      }
    };
    std::unique_ptr<DiskBudget> budget = makeBudget(std::move(child_options));
    if (!budget->restore().isOk()) {
      ::_exit(2);
    }
    budget->evictIfOverBudget();
    ::_exit(3);  // the crash step was never reached
  }
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFEXITED(wait_status));
  ASSERT_EQ(WEXITSTATUS(wait_status), 0) << "the child did not stop at the crash step";

  open();
  // Every blob is still served with its bytes.
  for (size_t i = 0; i < digests.size(); ++i) {
    Expected<storage::BlobFile> file = store_->openBlob(digests[i]);
    ASSERT_TRUE(file) << "blob " << i << ": " << file.status().toString();
    EXPECT_EQ(readFile(store_->pathFor(digests[i], file->tier)),
              std::string(kBlobBytes, static_cast<char>('a' + i)));
  }

  storage::FsckOptions fsck_options;
  fsck_options.lower_tier_roots = {slowDir()};
  Expected<storage::FsckReport> found = storage::runFsck(dataDir(), *index_, fsck_options, {});
  ASSERT_TRUE(found) << found.status().toString();
  if (crash_step == MoveStep::kSourceRemoved) {
    EXPECT_TRUE(found->isClean());
  } else {
    EXPECT_EQ(found->findings_by_kind[static_cast<size_t>(storage::FsckKind::kDuplicateFile)], 1u);
    EXPECT_EQ(found->findingCount(), 1u);
  }

  fsck_options.repair = true;
  Expected<storage::FsckReport> repaired = storage::runFsck(dataDir(), *index_, fsck_options, {});
  ASSERT_TRUE(repaired) << repaired.status().toString();
  fsck_options.repair = false;
  Expected<storage::FsckReport> after = storage::runFsck(dataDir(), *index_, fsck_options, {});
  ASSERT_TRUE(after) << after.status().toString();
  EXPECT_TRUE(after->isClean());

  // Each blob is in the tier its record names, once. The interrupted move counts as done once its
  // index update was durable.
  int in_lower_tier = 0;
  for (size_t i = 0; i < digests.size(); ++i) {
    int tier = indexedTier(digests[i]);
    ASSERT_GE(tier, 0) << "blob " << i;
    EXPECT_TRUE(hasFile(digests[i], static_cast<uint32_t>(tier))) << "blob " << i;
    EXPECT_FALSE(hasFile(digests[i], static_cast<uint32_t>(1 - tier))) << "blob " << i;
    in_lower_tier += tier;
  }
  EXPECT_EQ(in_lower_tier, crash_step == MoveStep::kCopied ? 0 : 1);
}

INSTANTIATE_TEST_SUITE_P(Steps, DiskTiersCrashTest,
                         ::testing::Values(MoveStep::kCopied, MoveStep::kIndexed,
                                           MoveStep::kSourceRemoved),
                         [](const ::testing::TestParamInfo<MoveStep>& step) {
                           switch (step.param) {
                             case MoveStep::kCopied:
                               return std::string("AfterCopy");
                             case MoveStep::kIndexed:
                               return std::string("AfterIndexUpdate");
                             case MoveStep::kSourceRemoved:
                               return std::string("AfterSourceRemoved");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace outpost::cache
