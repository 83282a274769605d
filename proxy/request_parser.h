// RequestParser: HTTP/1.1 request parsing with llhttp into a reused HttpRequest, one request at
// a time, with the size limits that decide between 400, 413 and 431.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/http_message.h"

namespace outpost::proxy {

class RequestParser {
 public:
  enum class Result {
    kNeedMore,  // every byte was consumed and the request is not complete yet
    kComplete,  // one request is complete in the HttpRequest; later bytes were not consumed
    kError,     // the input is not a valid request or breaks a limit; see errorStatus()
  };

  // Parses into `request`, which must outlive the parser. The request is cleared when the
  // next message begins.
  RequestParser(HttpRequest* request, uint64_t max_header_bytes, uint64_t max_body_bytes);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Feeds `input`; `*consumed` receives how many bytes were used. Stops after one complete
  // request, so that pipelined requests stay in the caller's buffer until it is ready.
  Result parse(std::string_view input, size_t* consumed);

  // After kError: 431 for oversized headers, 413 for an oversized body, else 400.
  int errorStatus() const;
  // After kError: llhttp's error name or the limit that was broken.
  std::string_view errorReason() const;

 private:
  static int onMessageBegin(llhttp_t* parser);
  static int onUrl(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderField(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderValue(llhttp_t* parser, const char* at, size_t length);
  static int onHeadersComplete(llhttp_t* parser);
  static int onBody(llhttp_t* parser, const char* at, size_t length);
  static int onMessageComplete(llhttp_t* parser);
  // Returns HPE_USER, marking the headers too large, once they pass max_header_bytes_.
  int checkHeaderSize();

  llhttp_t parser_;
  HttpRequest* request_;
  uint64_t max_header_bytes_;
  uint64_t max_body_bytes_;
  bool is_complete_ = false;
  bool is_header_too_large_ = false;
  bool is_body_too_large_ = false;
  llhttp_errno_t error_ = HPE_OK;
};

}  // namespace outpost::proxy
