// HttpServer: HTTP/1.1 on every event loop, one SO_REUSEPORT listening socket per loop.
//
// Connections are driven by readiness (a uv_poll_t on the socket) and make the system calls
// themselves: recv(2) into a reused buffer parsed by llhttp, send(2) for heads and small
// bodies, sendfile(2) for file ranges, so that a blob sent from disk never passes through user
// space, and sendmsg(2) for a head followed by a shared buffer that the response does not copy.
//
// One request is handled at a time per connection. Pipelined requests wait in the read buffer
// and are parsed once the previous response has been written, so answers leave in order.
//
// A request body is buffered, and the handler called once the whole request is in, unless
// ServerOptions::streams_body picks the request. Then the handler is called after the head,
// and Exchange::readBody() hands it the body as it arrives, one recv(2) buffer at a time.
//
// Connection states:
//   kReading   waiting for, or reading, a request; idle and header timeouts apply
//   kHandling  the request was handed to the handler; the response is being produced, and a
//              streamed body may be read meanwhile
//   kDraining  the response went out, but part of a streamed body was never read. The rest
//              is read and discarded until the client closes or a timer fires, because a
//              close with unread bytes sends a reset that may erase the response before the
//              client reads it (RFC 9112 section 9.6)
//   kClosing   uv_close was called on the handles; freed in the last close callback
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "proxy/event_loop.h"
#include "proxy/http_message.h"

namespace outpost::proxy {

class Connection;
class LoopServer;

// The cache outcome of a request, for the access log and metrics.
enum class CacheOutcome { kNone, kHit, kMiss, kFillJoined, kStale, kUpstreamError };
std::string_view cacheOutcomeName(CacheOutcome outcome);

// One request and its response. The handler keeps it in a shared_ptr across asynchronous
// steps. Once the connection has closed, isOpen() turns false, every response call becomes a
// no-op, and the abort callback runs once.
class Exchange {
 public:
  Exchange(Connection* connection, const HttpRequest* request, std::string request_id,
           EventLoop* loop);

  const HttpRequest& request() const { return *request_; }
  const std::string& requestId() const { return request_id_; }
  EventLoop& loop() const { return *loop_; }
  bool isOpen() const { return connection_ != nullptr; }
  bool isHead() const { return request_->method() == HttpMethod::kHead; }

  // Runs `on_abort` when the connection closes before finish() (client gone, timeout, abort()).
  // It runs on the loop thread and is dropped after finish().
  void setOnAbort(std::function<void()> on_abort) { on_abort_ = std::move(on_abort); }

  // Reads the request body. `on_data` receives the body bytes in order, after chunked
  // decoding, and `on_end` runs once after the last byte. Both run on the loop thread and
  // are never re-entered. Each view passed to `on_data` points into a read buffer and is
  // valid only during the call.
  //
  // Bytes already received, and `on_end` when the body is already complete, are delivered
  // before readBody() returns. That is always so for a buffered body, which arrives in one
  // piece, and for a request without a body, which calls only `on_end`.
  //
  // When `on_data` returns false, reading stops: neither callback runs again, the handler is
  // expected to respond with an error, and the connection closes after that response. When
  // the connection closes first (client gone, timeout, abort()), the abort callback runs and
  // neither callback runs again. While a streamed body is read, idle_timeout_ms is the
  // maximum wait for the next bytes.
  //
  // For a streamed request with `Expect: 100-continue`, the first call writes the interim
  // 100 (Continue) response, unless the response head was written before. Only the first
  // call has an effect, and none has one after finish().
  void readBody(std::function<bool(std::string_view chunk)> on_data, std::function<void()> on_end);
  // Returns true once the whole body has been read: at once for a buffered body, and for a
  // streamed one after its last byte went to `on_data`.
  bool isBodyComplete() const { return is_body_complete_; }

  // Access-log fields.
  void setRepository(std::string_view repository) { repository_.assign(repository); }
  void setOutcome(CacheOutcome outcome) { outcome_ = outcome; }
  CacheOutcome outcome() const { return outcome_; }
  const std::string& repository() const { return repository_; }
  // A route label for metrics, chosen by the handler; 0 until set.
  void setRouteLabel(uint8_t label) { route_label_ = label; }
  uint8_t routeLabel() const { return route_label_; }

  // Sends a whole response: `head` plus Content-Length, X-Request-Id and the body. A HEAD
  // request gets the same headers and no body. A head written before a streamed body is
  // complete carries `Connection: close`, and the connection closes after the response.
  void respond(ResponseHead head, std::string_view body);
  // Sends the head of a response whose body of `content_length` bytes follows through
  // writeBody() and sendFile() (both skipped for HEAD), then finish().
  void startResponse(ResponseHead head, uint64_t content_length);
  // Queues body bytes (copied).
  void writeBody(std::string_view bytes);
  // Queues `length` bytes of `fd` from `offset`, sent with sendfile(2). `owner` keeps the
  // descriptor open until the bytes are sent. `on_sent` runs on the loop thread once the last
  // byte is in the socket buffer; it never runs if the connection closes first. Only one file
  // range may be queued at a time.
  void sendFile(std::shared_ptr<const void> owner, int fd, uint64_t offset, uint64_t length,
                std::function<void()> on_sent);
  // Queues `bytes` without copying them: `owner` keeps them alive and unchanged until they are
  // sent. A head queued before them leaves in the same sendmsg(2). `on_sent` runs as for
  // sendFile(). Skipped for HEAD. Only one file range or buffer may be queued at a time.
  void sendBuffer(std::shared_ptr<const void> owner, std::string_view bytes,
                  std::function<void()> on_sent);
  // Marks the response complete. The next request is read once the queued bytes are sent.
  // Finishing before a streamed body is complete stops its delivery: the rest of the body is
  // never given to the handler, and the connection closes after the response.
  void finish();
  // Closes the connection at once: used when a body cannot be completed.
  void abort();

  // Connection side.
  void detach();
  void setBodyComplete(bool is_complete) { is_body_complete_ = is_complete; }
  int status() const { return status_; }
  int64_t startedMs() const { return started_ms_; }

 private:
  void writeHead(ResponseHead& head, uint64_t content_length);

  Connection* connection_;
  const HttpRequest* request_;
  std::string request_id_;
  EventLoop* loop_;
  std::function<void()> on_abort_;
  std::string repository_;
  CacheOutcome outcome_ = CacheOutcome::kNone;
  uint8_t route_label_ = 0;
  int status_ = 0;
  int64_t started_ms_;
  bool head_sent_ = false;
  bool is_body_complete_ = true;
};

using RequestHandler = std::function<void(const std::shared_ptr<Exchange>&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 5000;
  uint64_t max_header_bytes = 16 * 1024;
  // The maximum size of a buffered request body, above which the server responds 413.
  // Streamed bodies have no limit here, because their reader sets its own.
  uint64_t max_body_bytes = 4 * 1024 * 1024;
  int64_t header_timeout_ms = 10'000;
  // The maximum wait for the next request on an idle connection, and for the next bytes of a
  // streamed body that the handler reads.
  int64_t idle_timeout_ms = 60'000;
  int64_t send_timeout_ms = 60'000;
  uint32_t max_connections = 4096;  // for the whole server, split evenly between loops
  // Chooses the requests whose body streams. It is called on the loop thread once the head of
  // a request with a body (Content-Length above 0, or chunked) is parsed. A chosen request
  // goes to the handler at once, with an empty request().body(), and the handler reads the
  // body with Exchange::readBody(). Empty: every body is buffered.
  std::function<bool(const HttpRequest&)> streams_body;
};

// Counters the server updates; read by the metrics page from any thread.
struct ServerCounters {
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> requests_rejected{0};  // 400, 408, 413 and 431 written by the server
};

class HttpServer {
 public:
  HttpServer(std::vector<EventLoop*> loops, ServerOptions options, RequestHandler handler);
  ~HttpServer();

  // Creates and binds one listening socket per loop. With port 0 the first socket takes an
  // ephemeral port and the others share it. Call before start().
  Status bind();
  uint16_t port() const { return bound_port_; }
  // Starts accepting on every loop (the loops must be running).
  void start();
  // Stops accepting, closes idle connections, lets requests in flight finish, and closes what
  // is left after `grace_ms`. `on_done` runs on an unspecified loop thread once every
  // connection of every loop has closed.
  void shutdown(int64_t grace_ms, std::function<void()> on_done);

  const ServerCounters& counters() const { return counters_; }
  // Sets a function called on the loop thread for every exchange that ends, finished or
  // aborted, just before its access-log line. Call before start().
  void setCompletionObserver(std::function<void(const Exchange&)> observer) {
    completion_observer_ = std::move(observer);
  }

 private:
  friend class LoopServer;
  friend class Connection;
  std::vector<EventLoop*> loops_;
  ServerOptions options_;
  RequestHandler handler_;
  std::function<void(const Exchange&)> completion_observer_;
  ServerCounters counters_;
  std::vector<int> listen_fds_;
  std::vector<LoopServer*> loop_servers_;  // owned: each frees itself after its handles close
  uint16_t bound_port_ = 0;
  std::atomic<size_t> loops_running_{0};
  std::function<void()> on_shutdown_done_;
};

}  // namespace outpost::proxy
