// HttpConnection: one keep-alive HTTP/1.1 client connection to 127.0.0.1 on a libuv loop, with
// responses parsed by llhttp.
//
// States:
//   kDisconnected  no socket; send() connects first
//   kConnecting    connect in flight, maybe with a request waiting for it
//   kIdle          connected, no request outstanding. Reading goes on, so that a close by
//                  the server is noticed at once.
//   kExchanging    a request was sent and its response is not complete yet
//
// The libuv handle lives in a separately allocated Socket that is freed in its close callback,
// so the HttpConnection may be closed, reconnected or destroyed while libuv still uses the old
// socket. A reconnect uses a new Socket. Every object here belongs to the loop thread.
#pragma once

#include <llhttp.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "bench/load/driver/response_head.h"

namespace outpost::load {

struct HttpRequest {
  // "GET" or "HEAD". A HEAD response is read without a body, whatever its Content-Length.
  std::string method = "GET";
  // Path and query, starting with '/'.
  std::string target;
  // Complete header lines without their CRLF ("Accept: application/json"), sent after Host.
  std::vector<std::string> header_lines;
};

// Receives one response. The connection calls onResponseHead and onResponseBody from inside
// its read callback. They report a problem by returning a failure, which ends the exchange with
// that Status and closes the connection, and they must not close or destroy the connection.
class ResponseObserver {
 public:
  virtual ~ResponseObserver() = default;

  // Called once per final (non-1xx) response when its status line and headers have arrived.
  // `head` is valid until the exchange ends.
  virtual Status onResponseHead(const ResponseHead& head) = 0;

  // Called for each piece of the body after chunked framing is removed, in order. `bytes`
  // points into the connection's read buffer and is valid only during the call.
  virtual Status onResponseBody(std::span<const std::byte> bytes) = 0;

  // Called exactly once per send(): OK when the whole response arrived, else the reason it
  // did not. The connection is already idle or disconnected, so this callback may send the
  // next request, close the connection or destroy it.
  virtual void onResponseEnd(Status status) = 0;
};

class HttpConnection {
 public:
  enum class State { kDisconnected, kConnecting, kIdle, kExchanging };

  // `read_buffer_bytes` is the size of the one buffer that every read of this connection
  // reuses, so it sets the most bytes one read system call returns.
  HttpConnection(uv_loop_t* loop, uint16_t port, size_t read_buffer_bytes);
  // Closes the socket. The loop must run afterwards for libuv to release it.
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Connects to 127.0.0.1:port. `on_connected` runs once with the outcome, from a later loop
  // callback, or before connect() returns when the socket cannot be created. Precondition:
  // kDisconnected.
  void connect(std::function<void(Status)> on_connected);

  // Sends `request` and reports its response to `observer`, which must stay alive until its
  // onResponseEnd has run. Connects first when disconnected. On a reused connection that the
  // server closed before sending any byte of the response, the request is sent once more on
  // a new connection, as RFC 9112 section 9.3.1 allows for idempotent requests. Precondition:
  // kDisconnected or kIdle. onResponseEnd may run before send() returns when the request
  // cannot be written.
  void send(const HttpRequest& request, ResponseObserver* observer);

  // Closes the socket without calling any callback, abandoning an exchange in progress. Safe
  // in every state, including from inside onResponseEnd.
  void close();

  // Sets the callback that runs when the server closes the connection, or the connection
  // fails, while no exchange is in progress (kIdle). The connection is kDisconnected by then.
  void setOnIdleClose(std::function<void(Status)> on_idle_close) {
    on_idle_close_ = std::move(on_idle_close);
  }

  State state() const { return state_; }
  // Requests sent again after a closed keep-alive connection, since construction.
  uint64_t retryCount() const { return retry_count_; }

 private:
  // The libuv side of one TCP connection attempt. Freed in onSocketClosed, never earlier,
  // because libuv owns the handle's memory until then.
  struct Socket {
    uv_tcp_t tcp;
    uv_connect_t connect_request;
    // Null once the connection has let go of this socket.
    HttpConnection* owner = nullptr;
  };

  static void onConnect(uv_connect_t* request, int status);
  static void onAlloc(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buffer);
  static void onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buffer);
  static void onWrite(uv_write_t* request, int status);
  static void onSocketClosed(uv_handle_t* handle);

  static int onMessageBegin(llhttp_t* parser);
  static int onHeaderField(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderFieldComplete(llhttp_t* parser);
  static int onHeaderValue(llhttp_t* parser, const char* at, size_t length);
  static int onHeadersComplete(llhttp_t* parser);
  static int onBody(llhttp_t* parser, const char* at, size_t length);
  static int onMessageComplete(llhttp_t* parser);
  static const llhttp_settings_t& parserSettings();

  Status openSocket();
  void closeSocket();
  void handleConnected(int status);
  void writeRequest();
  void handleWriteFailure(int error_code);
  void handleRead(ssize_t nread, const char* data);
  void handleReadEnd(ssize_t nread);
  void parseResponseBytes(const char* data, size_t size);
  bool tryResendOnNewConnection();
  // Ends the exchange. The connection becomes idle, or disconnected after a failure or a
  // response without keep-alive, and then onResponseEnd runs. Touches no member after that.
  void endExchange(Status status);
  std::string describeEarlyEnd(std::string_view cause) const;

  uv_loop_t* loop_;
  uint16_t port_;
  State state_ = State::kDisconnected;
  Socket* socket_ = nullptr;

  // Reused by every read. Views given to observers point into it until the read returns.
  std::unique_ptr<char[]> read_buffer_;
  size_t read_buffer_bytes_;

  llhttp_t parser_;
  ResponseHead head_;
  // The bytes of the current request, rebuilt by each send().
  std::string request_text_;
  bool is_head_request_ = false;
  ResponseObserver* observer_ = nullptr;
  std::function<void(Status)> on_connected_;
  std::function<void(Status)> on_idle_close_;

  // Per exchange: what has arrived, for error messages and the resend rule.
  uint64_t response_bytes_ = 0;
  uint64_t body_bytes_ = 0;
  bool is_response_complete_ = false;
  bool is_keep_alive_ = false;
  bool was_resent_ = false;
  // Set by an observer or header-limit failure inside a parser callback.
  Status parser_failure_;

  // Responses completed on the current socket, so that a request on a reused socket is known.
  uint64_t exchanges_on_socket_ = 0;
  uint64_t retry_count_ = 0;
};

// Returns libuv's name and text for an error code, "ECONNREFUSED (connection refused)".
std::string uvErrorText(int error_code);

}  // namespace outpost::load
