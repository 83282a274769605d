// Check and Runner: how one conformance check records its outcome, and how the checks of a run
// are filtered by area, printed and counted.
//
// Each check prints one line on standard output as soon as it ends:
//   PASS <area>/<check>              optionally followed by " (<note>)"
//   FAIL <area>/<check>: <what was expected, what came back>
//   SKIP <area>/<check>: <why the check did not apply>
// A check fails on any broken MUST or SHOULD of the specification it tests, and is skipped
// where the specification lets a registry leave a feature out (a MAY) and the registry did.
#pragma once

#include <cstdio>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tests/conformance/registry_client.h"

namespace outpost::conformance {

// The workflow categories of the specification, in the order they run.
inline constexpr std::string_view kAreas[] = {"pull", "push", "discovery", "management"};

enum class Outcome { kPass, kFail, kSkip };

class Check {
 public:
  explicit Check(const RegistryClient& client) : client_(client) {}

  // Sends one request. When no HTTP response came back, fails the check and returns
  // std::nullopt.
  std::optional<Exchange> send(std::string method, std::string url,
                               std::vector<HttpHeader> headers = {}, std::string body = {});

  // Each expect method records a failure when its condition does not hold, and returns whether
  // it held, so that a check can stop at the first broken step.
  bool expect(bool condition, std::string failure);
  bool expectOk(const Status& status);
  bool expectStatus(const Exchange& exchange, int status);
  // Expects `status` and an error body whose codes include `code`.
  bool expectError(const Exchange& exchange, int status, std::string_view code);
  bool expectHeader(const Exchange& exchange, std::string_view name, std::string_view value);
  // Expects `exchange` to carry `name` and returns its first value.
  std::optional<std::string> requireHeader(const Exchange& exchange, std::string_view name);
  // Expects the response body to equal `bytes`, reporting the first differing offset.
  bool expectBody(const Exchange& exchange, std::string_view bytes);

  void fail(std::string failure);
  // Marks the check skipped with `reason`, unless it has failed already.
  void skip(std::string reason);
  // Adds `text` to the PASS line, for facts worth seeing such as which of two allowed responses
  // the registry sent.
  void note(std::string text);

  bool hasFailed() const { return !failures_.empty(); }
  Outcome outcome() const;
  // The failures joined by "; ", the skip reason, or the notes, by outcome.
  std::string detail() const;

 private:
  const RegistryClient& client_;
  std::vector<std::string> failures_;
  std::optional<std::string> skip_reason_;
  std::vector<std::string> notes_;
};

class Runner {
 public:
  // Runs the checks of `areas` only, printing to `out`.
  Runner(const RegistryClient& client, std::set<std::string> areas, std::FILE* out)
      : client_(client), areas_(std::move(areas)), out_(out) {}

  bool isEnabled(std::string_view area) const { return areas_.contains(std::string(area)); }

  // Runs `body` as the check `area`/`name`, prints its line and returns whether it passed.
  // Prints SKIP without running it when the area was blocked.
  bool run(std::string_view area, std::string_view name, const std::function<void(Check&)>& body);

  // Skips every later check of `area` with `reason`. An area's setup calls this when it
  // failed, because its checks would only repeat that failure.
  void blockArea(std::string_view area, std::string reason);

  // Prints "conformance: N passed, N failed, N skipped".
  void printSummary() const;

  int passed() const { return passed_; }
  int failed() const { return failed_; }
  int skipped() const { return skipped_; }

 private:
  void print(Outcome outcome, std::string_view area, std::string_view name,
             const std::string& detail);

  const RegistryClient& client_;
  std::set<std::string> areas_;
  std::FILE* out_;
  std::vector<std::pair<std::string, std::string>> blocked_areas_;
  int passed_ = 0;
  int failed_ = 0;
  int skipped_ = 0;
};

}  // namespace outpost::conformance
