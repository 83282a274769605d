// Types shared by the driver's modes: the options each takes and the result each returns.
#pragma once

#include <uv.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace outpost::load {

struct CommonOptions {
  // The port on 127.0.0.1. The driver connects to no other host.
  uint16_t port = 0;
  double timeout_s = 120;
};

// The outcome of one run: the JSON report for stdout and the errors for stderr. The run failed
// when `errors` is not empty.
struct RunResult {
  nlohmann::json report;
  std::vector<std::string> errors;
};

// Writes the report as one line to stdout and each error as a line to stderr, and returns the
// exit status: 0 without errors, else 1.
int printRunResult(const RunResult& result);

// Returns the microseconds from `start_ns` to `end_ns`, both from uv_hrtime().
inline uint64_t microsecondsBetween(uint64_t start_ns, uint64_t end_ns) {
  return end_ns > start_ns ? (end_ns - start_ns) / 1000 : 0;
}

// Returns the value at rank ceil(fraction * n) of `values` after sorting (the nearest-rank
// percentile), or 0 for no values. `fraction` is in (0, 1].
uint64_t nearestRankPercentile(std::vector<uint64_t> values, double fraction);

// Returns `timeout_s` in whole milliseconds, at least 1.
uint64_t timeoutMilliseconds(double timeout_s);

}  // namespace outpost::load
