// Bearer tokens of the registry token flow, and the rules that go with them.
//
// A registry that requires a token responds with 401 and
//   WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
//                     scope="repository:library/alpine:pull"
// The client then sends GET <realm>?service=<service>&scope=<scope> to the token endpoint
// (with Basic credentials when it has them) and repeats the request with
// "Authorization: Bearer <token>". The token response is JSON with "token" or "access_token"
// and an optional "expires_in" in seconds, 60 when absent (Docker Registry token
// authentication specification, "Token Response Fields").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/clock.h"
#include "base/status.h"
#include "proxy/upstream/url.h"

namespace outpost::proxy::upstream {

// The challenge parameters that identify a token: realm, service and scope.
struct TokenKey {
  std::string realm;
  std::string service;
  std::string scope;

  bool operator==(const TokenKey&) const = default;
};

struct TokenGrant {
  std::string token;
  int64_t expires_in_s = 60;
};

// Parses the JSON body of a token response. "token" wins over "access_token" when both are
// present. A missing, non-numeric or non-positive "expires_in" means 60 seconds; values above
// one day are cut to one day. Fails with kInvalidArgument for a body that is not a JSON object
// or has no non-empty token.
Expected<TokenGrant> parseTokenResponse(std::string_view body);

// Returns the scope a pull of `path` needs, "repository:<name>:pull" for the manifest, blob,
// tag list and referrers routes under /v2/, or an empty string for other paths. The query is
// ignored.
std::string pullScopeForPath(std::string_view path);

// Builds the token request URL: the realm with "service" and each space-separated scope added
// as query parameters. Fails with kInvalidArgument when the realm is not an http or https URL.
Expected<Url> tokenRequestUrl(const TokenKey& key);

// Tokens by (realm, service, scope), each kept until shortly before it expires. Loop thread
// only.
class TokenCache {
 public:
  // Maximum number of tokens kept; one per repository pulled recently in practice.
  static constexpr size_t kMaxEntries = 1024;
  // A token is not handed out in its last 10 seconds, or in the last half of its lifetime when
  // that is shorter, so that it does not expire on the way to the registry.
  static constexpr int64_t kRefreshMarginMs = 10'000;

  // `clock` is not owned and must outlive the cache.
  explicit TokenCache(const Clock* clock) : clock_(clock) {}

  // Returns the token for `key` unless it is missing or about to expire.
  std::optional<std::string> find(const TokenKey& key) const;
  // Stores `grant` for `key`, replacing an older token. When the cache is full, expired
  // entries go first, then the one that expires soonest.
  void insert(const TokenKey& key, const TokenGrant& grant);
  // Forgets the token for `key`, as after the registry rejected it.
  void erase(const TokenKey& key);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string token;
    // Clock time in ms after which the token is no longer handed out.
    int64_t usable_until_ms;
  };
  static std::string mapKey(const TokenKey& key);
  void evictForInsert();

  const Clock* clock_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace outpost::proxy::upstream
