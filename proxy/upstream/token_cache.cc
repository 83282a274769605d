#include "proxy/upstream/token_cache.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "proxy/grammar.h"

namespace outpost::proxy::upstream {
namespace {

constexpr int64_t kDefaultExpiresInSeconds = 60;
constexpr int64_t kMaxExpiresInSeconds = 24 * 60 * 60;

// Reads "expires_in" without letting a huge or fractional value overflow.
int64_t expiresInSeconds(const nlohmann::json& object) {
  auto it = object.find("expires_in");
  if (it == object.end() || !it->is_number()) {
    return kDefaultExpiresInSeconds;
  }
  double seconds = it->get<double>();
  if (!(seconds >= 1)) {
    return kDefaultExpiresInSeconds;
  }
  return static_cast<int64_t>(std::min(seconds, static_cast<double>(kMaxExpiresInSeconds)));
}

std::string nonEmptyString(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) {
    return {};
  }
  return it->get_ref<const std::string&>();
}

}  // namespace

Expected<TokenGrant> parseTokenResponse(std::string_view body) {
  // allow_exceptions=false: malformed JSON yields a discarded value instead of throwing.
  const nlohmann::json document = nlohmann::json::parse(body, nullptr, false);
  if (document.is_discarded() || !document.is_object()) {
    return invalidArgument("token response is not a JSON object");
  }
  TokenGrant grant;
  grant.token = nonEmptyString(document, "token");
  if (grant.token.empty()) {
    grant.token = nonEmptyString(document, "access_token");
  }
  if (grant.token.empty()) {
    return invalidArgument("token response has no \"token\" or \"access_token\" string");
  }
  grant.expires_in_s = expiresInSeconds(document);
  return grant;
}

std::string pullScopeForPath(std::string_view path) {
  path = path.substr(0, path.find('?'));
  constexpr std::string_view kPrefix = "/v2/";
  if (!path.starts_with(kPrefix)) {
    return {};
  }
  Expected<RegistryPath> route = parseRegistryPath(path.substr(kPrefix.size()));
  if (!route) {
    return {};
  }
  switch (route->kind) {
    case RegistryPath::Kind::kManifest:
    case RegistryPath::Kind::kBlob:
    case RegistryPath::Kind::kTagsList:
    case RegistryPath::Kind::kReferrers:
      break;
    default:
      return {};
  }
  std::string scope = "repository:";
  scope.append(route->name);
  scope.append(":pull");
  return scope;
}

Expected<Url> tokenRequestUrl(const TokenKey& key) {
  Expected<Url> realm = parseUrl(key.realm);
  if (!realm) {
    return invalidArgument("invalid token realm: " + std::string(realm.status().message()));
  }

  std::string query;
  auto add_parameter = [&query](std::string_view name, std::string_view value) {
    query.push_back(query.empty() ? '?' : '&');
    query.append(name);
    query.push_back('=');
    query.append(percentEncode(value));
  };
  if (!key.service.empty()) {
    add_parameter("service", key.service);
  }
  // Several scopes are space-separated in the challenge and repeated in the token request.
  std::string_view scopes = key.scope;
  while (!scopes.empty()) {
    const size_t space = scopes.find(' ');
    std::string_view scope = scopes.substr(0, space);
    if (!scope.empty()) {
      add_parameter("scope", scope);
    }
    scopes = space == std::string_view::npos ? std::string_view() : scopes.substr(space + 1);
  }

  Url url = std::move(realm).value();
  if (!query.empty() && url.path_and_query.find('?') != std::string::npos) {
    query.front() = '&';
  }
  url.path_and_query.append(query);
  return url;
}

std::string TokenCache::mapKey(const TokenKey& key) {
  // Header values cannot contain LF, so it separates the parts unambiguously.
  std::string text = key.realm;
  text.push_back('\n');
  text.append(key.service);
  text.push_back('\n');
  text.append(key.scope);
  return text;
}

std::optional<std::string> TokenCache::find(const TokenKey& key) const {
  auto it = entries_.find(mapKey(key));
  if (it == entries_.end() || clock_->nowMs() >= it->second.usable_until_ms) {
    return std::nullopt;
  }
  return it->second.token;
}

void TokenCache::insert(const TokenKey& key, const TokenGrant& grant) {
  const int64_t lifetime_ms = grant.expires_in_s * 1000;
  const int64_t margin_ms = std::min(kRefreshMarginMs, lifetime_ms / 2);
  std::string map_key = mapKey(key);
  if (!entries_.contains(map_key)) {
    evictForInsert();
  }
  entries_[std::move(map_key)] = Entry{grant.token, clock_->nowMs() + lifetime_ms - margin_ms};
}

void TokenCache::erase(const TokenKey& key) { entries_.erase(mapKey(key)); }

void TokenCache::evictForInsert() {
  if (entries_.size() < kMaxEntries) {
    return;
  }
  const int64_t now_ms = clock_->nowMs();
  std::erase_if(entries_,
                [now_ms](const auto& item) { return now_ms >= item.second.usable_until_ms; });
  if (entries_.size() < kMaxEntries) {
    return;
  }
  auto soonest =
      std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
        return a.second.usable_until_ms < b.second.usable_until_ms;
      });
  entries_.erase(soonest);
}

}  // namespace outpost::proxy::upstream
