#include "proxy/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <utility>

#include "base/log.h"
#include "base/unique_fd.h"
#include "proxy/request_parser.h"

namespace outpost::proxy {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
// Bytes one writable event may send before yielding to other connections of the loop.
constexpr uint64_t kMaxBytesPerWritableEvent = 8 * 1024 * 1024;
// Bytes one readable event may receive before yielding to other connections of the loop. It
// matters for streamed bodies and draining, because they read without an input buffer limit.
constexpr uint64_t kMaxBytesPerReadableEvent = 1024 * 1024;
// The maximum time a connection reads and discards an unread request body after its response.
constexpr int64_t kDrainTimeoutMs = 5'000;
// The interim response to `Expect: 100-continue` (RFC 9110 section 15.2.1).
constexpr std::string_view kContinueResponse = "HTTP/1.1 100 Continue\r\n\r\n";
// A request id from X-Request-Id is kept when it is 1 to 64 of [A-Za-z0-9._-].
constexpr size_t kMaxRequestIdLength = 64;

int64_t monotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool isWellFormedRequestId(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdLength) {
    return false;
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

// Makes request ids unique per process: a random prefix per loop and a counter.
class RequestIdGenerator {
 public:
  RequestIdGenerator() {
    std::random_device random;
    prefix_ = (static_cast<uint64_t>(random()) << 32) ^ random();
  }
  std::string next() {
    char text[17];
    uint64_t value = prefix_ + (++counter_);
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
      text[i] = kHex[value & 0xf];
      value >>= 4;
    }
    return std::string(text, 16);
  }

 private:
  uint64_t prefix_;
  uint64_t counter_ = 0;
};

}  // namespace

std::string_view cacheOutcomeName(CacheOutcome outcome) {
  switch (outcome) {
    case CacheOutcome::kNone: return "-";
    case CacheOutcome::kHit: return "hit";
    case CacheOutcome::kMiss: return "miss";
    case CacheOutcome::kFillJoined: return "fill-joined";
    case CacheOutcome::kStale: return "stale";
    case CacheOutcome::kUpstreamError: return "upstream-error";
  }
  return "-";
}

// The accepting side of one loop, and the owner of that loop's connections.
class LoopServer {
 public:
  LoopServer(HttpServer* server, EventLoop* loop, int listen_fd, uint32_t max_connections);

  void start();
  void shutdown(int64_t grace_ms);
  void onConnectionClosed(Connection* connection);

  HttpServer& server() { return *server_; }
  EventLoop& loop() { return *loop_; }
  RequestIdGenerator& ids() { return ids_; }
  // Scratch space for recv(2), shared by the loop's connections. A connection keeps only the
  // bytes it has not parsed yet, so an idle connection owns no read buffer.
  std::span<char> readBuffer() { return {read_buffer_.get(), kReadChunkBytes}; }
  const ServerOptions& options() const { return server_->options_; }
  bool isShuttingDown() const { return shutting_down_; }

 private:
  static void onListenReadable(uv_poll_t* handle, int status, int events);
  static void onGraceTimer(uv_timer_t* handle);
  void acceptAll();
  void maybeFinishShutdown();
  void onShutdownHandleClosed();
  void pauseAccepting();
  void resumeAccepting();

  HttpServer* server_;
  EventLoop* loop_;
  UniqueFd listen_fd_;
  uv_poll_t listen_poll_;
  uv_timer_t grace_timer_;
  uint32_t max_connections_;
  std::vector<Connection*> connections_;
  RequestIdGenerator ids_;
  std::unique_ptr<char[]> read_buffer_ = std::make_unique_for_overwrite<char[]>(kReadChunkBytes);
  bool accepting_ = false;
  bool shutting_down_ = false;
  int handles_open_ = 0;
};

class Connection {
 public:
  enum class State { kReading, kHandling, kDraining, kClosing };
  // The read state of the body of the request in kHandling.
  enum class BodyState {
    kBuffered,   // the whole body, if any, is in request_.body()
    kUnread,     // the body streams and the handler has not called readBody() yet
    kStreaming,  // readBody() was called: body bytes go to body_on_data_ as they arrive
    kComplete,   // readBody() delivered the whole body
    kAbandoned,  // delivery stopped before the end; the rest of the body is never parsed
  };

  Connection(LoopServer* owner, int fd);

  void start();
  // Closes the connection; `reason` goes to the debug log.
  void close(std::string_view reason);
  // Closes the connection if it waits for a request; used at shutdown.
  void closeIfIdle();
  bool isIdle() const { return state_ == State::kReading && !has_partial_request_; }
  bool isBodyComplete() const {
    return body_state_ == BodyState::kBuffered || body_state_ == BodyState::kComplete;
  }

  // Exchange side. While the handler runs inside dispatch(), queued bytes wait for its return.
  // A head and its body then leave in one send(2), and a head ahead of a file carries
  // MSG_MORE. Calls after the handler returned (a download in progress, say) send at once.
  void queueBytes(std::string_view bytes);
  void queueFile(std::shared_ptr<const void> owner, int fd, uint64_t offset, uint64_t length,
                 std::function<void()> on_sent);
  void queueBuffer(std::shared_ptr<const void> owner, std::string_view bytes,
                   std::function<void()> on_sent);
  void finishExchange();
  // Starts delivering the request body, as Exchange::readBody() describes. `may_send_continue`
  // is false once the response head was written.
  void readBody(std::function<bool(std::string_view)> on_data, std::function<void()> on_end,
                bool may_send_continue);
  // Decides, as a response head is written, whether the connection stays open after the
  // response: not when the client asked to close, nor when the body was not read to its end.
  bool decideKeepAlive();

 private:
  // A body part sent from outside output_: a file range, or a shared buffer when `data` is set.
  struct FileRange {
    std::shared_ptr<const void> owner;
    int fd = -1;
    // The buffer that `owner` keeps alive, or nullptr for a file. `offset` counts from here.
    const char* data = nullptr;
    uint64_t offset = 0;
    uint64_t remaining = 0;
    std::function<void()> on_sent;
  };

  static void onPoll(uv_poll_t* handle, int status, int events);
  static void onTimer(uv_timer_t* handle);
  static void onHandleClosed(uv_handle_t* handle);

  bool wantsInput() const;
  void readAvailable();
  void processInput();
  void dispatch();
  void rejectRequest(int status, std::string_view message);
  void sendContinue();

  void deliverBufferedBody(std::function<bool(std::string_view)> on_data,
                           std::function<void()> on_end);
  // Parses streamed body bytes, which reach body_on_data_ through onBodyData(). Bytes after
  // the body's end stay in input_ for the next request. `bytes` is input_ itself when
  // `is_from_input`, else a received buffer.
  void deliverBody(std::string_view bytes, bool is_from_input);
  bool onBodyData(std::string_view piece);
  void completeBody();
  void abandonBody();
  void startDraining();
  // The outcome of one send(2) or sendfile(2) call.
  enum class WriteStep { kSent, kBlocked, kClosed, kIdle };

  void flush();
  WriteStep writeBufferedBytes(uint64_t budget, uint64_t* sent_now);
  // Sends the rest of output_ and then the queued buffer, in one sendmsg(2).
  WriteStep writeBytesAndBuffer(uint64_t budget, uint64_t* sent_now);
  WriteStep writeFileRange(uint64_t budget, uint64_t* sent_now);
  // Counts `bytes` of the file range or buffer as sent, and runs its on_sent after the last.
  void advanceFileRange(uint64_t bytes);
  WriteStep onWriteError(int error);
  void countSent(uint64_t bytes, uint64_t* sent_now);
  void completeExchange();
  void updatePollEvents();
  void armTimer(int64_t timeout_ms);
  void logAccess(const Exchange& exchange, bool completed);

  LoopServer* owner_;
  int fd_;
  uv_poll_t poll_;
  uv_timer_t timer_;
  int handles_open_ = 0;
  State state_ = State::kReading;
  int poll_events_ = 0;

  std::string input_;         // bytes read and not yet given to the parser
  HttpRequest request_;
  RequestParser parser_;
  bool has_partial_request_ = false;
  bool peer_closed_ = false;
  BodyState body_state_ = BodyState::kBuffered;
  // The readBody() callbacks while the body streams. Each is moved out while it runs.
  std::function<bool(std::string_view)> body_on_data_;
  std::function<void()> body_on_end_;

  std::shared_ptr<Exchange> exchange_;
  bool exchange_finished_ = false;
  // Head and body bytes of the current response written to the socket, for the access log.
  uint64_t exchange_bytes_sent_ = 0;
  std::string output_;        // head and body bytes not yet sent
  size_t output_sent_ = 0;
  FileRange file_;
  bool write_blocked_ = false;
  // Whether the connection stays open after the current response; see decideKeepAlive().
  bool keep_alive_ = true;
  // True while the handler or a body callback runs: queued bytes, and the end of the
  // exchange, wait for it to return.
  bool dispatching_ = false;
};

// ----- Exchange -------------------------------------------------------------------------

Exchange::Exchange(Connection* connection, const HttpRequest* request, std::string request_id,
                   EventLoop* loop)
    : connection_(connection),
      request_(request),
      request_id_(std::move(request_id)),
      loop_(loop),
      started_ms_(monotonicMs()) {}

void Exchange::writeHead(ResponseHead& head, uint64_t content_length) {
  status_ = head.status();
  std::string text;
  text.reserve(head.fields().size() + 160);
  text.append("HTTP/1.1 ");
  text.append(std::to_string(head.status()));
  text.push_back(' ');
  text.append(reasonPhrase(head.status()));
  text.append("\r\n");
  text.append(head.fields());
  text.append("Content-Length: ");
  text.append(std::to_string(content_length));
  text.append("\r\nX-Request-Id: ");
  text.append(request_id_);
  text.append("\r\n");
  if (!connection_->decideKeepAlive()) {
    text.append("Connection: close\r\n");
  } else if (request_->isHttp10()) {
    // HTTP/1.0 closes after each response unless the server confirms keep-alive.
    text.append("Connection: keep-alive\r\n");
  }
  text.append("\r\n");
  head_sent_ = true;
  connection_->queueBytes(text);
}

void Exchange::respond(ResponseHead head, std::string_view body) {
  if (!isOpen() || head_sent_) {
    return;
  }
  writeHead(head, body.size());
  if (!isHead() && !body.empty()) {
    connection_->queueBytes(body);
  }
  finish();
}

void Exchange::readBody(std::function<bool(std::string_view chunk)> on_data,
                        std::function<void()> on_end) {
  if (!isOpen()) {
    return;
  }
  connection_->readBody(std::move(on_data), std::move(on_end), !head_sent_);
}

void Exchange::startResponse(ResponseHead head, uint64_t content_length) {
  if (!isOpen() || head_sent_) {
    return;
  }
  writeHead(head, content_length);
}

void Exchange::writeBody(std::string_view bytes) {
  if (!isOpen() || isHead() || bytes.empty()) {
    return;
  }
  connection_->queueBytes(bytes);
}

void Exchange::sendFile(std::shared_ptr<const void> owner, int fd, uint64_t offset,
                        uint64_t length, std::function<void()> on_sent) {
  if (!isOpen()) {
    return;
  }
  if (isHead() || length == 0) {
    if (on_sent) {
      on_sent();
    }
    return;
  }
  connection_->queueFile(std::move(owner), fd, offset, length, std::move(on_sent));
}

void Exchange::sendBuffer(std::shared_ptr<const void> owner, std::string_view bytes,
                          std::function<void()> on_sent) {
  if (!isOpen()) {
    return;
  }
  if (isHead() || bytes.empty()) {
    if (on_sent) {
      on_sent();
    }
    return;
  }
  connection_->queueBuffer(std::move(owner), bytes, std::move(on_sent));
}

void Exchange::finish() {
  if (!isOpen()) {
    return;
  }
  on_abort_ = nullptr;
  connection_->finishExchange();
}

void Exchange::abort() {
  if (!isOpen()) {
    return;
  }
  connection_->close("response aborted");
}

void Exchange::detach() {
  connection_ = nullptr;
  if (auto on_abort = std::move(on_abort_)) {
    on_abort_ = nullptr;
    on_abort();
  }
}

// ----- Connection -----------------------------------------------------------------------

Connection::Connection(LoopServer* owner, int fd)
    : owner_(owner),
      fd_(fd),
      parser_(&request_, owner->options().max_header_bytes, owner->options().max_body_bytes,
              &owner->options().streams_body) {
  parser_.setBodySink([this](std::string_view piece) { return onBodyData(piece); });
}

void Connection::start() {
  uv_loop_t* loop = owner_->loop().uv();
  uv_poll_init_socket(loop, &poll_, fd_);
  poll_.data = this;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  handles_open_ = 2;
  updatePollEvents();
  armTimer(owner_->options().idle_timeout_ms);
}

void Connection::updatePollEvents() {
  if (state_ == State::kClosing) {
    return;
  }
  int events = 0;
  if (wantsInput()) {
    events |= UV_READABLE;
  }
  if (write_blocked_) {
    events |= UV_WRITABLE;
  }
  if (events == poll_events_) {
    return;
  }
  poll_events_ = events;
  if (events == 0) {
    uv_poll_stop(&poll_);
  } else {
    uv_poll_start(&poll_, events, &Connection::onPoll);
  }
}

void Connection::armTimer(int64_t timeout_ms) {
  if (state_ == State::kClosing) {
    return;
  }
  if (timeout_ms <= 0) {
    uv_timer_stop(&timer_);
    return;
  }
  uv_timer_start(&timer_, &Connection::onTimer, static_cast<uint64_t>(timeout_ms), 0);
}

void Connection::onTimer(uv_timer_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  switch (self->state_) {
    case State::kReading:
      if (self->has_partial_request_) {
        self->rejectRequest(408, "request headers timed out");
      } else {
        self->close("idle timeout");
      }
      break;
    case State::kHandling:
      if (self->body_state_ == BodyState::kStreaming && !self->write_blocked_) {
        self->close("request body timed out");
      } else {
        self->close("send timed out");
      }
      break;
    case State::kDraining: self->close("unread request body drained"); break;
    case State::kClosing: break;
  }
}

void Connection::onPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Connection*>(handle->data);
  if (status < 0) {
    self->close(uv_strerror(status));
    return;
  }
  if (events & UV_WRITABLE) {
    self->write_blocked_ = false;
    self->flush();
  }
  if ((events & UV_READABLE) && self->state_ != State::kClosing) {
    self->readAvailable();
  }
  self->updatePollEvents();
}

bool Connection::wantsInput() const {
  if (peer_closed_ || state_ == State::kClosing) {
    return false;
  }
  if (state_ == State::kDraining ||
      (state_ == State::kHandling && body_state_ == BodyState::kStreaming)) {
    return true;
  }
  // Otherwise, while a request is handled, keep reading only to notice a closed peer, and stop
  // once a pipelined backlog fills the input buffer.
  return input_.size() < owner_->options().max_header_bytes * 2;
}

void Connection::readAvailable() {
  std::span<char> buffer = owner_->readBuffer();
  uint64_t received_now = 0;
  while (wantsInput() && received_now < kMaxBytesPerReadableEvent) {
    ssize_t received =
        retryOnEintr([&] { return ::recv(fd_, buffer.data(), buffer.size(), 0); });
    if (received < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      close(std::strerror(errno));
      return;
    }
    if (received == 0) {
      peer_closed_ = true;
      break;
    }
    received_now += static_cast<uint64_t>(received);
    std::string_view bytes(buffer.data(), static_cast<size_t>(received));
    if (state_ == State::kHandling && body_state_ == BodyState::kStreaming) {
      // Straight from the shared buffer to the handler, so a large body never piles up here.
      deliverBody(bytes, false);
    } else if (state_ != State::kDraining) {
      input_.append(bytes);
    }
    if (static_cast<size_t>(received) < buffer.size()) {
      break;
    }
  }

  if (state_ == State::kReading) {
    processInput();
  }
  if (peer_closed_ && state_ != State::kClosing) {
    // A client that closed its side cannot read a response on most stacks; stop here, and
    // let a handler in progress see the abort.
    close("peer closed");
  }
}

void Connection::processInput() {
  while (state_ == State::kReading && !input_.empty()) {
    if (!has_partial_request_) {
      has_partial_request_ = true;
      armTimer(owner_->options().header_timeout_ms);
    }
    size_t consumed = 0;
    RequestParser::Result result = parser_.parse(input_, &consumed);
    input_.erase(0, consumed);
    if (result == RequestParser::Result::kError) {
      rejectRequest(parser_.errorStatus(), parser_.errorReason());
      return;
    }
    if (result == RequestParser::Result::kNeedMore) {
      return;  // wait for more bytes
    }
    if (result == RequestParser::Result::kHeadersComplete && !parser_.isBodyStreaming()) {
      sendContinue();  // the body is buffered, and the client waits for 100 Continue
      continue;
    }
    dispatch();
  }
}

void Connection::dispatch() {
  has_partial_request_ = false;
  state_ = State::kHandling;
  uv_timer_stop(&timer_);
  body_state_ = parser_.isBodyStreaming() ? BodyState::kUnread : BodyState::kBuffered;
  keep_alive_ = request_.keepAlive();

  std::string_view given_id = request_.header("X-Request-Id");
  std::string request_id =
      isWellFormedRequestId(given_id) ? std::string(given_id) : owner_->ids().next();
  exchange_ = std::make_shared<Exchange>(this, &request_, std::move(request_id), &owner_->loop());
  exchange_->setBodyComplete(body_state_ == BodyState::kBuffered);
  exchange_finished_ = false;
  exchange_bytes_sent_ = 0;
  output_.clear();
  output_sent_ = 0;

  auto exchange = exchange_;
  dispatching_ = true;
  owner_->server().handler_(exchange);
  dispatching_ = false;
  flush();
}

void Connection::rejectRequest(int status, std::string_view message) {
  owner_->server().counters_.requests_rejected.fetch_add(1, std::memory_order_relaxed);
  log::proxy().debug("request rejected status={} reason=\"{}\"", status, message);
  std::string body = R"({"errors":[{"code":"UNSUPPORTED","message":")";
  body.append(message);
  body.append(R"("}]})");
  std::string text = "HTTP/1.1 " + std::to_string(status) + " ";
  text.append(reasonPhrase(status));
  text.append("\r\nContent-Type: application/json\r\nContent-Length: ");
  text.append(std::to_string(body.size()));
  text.append("\r\nConnection: close\r\n\r\n");
  text.append(body);

  // Best effort: the connection closes right after, whatever the socket accepts now.
  (void)retryOnEintr(
      [&] { return ::send(fd_, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT); });
  close("rejected");
}

void Connection::sendContinue() {
  ssize_t sent = retryOnEintr([&] {
    return ::send(fd_, kContinueResponse.data(), kContinueResponse.size(),
                  MSG_NOSIGNAL | MSG_DONTWAIT);
  });
  if (sent == static_cast<ssize_t>(kContinueResponse.size())) {
    owner_->server().counters_.bytes_sent.fetch_add(kContinueResponse.size(),
                                                    std::memory_order_relaxed);
    return;
  }
  if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    // The client sends the body anyway after waiting a while (RFC 9110 section 10.1.1).
    return;
  }
  close(sent < 0 ? std::strerror(errno) : "100 Continue cut short");
}

// ----- Request bodies ---------------------------------------------------------------------

void Connection::readBody(std::function<bool(std::string_view)> on_data,
                          std::function<void()> on_end, bool may_send_continue) {
  if (exchange_finished_) {
    return;
  }
  if (body_state_ == BodyState::kBuffered) {
    deliverBufferedBody(std::move(on_data), std::move(on_end));
    return;
  }
  if (body_state_ != BodyState::kUnread) {
    return;  // read before, or the exchange finished
  }
  body_state_ = BodyState::kStreaming;
  body_on_data_ = std::move(on_data);
  body_on_end_ = std::move(on_end);
  if (may_send_continue && parser_.expectsContinue()) {
    queueBytes(kContinueResponse);
  }

  // Body bytes that came with the head, or while the handler was busy, go first.
  if (state_ == State::kHandling && !input_.empty()) {
    deliverBody(input_, true);
  } else if (!dispatching_) {
    flush();  // arms the body timer
  }
  if (state_ == State::kHandling) {
    updatePollEvents();
  }
}

void Connection::deliverBufferedBody(std::function<bool(std::string_view)> on_data,
                                     std::function<void()> on_end) {
  body_state_ = BodyState::kStreaming;
  body_on_data_ = std::move(on_data);
  body_on_end_ = std::move(on_end);
  bool was_dispatching = std::exchange(dispatching_, true);
  const std::string& body = request_.body();
  if (body.empty() || onBodyData(body)) {
    completeBody();
  }
  dispatching_ = was_dispatching;
  if (!was_dispatching) {
    flush();
  }
}

void Connection::deliverBody(std::string_view bytes, bool is_from_input) {
  bool was_dispatching = std::exchange(dispatching_, true);
  size_t consumed = 0;
  RequestParser::Result result = parser_.parse(bytes, &consumed);
  if (result == RequestParser::Result::kComplete) {
    if (is_from_input) {
      input_.erase(0, consumed);
    } else {
      input_.append(bytes.substr(consumed));
    }
    completeBody();
  } else {
    if (is_from_input) {
      input_.clear();
    }
    // A stop by the handler left body_state_ at kAbandoned; still streaming means bad framing.
    if (result == RequestParser::Result::kError && state_ == State::kHandling &&
        body_state_ == BodyState::kStreaming) {
      log::proxy().debug("request body rejected req={} reason=\"{}\"", exchange_->requestId(),
                         parser_.errorReason());
      close("invalid request body");
    }
  }
  dispatching_ = was_dispatching;
  if (!was_dispatching) {
    flush();
  }
}

bool Connection::onBodyData(std::string_view piece) {
  if (state_ != State::kHandling || body_state_ != BodyState::kStreaming) {
    return false;
  }
  // Moved out while it runs, so that a close or finish inside it cannot destroy it.
  std::function<bool(std::string_view)> on_data = std::move(body_on_data_);
  body_on_data_ = nullptr;
  bool wants_more = on_data(piece);
  if (state_ != State::kHandling || body_state_ != BodyState::kStreaming) {
    return false;  // the handler finished or aborted the exchange
  }
  if (!wants_more) {
    abandonBody();
    return false;
  }
  body_on_data_ = std::move(on_data);
  return true;
}

void Connection::completeBody() {
  if (state_ != State::kHandling || body_state_ != BodyState::kStreaming) {
    return;
  }
  body_state_ = BodyState::kComplete;
  body_on_data_ = nullptr;
  exchange_->setBodyComplete(true);
  std::function<void()> on_end = std::move(body_on_end_);
  body_on_end_ = nullptr;
  if (on_end) {
    on_end();
  }
}

void Connection::abandonBody() {
  body_state_ = BodyState::kAbandoned;
  body_on_data_ = nullptr;
  body_on_end_ = nullptr;
}

bool Connection::decideKeepAlive() {
  keep_alive_ = request_.keepAlive() && isBodyComplete();
  return keep_alive_;
}

// ----- Responses ----------------------------------------------------------------------------

void Connection::queueBytes(std::string_view bytes) {
  output_.append(bytes);
  if (!dispatching_) {
    flush();
  }
}

void Connection::queueFile(std::shared_ptr<const void> owner, int fd, uint64_t offset,
                           uint64_t length, std::function<void()> on_sent) {
  file_ = FileRange{std::move(owner), fd, nullptr, offset, length, std::move(on_sent)};
  if (!dispatching_) {
    flush();
  }
}

void Connection::queueBuffer(std::shared_ptr<const void> owner, std::string_view bytes,
                             std::function<void()> on_sent) {
  file_ = FileRange{std::move(owner), -1, bytes.data(), 0, bytes.size(), std::move(on_sent)};
  if (!dispatching_) {
    flush();
  }
}

void Connection::finishExchange() {
  exchange_finished_ = true;
  if (body_state_ == BodyState::kUnread || body_state_ == BodyState::kStreaming) {
    abandonBody();
  }
  if (!dispatching_) {
    flush();
  }
}

void Connection::countSent(uint64_t bytes, uint64_t* sent_now) {
  // Counted at once, before a completion callback can start the next exchange.
  *sent_now += bytes;
  exchange_bytes_sent_ += bytes;
  owner_->server().counters_.bytes_sent.fetch_add(bytes, std::memory_order_relaxed);
}

Connection::WriteStep Connection::onWriteError(int error) {
  if (error == EAGAIN || error == EWOULDBLOCK) {
    write_blocked_ = true;
    return WriteStep::kBlocked;
  }
  close(std::strerror(error));
  return WriteStep::kClosed;
}

Connection::WriteStep Connection::writeBufferedBytes(uint64_t budget, uint64_t* sent_now) {
  if (file_.data != nullptr && file_.remaining > 0) {
    return writeBytesAndBuffer(budget, sent_now);
  }
  // MSG_MORE keeps a head in the socket until the file range behind it fills the packet.
  int flags = MSG_NOSIGNAL | (file_.remaining > 0 ? MSG_MORE : 0);
  ssize_t sent = retryOnEintr([&] {
    return ::send(fd_, output_.data() + output_sent_, output_.size() - output_sent_, flags);
  });
  if (sent < 0) {
    return onWriteError(errno);
  }
  output_sent_ += static_cast<size_t>(sent);
  countSent(static_cast<uint64_t>(sent), sent_now);
  if (output_sent_ == output_.size()) {
    output_.clear();
    output_sent_ = 0;
  }
  return WriteStep::kSent;
}

Connection::WriteStep Connection::writeBytesAndBuffer(uint64_t budget, uint64_t* sent_now) {
  size_t head_left = output_.size() - output_sent_;
  iovec parts[2];
  parts[0].iov_base = output_.data() + output_sent_;
  parts[0].iov_len = head_left;
  // iovec has no const member, but sendmsg(2) only reads the buffer.
  parts[1].iov_base = const_cast<char*>(file_.data + file_.offset);
  parts[1].iov_len = static_cast<size_t>(std::min<uint64_t>(file_.remaining, budget));
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = 2;
  ssize_t sent = retryOnEintr([&] { return ::sendmsg(fd_, &message, MSG_NOSIGNAL); });
  if (sent < 0) {
    return onWriteError(errno);
  }
  auto sent_bytes = static_cast<uint64_t>(sent);
  uint64_t from_head = std::min<uint64_t>(sent_bytes, head_left);
  output_sent_ += static_cast<size_t>(from_head);
  if (output_sent_ == output_.size()) {
    output_.clear();
    output_sent_ = 0;
  }
  countSent(sent_bytes, sent_now);
  if (sent_bytes > from_head) {
    advanceFileRange(sent_bytes - from_head);
  }
  return WriteStep::kSent;
}

Connection::WriteStep Connection::writeFileRange(uint64_t budget, uint64_t* sent_now) {
  auto chunk = static_cast<size_t>(std::min<uint64_t>(file_.remaining, budget));
  if (file_.data != nullptr) {
    ssize_t sent =
        retryOnEintr([&] { return ::send(fd_, file_.data + file_.offset, chunk, MSG_NOSIGNAL); });
    if (sent < 0) {
      return onWriteError(errno);
    }
    countSent(static_cast<uint64_t>(sent), sent_now);
    advanceFileRange(static_cast<uint64_t>(sent));
    return WriteStep::kSent;
  }
  auto offset = static_cast<off_t>(file_.offset);
  ssize_t sent = retryOnEintr([&] { return ::sendfile(fd_, file_.fd, &offset, chunk); });
  if (sent < 0) {
    return onWriteError(errno);
  }
  if (sent == 0) {
    // The file is shorter than the range it was queued with: the response cannot be
    // completed with the promised length.
    log::proxy().error("file ended before its range req={} offset={} remaining={}",
                       exchange_ ? exchange_->requestId() : "-", file_.offset, file_.remaining);
    close("file shorter than its range");
    return WriteStep::kClosed;
  }
  countSent(static_cast<uint64_t>(sent), sent_now);
  advanceFileRange(static_cast<uint64_t>(sent));
  return WriteStep::kSent;
}

void Connection::advanceFileRange(uint64_t bytes) {
  file_.offset += bytes;
  file_.remaining -= bytes;
  if (file_.remaining == 0) {
    auto on_sent = std::move(file_.on_sent);
    file_ = FileRange{};
    if (on_sent) {
      on_sent();  // may queue more bytes, another file range, finish the exchange, or close
    }
  }
}

void Connection::flush() {
  if (state_ != State::kHandling || write_blocked_) {
    return;
  }
  uint64_t sent_now = 0;
  while (sent_now < kMaxBytesPerWritableEvent) {
    WriteStep step = WriteStep::kIdle;
    if (output_sent_ < output_.size()) {
      step = writeBufferedBytes(kMaxBytesPerWritableEvent - sent_now, &sent_now);
    } else if (file_.remaining > 0) {
      step = writeFileRange(kMaxBytesPerWritableEvent - sent_now, &sent_now);
    }
    if (step == WriteStep::kClosed || state_ != State::kHandling) {
      return;
    }
    if (step != WriteStep::kSent) {
      break;
    }
  }
  bool drained = output_.empty() && file_.remaining == 0;
  if (drained && exchange_finished_) {
    completeExchange();
    return;
  }
  if (!drained) {
    // The socket is full, or the per-event budget ran out: go on at the next writable event.
    write_blocked_ = true;
  }
  if (write_blocked_) {
    armTimer(owner_->options().send_timeout_ms);
  } else if (body_state_ == BodyState::kStreaming) {
    // Nothing to send while the body streams in: the timer waits for its next bytes.
    armTimer(owner_->options().idle_timeout_ms);
  } else {
    // Nothing to send: the handler is producing the rest (a download in progress, say).
    uv_timer_stop(&timer_);
  }
  updatePollEvents();
}

void Connection::completeExchange() {
  std::shared_ptr<Exchange> exchange = std::move(exchange_);
  exchange_finished_ = false;
  logAccess(*exchange, true);
  exchange->detach();
  bool keep_alive = keep_alive_ && isBodyComplete() && !owner_->isShuttingDown();
  bool has_unread_body = body_state_ == BodyState::kAbandoned;
  request_.clear();
  if (!keep_alive) {
    ::shutdown(fd_, SHUT_WR);
    if (has_unread_body) {
      startDraining();
    } else {
      close("connection: close");
    }
    return;
  }
  state_ = State::kReading;
  armTimer(owner_->options().idle_timeout_ms);
  processInput();
  if (state_ != State::kClosing) {
    updatePollEvents();
  }
}

void Connection::logAccess(const Exchange& exchange, bool completed) {
  if (const auto& observer = owner_->server().completion_observer_) {
    observer(exchange);
  }
  auto& logger = log::access();
  if (!logger.should_log(spdlog::level::info)) {
    return;
  }
  int64_t duration_ms = monotonicMs() - exchange.startedMs();
  const std::string& repository = exchange.repository();
  logger.info("{} {} status={} bytes_sent={} duration_ms={} repo={} cache={} req={}{}",
              request_.methodName(), request_.path(), exchange.status(),
              exchange_bytes_sent_, duration_ms, repository.empty() ? "-" : repository,
              cacheOutcomeName(exchange.outcome()), exchange.requestId(),
              completed ? "" : " aborted=true");
}

void Connection::startDraining() {
  if (peer_closed_) {
    close("peer closed");
    return;
  }
  state_ = State::kDraining;
  input_.clear();
  armTimer(kDrainTimeoutMs);
  updatePollEvents();
}

void Connection::closeIfIdle() {
  if (isIdle() || state_ == State::kDraining) {
    close("server shutting down");
  }
}

void Connection::close(std::string_view reason) {
  if (state_ == State::kClosing) {
    return;
  }
  bool was_handling = state_ == State::kHandling;
  state_ = State::kClosing;
  log::proxy().trace("connection closed fd={} reason=\"{}\"", fd_, reason);
  body_on_data_ = nullptr;
  body_on_end_ = nullptr;
  if (was_handling && exchange_) {
    std::shared_ptr<Exchange> exchange = std::move(exchange_);
    logAccess(*exchange, false);
    exchange->detach();
  }
  file_ = FileRange{};
  uv_poll_stop(&poll_);
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &Connection::onHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &Connection::onHandleClosed);
}

void Connection::onHandleClosed(uv_handle_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  if (--self->handles_open_ > 0) {
    return;
  }
  ::close(self->fd_);
  self->owner_->onConnectionClosed(self);
  delete self;
}

// ----- LoopServer -------------------------------------------------------------------------

LoopServer::LoopServer(HttpServer* server, EventLoop* loop, int listen_fd,
                       uint32_t max_connections)
    : server_(server), loop_(loop), listen_fd_(listen_fd), max_connections_(max_connections) {}

void LoopServer::start() {
  uv_poll_init_socket(loop_->uv(), &listen_poll_, listen_fd_.get());
  listen_poll_.data = this;
  uv_timer_init(loop_->uv(), &grace_timer_);
  grace_timer_.data = this;
  handles_open_ = 2;
  resumeAccepting();
}

void LoopServer::pauseAccepting() {
  if (accepting_) {
    uv_poll_stop(&listen_poll_);
    accepting_ = false;
  }
}

void LoopServer::resumeAccepting() {
  if (!accepting_ && !shutting_down_) {
    uv_poll_start(&listen_poll_, UV_READABLE, &LoopServer::onListenReadable);
    accepting_ = true;
  }
}

void LoopServer::onListenReadable(uv_poll_t* handle, int status, int) {
  auto* self = static_cast<LoopServer*>(handle->data);
  if (status < 0) {
    log::proxy().error("listening socket failed loop={} error={}", self->loop_->index(),
                       uv_strerror(status));
    return;
  }
  self->acceptAll();
}

void LoopServer::acceptAll() {
  while (connections_.size() < max_connections_) {
    int fd = retryOnEintr([&] {
      return ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    });
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) {
        log::proxy().warn("accept failed loop={} error=\"{}\"", loop_->index(),
                          std::strerror(errno));
      }
      return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto* connection = new Connection(this, fd);
    connections_.push_back(connection);
    server_->counters_.connections_accepted.fetch_add(1, std::memory_order_relaxed);
    server_->counters_.connections_open.fetch_add(1, std::memory_order_relaxed);
    connection->start();
  }
  // At the cap: stop accepting here until a connection closes; new connections wait in the
  // kernel's backlog.
  pauseAccepting();
}

void LoopServer::onConnectionClosed(Connection* connection) {
  server_->counters_.connections_open.fetch_sub(1, std::memory_order_relaxed);
  for (size_t i = 0; i < connections_.size(); ++i) {
    if (connections_[i] == connection) {
      connections_[i] = connections_.back();
      connections_.pop_back();
      break;
    }
  }
  if (shutting_down_) {
    maybeFinishShutdown();
  } else {
    resumeAccepting();
  }
}

void LoopServer::shutdown(int64_t grace_ms) {
  shutting_down_ = true;
  pauseAccepting();
  // The socket closes only after its poll handle, so libuv never watches a closed descriptor.
  uv_close(reinterpret_cast<uv_handle_t*>(&listen_poll_), [](uv_handle_t* handle) {
    auto* self = static_cast<LoopServer*>(handle->data);
    self->listen_fd_.reset();
    self->onShutdownHandleClosed();
  });
  for (Connection* connection : std::vector<Connection*>(connections_)) {
    connection->closeIfIdle();
  }
  uv_timer_start(&grace_timer_, &LoopServer::onGraceTimer, static_cast<uint64_t>(grace_ms), 0);
  maybeFinishShutdown();
}

void LoopServer::onGraceTimer(uv_timer_t* handle) {
  auto* self = static_cast<LoopServer*>(handle->data);
  if (!self->connections_.empty()) {
    log::proxy().warn("closing connections still busy after the grace period loop={} count={}",
                      self->loop_->index(), self->connections_.size());
  }
  for (Connection* connection : std::vector<Connection*>(self->connections_)) {
    connection->close("shutdown grace period over");
  }
}

void LoopServer::maybeFinishShutdown() {
  if (!connections_.empty() || uv_is_closing(reinterpret_cast<uv_handle_t*>(&grace_timer_))) {
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), [](uv_handle_t* handle) {
    static_cast<LoopServer*>(handle->data)->onShutdownHandleClosed();
  });
}

void LoopServer::onShutdownHandleClosed() {
  if (--handles_open_ > 0) {
    return;
  }
  if (server_->loops_running_.fetch_sub(1) == 1 && server_->on_shutdown_done_) {
    server_->on_shutdown_done_();
  }
}

// ----- HttpServer -----------------------------------------------------------------------

HttpServer::HttpServer(std::vector<EventLoop*> loops, ServerOptions options,
                       RequestHandler handler)
    : loops_(std::move(loops)), options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  for (LoopServer* loop_server : loop_servers_) {
    delete loop_server;
  }
  for (int fd : listen_fds_) {
    ::close(fd);
  }
}

namespace {

// Parses `host` (an IPv4 or IPv6 literal) and `port` into `address`; returns its length, or 0.
socklen_t makeListenAddress(const std::string& host, uint16_t port, sockaddr_storage* address) {
  *address = sockaddr_storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(address);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return sizeof(sockaddr_in);
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(address);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return sizeof(sockaddr_in6);
  }
  return 0;
}

// Opens a non-blocking TCP socket bound to `address`, with SO_REUSEPORT when `share_port`.
Expected<UniqueFd> bindSocket(const sockaddr_storage& address, socklen_t length, bool share_port,
                              const std::string& where) {
  UniqueFd fd(::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    return errnoStatus("socket", errno);
  }
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (share_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return errnoStatus("setsockopt SO_REUSEPORT", errno);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    int error = errno;
    if (error == EADDRINUSE) {
      return Status(StatusCode::kAlreadyExists,
                    "bind " + where + ": address already in use; stop the other server or "
                    "choose another server.port");
    }
    return errnoStatus("bind " + where, error);
  }
  return fd;
}

uint16_t boundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
  if (bound.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

}  // namespace

Status HttpServer::bind() {
  sockaddr_storage address;
  socklen_t length = makeListenAddress(options_.host, options_.port, &address);
  if (length == 0) {
    return invalidArgument("listen address is not an IPv4 or IPv6 address: " + options_.host);
  }
  std::string where = fmt::format("{}:{}", options_.host, options_.port);

  // With SO_REUSEPORT a second server on the same port would silently share the traffic. A
  // first bind without it fails while anyone listens there, and picks the port when it is 0.
  Expected<UniqueFd> probe = bindSocket(address, length, false, where);
  if (!probe) {
    return probe.status();
  }
  uint16_t port = boundPort(probe->get());
  probe->reset();
  auto* port_field = address.ss_family == AF_INET6
                         ? &reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                         : &reinterpret_cast<sockaddr_in*>(&address)->sin_port;
  *port_field = htons(port);

  for (size_t i = 0; i < loops_.size(); ++i) {
    Expected<UniqueFd> fd = bindSocket(address, length, true, where);
    if (!fd) {
      return fd.status();
    }
    if (::listen(fd->get(), 1024) != 0) {
      return errnoStatus("listen " + where, errno);
    }
    listen_fds_.push_back(fd->release());
  }
  bound_port_ = port;
  return Status::ok();
}

void HttpServer::start() {
  uint32_t per_loop = std::max<uint32_t>(
      1, options_.max_connections / static_cast<uint32_t>(std::max<size_t>(1, loops_.size())));
  loops_running_ = loops_.size();
  for (size_t i = 0; i < loops_.size(); ++i) {
    auto* loop_server = new LoopServer(this, loops_[i], listen_fds_[i], per_loop);
    loop_servers_.push_back(loop_server);
    loops_[i]->post([loop_server] { loop_server->start(); });
  }
  listen_fds_.clear();  // each LoopServer owns its socket now
}

void HttpServer::shutdown(int64_t grace_ms, std::function<void()> on_done) {
  on_shutdown_done_ = std::move(on_done);
  for (size_t i = 0; i < loops_.size(); ++i) {
    LoopServer* loop_server = loop_servers_[i];
    loops_[i]->post([loop_server, grace_ms] { loop_server->shutdown(grace_ms); });
  }
}

}  // namespace outpost::proxy
