#include "bench/load/driver/run_result.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace outpost::load {

int printRunResult(const RunResult& result) {
  std::string text = result.report.dump();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  for (const std::string& error : result.errors) {
    std::fprintf(stderr, "outpost_load: %s\n", error.c_str());
  }
  return result.errors.empty() ? 0 : 1;
}

uint64_t nearestRankPercentile(std::vector<uint64_t> values, double fraction) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  auto rank = static_cast<size_t>(std::ceil(fraction * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

uint64_t timeoutMilliseconds(double timeout_s) {
  return std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(timeout_s * 1000)));
}

}  // namespace outpost::load
