// idle: keep many keep-alive connections open, each after one completed request.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "base/status.h"
#include "bench/load/driver/run_result.h"

namespace outpost::load {

struct IdleOptions {
  CommonOptions common;
  uint32_t connections = 1;
  std::string path = "/v2/";
};

// Opens `connections` connections, sends one GET of `path` on each and reads its response,
// which must be 2xx. Then writes the line "ready N" to stdout and keeps the connections open
// until standard input reaches EOF or SIGTERM or SIGINT arrives, and closes them. A connection
// that the server closes in that time counts as dropped, which is an error. The timeout
// bounds the time until "ready", and the holding time has no limit.
RunResult runIdle(uv_loop_t* loop, const IdleOptions& options);

// Raises the soft RLIMIT_NOFILE to the hard limit and returns the new soft limit.
Expected<uint64_t> raiseOpenFileLimit();

}  // namespace outpost::load
