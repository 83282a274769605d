// The Range request header for one byte range (RFC 9110 section 14), as blob GETs use it.
//
// Accepted forms, with optional whitespace around the value, around '=' and around list commas:
//   bytes=<first>-<last>   bytes <first> to <last>, inclusive
//   bytes=<first>-         bytes <first> to the end (containerd resumes a pull this way)
//   bytes=-<length>        the last <length> bytes
// The unit name "bytes" is case-insensitive (RFC 9110 section 14.1).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace outpost::proxy {

// A range of a blob, both ends inclusive, with first <= last < blob size.
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;

  uint64_t length() const { return last - first + 1; }
};

enum class RangeResult {
  // No Range header, or one the server ignores. The response is 200 with the whole blob.
  kNone,
  // A range that exists in the blob. The response is 206 with that range.
  kSatisfiable,
  // A valid range that starts at or past the end of the blob. The response is 416.
  kUnsatisfiable,
};

// Parses a Range header value against a blob of `blob_size` bytes. Writes `*out` only for
// kSatisfiable, with `last` clamped to blob_size - 1. `out` must not be null.
//
// Rules, with the RFC 9110 text behind each:
// - A header that is empty, names another unit, or is not valid syntax returns kNone. An origin
//   server MUST ignore a range unit it does not understand, and MAY ignore an invalid
//   ranges-specifier (section 14.2). <first> greater than <last> makes the range invalid
//   (section 14.1.1).
// - Several ranges ("bytes=0-1,5-6") return kNone, so the whole blob goes out with 200. A server
//   MAY ignore the Range header (section 14.2), and resuming a blob pull needs one range only.
// - <first> at or past the blob size, and the suffix "-0", are unsatisfiable (section 14.1.1).
// - Numbers have no length limit in the grammar, and recipients must not fail on large ones
//   (section 14.1.1). So a number above UINT64_MAX is read as "past any blob": as <first> it is
//   unsatisfiable, as <last> or as a suffix length it reaches the end of the blob.
// - Every valid range on an empty blob returns kUnsatisfiable, the suffix form included.
//   Section 14.1.2 calls a non-zero suffix satisfiable there, but no Content-Range can name a
//   range of zero bytes, so the answer is 416 with "bytes */0".
RangeResult parseRange(std::string_view header_value, uint64_t blob_size, ByteRange* out);

// Formats the Content-Range value of a 206 response: "bytes <first>-<last>/<blob_size>".
std::string contentRangeValue(const ByteRange& range, uint64_t blob_size);

// Formats the Content-Range value of a 416 response: "bytes */<blob_size>" (RFC 9110 section
// 14.4, unsatisfied-range).
std::string unsatisfiedContentRangeValue(uint64_t blob_size);

}  // namespace outpost::proxy
