#include "proxy/admin_client.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include "base/unique_fd.h"

namespace outpost::proxy {
namespace {

struct ServerAddress {
  std::string host;
  std::string port;
};

Expected<ServerAddress> parseServerUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return invalidArgument("server URL " + std::string(url) +
                           " must start with http:// (https is not supported here)");
  }
  std::string_view authority = url.substr(kScheme.size());
  while (authority.ends_with('/')) {
    authority.remove_suffix(1);
  }
  if (authority.empty() || authority.find('/') != std::string_view::npos) {
    return invalidArgument("server URL " + std::string(url) +
                           " must be http://host:port without a path");
  }

  ServerAddress address;
  size_t colon = authority.rfind(':');
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return invalidArgument("server URL " + std::string(url) + " has an unclosed IPv6 address");
    }
    address.host = std::string(authority.substr(1, close - 1));
    colon = authority.size() > close + 1 && authority[close + 1] == ':' ? close + 1
                                                                        : std::string_view::npos;
  } else {
    address.host = std::string(authority.substr(0, colon));
  }

  address.port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
  int port = 0;
  auto [end, error] =
      std::from_chars(address.port.data(), address.port.data() + address.port.size(), port);
  if (error != std::errc() || end != address.port.data() + address.port.size() || port < 1 ||
      port > 65535 || address.host.empty()) {
    return invalidArgument("server URL " + std::string(url) + " has an invalid host or port");
  }
  return address;
}

Expected<UniqueFd> connectTo(const ServerAddress& address, int timeout_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int error = ::getaddrinfo(address.host.c_str(), address.port.c_str(), &hints, &found);
      error != 0) {
    return unavailable("cannot resolve " + address.host + ": " + ::gai_strerror(error));
  }
  std::string last_error = "no address";
  UniqueFd connected;
  for (addrinfo* entry = found; entry != nullptr && !connected; entry = entry->ai_next) {
    UniqueFd fd(::socket(entry->ai_family, entry->ai_socktype | SOCK_CLOEXEC, entry->ai_protocol));
    if (!fd) {
      last_error = std::strerror(errno);
      continue;
    }
    timeval timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (retryOnEintr([&] { return ::connect(fd.get(), entry->ai_addr, entry->ai_addrlen); }) != 0) {
      last_error = std::strerror(errno);
      continue;
    }
    connected = std::move(fd);
  }
  ::freeaddrinfo(found);
  if (!connected) {
    return unavailable("cannot connect to " + address.host + ":" + address.port + ": " +
                       last_error + "; is the server running there?");
  }
  return connected;
}

}  // namespace

Expected<AdminResponse> sendAdminRequest(std::string_view server_url, std::string_view method,
                                         std::string_view target, std::string_view body,
                                         int timeout_ms) {
  OUTPOST_ASSIGN_OR_RETURN(ServerAddress address, parseServerUrl(server_url));
  OUTPOST_ASSIGN_OR_RETURN(UniqueFd fd, connectTo(address, timeout_ms));

  std::string request = std::string(method) + " " + std::string(target) +
                        " HTTP/1.1\r\nHost: " + address.host + ":" + address.port +
                        "\r\nConnection: close\r\n";
  if (!body.empty()) {
    request += "Content-Type: application/json\r\n";
  }
  request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  request.append(body);
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t count = retryOnEintr([&] {
      return ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    });
    if (count < 0) {
      return unavailable(std::string("sending the request failed: ") + std::strerror(errno));
    }
    sent += static_cast<size_t>(count);
  }

  // The server closes the connection after the response (Connection: close).
  std::string response;
  char buffer[16 * 1024];
  while (true) {
    ssize_t count = retryOnEintr([&] { return ::recv(fd.get(), buffer, sizeof(buffer), 0); });
    if (count < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return Status(StatusCode::kTimedOut,
                      "the server sent nothing for " + std::to_string(timeout_ms) + " ms");
      }
      return unavailable(std::string("reading the response failed: ") + std::strerror(errno));
    }
    if (count == 0) {
      break;
    }
    response.append(buffer, static_cast<size_t>(count));
  }

  size_t head_end = response.find("\r\n\r\n");
  AdminResponse result;
  if (!response.starts_with("HTTP/1.") || head_end == std::string::npos || response.size() < 12) {
    return unavailable("the server sent a malformed response");
  }
  std::from_chars(response.data() + 9, response.data() + 12, result.status);
  result.body = response.substr(head_end + 4);
  return result;
}

}  // namespace outpost::proxy
