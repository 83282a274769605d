// UpstreamClient: how Outpost fetches manifests and blobs from an upstream registry.
//
// HTTP/1.1 over libuv TCP, with TLS through OpenSSL, a keep-alive pool per origin, redirects,
// retries with backoff, timeouts, and the registry token flow (the "Docker token
// authentication" scheme that Docker Hub, ghcr.io and CNCF distribution use).
//
// Threading: each event-loop thread owns one UpstreamClient per configured remote. Every call,
// including the handler callbacks, happens on that loop's thread. Only counters() may be read
// from other threads.
//
// Events of one call, in the order its handler receives them:
//   start() ... onHead (at most once) ... onBody (zero or more times) ... onComplete (once)
// Retries, redirects and the 401 challenge-response steps happen before onHead and are not
// visible to the handler. Destroying the UpstreamCall cancels it: no callback runs afterwards.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"
#include "proxy/upstream/http_headers.h"
#include "proxy/upstream/upstream_response.h"

namespace outpost::proxy {

namespace upstream {
class ClientCore;
}

struct UpstreamOptions {
  // Scheme, host and optional port, such as "https://registry-1.docker.io" or
  // "http://127.0.0.1:5001". A path, if present, prefixes every request path.
  std::string base_url;
  // Optional credentials, sent as Basic to the registry after a Basic challenge and to the
  // token endpoint of a Bearer challenge.
  std::string username;
  std::string password;
  // PEM bundle of trusted CA certificates; empty means the system store.
  std::string ca_file;
  // Accepts any certificate of an https upstream. For test setups only.
  bool insecure_skip_verify = false;
  // Maximum time to resolve, connect and finish the TLS handshake.
  int64_t connect_timeout_ms = 5000;
  // Maximum time from sending a request to receiving the whole response head.
  int64_t response_timeout_ms = 30000;
  // Maximum time without a body byte once the head has arrived.
  int64_t body_stall_timeout_ms = 30000;
  // Retries for 429, 500, 502, 503, 504 and connection failures, all before the response head
  // is delivered. 0 disables retries.
  int max_retries = 2;
  // Backoff before retry n (from 0) is about retry_base_delay_ms * 2^n, with jitter.
  int64_t retry_base_delay_ms = 200;
  // Maximum open connections per origin (scheme, host, port); further requests queue.
  int max_connections_per_host = 16;
  // Time after which an unused pooled connection is closed.
  int64_t idle_connection_timeout_ms = 30000;
  std::string user_agent = "outpost/0.1";
  // Clock for token expiry. Not owned; must outlive the client.
  const Clock* clock = &SystemClock::instance();
};

struct UpstreamRequest {
  // "GET" or "HEAD"; other methods are sent as given, without a body.
  std::string method = "GET";
  // Origin-form target such as "/v2/library/alpine/manifests/latest", appended to the base
  // URL's path.
  std::string path_and_query;
  // Extra headers such as Accept and Range. The client sets Host, User-Agent and
  // Authorization itself. A request that carries one of those, a framing header (Connection,
  // Content-Length, Transfer-Encoding) or a malformed field fails with kInvalidArgument.
  HeaderList headers;
  // Time limit for the whole call, retries included; 0 means none. Exceeding it completes the
  // call with kTimedOut, even in the middle of the body.
  int64_t deadline_ms = 0;
  // Request id of the downstream request, for log lines.
  std::string request_id;
};

// Receives the events of one call. Callbacks run on the client's loop thread, never before
// start() returns, and may destroy the UpstreamCall (after which no callback runs).
class UpstreamHandler {
 public:
  virtual ~UpstreamHandler() = default;
  // The final response head: after redirects, authentication and retries. Runs at most once,
  // and not at all when the call fails before a usable head arrives.
  virtual void onHead(const UpstreamResponse& response) = 0;
  // A piece of the body, valid only during the call. Returning a failed Status aborts the call,
  // which then completes with that Status. HEAD, 204 and 304 responses have no body.
  // NOTE: the client reads the socket as fast as the upstream sends and never pauses, so a
  // handler that cannot keep up has to buffer or fail.
  virtual Status onBody(std::string_view chunk) = 0;
  // Runs exactly once, last. The status is OK when the whole body was received. Failures:
  //   kUnavailable       unreachable upstream, TLS failure, invalid response, too many
  //                      redirects, or connection lost mid-body; the message names the host
  //   kTimedOut          connect, response head or body stall timeout, or the deadline
  //   kUnauthenticated   the token endpoint rejected the credentials (401 or 403)
  //   kInvalidArgument   malformed request, invalid base URL, or unreadable CA file
  //   kCancelled         the client was closed
  //   other codes        the Status that onBody returned, or kInternal when OpenSSL fails
  virtual void onComplete(Status status) = 0;
};

// A call in progress. Destroying it cancels the call: the connection in use is closed and no
// callback runs afterwards. Destroying it after onComplete does nothing.
class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
};

// Counters for the metrics page. Updated on the loop thread, readable from any thread.
struct UpstreamCounters {
  // Request heads written, retries, redirects and token requests included.
  std::atomic<uint64_t> requests_sent{0};
  // Bytes read from upstream sockets, TLS records included.
  std::atomic<uint64_t> bytes_received{0};
  // Attempts repeated after a retryable status or connection failure.
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> connections_opened{0};
  std::atomic<uint64_t> token_requests{0};
};

class UpstreamClient {
 public:
  // `loop` must outlive the client. An invalid base URL or CA file does not fail here: each
  // call then completes with the error.
  UpstreamClient(uv_loop_t* loop, UpstreamOptions options);
  // Precondition: close() has completed.
  ~UpstreamClient();
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  // Starts a request. `handler` is not owned and must outlive the call, or the call must be
  // destroyed first. Callbacks never run before start() returns. Must not be called after
  // close().
  std::unique_ptr<UpstreamCall> start(UpstreamRequest request, UpstreamHandler* handler);

  // Completes every active call with kCancelled, closes pooled and active connections, and
  // runs `on_closed` on the loop thread once libuv has released every handle of the client.
  // `on_closed` never runs before close() returns; the client may be destroyed inside it.
  void close(std::function<void()> on_closed);

  const UpstreamCounters& counters() const;

 private:
  std::unique_ptr<upstream::ClientCore> core_;
};

}  // namespace outpost::proxy
