// Absolute http and https URLs as the upstream client uses them: where to connect, what to put
// in the request line, and how a redirect's Location resolves against the URL that returned it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace outpost::proxy::upstream {

enum class Scheme { kHttp, kHttps };

struct Url {
  Scheme scheme = Scheme::kHttp;
  // Lower-case host name or IP literal. An IPv6 literal is stored without its brackets.
  std::string host;
  uint16_t port = 80;
  // Request target in origin form (RFC 9112 section 3.2.1): a path starting with '/' and an
  // optional query. Never contains a fragment.
  std::string path_and_query;

  bool isTls() const { return scheme == Scheme::kHttps; }
  bool isIpLiteral() const;
  bool isIpv6Literal() const { return host.find(':') != std::string::npos; }

  // "http" or "https".
  std::string_view schemeName() const;
  // The path without the query.
  std::string_view path() const;
  // "host:port", with brackets around an IPv6 literal; used in error messages and logs.
  std::string authority() const;
  // Value of the Host header (RFC 9110 section 7.2): the host, and ":port" unless the port is
  // the scheme's default.
  std::string hostHeader() const;
  // "scheme://host:port", the key of the connection pool. Two URLs with equal origins share
  // connections and credentials (RFC 6454).
  std::string origin() const;
  // "scheme://host[:port]/path" without the query. Signed blob URLs carry credentials in the
  // query, so this is the form that may be logged or reported.
  std::string withoutQuery() const;
};

// Returns true when scheme, host and port are equal.
bool isSameOrigin(const Url& a, const Url& b);

// Parses an absolute http or https URL. The fragment is dropped, an empty path becomes "/",
// and the host is lower-cased. Fails with kInvalidArgument for other schemes, user
// information ("user:pass@host"), an empty or malformed host, a port outside 1-65535, and
// spaces or control characters anywhere in the URL.
Expected<Url> parseUrl(std::string_view text);

// Resolves the value of a Location header against the URL of the request that received it
// (RFC 9110 section 10.2.2 and RFC 3986 section 5.2): absolute URLs, network-path ("//host"),
// absolute-path, relative-path and query-only references. Dot segments are removed.
Expected<Url> resolveLocation(const Url& base, std::string_view location);

// Percent-encodes every byte of `text` except the unreserved characters of RFC 3986
// section 2.3, for use as a query parameter name or value.
std::string percentEncode(std::string_view text);

}  // namespace outpost::proxy::upstream
