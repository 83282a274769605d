#include "tests/conformance/check_runner.h"

#include <algorithm>

namespace outpost::conformance {
namespace {

std::string joined(const std::vector<std::string>& parts, std::string_view separator) {
  std::string text;
  for (const std::string& part : parts) {
    if (!text.empty()) {
      text += separator;
    }
    text += part;
  }
  return text;
}

}  // namespace

std::optional<Exchange> Check::send(std::string method, std::string url,
                                    std::vector<HttpHeader> headers, std::string body) {
  Expected<Exchange> exchange =
      client_.send(std::move(method), std::move(url), std::move(headers), std::move(body));
  if (!exchange) {
    fail(std::string(exchange.status().message()));
    return std::nullopt;
  }
  return std::move(*exchange);
}

bool Check::expect(bool condition, std::string failure) {
  if (!condition) {
    fail(std::move(failure));
  }
  return condition;
}

bool Check::expectOk(const Status& status) {
  return expect(status.isOk(), std::string(status.message()));
}

bool Check::expectStatus(const Exchange& exchange, int status) {
  return expect(exchange.response.status == status, exchange.describeRequest() + ": expected " +
                                                        std::to_string(status) + ", got " +
                                                        exchange.describeResponse());
}

bool Check::expectError(const Exchange& exchange, int status, std::string_view code) {
  std::vector<std::string> codes = errorCodes(exchange.response.body);
  bool has_code = std::find(codes.begin(), codes.end(), code) != codes.end();
  return expect(exchange.response.status == status && has_code,
                exchange.describeRequest() + ": expected " + std::to_string(status) + " " +
                    std::string(code) + ", got " + exchange.describeResponse());
}

bool Check::expectHeader(const Exchange& exchange, std::string_view name, std::string_view value) {
  std::optional<std::string> actual = exchange.response.header(name);
  if (!actual.has_value()) {
    fail(exchange.describeRequest() + ": expected header " + std::string(name) + ": " +
         std::string(value) + ", got none");
    return false;
  }
  return expect(*actual == value, exchange.describeRequest() + ": expected header " +
                                      std::string(name) + ": " + std::string(value) + ", got " +
                                      *actual);
}

std::optional<std::string> Check::requireHeader(const Exchange& exchange, std::string_view name) {
  std::optional<std::string> value = exchange.response.header(name);
  if (!value.has_value()) {
    fail(exchange.describeRequest() + ": expected a " + std::string(name) + " header, got none (" +
         exchange.describeResponse() + ")");
  }
  return value;
}

bool Check::expectBody(const Exchange& exchange, std::string_view bytes) {
  const std::string& body = exchange.response.body;
  if (body == bytes) {
    return true;
  }
  size_t common = std::min(body.size(), bytes.size());
  size_t offset = static_cast<size_t>(
      std::mismatch(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(common), bytes.begin())
          .first -
      body.begin());
  fail(exchange.describeRequest() + ": expected the " + std::to_string(bytes.size()) +
       " bytes pushed, got " + std::to_string(body.size()) + " bytes differing from offset " +
       std::to_string(offset));
  return false;
}

void Check::fail(std::string failure) { failures_.push_back(std::move(failure)); }

void Check::skip(std::string reason) {
  if (!skip_reason_.has_value()) {
    skip_reason_ = std::move(reason);
  }
}

void Check::note(std::string text) { notes_.push_back(std::move(text)); }

Outcome Check::outcome() const {
  if (!failures_.empty()) {
    return Outcome::kFail;
  }
  return skip_reason_.has_value() ? Outcome::kSkip : Outcome::kPass;
}

std::string Check::detail() const {
  switch (outcome()) {
    case Outcome::kFail:
      return joined(failures_, "; ");
    case Outcome::kSkip:
      return *skip_reason_;
    case Outcome::kPass:
      return joined(notes_, "; ");
  }
  return {};
}

bool Runner::run(std::string_view area, std::string_view name,
                 const std::function<void(Check&)>& body) {
  for (const auto& [blocked_area, reason] : blocked_areas_) {
    if (blocked_area == area) {
      print(Outcome::kSkip, area, name, reason);
      return false;
    }
  }

  Check check(client_);
  body(check);
  print(check.outcome(), area, name, check.detail());
  return check.outcome() == Outcome::kPass;
}

void Runner::blockArea(std::string_view area, std::string reason) {
  blocked_areas_.emplace_back(std::string(area), std::move(reason));
}

void Runner::print(Outcome outcome, std::string_view area, std::string_view name,
                   const std::string& detail) {
  std::string line;
  switch (outcome) {
    case Outcome::kPass:
      ++passed_;
      line = "PASS ";
      break;
    case Outcome::kFail:
      ++failed_;
      line = "FAIL ";
      break;
    case Outcome::kSkip:
      ++skipped_;
      line = "SKIP ";
      break;
  }
  line += std::string(area) + "/" + std::string(name);
  if (!detail.empty()) {
    line += outcome == Outcome::kPass ? " (" + detail + ")" : ": " + detail;
  }
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void Runner::printSummary() const {
  std::fprintf(out_, "conformance: %d passed, %d failed, %d skipped\n", passed_, failed_, skipped_);
  std::fflush(out_);
}

}  // namespace outpost::conformance
