#include "proxy/http_message.h"

#include <charconv>

#include "base/ascii.h"

namespace outpost::proxy {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view text) {
  std::string decoded;
  decoded.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int high = hexValue(text[i + 1]);
      int low = hexValue(text[i + 2]);
      if (high >= 0 && low >= 0) {
        decoded.push_back(static_cast<char>(high * 16 + low));
        i += 2;
        continue;
      }
    }
    decoded.push_back(text[i]);
  }
  return decoded;
}

// Calls fn(name, raw_value) for each parameter of a query string, stopping when fn returns true.
template <typename Fn>
bool forEachQueryParam(std::string_view query, Fn&& fn) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (fn(name, value)) {
      return true;
    }
  }
  return false;
}

}  // namespace

void HttpRequest::clear() {
  method_ = HttpMethod::kOther;
  method_name_.clear();
  target_.clear();
  header_bytes_.clear();
  headers_.clear();
  in_value_ = false;
  body_.clear();
  keep_alive_ = true;
  is_http10_ = false;
}

std::string_view HttpRequest::path() const {
  std::string_view target(target_);
  return target.substr(0, target.find('?'));
}

std::string_view HttpRequest::query() const {
  std::string_view target(target_);
  size_t mark = target.find('?');
  return mark == std::string_view::npos ? std::string_view() : target.substr(mark + 1);
}

std::string HttpRequest::queryParam(std::string_view name) const {
  std::string result;
  forEachQueryParam(query(), [&](std::string_view key, std::string_view value) {
    if (key != name) {
      return false;
    }
    result = percentDecode(value);
    return true;
  });
  return result;
}

bool HttpRequest::hasQueryParam(std::string_view name) const {
  return forEachQueryParam(query(),
                           [&](std::string_view key, std::string_view) { return key == name; });
}

std::string_view HttpRequest::valueOf(const HeaderSpan& span) const {
  return trimOws(std::string_view(header_bytes_).substr(span.value_offset, span.value_length));
}

std::string_view HttpRequest::header(std::string_view name) const {
  for (const HeaderSpan& span : headers_) {
    if (equalsIgnoreCase(nameOf(span), name)) {
      return valueOf(span);
    }
  }
  return {};
}

std::vector<std::string_view> HttpRequest::headerValues(std::string_view name) const {
  std::vector<std::string_view> values;
  for (const HeaderSpan& span : headers_) {
    if (equalsIgnoreCase(nameOf(span), name)) {
      values.push_back(valueOf(span));
    }
  }
  return values;
}

void HttpRequest::setMethod(HttpMethod method, std::string_view name) {
  method_ = method;
  method_name_.assign(name);
}

void HttpRequest::appendHeaderName(std::string_view piece) {
  if (headers_.empty() || in_value_) {
    auto offset = static_cast<uint32_t>(header_bytes_.size());
    headers_.push_back(HeaderSpan{offset, 0, offset, 0});
    in_value_ = false;
  }
  header_bytes_.append(piece);
  headers_.back().name_length += static_cast<uint32_t>(piece.size());
  headers_.back().value_offset = static_cast<uint32_t>(header_bytes_.size());
}

void HttpRequest::appendHeaderValue(std::string_view piece) {
  if (headers_.empty()) {
    return;
  }
  in_value_ = true;
  header_bytes_.append(piece);
  headers_.back().value_length += static_cast<uint32_t>(piece.size());
}

ResponseHead& ResponseHead::add(std::string_view name, std::string_view value) {
  fields_.append(name);
  fields_.append(": ");
  fields_.append(value);
  fields_.append("\r\n");
  return *this;
}

ResponseHead& ResponseHead::add(std::string_view name, uint64_t value) {
  char digits[24];
  auto result = std::to_chars(digits, digits + sizeof(digits), value);
  return add(name, std::string_view(digits, static_cast<size_t>(result.ptr - digits)));
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 507:
      return "Insufficient Storage";
    default: return "Unknown";
  }
}

}  // namespace outpost::proxy
