// A blocking HTTP/1.1 client for the command line's admin commands (outpost tag ...), which
// talk to a running server's /api/v1/. One request per connection, plain http:// only.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace outpost::proxy {

struct AdminResponse {
  int status = 0;
  std::string body;
};

// Sends `method` `target` (path and query) with `body` (JSON, may be empty) to `server_url`
// ("http://host:port") and reads the whole response. Fails with kInvalidArgument for a URL it
// cannot use, kUnavailable when the server cannot be reached, and kTimedOut after
// `timeout_ms` without progress.
Expected<AdminResponse> sendAdminRequest(std::string_view server_url, std::string_view method,
                                         std::string_view target, std::string_view body,
                                         int timeout_ms = 30'000);

}  // namespace outpost::proxy
