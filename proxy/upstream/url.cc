#include "proxy/upstream/url.h"

#include <arpa/inet.h>

#include <charconv>
#include <vector>

#include "base/ascii.h"

namespace outpost::proxy::upstream {
namespace {

bool isAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isAsciiDigit(char c) { return c >= '0' && c <= '9'; }

bool equalsLowerCase(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) {
    return false;
  }
  for (size_t i = 0; i < text.size(); ++i) {
    if (toLowerAscii(text[i]) != lower[i]) {
      return false;
    }
  }
  return true;
}

// Space, DEL and the C0 controls may not appear in a URL (RFC 3986 section 2).
bool hasForbiddenChar(std::string_view text) {
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) {
      return true;
    }
  }
  return false;
}

// Host names are limited to letters, digits, '-', '.' and '_'; percent-encoded and
// internationalized names are not supported.
bool isValidHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  for (char c : host) {
    if (!isAsciiAlpha(c) && !isAsciiDigit(c) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

bool isIpv4Literal(const std::string& host) {
  in_addr address{};
  return inet_pton(AF_INET, host.c_str(), &address) == 1;
}

bool isIpv6Literal(const std::string& host) {
  in6_addr address{};
  return inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

uint16_t defaultPort(Scheme scheme) { return scheme == Scheme::kHttps ? 443 : 80; }

Status parseAuthority(std::string_view authority, Url* url) {
  if (authority.find('@') != std::string_view::npos) {
    return invalidArgument("URLs with user information are not supported");
  }

  std::string_view host = authority;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return invalidArgument("IPv6 literal without closing ']'");
    }
    host = authority.substr(1, close - 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return invalidArgument("unexpected text after IPv6 literal");
      }
      port_text = rest.substr(1);
    }
    url->host = std::string(host);
    if (!isIpv6Literal(url->host)) {
      return invalidArgument("invalid IPv6 literal '" + url->host + "'");
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port_text = authority.substr(colon + 1);
    }
    if (!isValidHostName(host)) {
      return invalidArgument("invalid host '" + std::string(host) + "'");
    }
    url->host.clear();
    for (char c : host) {
      url->host.push_back(toLowerAscii(c));
    }
  }

  url->port = defaultPort(url->scheme);
  if (port_text.empty()) {
    return Status::ok();
  }
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return invalidArgument("invalid port '" + std::string(port_text) + "'");
  }
  url->port = static_cast<uint16_t>(port);
  return Status::ok();
}

// Removes "." and ".." segments from an absolute path (RFC 3986 section 5.2.4).
std::string removeDotSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      slash = path.size();
    }
    std::string_view segment = path.substr(start, slash - start);
    const bool is_last = slash == path.size();
    if (segment == "..") {
      if (!segments.empty()) {
        segments.pop_back();
      }
      if (is_last) {
        segments.emplace_back();
      }
    } else if (segment == ".") {
      if (is_last) {
        segments.emplace_back();
      }
    } else {
      segments.push_back(segment);
    }
    start = slash + 1;
  }

  std::string result;
  for (std::string_view segment : segments) {
    result.push_back('/');
    result.append(segment);
  }
  return result.empty() ? "/" : result;
}

// Joins a path and a query into an origin-form target with dot segments removed.
std::string normalizeTarget(std::string_view path_and_query) {
  const size_t query_start = path_and_query.find('?');
  std::string_view path = path_and_query.substr(0, query_start);
  std::string target = removeDotSegments(path.empty() ? "/" : path);
  if (query_start != std::string_view::npos) {
    target.append(path_and_query.substr(query_start));
  }
  return target;
}

bool hasScheme(std::string_view reference) {
  if (reference.empty() || !isAsciiAlpha(reference.front())) {
    return false;
  }
  for (char c : reference) {
    if (c == ':') {
      return true;
    }
    if (!isAsciiAlpha(c) && !isAsciiDigit(c) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return false;
}

}  // namespace

bool Url::isIpLiteral() const { return isIpv6Literal() || isIpv4Literal(host); }

std::string_view Url::schemeName() const { return isTls() ? "https" : "http"; }

std::string_view Url::path() const {
  std::string_view target = path_and_query;
  return target.substr(0, target.find('?'));
}

std::string Url::authority() const {
  std::string text = isIpv6Literal() ? "[" + host + "]" : host;
  text.push_back(':');
  text.append(std::to_string(port));
  return text;
}

std::string Url::hostHeader() const {
  std::string text = isIpv6Literal() ? "[" + host + "]" : host;
  if (port != defaultPort(scheme)) {
    text.push_back(':');
    text.append(std::to_string(port));
  }
  return text;
}

std::string Url::origin() const {
  std::string text(schemeName());
  text.append("://");
  text.append(authority());
  return text;
}

std::string Url::withoutQuery() const {
  std::string text(schemeName());
  text.append("://");
  text.append(hostHeader());
  text.append(path());
  return text;
}

bool isSameOrigin(const Url& a, const Url& b) {
  return a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

Expected<Url> parseUrl(std::string_view text) {
  text = text.substr(0, text.find('#'));
  if (hasForbiddenChar(text)) {
    return invalidArgument("URL contains a space or control character");
  }

  const size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return invalidArgument("URL is not absolute: missing '://'");
  }
  Url url;
  std::string_view scheme = text.substr(0, scheme_end);
  if (equalsLowerCase(scheme, "https")) {
    url.scheme = Scheme::kHttps;
  } else if (equalsLowerCase(scheme, "http")) {
    url.scheme = Scheme::kHttp;
  } else {
    return invalidArgument("unsupported URL scheme '" + std::string(scheme) +
                           "': use http or https");
  }

  std::string_view rest = text.substr(scheme_end + 3);
  const size_t authority_end = rest.find_first_of("/?");
  OUTPOST_RETURN_IF_ERROR(parseAuthority(rest.substr(0, authority_end), &url));

  std::string_view target =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (target.empty() || target.front() == '?') {
    url.path_and_query = "/";
    url.path_and_query.append(target);
  } else {
    url.path_and_query = normalizeTarget(target);
  }
  return url;
}

Expected<Url> resolveLocation(const Url& base, std::string_view location) {
  location = location.substr(0, location.find('#'));
  if (location.empty()) {
    return invalidArgument("empty Location");
  }
  if (hasForbiddenChar(location)) {
    return invalidArgument("Location contains a space or control character");
  }

  if (hasScheme(location)) {
    return parseUrl(location);
  }
  if (location.starts_with("//")) {
    std::string absolute(base.schemeName());
    absolute.push_back(':');
    absolute.append(location);
    return parseUrl(absolute);
  }

  Url resolved = base;
  if (location.front() == '/') {
    resolved.path_and_query = normalizeTarget(location);
  } else if (location.front() == '?') {
    resolved.path_and_query = std::string(base.path());
    resolved.path_and_query.append(location);
  } else {
    // A relative path replaces the last segment of the base path.
    std::string_view base_path = base.path();
    std::string merged(base_path.substr(0, base_path.rfind('/') + 1));
    merged.append(location);
    resolved.path_and_query = normalizeTarget(merged);
  }
  return resolved;
}

std::string percentEncode(std::string_view text) {
  static constexpr char kHexDigits[] = "0123456789ABCDEF";
  std::string encoded;
  encoded.reserve(text.size());
  for (char c : text) {
    if (isAsciiAlpha(c) || isAsciiDigit(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded.push_back(c);
      continue;
    }
    const auto byte = static_cast<unsigned char>(c);
    encoded.push_back('%');
    encoded.push_back(kHexDigits[byte >> 4]);
    encoded.push_back(kHexDigits[byte & 0x0f]);
  }
  return encoded;
}

}  // namespace outpost::proxy::upstream
