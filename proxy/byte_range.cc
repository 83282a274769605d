#include "proxy/byte_range.h"

#include <limits>
#include <optional>

#include "base/ascii.h"

namespace outpost::proxy {
namespace {

constexpr uint64_t kMaxUint64 = std::numeric_limits<uint64_t>::max();

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// A decimal number from the header. `digits` keeps the text, without leading zeros, so that two
// numbers too large for uint64_t can still be compared.
struct Decimal {
  std::string_view digits;
  uint64_t value = 0;  // Saturates at UINT64_MAX.
};

std::optional<Decimal> parseDecimal(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  Decimal number;
  for (char c : text) {
    if (!isDigit(c)) {
      return std::nullopt;
    }
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (number.value > (kMaxUint64 - digit) / 10) {
      number.value = kMaxUint64;
    } else {
      number.value = number.value * 10 + digit;
    }
  }
  const std::size_t first_nonzero = text.find_first_not_of('0');
  number.digits = first_nonzero == std::string_view::npos ? "" : text.substr(first_nonzero);
  return number;
}

bool isGreater(const Decimal& a, const Decimal& b) {
  if (a.digits.size() != b.digits.size()) {
    return a.digits.size() > b.digits.size();
  }
  return a.digits > b.digits;
}

// Returns the one non-empty element of the range-set, or nullopt when there are none or several.
// Empty list elements are skipped, as RFC 9110 section 5.6.1 requires of list recipients.
std::optional<std::string_view> singleRangeSpec(std::string_view range_set) {
  std::optional<std::string_view> found;
  while (true) {
    const std::size_t comma = range_set.find(',');
    const std::string_view element = trimOws(range_set.substr(0, comma));
    if (!element.empty()) {
      if (found) {
        return std::nullopt;
      }
      found = element;
    }
    if (comma == std::string_view::npos) {
      return found;
    }
    range_set.remove_prefix(comma + 1);
  }
}

RangeResult evaluateSuffixRange(const Decimal& suffix_length, uint64_t blob_size,
                                ByteRange* out) {
  if (suffix_length.value == 0 || blob_size == 0) {
    return RangeResult::kUnsatisfiable;
  }
  const uint64_t length = suffix_length.value < blob_size ? suffix_length.value : blob_size;
  *out = ByteRange{blob_size - length, blob_size - 1};
  return RangeResult::kSatisfiable;
}

}  // namespace

RangeResult parseRange(std::string_view header_value, uint64_t blob_size, ByteRange* out) {
  std::string_view value = trimOws(header_value);
  const std::size_t equals = value.find('=');
  if (equals == std::string_view::npos) {
    return RangeResult::kNone;
  }
  if (!equalsIgnoreCase(trimOws(value.substr(0, equals)), "bytes")) {
    return RangeResult::kNone;
  }

  const std::optional<std::string_view> spec = singleRangeSpec(value.substr(equals + 1));
  if (!spec) {
    return RangeResult::kNone;
  }
  const std::size_t dash = spec->find('-');
  if (dash == std::string_view::npos) {
    return RangeResult::kNone;
  }
  const std::string_view first_text = spec->substr(0, dash);
  const std::string_view last_text = spec->substr(dash + 1);

  if (first_text.empty()) {
    const std::optional<Decimal> suffix_length = parseDecimal(last_text);
    if (!suffix_length) {
      return RangeResult::kNone;
    }
    return evaluateSuffixRange(*suffix_length, blob_size, out);
  }

  const std::optional<Decimal> first = parseDecimal(first_text);
  if (!first) {
    return RangeResult::kNone;
  }
  std::optional<Decimal> last;
  if (!last_text.empty()) {
    last = parseDecimal(last_text);
    if (!last || isGreater(*first, *last)) {
      return RangeResult::kNone;
    }
  }

  if (first->value >= blob_size) {
    return RangeResult::kUnsatisfiable;
  }
  uint64_t last_value = blob_size - 1;
  if (last && last->value < last_value) {
    last_value = last->value;
  }
  *out = ByteRange{first->value, last_value};
  return RangeResult::kSatisfiable;
}

std::string contentRangeValue(const ByteRange& range, uint64_t blob_size) {
  return "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) + "/" +
         std::to_string(blob_size);
}

std::string unsatisfiedContentRangeValue(uint64_t blob_size) {
  return "bytes */" + std::to_string(blob_size);
}

}  // namespace outpost::proxy
