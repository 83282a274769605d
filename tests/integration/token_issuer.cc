#include "tests/integration/token_issuer.h"

#include <charconv>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "tests/integration/http_client.h"

namespace outpost::integration {
namespace {

constexpr const char* kPython = "/usr/bin/python3";
constexpr int kStartTimeoutMs = 15'000;

std::string joined(const std::vector<std::string>& parts, char separator) {
  std::string text;
  for (const std::string& part : parts) {
    if (!text.empty()) {
      text += separator;
    }
    text += part;
  }
  return text;
}

// Waits for the script to write its port file, which it does once the socket listens.
Expected<uint16_t> waitForPortFile(const std::string& path, Process& process) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartTimeoutMs);
  while (std::chrono::steady_clock::now() < deadline) {
    Expected<std::string> text = readFile(path);
    if (text) {
      uint16_t port = 0;
      auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), port);
      if (error != std::errc() || port == 0) {
        return internalError("token issuer wrote an invalid port file: " + *text);
      }
      return port;
    }
    if (!process.isRunning()) {
      return unavailable("token issuer " + process.exitDescription() + ": " + process.logTail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status(StatusCode::kTimedOut,
                "token issuer did not listen within 15 s: " + process.logTail());
}

}  // namespace

Expected<std::unique_ptr<TokenIssuer>> TokenIssuer::start(TokenIssuerOptions options) {
  OUTPOST_ASSIGN_OR_RETURN(TempDir dir, TempDir::create("token-issuer"));
  OUTPOST_ASSIGN_OR_RETURN(SigningKey key, makeSigningKey(dir.path()));

  std::string port_file = dir.file("port");
  ProcessOptions process_options;
  process_options.argv = {kPython,
                          std::string(OUTPOST_SOURCE_DIR) + "/tests/integration/token_issuer.py",
                          "--port",
                          "0",
                          "--port-file",
                          port_file,
                          "--key",
                          key.key_file,
                          "--issuer",
                          options.issuer,
                          "--service",
                          options.service,
                          "--allowed-actions",
                          joined(options.allowed_actions, ','),
                          "--expires-in-s",
                          std::to_string(options.expires_in_s)};
  if (!options.username.empty()) {
    process_options.argv.insert(process_options.argv.end(),
                                {"--user", options.username, "--password", options.password});
  }
  process_options.log_path = dir.file("token-issuer.log");
  OUTPOST_ASSIGN_OR_RETURN(Process process, Process::start(std::move(process_options)));

  OUTPOST_ASSIGN_OR_RETURN(uint16_t port, waitForPortFile(port_file, process));
  std::string stats_url = "http://127.0.0.1:" + std::to_string(port) + "/stats";
  if (!waitForHttp(stats_url, kStartTimeoutMs, &process)) {
    return unavailable("token issuer does not answer on " + stats_url + ": " + process.logTail());
  }
  return std::make_unique<TokenIssuer>(PrivateTag{}, std::move(options), std::move(dir),
                                       std::move(key), std::move(process), port);
}

TokenIssuer::TokenIssuer(PrivateTag, TokenIssuerOptions options, TempDir dir, SigningKey key,
                         Process process, uint16_t port)
    : options_(std::move(options)),
      dir_(std::move(dir)),
      key_(std::move(key)),
      process_(std::move(process)),
      port_(port) {}

std::string TokenIssuer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string TokenIssuer::realm() const { return url() + "/token"; }

Expected<TokenIssuerStats> TokenIssuer::stats() const {
  OUTPOST_ASSIGN_OR_RETURN(HttpResult response, httpGet(url() + "/stats"));
  if (response.status != 200) {
    return internalError("token issuer /stats returned status " + std::to_string(response.status));
  }
  nlohmann::json json = nlohmann::json::parse(response.body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return internalError("token issuer /stats returned invalid JSON: " + response.body);
  }
  TokenIssuerStats stats;
  stats.token_requests = json.value("token_requests", int64_t{0});
  stats.tokens_issued = json.value("tokens_issued", int64_t{0});
  stats.rejected = json.value("rejected", int64_t{0});
  stats.scopes = json.value("scopes", std::vector<std::string>());
  return stats;
}

Status TokenIssuer::resetStats() const {
  HttpRequest request;
  request.method = "POST";
  request.url = url() + "/stats/reset";
  OUTPOST_ASSIGN_OR_RETURN(HttpResult response, httpRequest(request));
  if (response.status != 200) {
    return internalError("token issuer /stats/reset returned status " +
                         std::to_string(response.status));
  }
  return Status::ok();
}

}  // namespace outpost::integration
