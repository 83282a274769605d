#include "proxy/metrics.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace outpost::proxy {
namespace {

struct MetricLine {
  std::string name;
  std::string expected_line;
};

TEST(MetricsTest, RendersScrubCounters) {
  storage::ScrubCounters scrub;
  scrub.bytes_verified = 1048576;
  scrub.blobs_verified = 7;
  scrub.corrupt_removed = 2;
  scrub.missing_removed = 1;
  scrub.passes_completed = 3;
  Metrics metrics;
  metrics.setScrubCounters(&scrub);
  ServerCounters server;

  const std::string text = metrics.render(server);

  const std::vector<MetricLine> lines = {
      {"bytes", "\noutpost_scrub_bytes_verified_total 1048576\n"},
      {"blobs", "\noutpost_scrub_blobs_verified_total 7\n"},
      {"corrupt", "\noutpost_scrub_corrupt_removed_total 2\n"},
      {"missing", "\noutpost_scrub_missing_removed_total 1\n"},
      {"passes", "\noutpost_scrub_passes_total 3\n"},
      {"type", "\n# TYPE outpost_scrub_passes_total counter\n"},
  };
  for (const MetricLine& line : lines) {
    SCOPED_TRACE(line.name);
    EXPECT_NE(text.find(line.expected_line), std::string::npos) << text;
  }
}

TEST(MetricsTest, ScrubCountersZeroWhenOff) {
  Metrics metrics;
  ServerCounters server;

  const std::string text = metrics.render(server);

  EXPECT_NE(text.find("\noutpost_scrub_bytes_verified_total 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\noutpost_scrub_corrupt_removed_total 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\noutpost_scrub_passes_total 0\n"), std::string::npos) << text;
}

TEST(MetricsTest, RendersGcCounters) {
  storage::GcCounters gc;
  gc.runs = 4;
  gc.failures = 1;
  gc.blobs_removed = 9;
  gc.bytes_removed = 123456;
  gc.manifests_removed = 2;
  gc.running = 1;
  Metrics metrics;
  metrics.setGcCounters(&gc);
  ServerCounters server;

  const std::string text = metrics.render(server);

  const std::vector<MetricLine> lines = {
      {"runs", "\noutpost_gc_runs_total 4\n"},
      {"failures", "\noutpost_gc_failures_total 1\n"},
      {"blobs", "\noutpost_gc_blobs_removed_total 9\n"},
      {"bytes", "\noutpost_gc_bytes_removed_total 123456\n"},
      {"manifests", "\noutpost_gc_manifests_removed_total 2\n"},
      {"running", "\noutpost_gc_running 1\n"},
      {"gauge", "\n# TYPE outpost_gc_running gauge\n"},
  };
  for (const MetricLine& line : lines) {
    SCOPED_TRACE(line.name);
    EXPECT_NE(text.find(line.expected_line), std::string::npos) << text;
  }
}

TEST(MetricsTest, CountsConflictStatus) {
  Metrics metrics;
  metrics.countRequest(Route::kAdmin, 409);
  ServerCounters server;

  const std::string text = metrics.render(server);

  EXPECT_NE(text.find("outpost_requests_total{route=\"admin\",status=\"409\"} 1\n"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, RendersMemoryTier) {
  cache::MemoryTier tier(
      cache::MemoryTierOptions{.budget_bytes = 1u << 20, .max_item_bytes = 4096});
  Digest digest = sha256Of("blob");
  ASSERT_TRUE(tier.insert(
      cache::ContentKind::kBlob, digest,
      std::make_shared<const cache::MemoryItem>(cache::MemoryItem{std::string(1000, 'x'), ""}),
      cache::InsertOrigin::kPromotion));
  ASSERT_NE(tier.find(cache::ContentKind::kBlob, digest), nullptr);
  ASSERT_EQ(tier.find(cache::ContentKind::kBlob, sha256Of("other")), nullptr);
  Metrics metrics;
  metrics.setMemoryTier(&tier);
  ServerCounters server;

  const std::string text = metrics.render(server);

  const uint64_t charged = cache::MemoryTier::chargeOf(1000, 0);
  const std::vector<MetricLine> lines = {
      {"bytes", "\noutpost_cache_tier_bytes{tier=\"memory\"} " + std::to_string(charged) + "\n"},
      {"budget", "\noutpost_cache_tier_budget_bytes{tier=\"memory\"} 1048576\n"},
      {"entries", "\noutpost_cache_tier_entries{tier=\"memory\"} 1\n"},
      {"hits", "\noutpost_cache_tier_hits_total{tier=\"memory\"} 1\n"},
      {"misses", "\noutpost_cache_tier_misses_total{tier=\"memory\"} 1\n"},
      {"insertions", "\noutpost_cache_tier_insertions_total{tier=\"memory\"} 1\n"},
      {"evictions", "\noutpost_cache_tier_evictions_total{tier=\"memory\"} 0\n"},
      {"promotions", "\noutpost_cache_tier_promotions_total{tier=\"memory\"} 1\n"},
      {"gauge type", "\n# TYPE outpost_cache_tier_bytes gauge\n"},
      {"counter type", "\n# TYPE outpost_cache_tier_hits_total counter\n"},
  };
  for (const MetricLine& line : lines) {
    SCOPED_TRACE(line.name);
    EXPECT_NE(text.find(line.expected_line), std::string::npos) << text;
  }
}

TEST(MetricsTest, OmitsCacheTiersWhenNoneSet) {
  Metrics metrics;
  ServerCounters server;

  const std::string text = metrics.render(server);

  EXPECT_EQ(text.find("outpost_cache_tier_"), std::string::npos) << text;
}

}  // namespace
}  // namespace outpost::proxy
