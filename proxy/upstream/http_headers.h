// Header lists of upstream requests and responses, and the checks that keep caller-supplied
// header fields from breaking the request framing.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outpost::proxy {

// Header fields in wire order. Names keep the case they were sent or received with.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Returns the value of the first header called `name` (case-insensitive), or an empty view when
// there is none. The view points into `headers`.
std::string_view findHeader(const HeaderList& headers, std::string_view name);

namespace upstream {

// Checks a field name against the token grammar of RFC 9110 section 5.6.2.
bool isValidHeaderName(std::string_view name);

// Checks a field value: visible characters, spaces and tabs, no CR, LF or NUL
// (RFC 9110 section 5.5).
bool isValidHeaderValue(std::string_view value);

// Checks a request method name: a non-empty token (RFC 9110 section 9.1).
bool isValidMethod(std::string_view method);

}  // namespace upstream
}  // namespace outpost::proxy
