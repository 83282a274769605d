// RequestParser: HTTP/1.1 request parsing with llhttp into a reused HttpRequest, one request at
// a time, with the size limits that decide between 400, 413 and 431.
//
// A request body is either buffered into HttpRequest::body() or, when the streams-body
// predicate chooses so, streamed: parsing then stops after the head, and later parse() calls
// hand the body to the body sink piece by piece instead of storing it.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "proxy/http_message.h"

namespace outpost::proxy {

class RequestParser {
 public:
  enum class Result {
    kNeedMore,  // every byte was consumed and the request is not complete yet
    // The head is complete and the body has not been parsed yet, because the body streams or
    // the client waits for 100 Continue (see isBodyStreaming() and expectsContinue()). Later
    // bytes were not consumed, and the next parse() call goes on with the body.
    kHeadersComplete,
    kComplete,  // one request is complete in the HttpRequest; later bytes were not consumed
    // The input is not a valid request, breaks a limit (see errorStatus()), or the body sink
    // returned false. The parser accepts no more input after it.
    kError,
  };

  using StreamsBody = std::function<bool(const HttpRequest&)>;
  // Receives a piece of a streamed body, and returns false to stop parsing.
  using BodySink = std::function<bool(std::string_view piece)>;

  // Parses into `request`, which must outlive the parser. The request is cleared when the
  // next message begins. `streams_body`, when not null and not empty, must outlive the parser
  // too. It is called once the head of a request with a body (Content-Length above 0, or
  // chunked) is parsed, and when it returns true that body streams.
  RequestParser(HttpRequest* request, uint64_t max_header_bytes, uint64_t max_body_bytes,
                const StreamsBody* streams_body = nullptr);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Sets where streamed bodies go. `sink` runs inside parse() with pieces after chunked
  // decoding. Each view points into parse()'s input and is valid only during the call.
  void setBodySink(BodySink sink) { body_sink_ = std::move(sink); }

  // Feeds `input`; `*consumed` receives how many bytes were used. Stops after the head of a
  // request whose body waits (kHeadersComplete) and after one complete request, so that
  // pipelined requests stay in the caller's buffer until it is ready.
  Result parse(std::string_view input, size_t* consumed);

  // Whether the current request's body streams to the body sink; set once its head is parsed.
  bool isBodyStreaming() const { return is_body_streaming_; }
  // Whether the current HTTP/1.1 request has a body and `Expect: 100-continue`: the client
  // waits for an interim 100 response before it sends the body (RFC 9110 section 10.1.1).
  bool expectsContinue() const { return expects_continue_; }

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
  // Decides whether the body of a request whose head is complete streams, and returns the
  // value for llhttp's on_headers_complete.
  int chooseBodyMode();

  llhttp_t parser_;
  HttpRequest* request_;
  uint64_t max_header_bytes_;
  uint64_t max_body_bytes_;
  const StreamsBody* streams_body_;
  BodySink body_sink_;
  bool is_complete_ = false;
  bool is_body_streaming_ = false;
  bool expects_continue_ = false;
  bool is_header_too_large_ = false;
  bool is_body_too_large_ = false;
  llhttp_errno_t error_ = HPE_OK;
};

}  // namespace outpost::proxy
