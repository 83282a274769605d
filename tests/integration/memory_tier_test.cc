// The memory tier: manifests and small blobs are sent from memory, without the disk, within a
// byte budget, and /metrics shows the tier. A hit is proven to come from memory by removing the
// blob file from the data folder and stopping the upstream before the request.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/registry_push.h"

namespace outpost::integration {
namespace {

// 256 KiB of memory and items up to 64 KiB: one shard, so the order is exactly least recently
// used, with room for four items of 60 KiB.
constexpr uint64_t kBudgetBytes = 256u << 10;
constexpr uint64_t kMaxItemBytes = 64u << 10;
constexpr auto kMetricTimeout = std::chrono::seconds(20);
const std::string kTier = "{tier=\"memory\"}";

class MemoryTierTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  // Starts the upstream registry and an Outpost in front of it with the memory tier set by
  // `storage_yaml`.
  void startAll(std::string storage_yaml = "  memory_cache_bytes: " + std::to_string(kBudgetBytes) +
                                           "\n  memory_cache_max_item_bytes: " +
                                           std::to_string(kMaxItemBytes) + "\n") {
    OUTPOST_ASSERT_OK_AND_ASSIGN(registry_, DistributionRegistry::start());
    OutpostOptions options = optionsForUpstream(registry_->url(), registry_->hostPort());
    options.storage_yaml = std::move(storage_yaml);
    options.locals_yaml = "  - name: local\n";
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(std::move(options)));
  }

  // Pushes `bytes` to the upstream's team/app and returns its digest.
  std::string pushUpstreamBlob(const std::string& bytes) {
    Status pushed = pushBlob(registry_->url(), "team/app", bytes);
    EXPECT_TRUE(pushed.isOk()) << pushed.toString();
    return sha256Of(bytes).str();
  }

  std::string blobUrl(const std::string& digest) const {
    return outpost_->url() + "/v2/upstream/team/app/blobs/" + digest;
  }

  uint64_t metric(const std::string& name) const {
    Expected<uint64_t> value = outpost_->metric(name + kTier);
    EXPECT_TRUE(value.hasValue()) << value.status().toString();
    return value ? *value : 0;
  }

  // Polls a tier metric until `done` accepts its value or kMetricTimeout passes; returns the
  // last value read.
  uint64_t waitForMetric(const std::string& name, const std::function<bool(uint64_t)>& done) {
    auto deadline = std::chrono::steady_clock::now() + kMetricTimeout;
    uint64_t value = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      Expected<uint64_t> read = outpost_->metric(name + kTier);
      value = read ? *read : 0;
      if (read && done(value)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return value;
  }

  // GETs a blob through Outpost, checks its bytes, and waits until its file is committed.
  void pullBlob(const std::string& digest, const std::string& bytes) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, httpGet(blobUrl(digest)));
    ASSERT_EQ(result.status, 200) << result.body;
    ASSERT_TRUE(result.body == bytes) << "bytes of " << digest << " differ";
    ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(digest))) << digest;
  }

  // Removes the blob files of `digests` from the data folder and stops the upstream, so that
  // only the memory tier can serve them.
  void cutOffDiskAndUpstream(const std::vector<std::string>& digests) {
    for (const std::string& digest : digests) {
      ASSERT_TRUE(std::filesystem::remove(outpost_->storedBlobPath(digest))) << digest;
    }
    registry_->stop();
  }

  std::unique_ptr<DistributionRegistry> registry_;
  std::unique_ptr<OutpostServer> outpost_;
};

TEST_F(MemoryTierTest, ServesBlobFromMemoryWithoutDisk) {
  startAll();
  const std::string bytes = randomBytes(4096, 1);
  const std::string digest = pushUpstreamBlob(bytes);
  pullBlob(digest, bytes);
  // Kept right after the download committed, with its bytes at hand.
  EXPECT_EQ(waitForMetric("outpost_cache_tier_insertions_total", [](uint64_t v) { return v >= 1; }),
            1u);
  EXPECT_EQ(metric("outpost_cache_tier_promotions_total"), 0u);
  cutOffDiskAndUpstream({digest});

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult get, httpGet(blobUrl(digest)));
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_TRUE(get.body == bytes) << "bytes from memory differ";
  EXPECT_EQ(get.header("Content-Length"), "4096");
  EXPECT_EQ(get.header("Docker-Content-Digest"), digest);
  EXPECT_EQ(get.header("Content-Type"), "application/octet-stream");

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, httpHead(blobUrl(digest)));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("Content-Length"), "4096");
  EXPECT_EQ(head.header("Docker-Content-Digest"), digest);
  EXPECT_TRUE(head.body.empty());

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult range,
                               httpGet(blobUrl(digest), {{"Range", "bytes=100-199"}}));
  EXPECT_EQ(range.status, 206);
  EXPECT_EQ(range.header("Content-Range"), "bytes 100-199/4096");
  EXPECT_EQ(range.body, bytes.substr(100, 100));

  EXPECT_EQ(metric("outpost_cache_tier_hits_total"), 3u);
  EXPECT_EQ(metric("outpost_cache_tier_entries"), 1u);
  EXPECT_EQ(metric("outpost_cache_tier_budget_bytes"), kBudgetBytes);
  EXPECT_GE(metric("outpost_cache_tier_bytes"), bytes.size());
}

TEST_F(MemoryTierTest, KeepsNoBlobAboveMaxItemSize) {
  startAll();
  const std::string large = randomBytes(kMaxItemBytes + 1, 2);
  const std::string digest = pushUpstreamBlob(large);
  pullBlob(digest, large);
  // Served once more from disk, which would promote a blob small enough.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult again, httpGet(blobUrl(digest)));
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(metric("outpost_cache_tier_insertions_total"), 0u);
  EXPECT_EQ(metric("outpost_cache_tier_entries"), 0u);
  cutOffDiskAndUpstream({digest});

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult gone, httpGet(blobUrl(digest)));
  EXPECT_NE(gone.status, 200) << "a blob above the maximum item size was kept in memory";
}

TEST_F(MemoryTierTest, PromotesBlobReadFromDisk) {
  startAll();
  const std::string bytes = randomBytes(30'000, 3);
  const std::string digest = pushUpstreamBlob(bytes);
  pullBlob(digest, bytes);
  // A restart empties the memory tier; the blob stays on disk.
  OUTPOST_ASSERT_OK(outpost_->restart());
  EXPECT_EQ(metric("outpost_cache_tier_entries"), 0u);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult from_disk, httpGet(blobUrl(digest)));
  ASSERT_EQ(from_disk.status, 200);
  EXPECT_TRUE(from_disk.body == bytes);
  EXPECT_EQ(waitForMetric("outpost_cache_tier_promotions_total", [](uint64_t v) { return v >= 1; }),
            1u);
  cutOffDiskAndUpstream({digest});

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult from_memory, httpGet(blobUrl(digest)));
  ASSERT_EQ(from_memory.status, 200);
  EXPECT_TRUE(from_memory.body == bytes) << "promoted bytes differ";
}

TEST_F(MemoryTierTest, BudgetHoldsAndEvictsOldest) {
  startAll();
  constexpr int kBlobCount = 8;
  std::vector<std::string> blobs;
  std::vector<std::string> digests;
  for (int i = 0; i < kBlobCount; ++i) {
    blobs.push_back(randomBytes(60u << 10, 10 + static_cast<uint64_t>(i)));
    digests.push_back(pushUpstreamBlob(blobs.back()));
  }
  for (int i = 0; i < kBlobCount; ++i) {
    pullBlob(digests[i], blobs[i]);
    EXPECT_LE(metric("outpost_cache_tier_bytes"), kBudgetBytes) << "after blob " << i;
  }
  // Four of 60 KiB fit in 256 KiB; each newer one evicts the oldest.
  EXPECT_EQ(waitForMetric("outpost_cache_tier_evictions_total", [](uint64_t v) { return v >= 4; }),
            4u);
  EXPECT_EQ(metric("outpost_cache_tier_entries"), 4u);
  cutOffDiskAndUpstream(digests);

  for (int i = 0; i < kBlobCount; ++i) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, httpGet(blobUrl(digests[i])));
    if (i < kBlobCount - 4) {
      EXPECT_NE(result.status, 200) << "evicted blob " << i << " was served";
    } else {
      EXPECT_EQ(result.status, 200) << "blob " << i;
      EXPECT_TRUE(result.body == blobs[i]) << "blob " << i;
    }
  }
}

TEST_F(MemoryTierTest, ServesManifestFromMemory) {
  startAll();
  const std::string config = R"({"architecture":"amd64","os":"linux"})";
  const std::string layer = randomBytes(2000, 4);
  pushUpstreamBlob(config);
  pushUpstreamBlob(layer);
  const std::string manifest = ociImageManifest(config, layer);
  OUTPOST_ASSERT_OK(pushManifest(registry_->url(), "team/app", "v1", manifest));
  const std::string digest = sha256Of(manifest).str();
  const std::string base = outpost_->url() + "/v2/upstream/team/app/manifests/";
  const HttpHeader accept{"Accept", std::string(kOciImageManifestType)};

  // The first pull fetches the manifest and keeps it; the pulls after it hit the memory tier.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult by_tag, httpGet(base + "v1", {accept}));
  ASSERT_EQ(by_tag.status, 200) << by_tag.body;
  EXPECT_EQ(by_tag.body, manifest);
  EXPECT_EQ(metric("outpost_cache_tier_insertions_total"), 1u);
  uint64_t hits_before = metric("outpost_cache_tier_hits_total");

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult by_digest, httpGet(base + digest, {accept}));
  ASSERT_EQ(by_digest.status, 200) << by_digest.body;
  EXPECT_EQ(by_digest.body, manifest);
  EXPECT_EQ(by_digest.header("Content-Type"), std::string(kOciImageManifestType));
  EXPECT_EQ(by_digest.header("Docker-Content-Digest"), digest);
  EXPECT_EQ(by_digest.header("Content-Length"), std::to_string(manifest.size()));

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, httpHead(base + digest, {accept}));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("Content-Length"), std::to_string(manifest.size()));
  EXPECT_EQ(head.header("Docker-Content-Digest"), digest);
  EXPECT_TRUE(head.body.empty());

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult tag_again, httpGet(base + "v1", {accept}));
  EXPECT_EQ(tag_again.status, 200);
  EXPECT_EQ(tag_again.body, manifest);
  EXPECT_EQ(metric("outpost_cache_tier_hits_total"), hits_before + 3);
}

TEST_F(MemoryTierTest, LocalRepositoryServesPushedContentFromMemory) {
  startAll();
  const std::string url = outpost_->url();
  const std::string config = R"({"os":"linux"})";
  const std::string layer = randomBytes(10'000, 5);
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", config));
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", layer));
  const std::string manifest = ociImageManifest(config, layer);
  OUTPOST_ASSERT_OK(pushManifest(url, "local/app", "v1", manifest));
  // The push keeps the manifest.
  EXPECT_EQ(metric("outpost_cache_tier_insertions_total"), 1u);

  // The first read of the layer comes from disk and promotes it.
  const std::string layer_digest = sha256Of(layer).str();
  const std::string layer_url = url + "/v2/local/app/blobs/" + layer_digest;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, httpGet(layer_url));
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(waitForMetric("outpost_cache_tier_promotions_total", [](uint64_t v) { return v >= 1; }),
            1u);
  ASSERT_TRUE(std::filesystem::remove(outpost_->storedBlobPath(layer_digest)));

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult from_memory, httpGet(layer_url));
  ASSERT_EQ(from_memory.status, 200);
  EXPECT_TRUE(from_memory.body == layer);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult manifest_read,
                               httpGet(url + "/v2/local/app/manifests/v1"));
  ASSERT_EQ(manifest_read.status, 200);
  EXPECT_EQ(manifest_read.body, manifest);
  EXPECT_EQ(metric("outpost_cache_tier_hits_total"), 2u);

  // Another image of the repository does not contain the layer: memory changes nothing there.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult other,
                               httpGet(url + "/v2/local/other/blobs/" + layer_digest));
  EXPECT_EQ(other.status, 404);
}

TEST_F(MemoryTierTest, GarbageCollectionErasesRemovedContent) {
  startAll(std::string("  memory_cache_bytes: 262144\n  memory_cache_max_item_bytes: 65536\n") +
           "  gc_grace_period: 0s\n");
  const std::string url = outpost_->url();
  const std::string config = R"({"os":"linux"})";
  const std::string layer = randomBytes(10'000, 6);
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", config));
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", layer));
  const std::string manifest = ociImageManifest(config, layer);
  OUTPOST_ASSERT_OK(pushManifest(url, "local/app", "v1", manifest));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult read,
                               httpGet(url + "/v2/local/app/blobs/" + sha256Of(layer).str()));
  ASSERT_EQ(read.status, 200);
  ASSERT_EQ(waitForMetric("outpost_cache_tier_entries", [](uint64_t v) { return v >= 2; }), 2u)
      << "the manifest and the promoted layer";

  HttpRequest remove;
  remove.method = "DELETE";
  remove.url = url + "/v2/local/app/manifests/" + sha256Of(manifest).str();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult removed, httpRequest(remove));
  ASSERT_EQ(removed.status, 202);
  HttpRequest collect;
  collect.method = "POST";
  collect.url = url + "/api/v1/gc";
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult run, httpRequest(collect));
  ASSERT_EQ(run.status, 200) << run.body;

  EXPECT_EQ(metric("outpost_cache_tier_entries"), 0u);
  EXPECT_EQ(metric("outpost_cache_tier_bytes"), 0u);
}

TEST_F(MemoryTierTest, ScrubErasesRemovedBlob) {
  startAll(std::string("  memory_cache_bytes: 262144\n  memory_cache_max_item_bytes: 65536\n") +
           "  scrub_bytes_per_second: 67108864\n  scrub_interval: 0s\n");
  const std::string bytes = randomBytes(20'000, 7);
  const std::string digest = pushUpstreamBlob(bytes);
  pullBlob(digest, bytes);
  ASSERT_EQ(waitForMetric("outpost_cache_tier_entries", [](uint64_t v) { return v >= 1; }), 1u);

  // One byte flipped on disk: the scrub removes the file, and the memory copy goes with it.
  {
    std::fstream file(outpost_->storedBlobPath(digest),
                      std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.is_open());
    file.seekp(100);
    file.put(static_cast<char>(bytes[100] ^ 0x01));
  }
  EXPECT_EQ(waitForMetric("outpost_cache_tier_entries", [](uint64_t v) { return v == 0; }), 0u);

  // The next pull downloads the blob again, intact.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult again, httpGet(blobUrl(digest)));
  ASSERT_EQ(again.status, 200);
  EXPECT_TRUE(again.body == bytes);
}

TEST_F(MemoryTierTest, OffSendsEverythingFromDisk) {
  startAll("  memory_cache_bytes: 0\n");
  const std::string bytes = randomBytes(4096, 8);
  const std::string digest = pushUpstreamBlob(bytes);
  pullBlob(digest, bytes);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult again, httpGet(blobUrl(digest)));
  ASSERT_EQ(again.status, 200);

  EXPECT_EQ(metric("outpost_cache_tier_budget_bytes"), 0u);
  EXPECT_EQ(metric("outpost_cache_tier_entries"), 0u);
  EXPECT_EQ(metric("outpost_cache_tier_hits_total"), 0u);
  EXPECT_EQ(metric("outpost_cache_tier_misses_total"), 0u);
  cutOffDiskAndUpstream({digest});
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult gone, httpGet(blobUrl(digest)));
  EXPECT_NE(gone.status, 200);
}

}  // namespace
}  // namespace outpost::integration
