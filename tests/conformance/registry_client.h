// RegistryClient: the requests of the OCI distribution API against one registry on 127.0.0.1,
// with URLs built from a base URL and repository names, and Location headers followed as the
// registry gives them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tests/integration/http_client.h"

namespace outpost::conformance {

using integration::HttpHeader;
using integration::HttpResult;

inline constexpr std::string_view kOctetStream = "application/octet-stream";

// One request and its response, kept together so that failure messages can name the request.
struct Exchange {
  std::string method;
  std::string url;
  HttpResult response;

  // "PUT /v2/app/blobs/uploads/…", the method and the path with its query.
  std::string describeRequest() const;
  // "400 DIGEST_INVALID" or "404 (body: 404 page not found)": the status and the error codes
  // of a JSON error body, else the start of the body.
  std::string describeResponse() const;
};

// Returns the `code` values of an error body of the form {"errors":[{"code":…},…]}, in order.
// Returns nothing for a body that is not such JSON.
std::vector<std::string> errorCodes(std::string_view body);

// Returns `value` percent-encoded for a query component: everything but the unreserved
// characters of RFC 3986 (letters, digits, "-", ".", "_", "~") is escaped.
std::string encodeQueryValue(std::string_view value);

// Returns `url` with `key=value` appended to its query, `value` encoded.
std::string appendQuery(const std::string& url, std::string_view key, std::string_view value);

// Returns the URL that `reference` (a Location or Link target) names when it came in a
// response to a request for `request_url`, as RFC 3986 section 5.2 resolves it. An absolute
// URL stays as it is. An absolute path takes the request's scheme and authority, and a
// relative path replaces the last segment of the request's path.
std::string resolveReference(const std::string& request_url, std::string_view reference);

// Returns the target of the `rel="next"` entry of a Link header value (RFC 8288), or
// std::nullopt when the value has none.
std::optional<std::string> nextLinkTarget(std::string_view link_value);

class RegistryClient {
 public:
  // `base_url` is "http://127.0.0.1:PORT" or "http://localhost:PORT", without a path.
  explicit RegistryClient(std::string base_url) : base_url_(std::move(base_url)) {}

  const std::string& baseUrl() const { return base_url_; }

  // URLs of the API endpoints for repository `name`.
  std::string manifestUrl(std::string_view name, std::string_view reference) const;
  std::string blobUrl(std::string_view name, std::string_view digest) const;
  // "/v2/<name>/blobs/uploads/", where uploads start.
  std::string uploadsUrl(std::string_view name) const;
  std::string tagsUrl(std::string_view name) const;
  std::string referrersUrl(std::string_view name, std::string_view digest) const;

  // Sends one request. Fails only when no HTTP response came back (refused connection,
  // timeout, a URL off this machine), since any status is a response to judge.
  Expected<Exchange> send(std::string method, std::string url, std::vector<HttpHeader> headers = {},
                          std::string body = {}) const;

  // Uploads `bytes` to repository `name` with a POST and a PUT, following the Location of the
  // POST. For the setup of checks, which report a failure as their own.
  Status pushBlob(std::string_view name, std::string_view bytes, std::string_view digest) const;

  // Uploads a manifest under `reference` (a tag or its digest), expecting 201.
  Status pushManifest(std::string_view name, std::string_view reference, std::string_view bytes,
                      std::string_view media_type) const;

 private:
  std::string repositoryUrl(std::string_view name) const;

  std::string base_url_;
};

}  // namespace outpost::conformance
