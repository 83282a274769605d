// What clients see, and what Outpost keeps, when the upstream misbehaves.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/scripted_blob_test.h"
#include "tests/integration/scripted_upstream.h"

namespace outpost::integration {
namespace {

class UpstreamFaultTest : public ScriptedBlobTest {
 protected:
  void SetUp() override {
    startWithBlob(3u << 20, 1, [](OutpostOptions& options) {
      options.max_retries = 1;
      // A short backoff, so that one test's failures do not mark the remote down for the
      // next request for long.
      options.down_backoff = "1s";
    });
  }

  size_t temporaryFileCount() const {
    size_t count = 0;
    std::error_code error;
    for (const auto& entry :
         std::filesystem::directory_iterator(outpost_->dataDir() + "/tmp", error)) {
      (void)entry;
      ++count;
    }
    return count;
  }

  // Expects that a failed download left nothing behind, then that a healthy upstream fills
  // the cache on the next request.
  void expectNothingKeptThenRecovery() {
    EXPECT_FALSE(std::filesystem::exists(storedPath()));
    EXPECT_EQ(temporaryFileCount(), 0u);

    upstream_.setFault(UpstreamFault::kNone);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past down_backoff
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult healthy, httpGet(blob_url_));
    EXPECT_EQ(healthy.status, 200);
    EXPECT_EQ(healthy.body.size(), blob_.size());
    EXPECT_TRUE(healthy.body == blob_);
    EXPECT_TRUE(waitForFile(storedPath()));
  }
};

TEST_F(UpstreamFaultTest, BodyCutOffLeavesNothingInCache) {
  upstream_.setFault(UpstreamFault::kCutMidBody);
  Expected<HttpResult> cut = httpGet(blob_url_);
  if (cut) {
    // Whatever arrived is shorter than the blob: never a 200 with a complete wrong body.
    EXPECT_LT(cut->body.size(), blob_.size());
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t failed, outpost_->metric("outpost_downloads_failed_total"));
  EXPECT_EQ(failed, 1u);
  expectNothingKeptThenRecovery();
}

TEST_F(UpstreamFaultTest, WrongBytesAreNeverSentWhole) {
  upstream_.setFault(UpstreamFault::kWrongBytes);
  Expected<HttpResult> wrong = httpGet(blob_url_);
  if (wrong) {
    EXPECT_LT(wrong->body.size(), blob_.size());
  }
  expectNothingKeptThenRecovery();
}

TEST_F(UpstreamFaultTest, Upstream503BecomesClearError) {
  upstream_.setFault(UpstreamFault::kStatus503);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, httpGet(blob_url_));
  EXPECT_EQ(result.status, 503);
  EXPECT_NE(result.body.find("UNAVAILABLE"), std::string::npos) << result.body;
  EXPECT_NE(result.body.find("upstream"), std::string::npos) << result.body;
  // The upstream client retried once before giving up.
  EXPECT_EQ(upstream_.requestCount(upstream_path_), 2u);
  expectNothingKeptThenRecovery();
}

TEST_F(UpstreamFaultTest, Upstream429ReachesClientWithRetryAfter) {
  upstream_.setFault(UpstreamFault::kStatus429);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, httpGet(blob_url_));
  EXPECT_EQ(result.status, 429);
  EXPECT_NE(result.body.find("TOOMANYREQUESTS"), std::string::npos) << result.body;
  EXPECT_EQ(result.header("Retry-After").value_or(""), "2");
  expectNothingKeptThenRecovery();
}

TEST_F(UpstreamFaultTest, UpstreamNotFoundBecomesBlobUnknown) {
  upstream_.setFault(UpstreamFault::kNotFound);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, httpGet(blob_url_));
  EXPECT_EQ(result.status, 404);
  EXPECT_NE(result.body.find("BLOB_UNKNOWN"), std::string::npos) << result.body;
  expectNothingKeptThenRecovery();
}

TEST_F(UpstreamFaultTest, CachedBlobServedWithRangesAndWithoutUpstream) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, httpGet(blob_url_));
  ASSERT_EQ(first.status, 200);
  ASSERT_TRUE(waitForFile(storedPath()));
  upstream_.setFault(UpstreamFault::kStatus503);
  size_t requests_before = upstream_.requestCount(upstream_path_);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, httpHead(blob_url_));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("Content-Length").value_or(""), std::to_string(blob_.size()));
  EXPECT_EQ(head.header("Docker-Content-Digest").value_or(""), digest_);
  EXPECT_EQ(head.header("Accept-Ranges").value_or(""), "bytes");

  struct RangeCase {
    std::string label;
    std::string range;
    int status;
    std::string content_range;
    size_t first;
    size_t length;
  };
  size_t size = blob_.size();
  const std::vector<RangeCase> cases = {
      {"first byte", "bytes=0-0", 206, "bytes 0-0/" + std::to_string(size), 0, 1},
      {"open end", "bytes=100-", 206,
       "bytes 100-" + std::to_string(size - 1) + "/" + std::to_string(size), 100, size - 100},
      {"suffix", "bytes=-10", 206,
       "bytes " + std::to_string(size - 10) + "-" + std::to_string(size - 1) + "/" +
           std::to_string(size),
       size - 10, 10},
      {"last byte", "bytes=" + std::to_string(size - 1) + "-" + std::to_string(size - 1), 206,
       "bytes " + std::to_string(size - 1) + "-" + std::to_string(size - 1) + "/" +
           std::to_string(size),
       size - 1, 1},
      {"past the end", "bytes=" + std::to_string(size) + "-", 416,
       "bytes */" + std::to_string(size), 0, 0},
  };
  for (const RangeCase& range_case : cases) {
    SCOPED_TRACE(range_case.label);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult ranged,
                                 httpGet(blob_url_, {{"Range", range_case.range}}));
    EXPECT_EQ(ranged.status, range_case.status);
    EXPECT_EQ(ranged.header("Content-Range").value_or(""), range_case.content_range);
    if (range_case.status == 206) {
      EXPECT_TRUE(ranged.body == blob_.substr(range_case.first, range_case.length));
    }
  }
  EXPECT_EQ(upstream_.requestCount(upstream_path_), requests_before);
}

TEST_F(UpstreamFaultTest, RestartKeepsCacheAndRemovesTemporaryFiles) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, httpGet(blob_url_));
  ASSERT_EQ(first.status, 200);
  ASSERT_TRUE(waitForFile(storedPath()));
  outpost_->kill();
  // A crash mid-download leaves a temporary file; start-up removes it.
  OUTPOST_ASSERT_OK(writeFile(outpost_->dataDir() + "/tmp/leftover.part", "partial"));
  OUTPOST_ASSERT_OK(outpost_->restart());
  EXPECT_EQ(temporaryFileCount(), 0u);

  upstream_.setFault(UpstreamFault::kStatus503);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult again, httpGet(blob_url_));
  EXPECT_EQ(again.status, 200);
  EXPECT_TRUE(again.body == blob_);
}

TEST_F(UpstreamFaultTest, StopsCleanlyOnSigterm) {
  EXPECT_EQ(outpost_->stop(), "exited with code 0");
}

}  // namespace
}  // namespace outpost::integration
