#include "proxy/upstream/upstream_connection.h"

#include <netdb.h>

#include <cassert>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/upstream/upstream_client.h"

namespace outpost::proxy::upstream {
namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
// A TLS record carries at most 16 KiB of plaintext (RFC 8446 section 5.1).
constexpr size_t kPlaintextBufferBytes = 16 * 1024;
// Maximum size of the header fields of one response head.
constexpr size_t kMaxResponseHeadBytes = 64 * 1024;
// Probe a quiet connection after this many seconds, so that a peer that vanished without a
// FIN or RST is noticed.
constexpr unsigned kTcpKeepAliveDelaySeconds = 60;

struct AddrinfoDeleter {
  void operator()(addrinfo* info) const { uv_freeaddrinfo(info); }
};

std::string_view trimTrailingWhitespace(std::string_view text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

UpstreamConnection* fromParser(llhttp_t* parser) {
  return static_cast<UpstreamConnection*>(parser->data);
}

}  // namespace

UpstreamConnection::UpstreamConnection(uv_loop_t* loop, HandleCounter* handles,
                                       ConnectionPool* pool, UpstreamCounters* counters,
                                       const ConnectionSettings* settings, Url origin,
                                       SSL_CTX* tls_context, uint64_t id)
    : loop_(loop),
      handles_(handles),
      pool_(pool),
      counters_(counters),
      settings_(settings),
      origin_(std::move(origin)),
      pool_key_(origin_.origin()),
      tls_context_(tls_context),
      id_(id),
      timer_(loop, handles, [this] { onTimer(); }),
      read_buffer_(std::make_unique<char[]>(kReadBufferBytes)) {
  // uv_tcp_init creates no socket yet and cannot fail for a valid loop.
  uv_tcp_init(loop_, &tcp_);
  tcp_.data = this;
  handles_->acquire();
  llhttp_init(&parser_, HTTP_RESPONSE, &parserSettings());
  parser_.data = this;
}

UpstreamConnection::~UpstreamConnection() { assert(state_ == State::kClosing); }

const llhttp_settings_t& UpstreamConnection::parserSettings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t value;
    llhttp_settings_init(&value);
    value.on_message_begin = &UpstreamConnection::onMessageBegin;
    value.on_header_field = &UpstreamConnection::onHeaderField;
    value.on_header_value = &UpstreamConnection::onHeaderValue;
    value.on_header_value_complete = &UpstreamConnection::onHeaderValueComplete;
    value.on_headers_complete = &UpstreamConnection::onHeadersComplete;
    value.on_body = &UpstreamConnection::onBody;
    value.on_message_complete = &UpstreamConnection::onMessageComplete;
    return value;
  }();
  return settings;
}

std::string UpstreamConnection::describe(std::string_view what) const {
  std::string text(what);
  text.push_back(' ');
  text.append(origin_.authority());
  return text;
}

// ----- Opening ------------------------------------------------------------------------

void UpstreamConnection::open(ConnectionListener* listener) {
  listener_ = listener;
  state_ = State::kResolving;
  timer_.start(static_cast<uint64_t>(settings_->connect_timeout_ms));
  startResolve();
}

void UpstreamConnection::startResolve() {
  auto request = std::make_unique<ResolveRequest>();
  request->connection = this;
  request->handles = handles_;
  request->request.data = request.get();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV;
  const std::string port = std::to_string(origin_.port);
  const int result = uv_getaddrinfo(loop_, &request->request, &UpstreamConnection::onResolved,
                                    origin_.host.c_str(), port.c_str(), &hints);
  if (result != 0) {
    failLater(unavailable(describe("cannot resolve") + ": " + uv_strerror(result)));
    return;
  }
  handles_->acquire();
  resolve_request_ = request.release();
}

void UpstreamConnection::onResolved(uv_getaddrinfo_t* uv_request, int status, addrinfo* result) {
  std::unique_ptr<ResolveRequest> request(static_cast<ResolveRequest*>(uv_request->data));
  std::unique_ptr<addrinfo, AddrinfoDeleter> addresses(result);
  HandleCounter* handles = request->handles;
  UpstreamConnection* connection = request->connection;
  request.reset();

  if (connection != nullptr) {
    connection->resolve_request_ = nullptr;
    connection->handleResolved(status, addresses.get());
  }
  addresses.reset();
  // Last: releasing the final handle of a closing client may destroy the client.
  handles->release();
}

void UpstreamConnection::handleResolved(int status, addrinfo* result) {
  if (state_ != State::kResolving) {
    return;
  }
  if (status < 0) {
    fail(unavailable(describe("cannot resolve") + ": " + uv_strerror(status)), true);
    return;
  }

  for (const addrinfo* info = result; info != nullptr; info = info->ai_next) {
    if (info->ai_family != AF_INET && info->ai_family != AF_INET6) {
      continue;
    }
    sockaddr_storage address{};
    std::memcpy(&address, info->ai_addr, info->ai_addrlen);
    addresses_.push_back(address);
  }
  if (addresses_.empty()) {
    fail(unavailable(describe("cannot resolve") + ": no IPv4 or IPv6 address"), true);
    return;
  }
  connectToNextAddress();
}

// TODO: race the addresses as RFC 8305 (Happy Eyeballs) describes. The next address is tried
// only after a connect error, so an address that drops packets uses up connect_timeout_ms, and
// every retry starts again at the first address.
void UpstreamConnection::connectToNextAddress() {
  state_ = State::kConnecting;
  const auto* address = reinterpret_cast<const sockaddr*>(&addresses_[next_address_]);
  ++next_address_;
  const int result =
      uv_tcp_connect(&connect_request_, &tcp_, address, &UpstreamConnection::onConnect);
  if (result != 0) {
    handleConnect(result);
  }
}

void UpstreamConnection::onConnect(uv_connect_t* request, int status) {
  if (status == UV_ECANCELED) {
    return;
  }
  static_cast<UpstreamConnection*>(request->handle->data)->handleConnect(status);
}

void UpstreamConnection::handleConnect(int status) {
  if (state_ != State::kConnecting) {
    return;
  }
  if (status < 0) {
    if (next_address_ < addresses_.size()) {
      // A socket whose connect failed cannot connect again. onTcpClosed initializes the
      // handle anew and tries the next address.
      is_tcp_closing_ = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &UpstreamConnection::onTcpClosed);
      return;
    }
    fail(unavailable(describe("connect to") + " failed: " + uv_strerror(status)), true);
    return;
  }

  uv_tcp_nodelay(&tcp_, 1);
  uv_tcp_keepalive(&tcp_, 1, kTcpKeepAliveDelaySeconds);
  const int result = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_),
                                   &UpstreamConnection::onAlloc, &UpstreamConnection::onRead);
  if (result != 0) {
    fail(unavailable(describe("read from") + " failed: " + uv_strerror(result)), true);
    return;
  }
  counters_->connections_opened.fetch_add(1, std::memory_order_relaxed);
  log::proxy().debug("upstream connection opened id={} host={} tls={}", id_, origin_.authority(),
                     tls_context_ != nullptr);
  if (tls_context_ != nullptr) {
    startHandshake();
  } else {
    becomeReady();
  }
}

void UpstreamConnection::startHandshake() {
  state_ = State::kHandshaking;
  Expected<std::unique_ptr<TlsSession>> session =
      TlsSession::create(tls_context_, origin_.host, origin_.isIpLiteral());
  if (!session) {
    fail(session.status(), false);
    return;
  }
  tls_ = std::move(session).value();
  plaintext_buffer_ = std::make_unique<char[]>(kPlaintextBufferBytes);
  advanceHandshake();
}

void UpstreamConnection::advanceHandshake() {
  Expected<bool> is_done = tls_->handshake();
  flushTlsOutput();
  if (state_ != State::kHandshaking) {
    return;
  }
  if (!is_done) {
    // Certificate and protocol failures repeat on every attempt, so they are not retried.
    fail(Status(is_done.status().code(), describe("TLS handshake with") +
                                             " failed: " + std::string(is_done.status().message())),
         false);
    return;
  }
  if (*is_done) {
    becomeReady();
  }
}

void UpstreamConnection::becomeReady() {
  state_ = State::kIdle;
  is_reusable_ = true;
  timer_.stop();
  ConnectionListener* listener = std::exchange(listener_, nullptr);
  if (listener != nullptr) {
    listener->onConnectionReady();
  }
}

// ----- Request and response -----------------------------------------------------------

void UpstreamConnection::sendRequest(std::string request_head, bool is_head_request,
                                     ConnectionListener* listener) {
  assert(state_ == State::kIdle);
  listener_ = listener;
  state_ = State::kAwaitingHead;
  is_head_request_ = is_head_request;
  is_reused_request_ = responses_completed_ > 0;
  has_response_byte_ = false;
  is_informational_ = false;
  is_message_complete_ = false;
  is_keep_alive_ = false;
  is_reusable_ = false;
  llhttp_init(&parser_, HTTP_RESPONSE, &parserSettings());
  parser_.data = this;
  timer_.start(static_cast<uint64_t>(settings_->response_timeout_ms));
  counters_->requests_sent.fetch_add(1, std::memory_order_relaxed);

  if (!tls_) {
    write(std::move(request_head));
    return;
  }
  Status encrypted = tls_->encrypt(request_head);
  if (!encrypted.isOk()) {
    failLater(std::move(encrypted));
    return;
  }
  flushTlsOutput();
}

void UpstreamConnection::startIdleTimer() {
  timer_.start(static_cast<uint64_t>(settings_->idle_timeout_ms));
}

void UpstreamConnection::write(std::string bytes) {
  auto request = std::make_unique<WriteRequest>();
  request->bytes = std::move(bytes);
  request->request.data = request.get();
  uv_buf_t buffer =
      uv_buf_init(request->bytes.data(), static_cast<unsigned>(request->bytes.size()));
  const int result = uv_write(&request->request, reinterpret_cast<uv_stream_t*>(&tcp_), &buffer, 1,
                              &UpstreamConnection::onWrite);
  if (result != 0) {
    failLater(unavailable(describe("write to") + " failed: " + uv_strerror(result)));
    return;
  }
  // libuv owns the request until onWrite, which frees it.
  static_cast<void>(request.release());
}

void UpstreamConnection::onWrite(uv_write_t* uv_request, int status) {
  std::unique_ptr<WriteRequest> request(static_cast<WriteRequest*>(uv_request->data));
  // UV_ECANCELED means the handle is closing, and the connection may be on its way out.
  if (status == 0 || status == UV_ECANCELED) {
    return;
  }
  auto* connection = static_cast<UpstreamConnection*>(uv_request->handle->data);
  if (connection->state_ == State::kClosing) {
    return;
  }
  connection->fail(
      unavailable(connection->describe("write to") + " failed: " + uv_strerror(status)), true);
}

void UpstreamConnection::flushTlsOutput() {
  if (!tls_ || !tls_->hasCiphertextToSend()) {
    return;
  }
  std::string bytes;
  tls_->takeCiphertext(&bytes);
  write(std::move(bytes));
}

void UpstreamConnection::onAlloc(uv_handle_t* handle, size_t /*suggested_size*/, uv_buf_t* buffer) {
  auto* connection = static_cast<UpstreamConnection*>(handle->data);
  *buffer = uv_buf_init(connection->read_buffer_.get(), kReadBufferBytes);
}

void UpstreamConnection::onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buffer) {
  auto* connection = static_cast<UpstreamConnection*>(stream->data);
  if (nread == 0 || connection->state_ == State::kClosing) {
    return;
  }
  if (nread < 0) {
    connection->handleReadEnd(nread);
    return;
  }
  connection->handleRead(std::string_view(buffer->base, static_cast<size_t>(nread)));
}

void UpstreamConnection::handleRead(std::string_view bytes) {
  counters_->bytes_received.fetch_add(bytes.size(), std::memory_order_relaxed);
  last_read_ms_ = uv_now(loop_);
  if (tls_) {
    handleCiphertext(bytes);
  } else {
    handlePlaintext(bytes);
  }
}

void UpstreamConnection::handleCiphertext(std::string_view bytes) {
  Status fed = tls_->feedCiphertext(bytes);
  if (!fed.isOk()) {
    fail(std::move(fed), true);
    return;
  }
  if (state_ == State::kHandshaking) {
    advanceHandshake();
    if (state_ == State::kHandshaking || state_ == State::kClosing) {
      return;
    }
  }

  while (state_ != State::kClosing) {
    Expected<size_t> size = tls_->decrypt(plaintext_buffer_.get(), kPlaintextBufferBytes);
    if (!size) {
      fail(Status(size.status().code(),
                  describe("TLS read from") + " failed: " + std::string(size.status().message())),
           true);
      return;
    }
    if (*size == 0) {
      break;
    }
    if (!handlePlaintext(std::string_view(plaintext_buffer_.get(), *size))) {
      return;
    }
  }
  if (state_ == State::kClosing) {
    return;
  }
  // Reading can produce records to send, such as the response to a key update.
  flushTlsOutput();
  if (tls_->isPeerClosed()) {
    handleReadEnd(UV_EOF);
  }
}

bool UpstreamConnection::handlePlaintext(std::string_view bytes) {
  switch (state_) {
    case State::kAwaitingHead:
    case State::kReadingBody:
      break;
    case State::kIdle:
      // Bytes that no request asked for: the framing of the previous response was wrong.
      log::proxy().debug("upstream connection sent unrequested bytes id={} host={}", id_,
                         origin_.authority());
      pool_->closeConnection(this);
      return false;
    default:
      return false;
  }

  has_response_byte_ = true;
  const llhttp_errno_t error = llhttp_execute(&parser_, bytes.data(), bytes.size());
  if (state_ == State::kClosing) {
    return false;
  }
  if (error == HPE_OK) {
    return true;
  }
  if (error == HPE_PAUSED && is_message_complete_) {
    const bool has_extra_bytes = llhttp_get_error_pos(&parser_) != bytes.data() + bytes.size() ||
                                 (tls_ && tls_->hasBufferedInput());
    completeResponse(has_extra_bytes);
    return false;
  }
  fail(unavailable(describe("invalid response from") + ": " + llhttp_errno_name(error) + ": " +
                   llhttp_get_error_reason(&parser_)),
       true);
  return false;
}

void UpstreamConnection::completeResponse(bool has_extra_bytes) {
  // Bytes after the end of the response mean the two sides disagree on the framing, so the
  // connection is not reused.
  is_reusable_ = is_keep_alive_ && !has_extra_bytes;
  ++responses_completed_;
  state_ = State::kIdle;
  timer_.stop();
  ConnectionListener* listener = std::exchange(listener_, nullptr);
  listener->onResponseComplete();
}

void UpstreamConnection::handleReadEnd(ssize_t status) {
  const bool is_eof = status == UV_EOF;
  switch (state_) {
    case State::kIdle:
      // The server closed a pooled connection, as servers do after their idle timeout.
      pool_->closeConnection(this);
      return;
    case State::kAwaitingHead:
    case State::kReadingBody:
      // A body without Content-Length or chunked coding ends when the server closes.
      if (is_eof && has_response_byte_ && llhttp_message_needs_eof(&parser_) != 0) {
        const llhttp_errno_t error = llhttp_finish(&parser_);
        if (state_ == State::kClosing) {
          return;
        }
        if ((error == HPE_OK || error == HPE_PAUSED) && is_message_complete_) {
          is_keep_alive_ = false;
          completeResponse(true);
          return;
        }
      }
      fail(unavailable(is_eof ? describe("connection closed by") + " before the response ended"
                              : describe("read from") +
                                    " failed: " + uv_strerror(static_cast<int>(status))),
           true);
      return;
    case State::kResolving:
    case State::kConnecting:
    case State::kHandshaking:
      fail(unavailable(describe("TLS handshake with") + " failed: " +
                       (is_eof ? "connection closed" : uv_strerror(static_cast<int>(status)))),
           true);
      return;
    case State::kClosing:
      return;
  }
}

// ----- llhttp callbacks ---------------------------------------------------------------

int UpstreamConnection::onMessageBegin(llhttp_t* parser) {
  UpstreamConnection* self = fromParser(parser);
  self->response_ = UpstreamResponse{};
  self->header_field_.clear();
  self->header_value_.clear();
  self->header_bytes_ = 0;
  self->is_informational_ = false;
  return HPE_OK;
}

int UpstreamConnection::onHeaderField(llhttp_t* parser, const char* at, size_t length) {
  UpstreamConnection* self = fromParser(parser);
  self->header_bytes_ += length;
  if (self->header_bytes_ > kMaxResponseHeadBytes) {
    llhttp_set_error_reason(parser, "response head exceeds 65536 bytes");
    return HPE_USER;
  }
  self->header_field_.append(at, length);
  return HPE_OK;
}

int UpstreamConnection::onHeaderValue(llhttp_t* parser, const char* at, size_t length) {
  UpstreamConnection* self = fromParser(parser);
  self->header_bytes_ += length;
  if (self->header_bytes_ > kMaxResponseHeadBytes) {
    llhttp_set_error_reason(parser, "response head exceeds 65536 bytes");
    return HPE_USER;
  }
  self->header_value_.append(at, length);
  return HPE_OK;
}

int UpstreamConnection::onHeaderValueComplete(llhttp_t* parser) {
  UpstreamConnection* self = fromParser(parser);
  self->response_.headers.emplace_back(std::move(self->header_field_),
                                       std::string(trimTrailingWhitespace(self->header_value_)));
  self->header_field_.clear();
  self->header_value_.clear();
  return HPE_OK;
}

int UpstreamConnection::onHeadersComplete(llhttp_t* parser) {
  UpstreamConnection* self = fromParser(parser);
  const int status = llhttp_get_status_code(parser);
  if (status >= 100 && status < 200) {
    if (status == 101) {
      llhttp_set_error_reason(parser, "unexpected 101 Switching Protocols");
      return HPE_USER;
    }
    // An interim response such as 103 Early Hints; the final response follows.
    self->is_informational_ = true;
    return HPE_OK;
  }

  self->response_.status = status;
  if ((parser->flags & F_CONTENT_LENGTH) != 0) {
    self->response_.content_length = parser->content_length;
  }
  self->state_ = State::kReadingBody;
  self->last_read_ms_ = uv_now(self->loop_);
  self->timer_.start(static_cast<uint64_t>(self->settings_->body_stall_timeout_ms));
  self->listener_->onResponseHead(self->response_);
  if (self->state_ == State::kClosing) {
    return HPE_USER;
  }
  // Returning 1 makes llhttp treat the message as one without a body.
  return self->is_head_request_ ? 1 : 0;
}

int UpstreamConnection::onBody(llhttp_t* parser, const char* at, size_t length) {
  UpstreamConnection* self = fromParser(parser);
  self->listener_->onResponseBody(std::string_view(at, length));
  return self->state_ == State::kClosing ? HPE_USER : HPE_OK;
}

int UpstreamConnection::onMessageComplete(llhttp_t* parser) {
  UpstreamConnection* self = fromParser(parser);
  if (self->is_informational_) {
    self->is_informational_ = false;
    return HPE_OK;
  }
  self->is_message_complete_ = true;
  self->is_keep_alive_ = llhttp_should_keep_alive(parser) != 0;
  // Pausing hands control back to handlePlaintext, which completes the exchange outside the
  // parser.
  return HPE_PAUSED;
}

// ----- Timers, failures and closing ---------------------------------------------------

void UpstreamConnection::failLater(Status status) {
  pending_failure_ = std::move(status);
  timer_.start(0);
}

void UpstreamConnection::onTimer() {
  if (pending_failure_) {
    Status status = std::move(*pending_failure_);
    pending_failure_.reset();
    fail(std::move(status), true);
    return;
  }

  switch (state_) {
    case State::kResolving:
    case State::kConnecting:
    case State::kHandshaking:
      fail(Status(StatusCode::kTimedOut, describe("connect to") + " timed out after " +
                                             std::to_string(settings_->connect_timeout_ms) + " ms"),
           true);
      return;
    case State::kAwaitingHead:
      fail(
          Status(StatusCode::kTimedOut, describe("no response head from") + " within " +
                                            std::to_string(settings_->response_timeout_ms) + " ms"),
          true);
      return;
    case State::kReadingBody: {
      // The timer is not restarted per read; it checks the time of the last read instead.
      const uint64_t stall_ms = static_cast<uint64_t>(settings_->body_stall_timeout_ms);
      const uint64_t quiet_ms = uv_now(loop_) - last_read_ms_;
      if (quiet_ms < stall_ms) {
        timer_.start(stall_ms - quiet_ms);
        return;
      }
      fail(Status(StatusCode::kTimedOut,
                  describe("no body bytes from") + " for " + std::to_string(stall_ms) + " ms"),
           false);
      return;
    }
    case State::kIdle:
      pool_->closeConnection(this);
      return;
    case State::kClosing:
      return;
  }
}

void UpstreamConnection::fail(Status status, bool is_retryable) {
  if (state_ == State::kClosing) {
    return;
  }
  ConnectionFailure failure;
  failure.status = std::move(status);
  failure.is_before_response = !has_response_byte_;
  failure.is_reused_connection = is_reused_request_;
  failure.is_retryable = is_retryable;
  log::proxy().debug("upstream connection failed id={} host={} error=\"{}\"", id_,
                     origin_.authority(), failure.status.message());

  ConnectionListener* listener = std::exchange(listener_, nullptr);
  pool_->closeConnection(this);
  if (listener != nullptr) {
    listener->onConnectionFailed(failure);
  }
}

void UpstreamConnection::close(std::unique_ptr<UpstreamConnection> self) {
  assert(self.get() == this);
  assert(state_ != State::kClosing);
  state_ = State::kClosing;
  listener_ = nullptr;
  pending_failure_.reset();
  timer_.stop();
  self_ = std::move(self);

  if (resolve_request_ != nullptr) {
    resolve_request_->connection = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_request_->request));
    resolve_request_ = nullptr;
  }
  if (!is_tcp_closing_) {
    is_tcp_closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &UpstreamConnection::onTcpClosed);
  }
}

void UpstreamConnection::onTcpClosed(uv_handle_t* handle) {
  auto* connection = static_cast<UpstreamConnection*>(handle->data);
  connection->is_tcp_closing_ = false;
  if (connection->state_ != State::kClosing) {
    // Closed between two connect attempts: start over on a fresh handle.
    uv_tcp_init(connection->loop_, &connection->tcp_);
    connection->tcp_.data = connection;
    connection->connectToNextAddress();
    return;
  }

  HandleCounter* handles = connection->handles_;
  std::unique_ptr<UpstreamConnection> self = std::move(connection->self_);
  self.reset();
  // Last: releasing the final handle of a closing client may destroy the client.
  handles->release();
}

}  // namespace outpost::proxy::upstream
