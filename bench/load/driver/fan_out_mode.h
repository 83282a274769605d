// fan-out: N clients GET one path at the same instant over connections opened beforehand.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/driver/run_result.h"

namespace outpost::load {

struct FanOutOptions {
  CommonOptions common;
  // Path and query of the GET, starting with '/'.
  std::string path;
  uint32_t clients = 1;
  // When set, every body must equal this file's bytes; empty means any 200 body is accepted.
  std::string expect_file;
  // Extra request header lines, "Name: value".
  std::vector<std::string> header_lines;
};

// Opens every connection, then sends all requests from one loop callback (the release, t=0)
// and reads the responses. Runs `loop` until every client has finished, a connection fails
// before the release, or the timeout passes. Each client's status, body bytes, time to the
// first body byte and time to the last byte are in the report, in microseconds since the
// release.
RunResult runFanOut(uv_loop_t* loop, const FanOutOptions& options);

}  // namespace outpost::load
