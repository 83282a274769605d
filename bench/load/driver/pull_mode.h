// pull: N clients each pull one image the way a container runtime does, all starting at once.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "bench/load/driver/run_result.h"

namespace outpost::load {

struct PullOptions {
  CommonOptions common;
  // Repository name, which may contain slashes ("upstream/bench/app").
  std::string repository;
  // Tag or digest.
  std::string reference;
  uint32_t clients = 1;
  // Most blob requests of one client in flight at once, each on its own connection.
  uint32_t parallel = 3;
};

// Runs every client's pull on `loop`, all started from one callback:
//   1. HEAD /v2/<repository>/manifests/<reference>, taking Docker-Content-Digest;
//   2. GET the manifest by that digest; for an index or manifest list, GET the linux/amd64
//      entry (else the first entry) by its digest;
//   3. GET the config and every distinct layer, at most `parallel` at once.
// Every manifest and blob is checked against its digest and size. The report has each
// client's wall time and bytes, the wall time of the last client, the total bytes and the
// requests by kind.
// NOTE: a pull sends no credentials and follows no redirects, so a 401 challenge or a 307 to a
// storage backend fails it. Outpost and distribution as the bench runs them send neither.
RunResult runPull(uv_loop_t* loop, const PullOptions& options);

}  // namespace outpost::load
