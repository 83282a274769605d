// HttpRequest and ResponseHead: the server's view of one request and the head it writes back.
//
// A connection reuses one HttpRequest for every request it reads: clear() keeps the buffers'
// capacity, so the steady state allocates nothing per header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/ascii.h"

namespace outpost::proxy {

enum class HttpMethod { kGet, kHead, kPost, kPut, kPatch, kDelete, kOptions, kOther };

class HttpRequest {
 public:
  void clear();

  HttpMethod method() const { return method_; }
  std::string_view methodName() const { return method_name_; }
  // The request target as sent, and its path and query parts (the query without '?').
  std::string_view target() const { return target_; }
  std::string_view path() const;
  std::string_view query() const;
  // Returns the value of the first query parameter `name`, percent-decoded; empty if absent.
  std::string queryParam(std::string_view name) const;
  bool hasQueryParam(std::string_view name) const;

  // Returns the first header named `name` (case-insensitive), or an empty view. The view
  // points into this request and is valid until clear().
  std::string_view header(std::string_view name) const;
  // Returns every value of the headers named `name`, in order.
  std::vector<std::string_view> headerValues(std::string_view name) const;
  size_t headerCount() const { return headers_.size(); }

  // The buffered body; empty for a request whose body streams (see Exchange::readBody()).
  const std::string& body() const { return body_; }
  bool keepAlive() const { return keep_alive_; }
  // True for an HTTP/1.0 request, which keeps its connection only when both sides say so.
  bool isHttp10() const { return is_http10_; }

  // Parser side: called by the connection while it reads the request.
  void setMethod(HttpMethod method, std::string_view name);
  void appendTarget(std::string_view piece) { target_.append(piece); }
  void appendHeaderName(std::string_view piece);
  void appendHeaderValue(std::string_view piece);
  void appendBody(std::string_view piece) { body_.append(piece); }
  void setKeepAlive(bool keep_alive) { keep_alive_ = keep_alive; }
  void setHttp10(bool is_http10) { is_http10_ = is_http10; }
  size_t headerBytes() const { return header_bytes_.size() + target_.size(); }

 private:
  struct HeaderSpan {
    uint32_t name_offset;
    uint32_t name_length;
    uint32_t value_offset;
    uint32_t value_length;
  };
  std::string_view nameOf(const HeaderSpan& span) const {
    return std::string_view(header_bytes_).substr(span.name_offset, span.name_length);
  }
  std::string_view valueOf(const HeaderSpan& span) const;

  HttpMethod method_ = HttpMethod::kOther;
  std::string method_name_;
  std::string target_;
  // Names and values of all headers, back to back; headers_ indexes into it.
  std::string header_bytes_;
  std::vector<HeaderSpan> headers_;
  bool in_value_ = false;
  std::string body_;
  bool keep_alive_ = true;
  bool is_http10_ = false;
};

// The status line and headers of a response, built into one buffer.
class ResponseHead {
 public:
  ResponseHead() = default;
  explicit ResponseHead(int status) : status_(status) {}

  int status() const { return status_; }
  void setStatus(int status) { status_ = status; }
  // Appends a header. Names and values must not contain CR or LF; callers pass constants or
  // values Outpost validated.
  ResponseHead& add(std::string_view name, std::string_view value);
  ResponseHead& add(std::string_view name, uint64_t value);
  // The headers added so far, each ending in CRLF.
  const std::string& fields() const { return fields_; }

 private:
  int status_ = 200;
  std::string fields_;
};

// Returns the reason phrase for `status` ("Not Found").
std::string_view reasonPhrase(int status);

}  // namespace outpost::proxy
