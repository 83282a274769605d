// ErrorBodySample: the start of a response body with an unexpected status, for error messages.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>

namespace outpost::load {

class ErrorBodySample {
 public:
  static constexpr size_t kMaxBytes = 300;

  // Keeps the first kMaxBytes bytes of the body, with bytes outside printable ASCII as '.'.
  void append(std::span<const std::byte> bytes) {
    size_t count = std::min(bytes.size(), kMaxBytes - text_.size());
    for (size_t i = 0; i < count; ++i) {
      auto c = static_cast<char>(bytes[i]);
      text_.push_back(c >= 0x20 && c < 0x7f ? c : '.');
    }
  }

  // Returns "status 404: <body start>", or "status 404" for an empty body.
  std::string describe(int status) const {
    std::string text = "status " + std::to_string(status);
    return text_.empty() ? text : text + ": " + text_;
  }

 private:
  std::string text_;
};

}  // namespace outpost::load
