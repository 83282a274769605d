// A small blocking HTTP/1.1 client for assertions in integration tests, and free ports.
//
// It talks to 127.0.0.1 only: a URL whose host is anything other than 127.0.0.1 or localhost
// is rejected before any connection is made, so a test cannot send traffic off the machine.
// Plain http:// requests go over a socket opened here. https:// requests run curl (with the
// given CA file) and parse its raw output, because the harness does not link a TLS client.
// Each request uses a new connection and sends `Connection: close`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace outpost::integration {

class Process;

// Returns a TCP port that was free on 127.0.0.1 a moment ago. Another process can take it
// before the caller binds it, so callers that start servers retry on "address in use".
Expected<uint16_t> freePort();

struct HttpHeader {
  std::string name;
  std::string value;
};

// Returns an `Authorization: Basic ...` header for `username` and `password`.
HttpHeader basicAuthHeader(std::string_view username, std::string_view password);

struct HttpResult {
  int status = 0;
  std::string reason;
  // Headers in the order received, with names in their original case.
  std::vector<HttpHeader> headers;
  // The body after transfer decoding (chunked framing removed). Empty for HEAD.
  std::string body;

  // Returns the first value of header `name`, compared without case.
  std::optional<std::string> header(std::string_view name) const;
  // Returns every value of header `name`, in order.
  std::vector<std::string> headerValues(std::string_view name) const;
};

struct HttpRequest {
  std::string method = "GET";
  // "http://127.0.0.1:PORT/path?query" or "https://127.0.0.1:PORT/...".
  std::string url;
  // Sent after Host, Connection and (when there is a body) Content-Length.
  std::vector<HttpHeader> headers;
  std::string body;
  // PEM CA certificate that signs the server certificate, for https only.
  std::string ca_file;
  int timeout_ms = 10'000;
};

// Sends one request and reads the whole response. Fails on a rejected URL, a refused
// connection, a timeout or a malformed response. Any HTTP status counts as a success.
Expected<HttpResult> httpRequest(const HttpRequest& request);
Expected<HttpResult> httpGet(const std::string& url, std::vector<HttpHeader> headers = {});
Expected<HttpResult> httpHead(const std::string& url, std::vector<HttpHeader> headers = {});

// Polls `url` with plain GET requests until a server responds with any status. Gives up after
// `timeout_ms`, or at once when `process` is given and has exited. An https URL is polled
// over plain HTTP, to which a TLS server responds with an error status that counts as up.
bool waitForHttp(const std::string& url, int timeout_ms, Process* process = nullptr);

struct ParsedUrl {
  bool is_tls = false;
  // Always "127.0.0.1", because localhost is mapped to it.
  std::string host;
  uint16_t port = 0;
  // Path and query, "/" when the URL has none.
  std::string target;
};

// Splits `url`, rejecting schemes other than http and https and hosts other than 127.0.0.1
// and localhost.
Expected<ParsedUrl> parseUrl(std::string_view url);

// Parses an HTTP/1.x response from `bytes`. Returns std::nullopt while more bytes are needed.
// `is_head` means the response has no body whatever its headers state. `is_at_eof` means the
// peer closed the connection, which ends a body that has neither Content-Length nor chunked
// framing. Interim 1xx responses are skipped.
Expected<std::optional<HttpResult>> parseHttpResponse(std::string_view bytes, bool is_head,
                                                      bool is_at_eof);

}  // namespace outpost::integration
