#include "tests/integration/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <limits>
#include <thread>

#include "base/unique_fd.h"
#include "tests/integration/process.h"
#include "tests/integration/temp_dir.h"

namespace outpost::integration {
namespace {

using SteadyClock = std::chrono::steady_clock;

bool equalsIgnoringCase(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

std::string_view trimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// Parses "HTTP/1.1 200 OK" into `result`.
Status parseStatusLine(std::string_view line, HttpResult& result) {
  if (!line.starts_with("HTTP/1.")) {
    return invalidArgument("invalid HTTP status line: " + std::string(line.substr(0, 80)));
  }
  size_t space = line.find(' ');
  if (space == std::string_view::npos || line.size() < space + 4) {
    return invalidArgument("invalid HTTP status line: " + std::string(line.substr(0, 80)));
  }
  std::string_view code = line.substr(space + 1, 3);
  auto [end, error] = std::from_chars(code.data(), code.data() + code.size(), result.status);
  if (error != std::errc() || end != code.data() + code.size() || result.status < 100 ||
      result.status > 999) {
    return invalidArgument("invalid HTTP status code: " + std::string(code));
  }
  result.reason = std::string(trimSpaces(line.substr(std::min(line.size(), space + 4))));
  return Status::ok();
}

Status parseHeaderLines(std::string_view block, HttpResult& result) {
  while (!block.empty()) {
    size_t end = block.find("\r\n");
    std::string_view line = block.substr(0, end);
    block = end == std::string_view::npos ? std::string_view() : block.substr(end + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return invalidArgument("invalid HTTP header line: " + std::string(line.substr(0, 80)));
    }
    result.headers.push_back(HttpHeader{std::string(line.substr(0, colon)),
                                        std::string(trimSpaces(line.substr(colon + 1)))});
  }
  return Status::ok();
}

Expected<uint64_t> parseContentLength(std::string_view text) {
  uint64_t length = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), length);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return invalidArgument("invalid Content-Length: " + std::string(text));
  }
  return length;
}

// Decodes a chunked body (RFC 9112, section 7.1): hex size lines, each chunk followed by CRLF,
// a zero-size chunk, then optional trailer lines and an empty line. Returns std::nullopt
// while more bytes are needed.
Expected<std::optional<std::string>> decodeChunked(std::string_view bytes) {
  std::string body;
  size_t position = 0;
  while (true) {
    size_t line_end = bytes.find("\r\n", position);
    if (line_end == std::string_view::npos) {
      return std::optional<std::string>();
    }
    std::string_view size_text = bytes.substr(position, line_end - position);
    size_text = trimSpaces(size_text.substr(0, size_text.find(';')));
    uint64_t size = 0;
    auto [end, error] =
        std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (size_text.empty() || error != std::errc() || end != size_text.data() + size_text.size()) {
      return invalidArgument("invalid chunk size line: " + std::string(size_text.substr(0, 40)));
    }
    position = line_end + 2;

    if (size == 0) {
      // Trailer section: header lines up to an empty line.
      while (true) {
        size_t trailer_end = bytes.find("\r\n", position);
        if (trailer_end == std::string_view::npos) {
          return std::optional<std::string>();
        }
        if (trailer_end == position) {
          return std::optional<std::string>(std::move(body));
        }
        position = trailer_end + 2;
      }
    }

    if (size > bytes.size() - position || bytes.size() - position - size < 2) {
      return std::optional<std::string>();
    }
    body.append(bytes.substr(position, size));
    position += size;
    if (bytes.substr(position, 2) != "\r\n") {
      return invalidArgument("chunk data not followed by CRLF");
    }
    position += 2;
  }
}

Expected<UniqueFd> connectTo(const ParsedUrl& url) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return errnoStatus("socket", errno);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(url.port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (retryOnEintr([&] {
        return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
      }) != 0) {
    return errnoStatus("connect 127.0.0.1:" + std::to_string(url.port), errno);
  }
  return fd;
}

int remainingMs(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

Status sendAll(int fd, std::string_view bytes, SteadyClock::time_point deadline) {
  while (!bytes.empty()) {
    pollfd poll_fd{fd, POLLOUT, 0};
    int ready = ::poll(&poll_fd, 1, remainingMs(deadline));
    if (ready == 0) {
      return Status(StatusCode::kTimedOut, "sending the HTTP request timed out");
    }
    if (ready < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errnoStatus("poll", errno);
    }
    ssize_t sent =
        retryOnEintr([&] { return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL); });
    if (sent < 0) {
      return errnoStatus("send", errno);
    }
    bytes.remove_prefix(static_cast<size_t>(sent));
  }
  return Status::ok();
}

std::string buildRequest(const HttpRequest& request, const ParsedUrl& url) {
  std::string text = request.method + " " + url.target + " HTTP/1.1\r\n";
  text += "Host: 127.0.0.1:" + std::to_string(url.port) + "\r\n";
  text += "Connection: close\r\n";
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH") {
    text += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  }
  for (const HttpHeader& header : request.headers) {
    text += header.name + ": " + header.value + "\r\n";
  }
  text += "\r\n";
  text += request.body;
  return text;
}

Expected<HttpResult> plainRequest(const HttpRequest& request, const ParsedUrl& url) {
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(request.timeout_ms);
  OUTPOST_ASSIGN_OR_RETURN(UniqueFd fd, connectTo(url));
  OUTPOST_RETURN_IF_ERROR(sendAll(fd.get(), buildRequest(request, url), deadline));

  bool is_head = request.method == "HEAD";
  std::string received;
  char buffer[64 * 1024];
  while (true) {
    pollfd poll_fd{fd.get(), POLLIN, 0};
    int ready = ::poll(&poll_fd, 1, remainingMs(deadline));
    if (ready == 0) {
      return Status(StatusCode::kTimedOut, "HTTP response from " + request.url +
                                               " timed out after " +
                                               std::to_string(received.size()) + " bytes");
    }
    if (ready < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errnoStatus("poll", errno);
    }
    ssize_t count = retryOnEintr([&] { return ::recv(fd.get(), buffer, sizeof(buffer), 0); });
    if (count < 0) {
      return errnoStatus("recv from " + request.url, errno);
    }
    bool is_at_eof = count == 0;
    received.append(buffer, static_cast<size_t>(count));
    OUTPOST_ASSIGN_OR_RETURN(std::optional<HttpResult> parsed,
                             parseHttpResponse(received, is_head, is_at_eof));
    if (parsed.has_value()) {
      return std::move(*parsed);
    }
  }
}

// Runs curl for an https URL. --raw keeps the chunked framing, so the output parses like bytes
// read from a socket. -q skips any .curlrc, and --noproxy keeps proxies out.
Expected<HttpResult> curlRequest(const HttpRequest& request) {
  std::vector<std::string> argv = {"curl", "-q", "-sS", "--http1.1", "-i", "--raw"};
  argv.insert(argv.end(), {"--noproxy", "*", "-H", "Expect:"});
  argv.push_back("--max-time");
  argv.push_back(std::to_string(std::max(1, request.timeout_ms / 1000)));
  if (request.method == "HEAD") {
    argv.push_back("--head");
  } else {
    argv.push_back("-X");
    argv.push_back(request.method);
  }
  if (!request.ca_file.empty()) {
    argv.push_back("--cacert");
    argv.push_back(request.ca_file);
  }
  for (const HttpHeader& header : request.headers) {
    argv.push_back("-H");
    argv.push_back(header.name + ": " + header.value);
  }

  std::optional<TempDir> body_dir;
  if (!request.body.empty()) {
    OUTPOST_ASSIGN_OR_RETURN(TempDir dir, TempDir::create("curl-body"));
    OUTPOST_RETURN_IF_ERROR(writeFile(dir.file("body"), request.body));
    argv.push_back("--data-binary");
    argv.push_back("@" + dir.file("body"));
    body_dir = std::move(dir);
  }
  argv.push_back(request.url);

  RunOptions options;
  options.timeout_ms = request.timeout_ms + 2000;
  OUTPOST_ASSIGN_OR_RETURN(CommandResult result, run(std::move(argv), options));
  OUTPOST_RETURN_IF_ERROR(result.toStatus());
  OUTPOST_ASSIGN_OR_RETURN(std::optional<HttpResult> parsed,
                           parseHttpResponse(result.stdout_text, request.method == "HEAD", true));
  return std::move(*parsed);
}

}  // namespace

Expected<uint16_t> freePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return errnoStatus("socket", errno);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return errnoStatus("bind 127.0.0.1:0", errno);
  }
  socklen_t length = sizeof(address);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return errnoStatus("getsockname", errno);
  }
  return ntohs(address.sin_port);
}

HttpHeader basicAuthHeader(std::string_view username, std::string_view password) {
  std::string plain = std::string(username) + ":" + std::string(password);
  // EVP_EncodeBlock writes 4 output bytes per 3 input bytes, rounded up, and a NUL.
  std::string encoded(4 * ((plain.size() + 2) / 3) + 1, '\0');
  int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                               reinterpret_cast<const unsigned char*>(plain.data()),
                               static_cast<int>(plain.size()));
  encoded.resize(static_cast<size_t>(length));
  return HttpHeader{"Authorization", "Basic " + encoded};
}

std::optional<std::string> HttpResult::header(std::string_view name) const {
  for (const HttpHeader& header : headers) {
    if (equalsIgnoringCase(header.name, name)) {
      return header.value;
    }
  }
  return std::nullopt;
}

std::vector<std::string> HttpResult::headerValues(std::string_view name) const {
  std::vector<std::string> values;
  for (const HttpHeader& header : headers) {
    if (equalsIgnoringCase(header.name, name)) {
      values.push_back(header.value);
    }
  }
  return values;
}

Expected<ParsedUrl> parseUrl(std::string_view url) {
  ParsedUrl parsed;
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    parsed.is_tls = true;
    rest = url.substr(8);
  } else {
    return invalidArgument("URL must start with http:// or https://: " + std::string(url));
  }

  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  parsed.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));

  size_t colon = authority.rfind(':');
  std::string_view host = authority.substr(0, colon);
  if (host != "127.0.0.1" && host != "localhost") {
    return invalidArgument("only 127.0.0.1 and localhost are allowed in test requests, got " +
                           std::string(url));
  }
  parsed.host = "127.0.0.1";
  if (colon == std::string_view::npos) {
    parsed.port = parsed.is_tls ? 443 : 80;
    return parsed;
  }
  std::string_view port_text = authority.substr(colon + 1);
  auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), parsed.port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      parsed.port == 0) {
    return invalidArgument("invalid port in URL: " + std::string(url));
  }
  return parsed;
}

Expected<std::optional<HttpResult>> parseHttpResponse(std::string_view bytes, bool is_head,
                                                      bool is_at_eof) {
  while (true) {
    size_t header_end = bytes.find("\r\n\r\n");
    if (header_end == std::string_view::npos) {
      if (is_at_eof) {
        return invalidArgument("connection closed before the end of the response headers");
      }
      return std::optional<HttpResult>();
    }

    HttpResult result;
    std::string_view head = bytes.substr(0, header_end);
    size_t line_end = head.find("\r\n");
    OUTPOST_RETURN_IF_ERROR(parseStatusLine(head.substr(0, line_end), result));
    if (line_end != std::string_view::npos) {
      OUTPOST_RETURN_IF_ERROR(parseHeaderLines(head.substr(line_end + 2), result));
    }
    std::string_view rest = bytes.substr(header_end + 4);

    // RFC 9110, section 15.2: a 1xx response is interim and the final response follows.
    if (result.status < 200 && result.status != 101) {
      bytes = rest;
      continue;
    }
    if (is_head || result.status == 204 || result.status == 304 || result.status == 101) {
      return std::optional<HttpResult>(std::move(result));
    }

    std::optional<std::string> transfer_encoding = result.header("Transfer-Encoding");
    if (transfer_encoding.has_value() && transfer_encoding->find("chunked") != std::string::npos) {
      OUTPOST_ASSIGN_OR_RETURN(std::optional<std::string> body, decodeChunked(rest));
      if (!body.has_value()) {
        if (is_at_eof) {
          return invalidArgument("connection closed inside a chunked body");
        }
        return std::optional<HttpResult>();
      }
      result.body = std::move(*body);
      return std::optional<HttpResult>(std::move(result));
    }

    std::optional<std::string> length_text = result.header("Content-Length");
    if (length_text.has_value()) {
      OUTPOST_ASSIGN_OR_RETURN(uint64_t length, parseContentLength(*length_text));
      if (rest.size() < length) {
        if (is_at_eof) {
          return invalidArgument("connection closed after " + std::to_string(rest.size()) + " of " +
                                 std::to_string(length) + " body bytes");
        }
        return std::optional<HttpResult>();
      }
      result.body = std::string(rest.substr(0, length));
      return std::optional<HttpResult>(std::move(result));
    }

    // RFC 9112, section 6.3: without framing headers the body runs to the end of the connection.
    if (!is_at_eof) {
      return std::optional<HttpResult>();
    }
    result.body = std::string(rest);
    return std::optional<HttpResult>(std::move(result));
  }
}

Expected<HttpResult> httpRequest(const HttpRequest& request) {
  OUTPOST_ASSIGN_OR_RETURN(ParsedUrl url, parseUrl(request.url));
  if (url.is_tls) {
    return curlRequest(request);
  }
  return plainRequest(request, url);
}

Expected<HttpResult> httpGet(const std::string& url, std::vector<HttpHeader> headers) {
  HttpRequest request;
  request.url = url;
  request.headers = std::move(headers);
  return httpRequest(request);
}

Expected<HttpResult> httpHead(const std::string& url, std::vector<HttpHeader> headers) {
  HttpRequest request;
  request.method = "HEAD";
  request.url = url;
  request.headers = std::move(headers);
  return httpRequest(request);
}

bool waitForHttp(const std::string& url, int timeout_ms, Process* process) {
  Expected<ParsedUrl> parsed = parseUrl(url);
  if (!parsed) {
    return false;
  }
  HttpRequest request;
  request.url = "http://127.0.0.1:" + std::to_string(parsed->port) + parsed->target;
  request.timeout_ms = 1000;

  auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  while (SteadyClock::now() < deadline) {
    if (plainRequest(request, *parsed).hasValue()) {
      return true;
    }
    if (process != nullptr && !process->isRunning()) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace outpost::integration
