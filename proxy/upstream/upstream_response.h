// The response head that the upstream client delivers to its caller.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/upstream/http_headers.h"

namespace outpost::proxy {

struct UpstreamResponse {
  int status = 0;
  HeaderList headers;
  // Value of Content-Length, also for responses to HEAD. Empty for chunked and close-delimited
  // bodies.
  std::optional<uint64_t> content_length;
  // URL that produced this response, after redirects, without the query: signed blob URLs
  // carry credentials in the query, so this form is the one that may be logged.
  std::string effective_url;

  // Returns the first header called `name` (case-insensitive), or an empty view.
  std::string_view header(std::string_view name) const { return findHeader(headers, name); }
};

}  // namespace outpost::proxy
