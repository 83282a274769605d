// outpost_load: the load driver of the end-to-end bench suite (bench/load/driver.py runs it).
//
// Every mode connects to 127.0.0.1 on --port and nowhere else. A run prints one JSON document
// on stdout when it ends, and each error on stderr. The exit status is 0 when every request
// succeeded with the expected status and bytes, 1 when any failed, and 2 for invalid options.
#include <signal.h>
#include <uv.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <regex>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "bench/load/driver/fan_out_mode.h"
#include "bench/load/driver/http_connection.h"
#include "bench/load/driver/idle_mode.h"
#include "bench/load/driver/pull_mode.h"

namespace outpost::load {
namespace {

constexpr int kUsageExitStatus = 2;
constexpr uint32_t kMaxClients = 1'000'000;
constexpr uint32_t kMaxParallel = 64;

bool isHeaderNameChar(char c) {
  // tchar of RFC 9110 section 5.6.2.
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Returns an error text for a request target that cannot go on a request line, else "".
std::string checkPath(const std::string& path) {
  if (path.empty() || path.front() != '/') {
    return "must start with '/'";
  }
  for (char c : path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return "must not contain spaces or control characters";
    }
  }
  return "";
}

std::string checkHeaderLine(const std::string& line) {
  size_t colon = line.find(':');
  if (colon == std::string::npos || colon == 0) {
    return "must have the form 'Name: value'";
  }
  for (size_t i = 0; i < colon; ++i) {
    if (!isHeaderNameChar(line[i])) {
      return "has an invalid character in its name";
    }
  }
  if (line.find_first_of("\r\n") != std::string::npos) {
    return "must not contain CR or LF";
  }
  return "";
}

// Repository names and tags follow the OCI distribution specification (spec.md, "Pulling
// Manifests"). A name is path components of lower-case letters and digits, joined within a
// component by '.', '_', '__' or dashes. A tag has at most 128 characters and starts with a
// letter, digit or '_'.
std::string checkRepository(const std::string& name) {
  static const std::regex kPattern(
      "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*");
  return std::regex_match(name, kPattern) ? "" : "is not a valid repository name";
}

std::string checkReference(const std::string& reference) {
  static const std::regex kTagPattern("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}");
  if (std::regex_match(reference, kTagPattern) || Digest::parse(reference).hasValue()) {
    return "";
  }
  return "is neither a valid tag nor a valid digest";
}

CLI::Validator validatorFor(std::string (*check)(const std::string&), std::string name) {
  return CLI::Validator(check, "", std::move(name));
}

void addCommonOptions(CLI::App& command, CommonOptions& options) {
  command.add_option("--port", options.port, "TCP port on 127.0.0.1 to connect to")
      ->required()
      ->check(CLI::Range(1, 65535));
  command
      .add_option("--timeout-s", options.timeout_s, "seconds after which the run stops and fails")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

// Runs one mode on a new loop and prints its result. Returns the exit status.
template <typename Options, typename RunMode>
int runMode(const Options& options, RunMode run_mode) {
  uv_loop_t loop;
  int result = uv_loop_init(&loop);
  if (result < 0) {
    std::fprintf(stderr, "outpost_load: creating the event loop failed: %s\n",
                 uvErrorText(result).c_str());
    return 1;
  }
  RunResult run_result = run_mode(&loop, options);
  // Every mode closes its handles before its run returns, so the loop is empty here.
  result = uv_loop_close(&loop);
  if (result < 0) {
    run_result.errors.push_back("the event loop still had open handles at the end: " +
                                uvErrorText(result));
  }
  return printRunResult(run_result);
}

int runMain(int argc, char** argv) {
  CLI::App app("Load driver of the Outpost bench suite. Connects to 127.0.0.1 only.",
               "outpost_load");
  app.require_subcommand(1);

  FanOutOptions fan_out;
  CLI::App* fan_out_command = app.add_subcommand(
      "fan-out", "N clients GET one path at the same instant over connections opened first");
  addCommonOptions(*fan_out_command, fan_out.common);
  fan_out_command->add_option("--path", fan_out.path, "path and query to GET")
      ->required()
      ->check(validatorFor(&checkPath, "PATH"));
  fan_out_command->add_option("--clients", fan_out.clients, "number of clients and connections")
      ->required()
      ->check(CLI::Range(1u, kMaxClients));
  fan_out_command
      ->add_option("--expect-file", fan_out.expect_file, "file whose bytes every body must equal")
      ->check(CLI::ExistingFile);
  fan_out_command
      ->add_option("--header", fan_out.header_lines,
                   "extra request header 'Name: value'; may be repeated")
      ->check(validatorFor(&checkHeaderLine, "HEADER"));

  PullOptions pull;
  CLI::App* pull_command = app.add_subcommand(
      "pull", "N clients each pull one image as a container runtime does, starting at once");
  addCommonOptions(*pull_command, pull.common);
  pull_command->add_option("--repository", pull.repository, "repository name, e.g. team/app")
      ->required()
      ->check(validatorFor(&checkRepository, "NAME"));
  pull_command->add_option("--reference", pull.reference, "tag or digest of the image")
      ->required()
      ->check(validatorFor(&checkReference, "TAG"));
  pull_command->add_option("--clients", pull.clients, "number of clients pulling at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxClients));
  pull_command
      ->add_option("--parallel", pull.parallel,
                   "blob requests in flight per client, each on its own connection")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxParallel));

  IdleOptions idle;
  CLI::App* idle_command = app.add_subcommand(
      "idle", "hold N keep-alive connections open until stdin ends or SIGTERM/SIGINT arrives");
  addCommonOptions(*idle_command, idle.common);
  idle_command->add_option("--connections", idle.connections, "number of connections to hold")
      ->required()
      ->check(CLI::Range(1u, kMaxClients));
  idle_command->add_option("--path", idle.path, "path to GET once on each connection")
      ->capture_default_str()
      ->check(validatorFor(&checkPath, "PATH"));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    int status = app.exit(error);
    return status == 0 ? 0 : kUsageExitStatus;
  }

  if (fan_out_command->parsed()) {
    return runMode(fan_out, &runFanOut);
  }
  if (pull_command->parsed()) {
    return runMode(pull, &runPull);
  }
  return runMode(idle, &runIdle);
}

}  // namespace
}  // namespace outpost::load

int main(int argc, char** argv) {
  // A write to a connection the server has closed must fail with EPIPE, not end the process.
  ::signal(SIGPIPE, SIG_IGN);
  return outpost::load::runMain(argc, argv);
}
