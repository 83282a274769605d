// fetchBuffered: one upstream request whose whole response body is collected in memory, for
// manifests, tag lists and HEAD requests.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "proxy/upstream/upstream_client.h"

namespace outpost::proxy {

struct FetchResult {
  // Non-OK when no complete response arrived: unreachable, timed out, cancelled, or a body
  // over the size limit.
  Status transport;
  int status = 0;
  HeaderList headers;
  std::string body;

  std::string_view header(std::string_view name) const { return findHeader(headers, name); }
};

// Sends `request` through `client` and calls `done` once, on the client's loop thread, with
// the response. Bodies longer than `max_body_bytes` fail with kOutOfRange. The request runs to
// the end even when the caller no longer needs it, so `done` must not capture anything that
// can go away first (capture shared or weak pointers). Must be called on the client's thread.
void fetchBuffered(UpstreamClient& client, UpstreamRequest request,
                   uint64_t max_body_bytes, std::function<void(FetchResult)> done);

}  // namespace outpost::proxy
