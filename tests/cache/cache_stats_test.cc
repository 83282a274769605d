#include "cache/cache_stats.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "base/digest.h"
#include "storage/index.h"
#include "tests/storage/temp_folder.h"

namespace outpost::cache {
namespace {

using storage::testing::TempFolder;
using ::testing::HasSubstr;
using ::testing::Not;

std::string descriptor(const Digest& digest, uint64_t size) {
  return R"({"mediaType":"application/octet-stream","digest":")" + digest.str() +
         R"(","size":)" + std::to_string(size) + "}";
}

std::string imageManifest(const Digest& config, uint64_t config_size,
                          const std::vector<std::pair<Digest, uint64_t>>& layers) {
  std::string body = R"({"schemaVersion":2,"config":)" + descriptor(config, config_size) +
                     R"(,"layers":[)";
  for (size_t i = 0; i < layers.size(); ++i) {
    body += (i > 0 ? "," : "") + descriptor(layers[i].first, layers[i].second);
  }
  return body + "]}";
}

// An index with four blobs and four manifests: two images (one with every blob cached, one
// with a layer that is not), an index, and a body that is not JSON.
class CacheStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<storage::Index>> index =
        storage::Index::open(folder_.path() / "index");
    ASSERT_TRUE(index) << index.status().toString();
    index_ = std::move(*index);

    storage::Index::Batch batch;
    batch.putBlob(config_, {10, 1, 500});
    batch.putBlob(small_, {100, 1, 1000});
    batch.putBlob(large_, {5000, 1, 3000});
    batch.putBlob(medium_, {200, 1, 2000});
    batch.putManifest(complete_image_,
                      {"application/vnd.oci.image.manifest.v1+json",
                       imageManifest(config_, 10, {{small_, 100}, {large_, 5000}}), 1});
    batch.putManifest(partial_image_,
                      {"application/vnd.oci.image.manifest.v1+json",
                       imageManifest(config_, 10, {{uncached_, 7000}}), 1});
    batch.putManifest(sha256Of("index"),
                      {"application/vnd.oci.image.index.v1+json",
                       R"({"schemaVersion":2,"manifests":[]})", 1});
    batch.putManifest(sha256Of("garbage"), {"application/json", "not json", 1});
    storage::TagRecord tag{complete_image_.str(), "application/vnd.oci.image.manifest.v1+json",
                           1};
    batch.putTag("upstream", "team/app", "v1", tag);
    batch.putTag("upstream", "team/app", "latest", tag);
    // The view of `latest` for clients with a narrower Accept header names the image once more
    // as `latest`, and the view of `old` names it as `old`.
    batch.putTag("upstream", "team/app", "latest@1234", tag);
    batch.putTag("upstream", "team/app", "old@1234", tag);
    ASSERT_TRUE(index_->write(std::move(batch), storage::Index::WriteMode::kSynced).isOk());
  }

  TempFolder folder_;
  std::unique_ptr<storage::Index> index_;
  Digest config_ = sha256Of("config");
  Digest small_ = sha256Of("small");
  Digest large_ = sha256Of("large");
  Digest medium_ = sha256Of("medium");
  Digest uncached_ = sha256Of("uncached");
  Digest complete_image_ = sha256Of("complete image");
  Digest partial_image_ = sha256Of("partial image");
};

TEST_F(CacheStatsTest, CountsBlobsAndManifests) {
  Expected<CacheStats> stats = collectCacheStats(*index_, 2);
  ASSERT_TRUE(stats) << stats.status().toString();

  EXPECT_EQ(stats->blobs, 4u);
  EXPECT_EQ(stats->blob_bytes, 5310u);
  EXPECT_EQ(stats->image_manifests, 2u);
  EXPECT_EQ(stats->other_manifests, 2u);
}

TEST_F(CacheStatsTest, ListsBlobsBySizeAndAge) {
  Expected<CacheStats> stats = collectCacheStats(*index_, 2);
  ASSERT_TRUE(stats) << stats.status().toString();

  ASSERT_EQ(stats->largest_blobs.size(), 2u);
  EXPECT_EQ(stats->largest_blobs[0].digest, large_);
  EXPECT_EQ(stats->largest_blobs[1].digest, medium_);
  ASSERT_EQ(stats->least_recent_blobs.size(), 2u);
  EXPECT_EQ(stats->least_recent_blobs[0].digest, config_);
  EXPECT_EQ(stats->least_recent_blobs[1].digest, small_);
}

TEST_F(CacheStatsTest, SizesImagesFromTheirManifests) {
  Expected<CacheStats> stats = collectCacheStats(*index_, 5);
  ASSERT_TRUE(stats) << stats.status().toString();

  ASSERT_EQ(stats->largest_images.size(), 2u);
  const ImageUse& partial = stats->largest_images[0];
  EXPECT_EQ(partial.digest, partial_image_);
  EXPECT_EQ(partial.size_bytes, 7010u);
  EXPECT_EQ(partial.blobs_listed, 2u);
  EXPECT_EQ(partial.blobs_cached, 1u);
  EXPECT_EQ(partial.last_access_ms, 500);
  const ImageUse& complete = stats->largest_images[1];
  EXPECT_EQ(complete.digest, complete_image_);
  EXPECT_EQ(complete.size_bytes, 5110u);
  EXPECT_EQ(complete.blobs_cached, 3u);
  EXPECT_EQ(complete.last_access_ms, 3000);
  EXPECT_EQ(complete.tags,
            (std::vector<std::string>{"upstream/team/app:latest", "upstream/team/app:old",
                                      "upstream/team/app:v1"}));
  EXPECT_TRUE(partial.tags.empty());

  ASSERT_EQ(stats->least_recent_images.size(), 2u);
  EXPECT_EQ(stats->least_recent_images[0].digest, partial_image_);
  EXPECT_EQ(stats->least_recent_images[1].digest, complete_image_);
}

TEST_F(CacheStatsTest, ReadOnlyIndexBesideWriter) {
  // The writer opened in SetUp still holds the index's lock.
  Expected<std::unique_ptr<storage::Index>> reader =
      storage::Index::open(folder_.path() / "index", storage::Index::OpenMode::kReadOnly);
  ASSERT_TRUE(reader) << reader.status().toString();

  Expected<CacheStats> stats = collectCacheStats(**reader, 1);
  ASSERT_TRUE(stats) << stats.status().toString();
  EXPECT_EQ(stats->blobs, 4u);
  EXPECT_FALSE((*reader)->putBlob(sha256Of("new"), {1, 1, 1}).isOk());
}

TEST_F(CacheStatsTest, ReadOnlyOpenOfMissingIndexFails) {
  Expected<std::unique_ptr<storage::Index>> reader =
      storage::Index::open(folder_.path() / "absent", storage::Index::OpenMode::kReadOnly);

  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.status().code(), StatusCode::kNotFound);
}

TEST_F(CacheStatsTest, FormatsReportForPerson) {
  Expected<CacheStats> stats = collectCacheStats(*index_, 2);
  ASSERT_TRUE(stats) << stats.status().toString();

  std::string text =
      formatCacheStats(*stats, {CacheLimits{"/srv/data", 10'000, 90, 80}}, {}, 3000 + 3'600'000);

  EXPECT_THAT(text, HasSubstr("blobs: 4 (5.2 KiB)\n"));
  EXPECT_THAT(text, HasSubstr("disk tier 0 (/srv/data): 4 blobs (5.2 KiB), budget 9.8 KiB (53.1% "
                              "used), moving out above 90% down to 80%"));
  EXPECT_THAT(text, Not(HasSubstr("since the server started")));
  EXPECT_THAT(text, HasSubstr("manifests: 2 images, 2 indexes and others\n"));
  EXPECT_THAT(text, HasSubstr("largest blobs:\n  " + large_.str()));
  EXPECT_THAT(text, HasSubstr("used 60m ago"));
  EXPECT_THAT(text, HasSubstr("\n      upstream/team/app:latest\n      upstream/team/app:old\n"
                              "      upstream/team/app:v1\n"));
}

TEST_F(CacheStatsTest, FormatsMissingBudget) {
  Expected<CacheStats> stats = collectCacheStats(*index_, 1);
  ASSERT_TRUE(stats) << stats.status().toString();

  std::string text = formatCacheStats(*stats, {CacheLimits{"/srv/data"}}, {}, 0);

  EXPECT_THAT(text, HasSubstr("disk tier 0 (/srv/data): 4 blobs (5.2 KiB), no budget"));
}

TEST_F(CacheStatsTest, CountsBlobsPerTier) {
  ASSERT_TRUE(index_->setBlobTier(large_, 1).hasValue());

  Expected<CacheStats> stats = collectCacheStats(*index_, 1);
  ASSERT_TRUE(stats) << stats.status().toString();
  ASSERT_EQ(stats->tiers.size(), 2u);
  EXPECT_EQ(stats->tiers[0].blobs + stats->tiers[1].blobs, 4u);
  EXPECT_EQ(stats->tiers[1].blobs, 1u);
  EXPECT_EQ(stats->tiers[0].blob_bytes + stats->tiers[1].blob_bytes, stats->blob_bytes);

  std::string one_tier =
      formatCacheStats(*stats, {CacheLimits{"/srv/data", 10'000, 90, 80}}, {}, 0);
  EXPECT_THAT(one_tier, HasSubstr("disk tier 1: not configured, 1 blobs"));

  std::string two_tiers = formatCacheStats(
      *stats, {CacheLimits{"/srv/data", 10'000, 90, 80}, CacheLimits{"/srv/slow", 20'000, 95, 70}},
      {}, 0);
  EXPECT_THAT(two_tiers, HasSubstr("disk tier 1 (/srv/slow): 1 blobs"));
  EXPECT_THAT(two_tiers, HasSubstr("moving out above 95% down to 70%"));
}

TEST(TierActivityTest, ParsesTierSamplesOfMetricsPage) {
  std::string page =
      "# HELP outpost_cache_tier_bytes Bytes.\n"
      "# TYPE outpost_cache_tier_bytes gauge\n"
      "outpost_cache_tier_bytes{tier=\"disk0\"} 1024\n"
      "outpost_cache_tier_bytes{tier=\"disk1\"} 2048\n"
      "outpost_cache_tier_hits_total{tier=\"disk1\"} 7\n"
      "outpost_cache_tier_promotions_total{tier=\"disk0\"} 3\n"
      "outpost_cache_tier_unknown_total{tier=\"disk0\"} 9\n"
      "outpost_cache_tier_entries{tier=\"disk0\"} not-a-number\n"
      "outpost_requests_total{route=\"blob\"} 5\n"
      "outpost_cache_tier_evictions_total{tier=\"disk1\"} 2";

  std::vector<TierActivity> tiers = parseTierActivity(page);

  ASSERT_EQ(tiers.size(), 2u);
  EXPECT_EQ(tiers[0].tier, "disk0");
  EXPECT_EQ(tiers[0].bytes, 1024u);
  EXPECT_EQ(tiers[0].promotions, 3u);
  EXPECT_EQ(tiers[0].entries, 0u);
  EXPECT_EQ(tiers[1].tier, "disk1");
  EXPECT_EQ(tiers[1].hits, 7u);
  EXPECT_EQ(tiers[1].evictions, 2u);

  std::string text = formatCacheStats(CacheStats{}, {CacheLimits{"/srv/data"}}, tiers, 0);
  EXPECT_THAT(text, HasSubstr("since the server started:"));
  EXPECT_THAT(text, HasSubstr("disk1"));
}

}  // namespace
}  // namespace outpost::cache
