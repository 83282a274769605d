// The disk budget: least recently used blobs are evicted above the high watermark, an evicted
// blob is downloaded again on its next request, and the usage survives a restart.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/scripted_upstream.h"

namespace outpost::integration {
namespace {

constexpr size_t kBlobBytes = 1u << 20;
constexpr int kBlobCount = 6;
// 4 MiB with the watermarks below: eviction starts above 3.6 MiB and stops at 2 MiB.
constexpr uint64_t kBudgetBytes = 4u << 20;
constexpr auto kMetricTimeout = std::chrono::seconds(20);

class DiskBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(upstream_.start().isOk());
    for (int i = 0; i < kBlobCount; ++i) {
      std::string blob = randomBytes(kBlobBytes, 100 + static_cast<uint64_t>(i));
      std::string digest = sha256Of(blob).str();
      upstream_.setResource(upstreamPath(digest), blob);
      blobs_.push_back(std::move(blob));
      digests_.push_back(std::move(digest));
    }
    OutpostOptions options = optionsForUpstream(upstream_.url(), upstream_.hostPort());
    options.storage_yaml = "  disk_budget_bytes: " + std::to_string(kBudgetBytes) +
                           "\n  high_watermark_percent: 90\n  low_watermark_percent: 50\n";
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(options));
  }

  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  static std::string upstreamPath(const std::string& digest) {
    return "/v2/team/app/blobs/" + digest;
  }
  std::string blobUrl(int i) const {
    return outpost_->url() + "/v2/upstream/team/app/blobs/" + digests_[i];
  }

  // Polls a metric until `done` accepts its value or kMetricTimeout passes; returns the last
  // value read.
  uint64_t waitForMetric(const std::string& name, const std::function<bool(uint64_t)>& done) {
    auto deadline = std::chrono::steady_clock::now() + kMetricTimeout;
    uint64_t value = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      Expected<uint64_t> read = outpost_->metric(name);
      value = read ? *read : 0;
      if (read && done(value)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return value;
  }

  // GETs blob i through Outpost and checks its bytes.
  void getBlob(int i) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, httpGet(blobUrl(i)));
    ASSERT_EQ(result.status, 200) << "blob " << i;
    EXPECT_TRUE(result.body == blobs_[static_cast<size_t>(i)]) << "blob " << i << " bytes differ";
  }

  ScriptedUpstream upstream_;
  std::unique_ptr<OutpostServer> outpost_;
  std::vector<std::string> blobs_;
  std::vector<std::string> digests_;
};

TEST_F(DiskBudgetTest, EvictsOldestAndFetchesAgain) {
  for (int i = 0; i < kBlobCount; ++i) {
    getBlob(i);
    // Each blob is committed before the next is requested, so the order of use is known.
    ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(digests_[i]))) << "blob " << i;
  }

  uint64_t used = waitForMetric("outpost_cache_disk_bytes",
                                [](uint64_t value) { return value <= kBudgetBytes / 2; });
  EXPECT_LE(used, kBudgetBytes / 2);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t evictions,
                               outpost_->metric("outpost_cache_evictions_total"));
  EXPECT_GE(evictions, 4u);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t budget,
                               outpost_->metric("outpost_cache_disk_budget_bytes"));
  EXPECT_EQ(budget, kBudgetBytes);
  EXPECT_FALSE(std::filesystem::exists(outpost_->storedBlobPath(digests_[0])));
  EXPECT_TRUE(std::filesystem::exists(outpost_->storedBlobPath(digests_[kBlobCount - 1])));

  // The evicted blob comes back whole, from a second upstream download.
  getBlob(0);
  EXPECT_EQ(upstream_.requestCount(upstreamPath(digests_[0])), 2u);
  EXPECT_EQ(upstream_.requestCount(upstreamPath(digests_[kBlobCount - 1])), 1u);
}

TEST_F(DiskBudgetTest, UsageSurvivesRestart) {
  getBlob(0);
  getBlob(1);
  ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(digests_[1])));
  uint64_t before = waitForMetric("outpost_cache_disk_bytes",
                                  [](uint64_t value) { return value == 2 * kBlobBytes; });
  ASSERT_EQ(before, 2 * kBlobBytes);

  ASSERT_TRUE(outpost_->restart().isOk());

  // The order is restored from the index on a background thread after the server listens.
  EXPECT_EQ(waitForMetric("outpost_cache_disk_bytes",
                          [](uint64_t value) { return value == 2 * kBlobBytes; }),
            2 * kBlobBytes);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t entries, outpost_->metric("outpost_cache_disk_entries"));
  EXPECT_EQ(entries, 2u);
}

}  // namespace
}  // namespace outpost::integration
