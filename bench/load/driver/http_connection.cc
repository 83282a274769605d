#include "bench/load/driver/http_connection.h"

#include <cassert>
#include <cstring>

namespace outpost::load {
namespace {

// A write that uv_try_write could not finish at once, with the bytes it still has to send.
// Freed in onWrite, which libuv calls for every write, with UV_ECANCELED after a close.
struct PendingWrite {
  uv_write_t request;
  std::string bytes;
};

HttpConnection* connectionOf(llhttp_t* parser) {
  return static_cast<HttpConnection*>(parser->data);
}

}  // namespace

std::string uvErrorText(int error_code) {
  return std::string(uv_err_name(error_code)) + " (" + uv_strerror(error_code) + ")";
}

HttpConnection::HttpConnection(uv_loop_t* loop, uint16_t port, size_t read_buffer_bytes)
    : loop_(loop),
      port_(port),
      read_buffer_(std::make_unique<char[]>(read_buffer_bytes)),
      read_buffer_bytes_(read_buffer_bytes) {
  llhttp_init(&parser_, HTTP_RESPONSE, &parserSettings());
  parser_.data = this;
}

HttpConnection::~HttpConnection() { closeSocket(); }

const llhttp_settings_t& HttpConnection::parserSettings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &HttpConnection::onMessageBegin;
    s.on_header_field = &HttpConnection::onHeaderField;
    s.on_header_field_complete = &HttpConnection::onHeaderFieldComplete;
    s.on_header_value = &HttpConnection::onHeaderValue;
    s.on_headers_complete = &HttpConnection::onHeadersComplete;
    s.on_body = &HttpConnection::onBody;
    s.on_message_complete = &HttpConnection::onMessageComplete;
    return s;
  }();
  return settings;
}

void HttpConnection::connect(std::function<void(Status)> on_connected) {
  assert(state_ == State::kDisconnected);
  on_connected_ = std::move(on_connected);
  Status status = openSocket();
  if (!status.isOk()) {
    std::function<void(Status)> callback = std::move(on_connected_);
    callback(std::move(status));
  }
}

void HttpConnection::send(const HttpRequest& request, ResponseObserver* observer) {
  assert(state_ == State::kDisconnected || state_ == State::kIdle);
  observer_ = observer;
  is_head_request_ = request.method == "HEAD";
  was_resent_ = false;

  request_text_.clear();
  request_text_.append(request.method).append(" ").append(request.target);
  request_text_.append(" HTTP/1.1\r\nHost: 127.0.0.1:").append(std::to_string(port_));
  request_text_.append("\r\nUser-Agent: outpost-load\r\n");
  for (const std::string& line : request.header_lines) {
    request_text_.append(line).append("\r\n");
  }
  request_text_.append("\r\n");

  if (state_ == State::kIdle) {
    writeRequest();
    return;
  }
  Status status = openSocket();
  if (!status.isOk()) {
    endExchange(std::move(status));
  }
}

void HttpConnection::close() {
  closeSocket();
  observer_ = nullptr;
  on_connected_ = nullptr;
}

Status HttpConnection::openSocket() {
  auto socket = std::make_unique<Socket>();
  int result = uv_tcp_init(loop_, &socket->tcp);
  if (result < 0) {
    return unavailable("creating a TCP handle failed: " + uvErrorText(result));
  }
  socket->tcp.data = socket.get();
  socket->owner = this;
  // From here libuv owns the handle's memory until onSocketClosed.
  socket_ = socket.release();
  state_ = State::kConnecting;
  exchanges_on_socket_ = 0;

  sockaddr_in address{};
  uv_ip4_addr("127.0.0.1", port_, &address);
  result = uv_tcp_connect(&socket_->connect_request, &socket_->tcp,
                          reinterpret_cast<const sockaddr*>(&address), &HttpConnection::onConnect);
  if (result < 0) {
    closeSocket();
    return unavailable("connecting to 127.0.0.1:" + std::to_string(port_) +
                       " failed: " + uvErrorText(result));
  }
  return Status::ok();
}

void HttpConnection::closeSocket() {
  state_ = State::kDisconnected;
  if (socket_ == nullptr) {
    return;
  }
  socket_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&socket_->tcp), &HttpConnection::onSocketClosed);
  socket_ = nullptr;
}

void HttpConnection::onSocketClosed(uv_handle_t* handle) {
  std::unique_ptr<Socket> socket(static_cast<Socket*>(handle->data));
}

void HttpConnection::onConnect(uv_connect_t* request, int status) {
  auto* socket = static_cast<Socket*>(request->handle->data);
  if (socket->owner != nullptr) {
    socket->owner->handleConnected(status);
  }
}

void HttpConnection::handleConnected(int status) {
  Status outcome;
  if (status < 0) {
    closeSocket();
    outcome = unavailable("connecting to 127.0.0.1:" + std::to_string(port_) +
                          " failed: " + uvErrorText(status));
  } else {
    // Both calls act on a connected socket and fail only for invalid arguments.
    uv_tcp_nodelay(&socket_->tcp, 1);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&socket_->tcp), &HttpConnection::onAlloc,
                  &HttpConnection::onRead);
    state_ = State::kIdle;
  }

  // A request waits for this connect when send() found the connection disconnected.
  if (observer_ != nullptr) {
    if (outcome.isOk()) {
      writeRequest();
    } else {
      endExchange(std::move(outcome));
    }
    return;
  }
  if (on_connected_) {
    std::function<void(Status)> callback = std::move(on_connected_);
    on_connected_ = nullptr;
    callback(std::move(outcome));
  }
}

void HttpConnection::writeRequest() {
  state_ = State::kExchanging;
  llhttp_reset(&parser_);
  head_.clear();
  response_bytes_ = 0;
  body_bytes_ = 0;
  is_response_complete_ = false;
  is_keep_alive_ = false;
  parser_failure_ = Status::ok();

  // A request fits the socket buffer nearly always, so the write seldom needs a request object.
  auto* stream = reinterpret_cast<uv_stream_t*>(&socket_->tcp);
  uv_buf_t buffer = uv_buf_init(request_text_.data(), static_cast<unsigned>(request_text_.size()));
  int written = uv_try_write(stream, &buffer, 1);
  if (written == static_cast<int>(request_text_.size())) {
    return;
  }
  if (written < 0 && written != UV_EAGAIN) {
    handleWriteFailure(written);
    return;
  }

  auto pending = std::make_unique<PendingWrite>();
  pending->bytes = request_text_.substr(written < 0 ? 0 : static_cast<size_t>(written));
  pending->request.data = pending.get();
  uv_buf_t rest = uv_buf_init(pending->bytes.data(), static_cast<unsigned>(pending->bytes.size()));
  int result = uv_write(&pending->request, stream, &rest, 1, &HttpConnection::onWrite);
  if (result < 0) {
    handleWriteFailure(result);
    return;
  }
  // Owned by libuv until onWrite.
  pending.release();
}

void HttpConnection::onWrite(uv_write_t* request, int status) {
  std::unique_ptr<PendingWrite> pending(static_cast<PendingWrite*>(request->data));
  auto* socket = static_cast<Socket*>(request->handle->data);
  HttpConnection* connection = socket->owner;
  if (status == 0 || status == UV_ECANCELED || connection == nullptr ||
      connection->state_ != State::kExchanging) {
    return;
  }
  connection->handleWriteFailure(status);
}

void HttpConnection::handleWriteFailure(int error_code) {
  if (tryResendOnNewConnection()) {
    return;
  }
  endExchange(unavailable("sending the request failed: " + uvErrorText(error_code)));
}

void HttpConnection::onAlloc(uv_handle_t* handle, size_t /*suggested_size*/, uv_buf_t* buffer) {
  HttpConnection* connection = static_cast<Socket*>(handle->data)->owner;
  if (connection == nullptr) {
    // An empty buffer makes libuv report UV_ENOBUFS, which is harmless on a closing socket.
    *buffer = uv_buf_init(nullptr, 0);
    return;
  }
  *buffer = uv_buf_init(connection->read_buffer_.get(),
                        static_cast<unsigned>(connection->read_buffer_bytes_));
}

void HttpConnection::onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buffer) {
  HttpConnection* connection = static_cast<Socket*>(stream->data)->owner;
  if (connection == nullptr || nread == 0) {
    return;
  }
  if (nread < 0) {
    connection->handleReadEnd(nread);
    return;
  }
  connection->handleRead(nread, buffer->base);
}

void HttpConnection::handleRead(ssize_t nread, const char* data) {
  if (state_ == State::kExchanging) {
    parseResponseBytes(data, static_cast<size_t>(nread));
    return;
  }

  // Bytes with no request outstanding break HTTP/1.1 framing; the connection is unusable.
  closeSocket();
  if (on_idle_close_) {
    on_idle_close_(unavailable("the server sent " + std::to_string(nread) +
                               " bytes while no request was outstanding"));
  }
}

void HttpConnection::handleReadEnd(ssize_t nread) {
  int error_code = static_cast<int>(nread);
  if (state_ == State::kIdle) {
    closeSocket();
    if (on_idle_close_) {
      on_idle_close_(unavailable(error_code == UV_EOF
                                     ? "the server closed the connection"
                                     : "the connection failed: " + uvErrorText(error_code)));
    }
    return;
  }
  if (state_ != State::kExchanging) {
    return;
  }

  if (error_code == UV_EOF) {
    // A body without Content-Length or chunked framing ends at EOF; llhttp_finish completes it.
    llhttp_errno_t finish = llhttp_finish(&parser_);
    if (is_response_complete_ && (finish == HPE_OK || finish == HPE_PAUSED)) {
      is_keep_alive_ = false;
      endExchange(Status::ok());
      return;
    }
  }
  if (tryResendOnNewConnection()) {
    return;
  }
  std::string cause = error_code == UV_EOF ? "the server closed the connection"
                                           : "reading failed with " + uvErrorText(error_code);
  endExchange(unavailable(describeEarlyEnd(cause)));
}

bool HttpConnection::tryResendOnNewConnection() {
  // The server may close a keep-alive connection just as a request goes out. So a request
  // that got no response byte on a reused connection is sent once more.
  if (response_bytes_ > 0 || exchanges_on_socket_ == 0 || was_resent_) {
    return false;
  }
  closeSocket();
  Status status = openSocket();
  if (!status.isOk()) {
    endExchange(std::move(status));
    return true;
  }
  was_resent_ = true;
  ++retry_count_;
  return true;
}

std::string HttpConnection::describeEarlyEnd(std::string_view cause) const {
  std::string text(cause);
  if (response_bytes_ == 0) {
    return text + " before any byte of the response";
  }
  if (head_.status() == 0) {
    return text + " inside the response head";
  }
  text += " after " + std::to_string(body_bytes_) + " body bytes";
  if (std::optional<uint64_t> length = head_.contentLength()) {
    text += " of " + std::to_string(*length);
  }
  return text;
}

void HttpConnection::parseResponseBytes(const char* data, size_t size) {
  response_bytes_ += size;
  llhttp_errno_t error = llhttp_execute(&parser_, data, size);
  if (error == HPE_PAUSED) {
    // onMessageComplete pauses the parser at the end of the response.
    const char* end = llhttp_get_error_pos(&parser_);
    llhttp_resume(&parser_);
    if (end != data + size) {
      endExchange(corruption("the server sent " + std::to_string(data + size - end) +
                             " bytes after the end of the response"));
      return;
    }
    endExchange(Status::ok());
    return;
  }
  if (error == HPE_OK) {
    return;
  }
  if (!parser_failure_.isOk()) {
    endExchange(std::move(parser_failure_));
    return;
  }
  endExchange(corruption(std::string("invalid HTTP response: ") + llhttp_errno_name(error) + " (" +
                         llhttp_get_error_reason(&parser_) + ")"));
}

void HttpConnection::endExchange(Status status) {
  ResponseObserver* observer = std::exchange(observer_, nullptr);
  if (status.isOk() && is_keep_alive_) {
    state_ = State::kIdle;
    ++exchanges_on_socket_;
  } else {
    closeSocket();
  }
  if (observer != nullptr) {
    observer->onResponseEnd(std::move(status));
  }
}

int HttpConnection::onMessageBegin(llhttp_t* parser) {
  HttpConnection* connection = connectionOf(parser);
  connection->head_.clear();
  connection->body_bytes_ = 0;
  return 0;
}

int HttpConnection::onHeaderField(llhttp_t* parser, const char* at, size_t length) {
  HttpConnection* connection = connectionOf(parser);
  if (!connection->head_.appendNamePiece(std::string_view(at, length))) {
    connection->parser_failure_ =
        corruption("the response head is larger than " +
                   std::to_string(ResponseHead::kMaxHeaderBytes) + " bytes");
    return -1;
  }
  return 0;
}

int HttpConnection::onHeaderFieldComplete(llhttp_t* parser) {
  connectionOf(parser)->head_.endName();
  return 0;
}

int HttpConnection::onHeaderValue(llhttp_t* parser, const char* at, size_t length) {
  HttpConnection* connection = connectionOf(parser);
  if (!connection->head_.appendValuePiece(std::string_view(at, length))) {
    connection->parser_failure_ =
        corruption("the response head is larger than " +
                   std::to_string(ResponseHead::kMaxHeaderBytes) + " bytes");
    return -1;
  }
  return 0;
}

int HttpConnection::onHeadersComplete(llhttp_t* parser) {
  HttpConnection* connection = connectionOf(parser);
  int status = llhttp_get_status_code(parser);
  connection->head_.setStatus(status);
  // Interim responses (100 Continue, 103 Early Hints) precede the final one, RFC 9110 15.2.
  if (status < 200) {
    return 0;
  }

  Status outcome = connection->observer_->onResponseHead(connection->head_);
  if (!outcome.isOk()) {
    connection->parser_failure_ = std::move(outcome);
    return -1;
  }
  // Returning 1 makes llhttp read no body, which is right for HEAD whatever Content-Length is.
  return connection->is_head_request_ ? 1 : 0;
}

int HttpConnection::onBody(llhttp_t* parser, const char* at, size_t length) {
  HttpConnection* connection = connectionOf(parser);
  connection->body_bytes_ += length;
  Status outcome =
      connection->observer_->onResponseBody(std::as_bytes(std::span<const char>(at, length)));
  if (!outcome.isOk()) {
    connection->parser_failure_ = std::move(outcome);
    return HPE_USER;
  }
  return 0;
}

int HttpConnection::onMessageComplete(llhttp_t* parser) {
  HttpConnection* connection = connectionOf(parser);
  if (connection->head_.status() < 200) {
    return 0;
  }
  connection->is_response_complete_ = true;
  connection->is_keep_alive_ = llhttp_should_keep_alive(parser) != 0;
  return HPE_PAUSED;
}

}  // namespace outpost::load
