#include "cache/blob_fill.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "cache/fill_registry.h"
#include "cache/single_flight.h"

namespace outpost::cache {
namespace {

class BlobFillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("outpost-fill-test-" + std::to_string(::getpid()) + "-" +
             std::to_string(std::random_device()()));
    auto store = storage::BlobStore::open(root_);
    ASSERT_TRUE(store.hasValue()) << store.status().toString();
    store_ = std::move(*store);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::shared_ptr<BlobFill> makeFill(const Digest& digest) {
    auto writer = store_->createWriter();
    EXPECT_TRUE(writer.hasValue());
    return std::make_shared<BlobFill>(digest, std::move(*writer));
  }

  std::string readFile(int fd, uint64_t length) {
    std::string data(length, '\0');
    EXPECT_EQ(::pread(fd, data.data(), length, 0), static_cast<ssize_t>(length));
    return data;
  }

  std::filesystem::path root_;
  std::unique_ptr<storage::BlobStore> store_;
};

TEST_F(BlobFillTest, HoldsBackLastByteUntilVerified) {
  std::string content = "layer bytes";
  auto fill = makeFill(sha256Of(content));
  fill->setTotalSize(content.size());
  ASSERT_TRUE(fill->append(content.substr(0, 5)).isOk());
  EXPECT_EQ(fill->snapshot().releasable(), 4u);
  ASSERT_TRUE(fill->append(content.substr(5)).isOk());
  EXPECT_EQ(fill->snapshot().releasable(), content.size() - 1);
  ASSERT_TRUE(fill->verify().isOk());
  EXPECT_EQ(fill->snapshot().state, BlobFill::State::kVerified);
  EXPECT_EQ(fill->snapshot().releasable(), content.size());
  EXPECT_EQ(readFile(fill->fd(), content.size()), content);
}

TEST_F(BlobFillTest, FailsOnDigestMismatchAndReleasesNothing) {
  auto fill = makeFill(sha256Of("expected"));
  ASSERT_TRUE(fill->append("something else").isOk());
  Status status = fill->verify();
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  BlobFill::Snapshot snapshot = fill->snapshot();
  EXPECT_EQ(snapshot.state, BlobFill::State::kFailed);
  EXPECT_EQ(snapshot.releasable(), 0u);
  EXPECT_EQ(snapshot.failure.code(), StatusCode::kCorruption);
}

TEST_F(BlobFillTest, RejectsBytesBeyondAnnouncedSize) {
  auto fill = makeFill(sha256Of("abc"));
  fill->setTotalSize(2);
  EXPECT_EQ(fill->append("abc").code(), StatusCode::kOutOfRange);
}

TEST_F(BlobFillTest, WakesSubscribersOnAppendAndStateChange) {
  auto fill = makeFill(sha256Of("ab"));
  std::atomic<int> wakes{0};
  uint64_t id = fill->subscribe([&] { ++wakes; });
  ASSERT_TRUE(fill->append("a").isOk());
  ASSERT_TRUE(fill->append("b").isOk());
  ASSERT_TRUE(fill->verify().isOk());
  EXPECT_EQ(wakes.load(), 3);
  fill->unsubscribe(id);
  fill->markCommitted();
  EXPECT_EQ(wakes.load(), 3);
  EXPECT_EQ(fill->subscriberCount(), 0u);
}

TEST_F(BlobFillTest, CommittedFillKeepsReadableDescriptor) {
  std::string content(100000, 'z');
  Digest digest = sha256Of(content);
  auto fill = makeFill(digest);
  ASSERT_TRUE(fill->append(content).isOk());
  ASSERT_TRUE(fill->verify().isOk());
  ASSERT_TRUE(store_->commit(fill->writer(), digest).isOk());
  fill->markCommitted();
  EXPECT_TRUE(store_->contains(digest));
  EXPECT_EQ(readFile(fill->fd(), content.size()), content);
}

TEST_F(BlobFillTest, RegistryMakesOneFillForConcurrentJoins) {
  FillRegistry registry;
  Digest digest = sha256Of("shared");

  std::atomic<int> made{0};
  std::atomic<int> leaders{0};
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<BlobFill>> seen(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto joined = registry.join(
          digest, [] { return false; },
          [&]() -> Expected<std::shared_ptr<BlobFill>> {
            ++made;
            return makeFill(digest);
          });
      ASSERT_TRUE(joined.hasValue());
      if (joined->is_new) {
        ++leaders;
      }
      seen[i] = joined->fill;
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }

  EXPECT_EQ(made.load(), 1);
  EXPECT_EQ(leaders.load(), 1);
  for (const auto& fill : seen) {
    EXPECT_EQ(fill, seen[0]);
  }
  registry.remove(seen[0]);
  EXPECT_EQ(registry.sizeForTest(), 0u);
}

TEST_F(BlobFillTest, RegistryMakesNoFillWhenBlobIsCached) {
  FillRegistry registry;
  auto joined = registry.join(
      sha256Of("x"), [] { return true; },
      [&]() -> Expected<std::shared_ptr<BlobFill>> { return internalError("must not be called"); });
  ASSERT_TRUE(joined.hasValue());
  EXPECT_EQ(joined->fill, nullptr);
  EXPECT_FALSE(joined->is_new);
}

TEST_F(BlobFillTest, RegistryRemoveKeepsNewerFill) {
  FillRegistry registry;
  Digest digest = sha256Of("y");
  auto first = registry.join(digest, [] { return false; }, [&]() -> Expected<std::shared_ptr<BlobFill>> {
    return makeFill(digest);
  });
  ASSERT_TRUE(first.hasValue());
  registry.remove(first->fill);
  auto second = registry.join(digest, [] { return false; }, [&]() -> Expected<std::shared_ptr<BlobFill>> {
    return makeFill(digest);
  });
  ASSERT_TRUE(second.hasValue());
  EXPECT_TRUE(second->is_new);
  registry.remove(first->fill);  // stale handle: must not drop the second fill
  EXPECT_EQ(registry.sizeForTest(), 1u);
}

TEST(SingleFlightTest, FirstJoinLeadsAndAllWaitersGetResult) {
  SingleFlight<std::string, int> flight;
  std::vector<int> results;
  EXPECT_TRUE(flight.join("k", [&](const int& value) { results.push_back(value); }));
  EXPECT_FALSE(flight.join("k", [&](const int& value) { results.push_back(value + 1); }));
  EXPECT_TRUE(flight.join("other", [&](const int&) { results.push_back(-1); }));
  EXPECT_EQ(flight.waiterCount("k"), 2u);
  flight.complete("k", 10);
  EXPECT_EQ(results, (std::vector<int>{10, 11}));
  EXPECT_EQ(flight.waiterCount("k"), 0u);
  EXPECT_TRUE(flight.join("k", [](const int&) {}));
}

}  // namespace
}  // namespace outpost::cache
