#include "tests/integration/scripted_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace outpost::integration {
namespace {

bool sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(sent));
  }
  return true;
}

std::string head(int status, std::string_view reason, std::string_view content_type,
                 uint64_t length, std::string_view extra = "") {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nContent-Type: " + std::string(content_type) +
         "\r\nContent-Length: " + std::to_string(length) + "\r\n" + std::string(extra) +
         "Connection: close\r\n\r\n";
}

}  // namespace

ScriptedUpstream::~ScriptedUpstream() {
  stopping_.store(true);
  if (thread_.joinable()) {
    thread_.join();
  }
}

Status ScriptedUpstream::start() {
  listen_fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_) {
    return errnoStatus("socket", errno);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listen_fd_.get(), 64) != 0) {
    return errnoStatus("bind 127.0.0.1:0", errno);
  }
  socklen_t length = sizeof(address);
  ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { serve(); });
  return Status::ok();
}

void ScriptedUpstream::setResource(const std::string& target, std::string body,
                                   std::string content_type, std::string extra_headers) {
  std::lock_guard lock(mutex_);
  resources_[target] =
      Resource{std::move(body), std::move(content_type), std::move(extra_headers)};
}

size_t ScriptedUpstream::requestCount(const std::string& path) const {
  std::lock_guard lock(mutex_);
  auto found = request_counts_.find(path);
  return found == request_counts_.end() ? 0 : found->second;
}

void ScriptedUpstream::serve() {
  while (!stopping_.load()) {
    pollfd poll_fd{listen_fd_.get(), POLLIN, 0};
    if (::poll(&poll_fd, 1, 100) <= 0) {
      continue;
    }
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      handleConnection(fd);
      ::close(fd);
    }
  }
}

void ScriptedUpstream::handleConnection(int fd) {
  std::string request;
  char buffer[8192];
  while (request.find("\r\n\r\n") == std::string::npos) {
    pollfd poll_fd{fd, POLLIN, 0};
    if (::poll(&poll_fd, 1, 5000) <= 0) {
      return;
    }
    ssize_t received = ::recv(fd, buffer, sizeof(buffer), 0);
    if (received <= 0) {
      return;
    }
    request.append(buffer, static_cast<size_t>(received));
  }
  size_t method_end = request.find(' ');
  size_t target_end = request.find(' ', method_end + 1);
  std::string method = request.substr(0, method_end);
  std::string target = request.substr(method_end + 1, target_end - method_end - 1);
  std::string path = target.substr(0, target.find('?'));

  Resource resource;
  bool found = false;
  {
    std::lock_guard lock(mutex_);
    ++request_counts_[path];
    auto it = resources_.find(target);
    if (it == resources_.end()) {
      it = resources_.find(path);
    }
    if (it != resources_.end()) {
      resource = it->second;
      found = true;
    }
  }
  if (path == "/v2/" || path == "/v2") {
    sendAll(fd, head(200, "OK", "application/json", 2) + "{}");
    return;
  }

  UpstreamFault fault = fault_.load();
  if (fault == UpstreamFault::kStatus503) {
    std::string body = R"({"errors":[{"code":"UNAVAILABLE","message":"scripted"}]})";
    sendAll(fd, head(503, "Service Unavailable", "application/json", body.size()) + body);
    return;
  }
  if (fault == UpstreamFault::kStatus429) {
    std::string body = R"({"errors":[{"code":"TOOMANYREQUESTS","message":"scripted"}]})";
    sendAll(fd, head(429, "Too Many Requests", "application/json", body.size(),
                     "Retry-After: 2\r\n") +
                    body);
    return;
  }
  if (!found || fault == UpstreamFault::kNotFound) {
    std::string body = R"({"errors":[{"code":"BLOB_UNKNOWN","message":"not here"}]})";
    sendAll(fd, head(404, "Not Found", "application/json", body.size()) + body);
    return;
  }

  std::string response =
      head(200, "OK", resource.content_type, resource.body.size(), resource.extra_headers);
  if (method == "HEAD") {
    sendAll(fd, response);
    return;
  }
  std::string body = resource.body;
  if (fault == UpstreamFault::kWrongBytes && !body.empty()) {
    body[body.size() / 2] ^= 0x01;
  }
  if (fault == UpstreamFault::kCutMidBody) {
    body.resize(body.size() / 2);
  }
  if (!sendAll(fd, response)) {
    return;
  }
  sendBody(fd, body, fault == UpstreamFault::kSlowBody);
}

void ScriptedUpstream::sendBody(int fd, std::string_view body, bool is_slow) {
  constexpr size_t kPieceBytes = 64 * 1024;
  while (!body.empty()) {
    std::string_view piece = body.substr(0, is_slow ? kPieceBytes : body.size());
    if (!sendAll(fd, piece)) {
      return;
    }
    body_bytes_sent_.fetch_add(piece.size());
    body.remove_prefix(piece.size());
    if (is_slow) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

}  // namespace outpost::integration
