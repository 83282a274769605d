#include "storage/scrubber.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "storage/blob_store.h"
#include "storage/index.h"
#include "tests/storage/indexed_blob.h"
#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

namespace fs = std::filesystem;
using testing::readFile;
using testing::TempFolder;

constexpr int64_t kHourMs = 60 * 60 * 1000;
// Real time a test waits for the scrub thread to reach a state before it fails.
constexpr auto kStateTimeout = std::chrono::seconds(10);
// Real time a test waits to see that the scrub thread does not move on.
constexpr auto kQuietPeriod = std::chrono::milliseconds(100);

// Polls `condition` until it is true or kStateTimeout passes. Returns its last value.
bool waitFor(const std::function<bool()>& condition) {
  auto deadline = std::chrono::steady_clock::now() + kStateTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

// Returns `size` bytes that differ from blob to blob with `seed`.
std::string patternBytes(size_t size, char seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    bytes[i] = static_cast<char>(seed + static_cast<char>(i % 251));
  }
  return bytes;
}

class ScrubberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<BlobStore>> store = BlobStore::open(folder_.path());
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(store).value();
    Expected<std::unique_ptr<Index>> index = Index::open(folder_.path() / "index");
    ASSERT_TRUE(index) << index.status().toString();
    index_ = std::move(index).value();
  }

  void TearDown() override {
    // The scrubber reads the index and the store, so it stops before they close.
    scrubber_.reset();
  }

  // Commits `content` through BlobStore and indexes it, as the server does.
  Digest addBlob(const std::string& content) {
    return testing::addIndexedBlob(*store_, *index_, content);
  }

  Scrubber& startScrubber(const ScrubOptions& options, const Clock& clock) {
    scrubber_ = std::make_unique<Scrubber>(*index_, *store_, options, clock);
    scrubber_->setOnRemoved([this](const Digest& digest) {
      std::lock_guard lock(removed_mutex_);
      removed_.push_back(digest);
    });
    Status started = scrubber_->start();
    EXPECT_TRUE(started.isOk()) << started.toString();
    return *scrubber_;
  }

  // Starts a scrubber with a rate high enough that small test stores never wait on it, and
  // waits for its first pass.
  const ScrubCounters& runOnePass() {
    ScrubOptions options;
    options.bytes_per_second = kMaxScrubBytesPerSecond;
    options.pass_interval_ms = kHourMs;
    Scrubber& scrubber = startScrubber(options, clock_);
    const ScrubCounters& counters = scrubber.counters();
    EXPECT_TRUE(waitFor([&counters] { return counters.passes_completed.load() >= 1; }))
        << "the first pass did not complete";
    return counters;
  }

  bool isIndexed(const Digest& digest) const { return index_->getBlob(digest).hasValue(); }
  // The digests the scrubber reported through its removal callback, in order.
  std::vector<Digest> removedDigests() {
    std::lock_guard lock(removed_mutex_);
    return removed_;
  }
  bool hasFile(const Digest& digest) const { return fs::exists(store_->pathFor(digest)); }

  TempFolder folder_;
  ManualClock clock_;
  std::unique_ptr<BlobStore> store_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Scrubber> scrubber_;
  std::mutex removed_mutex_;
  std::vector<Digest> removed_;
};

struct TakeStep {
  uint64_t bytes;
  int64_t now_ms;
  int64_t expected_wait_ms;
};

struct RateLimiterCase {
  std::string name;
  uint64_t bytes_per_second;
  uint64_t burst_bytes;
  std::vector<TakeStep> steps;
};

TEST(ByteRateLimiterTest, WaitsForRefill) {
  const std::vector<RateLimiterCase> cases = {
      {"within burst", 1000, 1000, {{400, 0, 0}, {600, 0, 0}}},
      {"one byte of debt rounds up", 1000, 1000, {{1000, 0, 0}, {1, 0, 1}}},
      {"debt of one burst", 1000, 1000, {{1000, 0, 0}, {1000, 0, 1000}}},
      {"refill pays the debt", 1000, 1000, {{1000, 0, 0}, {1000, 0, 1000}, {1000, 1000, 1000}}},
      {"partial refill", 1000, 1000, {{1000, 0, 0}, {500, 250, 250}}},
      {"refill stops at the burst", 1000, 1000, {{1000, 0, 0}, {2000, 60000, 1000}}},
      {"high rate", 1u << 30, 1u << 20, {{1u << 20, 0, 0}, {1u << 20, 0, 1}}},
      {"clock moving backwards", 1000, 1000, {{1000, 5000, 0}, {500, 4000, 500}}},
      {"long pause at the maximum rate",
       kMaxScrubBytesPerSecond,
       kMaxScrubChunkBytes,
       {{kMaxScrubChunkBytes, 0, 0}, {kMaxScrubChunkBytes, INT64_MAX / 2, 0}}},
  };
  for (const RateLimiterCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    ByteRateLimiter limiter(test_case.bytes_per_second, test_case.burst_bytes, 0);
    for (size_t i = 0; i < test_case.steps.size(); ++i) {
      const TakeStep& step = test_case.steps[i];
      EXPECT_EQ(limiter.take(step.bytes, step.now_ms), step.expected_wait_ms) << "step " << i;
    }
  }
}

TEST_F(ScrubberTest, CleanStorePassVerifiesEveryBlob) {
  std::vector<std::string> contents = {patternBytes(1, 'a'), patternBytes(4096, 'b'),
                                       patternBytes(300000, 'c')};
  std::vector<Digest> digests;
  uint64_t total_bytes = 0;
  for (const std::string& content : contents) {
    digests.push_back(addBlob(content));
    total_bytes += content.size();
  }

  const ScrubCounters& counters = runOnePass();

  EXPECT_EQ(counters.passes_completed.load(), 1u);
  EXPECT_EQ(counters.blobs_verified.load(), contents.size());
  EXPECT_EQ(counters.bytes_verified.load(), total_bytes);
  EXPECT_EQ(counters.corrupt_removed.load(), 0u);
  EXPECT_EQ(counters.missing_removed.load(), 0u);
  for (size_t i = 0; i < digests.size(); ++i) {
    EXPECT_TRUE(isIndexed(digests[i])) << digests[i].str();
    EXPECT_EQ(readFile(store_->pathFor(digests[i])), contents[i]) << digests[i].str();
  }
}

TEST_F(ScrubberTest, EmptyStoreCompletesPass) {
  const ScrubCounters& counters = runOnePass();

  EXPECT_EQ(counters.passes_completed.load(), 1u);
  EXPECT_EQ(counters.blobs_verified.load(), 0u);
  EXPECT_EQ(counters.bytes_verified.load(), 0u);
}

TEST_F(ScrubberTest, FlippedByteRemovesBlob) {
  std::string damaged_content = patternBytes(70000, 'd');
  Digest damaged = addBlob(damaged_content);
  Digest intact = addBlob(patternBytes(5000, 'e'));
  {
    std::fstream file(store_->pathFor(damaged), std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(12345);
    file.put(static_cast<char>(damaged_content[12345] ^ 0x01));
  }

  const ScrubCounters& counters = runOnePass();

  EXPECT_EQ(counters.corrupt_removed.load(), 1u);
  EXPECT_EQ(counters.blobs_verified.load(), 1u);
  EXPECT_EQ(counters.bytes_verified.load(), 75000u);
  EXPECT_FALSE(isIndexed(damaged));
  EXPECT_FALSE(hasFile(damaged));
  EXPECT_TRUE(isIndexed(intact));
  EXPECT_TRUE(hasFile(intact));
  EXPECT_EQ(removedDigests(), std::vector<Digest>{damaged});
}

TEST_F(ScrubberTest, FlippedByteInLowerTierRemovesBlob) {
  store_.reset();
  fs::create_directories(folder_.path() / "slow");
  Expected<std::unique_ptr<BlobStore>> tiered =
      BlobStore::open({folder_.path(), folder_.path() / "slow"});
  ASSERT_TRUE(tiered) << tiered.status().toString();
  store_ = std::move(tiered).value();
  std::string damaged_content = patternBytes(40000, 'k');
  Digest damaged = addBlob(damaged_content);
  ASSERT_TRUE(store_->copyToTier(damaged, 0, 1).isOk());
  ASSERT_TRUE(index_->setBlobTier(damaged, 1).hasValue());
  ASSERT_TRUE(store_->removeFromTier(damaged, 0).isOk());
  {
    std::fstream file(store_->pathFor(damaged, 1), std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(999);
    file.put(static_cast<char>(damaged_content[999] ^ 0x01));
  }

  const ScrubCounters& counters = runOnePass();

  EXPECT_EQ(counters.corrupt_removed.load(), 1u);
  EXPECT_FALSE(isIndexed(damaged));
  EXPECT_FALSE(fs::exists(store_->pathFor(damaged, 1)));
  EXPECT_EQ(removedDigests(), std::vector<Digest>{damaged});
}

TEST_F(ScrubberTest, TruncatedFileRemovesBlob) {
  Digest truncated = addBlob(patternBytes(10000, 'f'));
  ASSERT_EQ(::truncate(store_->pathFor(truncated).c_str(), 9999), 0);

  const ScrubCounters& counters = runOnePass();

  EXPECT_EQ(counters.corrupt_removed.load(), 1u);
  EXPECT_EQ(counters.blobs_verified.load(), 0u);
  EXPECT_EQ(counters.bytes_verified.load(), 0u) << "a size mismatch needs no read";
  EXPECT_FALSE(isIndexed(truncated));
  EXPECT_FALSE(hasFile(truncated));
}

TEST_F(ScrubberTest, MissingFileRemovesRecord) {
  Digest missing = addBlob(patternBytes(2000, 'g'));
  Digest intact = addBlob(patternBytes(3000, 'h'));
  ASSERT_TRUE(fs::remove(store_->pathFor(missing)));

  const ScrubCounters& counters = runOnePass();

  EXPECT_EQ(counters.missing_removed.load(), 1u);
  EXPECT_EQ(counters.corrupt_removed.load(), 0u);
  EXPECT_EQ(counters.blobs_verified.load(), 1u);
  EXPECT_FALSE(isIndexed(missing));
  EXPECT_TRUE(isIndexed(intact));
  EXPECT_EQ(removedDigests(), std::vector<Digest>{missing});
}

TEST_F(ScrubberTest, RateLimitPacesReads) {
  constexpr uint64_t kChunk = 64 * 1024;
  addBlob(patternBytes(4 * kChunk, 'i'));
  ScrubOptions options;
  options.bytes_per_second = kChunk;
  options.chunk_bytes = kChunk;
  options.pass_interval_ms = kHourMs;
  Scrubber& scrubber = startScrubber(options, clock_);
  const ScrubCounters& counters = scrubber.counters();

  // The bucket starts with one chunk, and every further chunk needs one second of the clock,
  // so 4 chunks take 3 seconds.
  for (uint64_t chunks = 1; chunks <= 4; ++chunks) {
    SCOPED_TRACE("after chunk " + std::to_string(chunks));
    ASSERT_TRUE(waitFor([&] { return counters.bytes_verified.load() >= chunks * kChunk; }));
    std::this_thread::sleep_for(kQuietPeriod);
    EXPECT_EQ(counters.bytes_verified.load(), chunks * kChunk);
    if (chunks == 4) {
      break;
    }

    clock_.advanceMs(999);
    scrubber.wakeForTest();
    std::this_thread::sleep_for(kQuietPeriod);
    EXPECT_EQ(counters.bytes_verified.load(), chunks * kChunk) << "read before the refill";

    clock_.advanceMs(1);
    scrubber.wakeForTest();
  }
  ASSERT_TRUE(waitFor([&] { return counters.passes_completed.load() == 1; }));
  EXPECT_EQ(counters.blobs_verified.load(), 1u);
}

TEST_F(ScrubberTest, WaitsIntervalBetweenPasses) {
  addBlob(patternBytes(100, 'j'));
  ScrubOptions options;
  options.pass_interval_ms = kHourMs;
  Scrubber& scrubber = startScrubber(options, clock_);
  const ScrubCounters& counters = scrubber.counters();
  ASSERT_TRUE(waitFor([&] { return counters.passes_completed.load() == 1; }));

  clock_.advanceMs(kHourMs - 1);
  scrubber.wakeForTest();
  std::this_thread::sleep_for(kQuietPeriod);
  EXPECT_EQ(counters.passes_completed.load(), 1u) << "second pass before the interval";

  clock_.advanceMs(1);
  scrubber.wakeForTest();
  ASSERT_TRUE(waitFor([&] { return counters.passes_completed.load() == 2; }));
  EXPECT_EQ(counters.blobs_verified.load(), 2u);
}

TEST_F(ScrubberTest, ZeroIntervalSpacesPassesOneSecond) {
  ScrubOptions options;
  options.pass_interval_ms = 0;
  Scrubber& scrubber = startScrubber(options, clock_);
  const ScrubCounters& counters = scrubber.counters();
  ASSERT_TRUE(waitFor([&] { return counters.passes_completed.load() == 1; }));

  clock_.advanceMs(999);
  scrubber.wakeForTest();
  std::this_thread::sleep_for(kQuietPeriod);
  EXPECT_EQ(counters.passes_completed.load(), 1u) << "second pass within one second";

  clock_.advanceMs(1);
  scrubber.wakeForTest();
  ASSERT_TRUE(waitFor([&] { return counters.passes_completed.load() == 2; }));
}

TEST_F(ScrubberTest, StopReturnsPromptlyMidBlob) {
  // At 64 KiB/s, the 4 MiB blob takes about a minute of real time.
  addBlob(patternBytes(4 << 20, 'k'));
  ScrubOptions options;
  options.bytes_per_second = 64 * 1024;
  options.chunk_bytes = 64 * 1024;
  Scrubber& scrubber = startScrubber(options, SystemClock::instance());
  const ScrubCounters& counters = scrubber.counters();
  ASSERT_TRUE(waitFor([&] { return counters.bytes_verified.load() > 0; }));

  auto before = std::chrono::steady_clock::now();
  scrubber.stop();
  auto stop_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - before)
                     .count();

  EXPECT_LT(stop_ms, 500);
  EXPECT_EQ(counters.blobs_verified.load(), 0u);
  EXPECT_EQ(counters.passes_completed.load(), 0u);
}

TEST_F(ScrubberTest, StopWithoutStartReturns) {
  Scrubber scrubber(*index_, *store_, ScrubOptions{}, clock_);
  scrubber.stop();
  scrubber.stop();
  EXPECT_EQ(scrubber.counters().passes_completed.load(), 0u);
}

TEST_F(ScrubberTest, StartAfterStopFails) {
  Scrubber scrubber(*index_, *store_, ScrubOptions{}, clock_);
  scrubber.stop();
  Status started = scrubber.start();
  EXPECT_EQ(started.code(), StatusCode::kAlreadyExists) << started.toString();
}

TEST_F(ScrubberTest, StartTwiceFails) {
  Scrubber& scrubber = startScrubber(ScrubOptions{}, clock_);
  Status second = scrubber.start();
  EXPECT_EQ(second.code(), StatusCode::kAlreadyExists) << second.toString();
}

struct InvalidOptionsCase {
  std::string name;
  ScrubOptions options;
};

TEST_F(ScrubberTest, StartRejectsInvalidOptions) {
  const std::vector<InvalidOptionsCase> cases = {
      {"zero rate", {.bytes_per_second = 0}},
      {"rate above maximum", {.bytes_per_second = kMaxScrubBytesPerSecond + 1}},
      {"zero chunk", {.chunk_bytes = 0}},
      {"chunk above maximum", {.chunk_bytes = kMaxScrubChunkBytes + 1}},
      {"negative interval", {.pass_interval_ms = -1}},
  };
  for (const InvalidOptionsCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Scrubber scrubber(*index_, *store_, test_case.options, clock_);
    Status started = scrubber.start();
    EXPECT_EQ(started.code(), StatusCode::kInvalidArgument) << started.toString();
  }
}

}  // namespace
}  // namespace outpost::storage
