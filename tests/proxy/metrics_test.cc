#include "proxy/metrics.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace outpost::proxy
