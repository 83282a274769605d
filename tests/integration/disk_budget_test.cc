// The disk budget: least recently used blobs are evicted above the high watermark, an evicted
// blob is downloaded again on its next request, and the usage survives a restart. With a lower
// disk tier, they move down first and come back up after repeated hits.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/process.h"
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
    // The memory tier is off, so that every hit reads the disk tier under test.
    options.storage_yaml = "  disk_budget_bytes: " + std::to_string(kBudgetBytes) +
                           "\n  high_watermark_percent: 90\n  low_watermark_percent: 50\n"
                           "  memory_cache_bytes: 0\n" + extraStorageYaml();
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(options));
  }

  virtual std::string extraStorageYaml() const { return ""; }

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

  uint64_t used = waitForMetric("outpost_cache_tier_bytes{tier=\"disk0\"}",
                                [](uint64_t value) { return value <= kBudgetBytes / 2; });
  EXPECT_LE(used, kBudgetBytes / 2);
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      uint64_t evictions, outpost_->metric("outpost_cache_tier_evictions_total{tier=\"disk0\"}"));
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
  uint64_t before = waitForMetric("outpost_cache_tier_bytes{tier=\"disk0\"}",
                                  [](uint64_t value) { return value == 2 * kBlobBytes; });
  ASSERT_EQ(before, 2 * kBlobBytes);

  ASSERT_TRUE(outpost_->restart().isOk());

  // The order is restored from the index on a background thread after the server listens.
  EXPECT_EQ(waitForMetric("outpost_cache_tier_bytes{tier=\"disk0\"}",
                          [](uint64_t value) { return value == 2 * kBlobBytes; }),
            2 * kBlobBytes);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t entries,
                               outpost_->metric("outpost_cache_tier_entries{tier=\"disk0\"}"));
  EXPECT_EQ(entries, 2u);
}

TEST_F(DiskBudgetTest, DownloadWaitsForRoomWhenFull) {
  // A slow download larger than the budget reserves all of it once its head arrives. A second
  // download waits until the first ends and is evicted, and then arrives whole.
  std::string large = randomBytes(kBudgetBytes + kBlobBytes, 7);
  std::string large_digest = sha256Of(large).str();
  upstream_.setResource(upstreamPath(large_digest), large);
  upstream_.setFault(UpstreamFault::kSlowBody);
  std::thread large_reader([&] {
    Expected<HttpResult> result =
        httpGet(outpost_->url() + "/v2/upstream/team/app/blobs/" + large_digest);
    ASSERT_TRUE(result) << result.status().toString();
    EXPECT_EQ(result->status, 200);
    EXPECT_TRUE(result->body == large) << "the large blob's bytes differ";
  });
  waitForMetric("outpost_cache_disk_reserved_bytes",
                [](uint64_t value) { return value > kBudgetBytes; });

  getBlob(0);
  large_reader.join();

  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t waits, outpost_->metric("outpost_cache_space_waits_total"));
  EXPECT_EQ(waits, 1u);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t timeouts,
                               outpost_->metric("outpost_cache_space_wait_timeouts_total"));
  EXPECT_EQ(timeouts, 0u);
  EXPECT_EQ(upstream_.requestCount(upstreamPath(digests_[0])), 1u);
}

// The data folder over a second disk tier with the same budget, promoting after two hits.
class DiskTiersTest : public DiskBudgetTest {
 protected:
  void SetUp() override {
    Expected<TempDir> slow = TempDir::create("slow-tier");
    ASSERT_TRUE(slow) << slow.status().toString();
    slow_.emplace(std::move(*slow));
    DiskBudgetTest::SetUp();
  }

  std::string extraStorageYaml() const override {
    return "  promote_after_hits: 2\n  lower_tiers:\n    - path: " + slow_->path() +
           "\n      budget_bytes: " + std::to_string(kBudgetBytes) +
           "\n      high_watermark_percent: 90\n      low_watermark_percent: 50\n";
  }

  std::string lowerTierPath(int i) const {
    std::string_view hex = std::string_view(digests_[i]).substr(7);
    return (std::filesystem::path(slow_->path()) / "blobs" / "sha256" /
            std::string(hex.substr(0, 2)) / std::string(hex))
        .string();
  }

  std::optional<TempDir> slow_;
};

TEST_F(DiskTiersTest, DemotesThenEvictsThenFetchesAgain) {
  for (int i = 0; i < kBlobCount; ++i) {
    getBlob(i);
    ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(digests_[i]))) << "blob " << i;
  }
  // Three or four blobs went down to the second tier, depending on how the passes fell. With
  // four, the second tier went above its high watermark and evicted its two oldest.
  waitForMetric("outpost_cache_tier_demotions_total{tier=\"disk0\"}",
                [](uint64_t value) { return value >= 3; });
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t first_tier,
                               outpost_->metric("outpost_cache_tier_bytes{tier=\"disk0\"}"));
  EXPECT_LE(first_tier, kBudgetBytes / 10 * 9);
  EXPECT_TRUE(std::filesystem::exists(lowerTierPath(2)) ||
              std::filesystem::exists(lowerTierPath(3)));
  EXPECT_FALSE(std::filesystem::exists(outpost_->storedBlobPath(digests_[0])));

  // Every blob, wherever it is, comes back whole; the ones evicted from the last tier come
  // from a second download.
  for (int i = 0; i < kBlobCount; ++i) {
    getBlob(i);
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t lower_hits,
                               outpost_->metric("outpost_cache_tier_hits_total{tier=\"disk1\"}"));
  EXPECT_GE(lower_hits, 1u);
  for (int i = 0; i < kBlobCount; ++i) {
    EXPECT_LE(upstream_.requestCount(upstreamPath(digests_[i])), 2u) << "blob " << i;
  }
}

TEST_F(DiskTiersTest, RepeatedHitsPromoteBackToFirstTier) {
  for (int i = 0; i < kBlobCount; ++i) {
    getBlob(i);
    ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(digests_[i]))) << "blob " << i;
  }
  waitForMetric("outpost_cache_tier_demotions_total{tier=\"disk0\"}",
                [](uint64_t value) { return value >= 3; });
  // The newest of the demoted blobs is still in the second tier.
  int demoted = std::filesystem::exists(lowerTierPath(3)) ? 3 : 2;
  ASSERT_TRUE(std::filesystem::exists(lowerTierPath(demoted)));

  getBlob(demoted);
  getBlob(demoted);

  uint64_t promotions = waitForMetric("outpost_cache_tier_promotions_total{tier=\"disk0\"}",
                                      [](uint64_t value) { return value >= 1; });
  EXPECT_GE(promotions, 1u);
  EXPECT_TRUE(waitForFile(outpost_->storedBlobPath(digests_[demoted])));
  getBlob(demoted);
  EXPECT_EQ(upstream_.requestCount(upstreamPath(digests_[demoted])), 1u);
}

TEST_F(DiskTiersTest, FsckChecksBothTiers) {
  for (int i = 0; i < kBlobCount; ++i) {
    getBlob(i);
    ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(digests_[i]))) << "blob " << i;
  }
  waitForMetric("outpost_cache_tier_demotions_total{tier=\"disk0\"}",
                [](uint64_t value) { return value >= 3; });
  outpost_->stop();
  int demoted = std::filesystem::exists(lowerTierPath(3)) ? 3 : 2;
  std::filesystem::path damaged = lowerTierPath(demoted);
  {
    std::ofstream out(damaged, std::ios::binary | std::ios::trunc);
    out << "damaged";
  }

  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult report,
                               run({OUTPOST_BINARY, "fsck", "--config", outpost_->configPath()}));

  EXPECT_EQ(report.exit_code, 1) << report.stdout_text << report.stderr_text;
  EXPECT_NE(report.stdout_text.find("kind=size_mismatch"), std::string::npos) << report.stdout_text;
  EXPECT_NE(report.stdout_text.find(damaged.string()), std::string::npos) << report.stdout_text;
}

}  // namespace
}  // namespace outpost::integration
