// ScriptedUpstream: a minimal registry on 127.0.0.1 that answers each request with a scripted
// fault, for what a real registry cannot be made to do: cut a body off, stall, answer 503 or
// 429. Everything else in the integration tests uses CNCF distribution.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace outpost::integration {

enum class UpstreamFault {
  kNone,          // 200 with the whole body
  kCutMidBody,    // announces the whole length, sends half, closes
  kWrongBytes,    // the right length, one byte flipped
  kStatus503,     // 503 with a small error body
  kStatus429,     // 429 with Retry-After: 2
  kNotFound,      // 404
  kSlowBody,      // 200 with the whole body, sent in 64 KiB pieces 10 ms apart
};

class ScriptedUpstream {
 public:
  ScriptedUpstream() = default;
  ~ScriptedUpstream();

  // Listens on a free port of 127.0.0.1 and serves from a thread until destroyed.
  Status start();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string hostPort() const { return "127.0.0.1:" + std::to_string(port_); }

  // Serves `body` at `target` (for example "/v2/team/app/blobs/sha256:..."), with
  // `content_type` and `extra_headers` (each line ending in CRLF). A target with a query is
  // matched whole; otherwise the request's path decides.
  void setResource(const std::string& target, std::string body,
                   std::string content_type = "application/octet-stream",
                   std::string extra_headers = "");
  // Applies `fault` to every request from now on.
  void setFault(UpstreamFault fault) { fault_.store(fault); }
  // Requests received for `path` (any method).
  size_t requestCount(const std::string& path) const;
  // Body bytes written to sockets so far, over all requests.
  uint64_t bodyBytesSent() const { return body_bytes_sent_.load(); }

 private:
  struct Resource {
    std::string body;
    std::string content_type;
    std::string extra_headers;
  };
  void serve();
  void handleConnection(int fd);
  void sendBody(int fd, std::string_view body, bool is_slow);

  UniqueFd listen_fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<UpstreamFault> fault_{UpstreamFault::kNone};
  std::atomic<uint64_t> body_bytes_sent_{0};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::string, Resource> resources_;   // guarded by mutex_
  std::map<std::string, size_t> request_counts_;  // guarded by mutex_
};

}  // namespace outpost::integration
