// ASCII helpers for protocol text (header names, media types, host names), where case folding
// and white space follow the ASCII rules of RFC 9110 and never the locale.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace outpost {

inline char toLowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// Returns a lower-cased copy of `text`.
inline std::string toLowerAscii(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) {
    c = toLowerAscii(c);
  }
  return lower;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (toLowerAscii(a[i]) != toLowerAscii(b[i])) {
      return false;
    }
  }
  return true;
}

// Optional white space (RFC 9110 section 5.6.3): space and horizontal tab.
inline bool isOws(char c) { return c == ' ' || c == '\t'; }

// Returns `text` without leading and trailing optional white space.
inline std::string_view trimOws(std::string_view text) {
  while (!text.empty() && isOws(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && isOws(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

}  // namespace outpost
