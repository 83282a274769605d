// UpstreamConnection: one HTTP/1.1 connection to an upstream origin, plain or TLS, that
// carries one request at a time.
//
// States:
//   kResolving    uv_getaddrinfo runs in the thread pool
//   kConnecting   TCP connect to one resolved address, then to the next one after a failure
//   kHandshaking  TLS handshake through TlsSession
//   kIdle         connected without a request, parked in the pool or just handed out
//   kAwaitingHead request sent, head not complete, response timeout running
//   kReadingBody  head delivered, body stall timeout running
//   kClosing      uv_close called, object freed in the TCP handle's close callback
//
// The socket is read in every state after connect, also while idle, so that a connection the
// server closed is noticed and dropped from the pool. Events go to the current
// ConnectionListener. A listener may close the connection from inside any of its callbacks,
// because the object stays valid until the close callback and the connection checks its state
// after each listener call.
#pragma once

#include <llhttp.h>
#include <netinet/in.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "proxy/upstream/loop_timer.h"
#include "proxy/upstream/tls_session.h"
#include "proxy/upstream/upstream_response.h"
#include "proxy/upstream/url.h"

namespace outpost::proxy {
struct UpstreamCounters;
}

namespace outpost::proxy::upstream {

class ConnectionPool;
class UpstreamConnection;

struct ConnectionFailure {
  Status status;
  // No byte of a response had arrived. Requests can then be repeated safely.
  bool is_before_response = true;
  // The connection had completed a response before this request: a pooled connection that the
  // server may have closed in the meantime.
  bool is_reused_connection = false;
  // False for failures that a new attempt cannot fix, such as a certificate that fails
  // verification.
  bool is_retryable = true;
};

// Receives the events of a connection. The pool calls onConnectionAssigned for a listener that
// had to wait; the connection calls the others.
class ConnectionListener {
 public:
  // A connection for a listener that waited in the pool's queue. It is either idle (ready for
  // sendRequest) or still opening, in which case onConnectionReady follows.
  virtual void onConnectionAssigned(UpstreamConnection* connection) = 0;
  // The connection opened by open() is ready for sendRequest().
  virtual void onConnectionReady() = 0;
  // The head of the final response; 1xx heads are skipped. `response` may be moved from.
  virtual void onResponseHead(UpstreamResponse& response) = 0;
  // A piece of the body; the view points into the connection's read buffer and is valid
  // only during the call.
  virtual void onResponseBody(std::string_view chunk) = 0;
  // The response ended. The listener is detached, and the connection is idle until the
  // listener hands it back to the pool.
  virtual void onResponseComplete() = 0;
  // The connection failed and is already closing; the listener is detached.
  virtual void onConnectionFailed(const ConnectionFailure& failure) = 0;

 protected:
  ~ConnectionListener() = default;
};

struct ConnectionSettings {
  int64_t connect_timeout_ms = 5000;
  int64_t response_timeout_ms = 30000;
  int64_t body_stall_timeout_ms = 30000;
  int64_t idle_timeout_ms = 30000;
};

class UpstreamConnection {
 public:
  // `tls_context` is null for http origins. Every pointer must outlive the connection.
  UpstreamConnection(uv_loop_t* loop, HandleCounter* handles, ConnectionPool* pool,
                     UpstreamCounters* counters, const ConnectionSettings* settings, Url origin,
                     SSL_CTX* tls_context, uint64_t id);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // Resolves the host, connects and, for https, runs the handshake. `listener` then receives
  // onConnectionReady or onConnectionFailed, never before open() returns.
  void open(ConnectionListener* listener);

  // Writes `request_head` (a complete request without body). Precondition: isIdle().
  // `listener` receives the response events or onConnectionFailed, never before
  // sendRequest() returns. For a HEAD request the response has no body, even with a
  // Content-Length (RFC 9110 section 9.3.2).
  void sendRequest(std::string request_head, bool is_head_request, ConnectionListener* listener);

  // Starts the idle timeout; called by the pool when it parks the connection.
  void startIdleTimer();

  // Closes the connection. `self` is this connection's owning pointer, which is destroyed in the
  // close callback of the TCP handle. The object therefore stays valid until the current libuv
  // callback has returned. Called at most once, by the pool.
  void close(std::unique_ptr<UpstreamConnection> self);

  bool isIdle() const { return state_ == State::kIdle; }
  bool isClosing() const { return state_ == State::kClosing; }
  // True after a complete response on a connection that may carry another request.
  bool isReusable() const { return state_ == State::kIdle && is_reusable_; }
  const Url& origin() const { return origin_; }
  // origin_.origin(), the key of the connection's pool entry.
  const std::string& poolKey() const { return pool_key_; }
  uint64_t id() const { return id_; }

 private:
  enum class State {
    kResolving,
    kConnecting,
    kHandshaking,
    kIdle,
    kAwaitingHead,
    kReadingBody,
    kClosing,
  };

  // A uv_getaddrinfo request outlives the connection when the connection closes while the
  // thread pool still resolves. The callback frees it; `connection` is null once cancelled.
  struct ResolveRequest {
    uv_getaddrinfo_t request;
    UpstreamConnection* connection;
    HandleCounter* handles;
  };
  struct WriteRequest {
    uv_write_t request;
    std::string bytes;
  };

  static void onResolved(uv_getaddrinfo_t* request, int status, addrinfo* result);
  static void onConnect(uv_connect_t* request, int status);
  static void onAlloc(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buffer);
  static void onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buffer);
  static void onWrite(uv_write_t* request, int status);
  static void onTcpClosed(uv_handle_t* handle);

  static int onMessageBegin(llhttp_t* parser);
  static int onHeaderField(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderValue(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderValueComplete(llhttp_t* parser);
  static int onHeadersComplete(llhttp_t* parser);
  static int onBody(llhttp_t* parser, const char* at, size_t length);
  static int onMessageComplete(llhttp_t* parser);
  static const llhttp_settings_t& parserSettings();

  void startResolve();
  void handleResolved(int status, addrinfo* result);
  void connectToNextAddress();
  void handleConnect(int status);
  void startHandshake();
  void advanceHandshake();
  void becomeReady();

  void handleRead(std::string_view bytes);
  void handleCiphertext(std::string_view bytes);
  // Parses response bytes. Returns false when the caller must stop feeding bytes: the
  // response completed or the connection failed.
  bool handlePlaintext(std::string_view bytes);
  void handleReadEnd(ssize_t status);
  void completeResponse(bool has_extra_bytes);

  void write(std::string bytes);
  void flushTlsOutput();
  void onTimer();
  void failLater(Status status);
  void fail(Status status, bool is_retryable);
  std::string describe(std::string_view what) const;

  uv_loop_t* loop_;
  HandleCounter* handles_;
  ConnectionPool* pool_;
  UpstreamCounters* counters_;
  const ConnectionSettings* settings_;
  Url origin_;
  std::string pool_key_;
  SSL_CTX* tls_context_;
  uint64_t id_;

  State state_ = State::kResolving;
  ConnectionListener* listener_ = nullptr;
  // Set by close(); destroyed in onTcpClosed.
  std::unique_ptr<UpstreamConnection> self_;

  uv_tcp_t tcp_;
  uv_connect_t connect_request_;
  // True from uv_close on tcp_ until its close callback, also between two connect attempts.
  bool is_tcp_closing_ = false;
  ResolveRequest* resolve_request_ = nullptr;
  std::vector<sockaddr_storage> addresses_;
  size_t next_address_ = 0;

  LoopTimer timer_;
  std::optional<Status> pending_failure_;
  uint64_t last_read_ms_ = 0;

  std::unique_ptr<TlsSession> tls_;
  std::unique_ptr<char[]> read_buffer_;
  std::unique_ptr<char[]> plaintext_buffer_;

  llhttp_t parser_;
  bool is_head_request_ = false;
  bool has_response_byte_ = false;
  bool is_reused_request_ = false;
  bool is_informational_ = false;
  bool is_message_complete_ = false;
  bool is_keep_alive_ = false;
  bool is_reusable_ = false;
  uint64_t responses_completed_ = 0;
  UpstreamResponse response_;
  std::string header_field_;
  std::string header_value_;
  size_t header_bytes_ = 0;
};

}  // namespace outpost::proxy::upstream
