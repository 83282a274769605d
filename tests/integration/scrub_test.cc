// The background scrub: a cached blob damaged on disk is removed, and the next request fetches
// it from the upstream again.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/scripted_blob_test.h"
#include "tests/integration/scripted_upstream.h"

namespace outpost::integration {
namespace {

// Real time the test waits for a scrub pass to find the damage.
constexpr auto kScrubTimeout = std::chrono::seconds(20);

class ScrubTest : public ScriptedBlobTest {
 protected:
  void SetUp() override {
    startWithBlob(1u << 20, 7, [](OutpostOptions& options) {
      // With a 0s interval, passes start 1 s apart (the minimum), so that damage is found
      // within about a second.
      options.storage_yaml =
          "  scrub_bytes_per_second: 67108864\n  scrub_interval: 0s\n"
          "  disk_budget_bytes: 104857600\n";
    });
  }

  // Polls `name` on /metrics until it reaches `expected` or kScrubTimeout passes, and returns
  // the last value read.
  uint64_t waitForMetric(const std::string& name, uint64_t expected) const {
    auto deadline = std::chrono::steady_clock::now() + kScrubTimeout;
    uint64_t value = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      Expected<uint64_t> read = outpost_->metric(name);
      value = read ? *read : 0;
      if (value >= expected) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return value;
  }
};

TEST_F(ScrubTest, DamagedBlobFetchedAgain) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, httpGet(blob_url_));
  ASSERT_EQ(first.status, 200);
  ASSERT_TRUE(waitForFile(storedPath()));
  ASSERT_GE(waitForMetric("outpost_scrub_blobs_verified_total", 1), 1u)
      << "the scrub never verified the intact blob";
  EXPECT_EQ(upstream_.requestCount(upstream_path_), 1u);

  // Flips one byte in place, as a failing disk would, keeping the file's size.
  {
    std::fstream file(storedPath(), std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.is_open()) << storedPath();
    file.seekp(static_cast<std::streamoff>(blob_.size() / 2));
    file.put(static_cast<char>(blob_[blob_.size() / 2] ^ 0x01));
  }

  EXPECT_EQ(waitForMetric("outpost_scrub_corrupt_removed_total", 1), 1u);
  EXPECT_FALSE(std::filesystem::exists(storedPath()));
  // The disk budget stops counting the removed blob.
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t counted,
                               outpost_->metric("outpost_cache_tier_bytes{tier=\"disk0\"}"));
  EXPECT_EQ(counted, 0u);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult again, httpGet(blob_url_));
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body.size(), blob_.size());
  EXPECT_TRUE(again.body == blob_) << "the damaged bytes were served";
  EXPECT_EQ(upstream_.requestCount(upstream_path_), 2u);
  EXPECT_TRUE(waitForFile(storedPath()));
}

}  // namespace
}  // namespace outpost::integration
