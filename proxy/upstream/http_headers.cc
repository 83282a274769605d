#include "proxy/upstream/http_headers.h"

#include "proxy/http_message.h"

namespace outpost::proxy {

std::string_view findHeader(const HeaderList& headers, std::string_view name) {
  for (const auto& [field_name, value] : headers) {
    if (equalsIgnoreCase(field_name, name)) {
      return value;
    }
  }
  return {};
}

namespace upstream {
namespace {

// tchar from RFC 9110 section 5.6.2.
bool isTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  constexpr std::string_view kTokenSymbols = "!#$%&'*+-.^_`|~";
  return kTokenSymbols.find(c) != std::string_view::npos;
}

bool isToken(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    if (!isTokenChar(c)) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool isValidHeaderName(std::string_view name) { return isToken(name); }

bool isValidHeaderValue(std::string_view value) {
  for (char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte == '\t') {
      continue;
    }
    if (byte < 0x20 || byte == 0x7f) {
      return false;
    }
  }
  return true;
}

bool isValidMethod(std::string_view method) { return isToken(method); }

}  // namespace upstream
}  // namespace outpost::proxy
