#include "proxy/request_parser.h"

#include "base/ascii.h"

namespace outpost::proxy {
namespace {

HttpMethod methodOf(llhttp_method_t method) {
  switch (method) {
    case HTTP_GET: return HttpMethod::kGet;
    case HTTP_HEAD: return HttpMethod::kHead;
    case HTTP_POST: return HttpMethod::kPost;
    case HTTP_PUT: return HttpMethod::kPut;
    case HTTP_PATCH: return HttpMethod::kPatch;
    case HTTP_DELETE: return HttpMethod::kDelete;
    case HTTP_OPTIONS: return HttpMethod::kOptions;
    default: return HttpMethod::kOther;
  }
}

RequestParser* parserOf(llhttp_t* parser) { return static_cast<RequestParser*>(parser->data); }

}  // namespace

RequestParser::RequestParser(HttpRequest* request, uint64_t max_header_bytes,
                             uint64_t max_body_bytes, const StreamsBody* streams_body)
    : request_(request),
      max_header_bytes_(max_header_bytes),
      max_body_bytes_(max_body_bytes),
      streams_body_(streams_body) {
  static const llhttp_settings_t kSettings = [] {
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_message_begin = &RequestParser::onMessageBegin;
    settings.on_url = &RequestParser::onUrl;
    settings.on_header_field = &RequestParser::onHeaderField;
    settings.on_header_value = &RequestParser::onHeaderValue;
    settings.on_headers_complete = &RequestParser::onHeadersComplete;
    settings.on_body = &RequestParser::onBody;
    settings.on_message_complete = &RequestParser::onMessageComplete;
    return settings;
  }();
  llhttp_init(&parser_, HTTP_REQUEST, &kSettings);
  parser_.data = this;
}

RequestParser::Result RequestParser::parse(std::string_view input, size_t* consumed) {
  is_complete_ = false;
  llhttp_errno_t error = llhttp_execute(&parser_, input.data(), input.size());
  *consumed = input.size();
  if (error == HPE_PAUSED) {
    // onMessageComplete paused the parser right after the request's last byte, or
    // onHeadersComplete right after the head of a request whose body waits.
    *consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - input.data());
    llhttp_resume(&parser_);
    return is_complete_ ? Result::kComplete : Result::kHeadersComplete;
  }
  if (error != HPE_OK) {
    error_ = error;
    return Result::kError;
  }
  return Result::kNeedMore;
}

int RequestParser::errorStatus() const {
  if (is_header_too_large_) {
    return 431;
  }
  if (is_body_too_large_) {
    return 413;
  }
  return 400;
}

std::string_view RequestParser::errorReason() const {
  if (is_header_too_large_) {
    return "request line and headers are too large";
  }
  if (is_body_too_large_) {
    return "request body is too large";
  }
  return llhttp_errno_name(error_);
}

int RequestParser::checkHeaderSize() {
  if (request_->headerBytes() > max_header_bytes_) {
    is_header_too_large_ = true;
    return HPE_USER;
  }
  return HPE_OK;
}

int RequestParser::chooseBodyMode() {
  // A request without Content-Length or chunked coding has no body (RFC 9112 section 6.3).
  bool has_body = (parser_.flags & F_CHUNKED) || parser_.content_length > 0;
  if (!has_body) {
    return HPE_OK;
  }

  // A server ignores a 100-continue expectation in an HTTP/1.0 request (RFC 9110 section
  // 10.1.1).
  expects_continue_ = !request_->isHttp10() &&
                      equalsIgnoreCase(trimOws(request_->header("Expect")), "100-continue");
  is_body_streaming_ = streams_body_ != nullptr && *streams_body_ && (*streams_body_)(*request_);

  // A streamed body has no size limit here: its reader sets its own.
  if (!is_body_streaming_ && (parser_.flags & F_CONTENT_LENGTH) &&
      parser_.content_length > max_body_bytes_) {
    is_body_too_large_ = true;
    return HPE_USER;
  }
  return is_body_streaming_ || expects_continue_ ? HPE_PAUSED : HPE_OK;
}

int RequestParser::onMessageBegin(llhttp_t* parser) {
  RequestParser* self = parserOf(parser);
  self->request_->clear();
  self->is_body_streaming_ = false;
  self->expects_continue_ = false;
  return HPE_OK;
}

int RequestParser::onUrl(llhttp_t* parser, const char* at, size_t length) {
  RequestParser* self = parserOf(parser);
  self->request_->appendTarget(std::string_view(at, length));
  return self->checkHeaderSize();
}

int RequestParser::onHeaderField(llhttp_t* parser, const char* at, size_t length) {
  RequestParser* self = parserOf(parser);
  self->request_->appendHeaderName(std::string_view(at, length));
  return self->checkHeaderSize();
}

int RequestParser::onHeaderValue(llhttp_t* parser, const char* at, size_t length) {
  RequestParser* self = parserOf(parser);
  self->request_->appendHeaderValue(std::string_view(at, length));
  return self->checkHeaderSize();
}

int RequestParser::onHeadersComplete(llhttp_t* parser) {
  RequestParser* self = parserOf(parser);
  auto method = static_cast<llhttp_method_t>(llhttp_get_method(parser));
  self->request_->setMethod(methodOf(method), llhttp_method_name(method));
  self->request_->setKeepAlive(llhttp_should_keep_alive(parser) != 0);
  self->request_->setHttp10(parser->http_major == 1 && parser->http_minor == 0);
  return self->chooseBodyMode();
}

int RequestParser::onBody(llhttp_t* parser, const char* at, size_t length) {
  RequestParser* self = parserOf(parser);
  if (self->is_body_streaming_) {
    bool wants_more = self->body_sink_ && self->body_sink_(std::string_view(at, length));
    return wants_more ? HPE_OK : HPE_USER;
  }
  if (self->request_->body().size() + length > self->max_body_bytes_) {
    self->is_body_too_large_ = true;
    return HPE_USER;
  }
  self->request_->appendBody(std::string_view(at, length));
  return HPE_OK;
}

int RequestParser::onMessageComplete(llhttp_t* parser) {
  parserOf(parser)->is_complete_ = true;
  // Stop after one request so that pipelined ones wait until this one has its response.
  return HPE_PAUSED;
}

}  // namespace outpost::proxy
