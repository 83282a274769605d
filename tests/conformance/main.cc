// outpost_conformance: checks a registry on this machine against the OCI distribution
// specification 1.1, in its four workflow categories (pull, push, discovery, management).
//
// It pushes generated blobs and manifests to the repository given by --name (and, for
// cross-repository mounts, to --name2), prints one PASS, FAIL or SKIP line per check and a
// summary line. Exit status: 0 when no check failed, 1 when one did or the registry did not
// respond, 2 for invalid options. Requests go to 127.0.0.1 only: a URL with another host is
// rejected before anything is sent.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/conformance/checks.h"
#include "tests/integration/http_client.h"

namespace outpost::conformance {
namespace {

constexpr int kUsageExitStatus = 2;
constexpr int kFailureExitStatus = 1;

// spec.md, "Pulling manifests": the <name> regular expression.
bool isValidRepositoryName(const std::string& name) {
  static const std::regex kPattern(
      "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*");
  return std::regex_match(name, kPattern);
}

// Returns "http://127.0.0.1:PORT" for a valid --url, else an error text.
Expected<std::string> baseUrlFor(const std::string& url) {
  Expected<integration::ParsedUrl> parsed = integration::parseUrl(url);
  if (!parsed) {
    return parsed.status();
  }
  if (parsed->is_tls) {
    return invalidArgument(
        "https URLs are not supported; give the registry's plain http:// "
        "address, got " +
        url);
  }
  if (parsed->target != "/") {
    return invalidArgument("the URL must name the registry without a path, got " + url);
  }
  return "http://" + parsed->host + ":" + std::to_string(parsed->port);
}

struct Options {
  std::string url;
  std::string name;
  std::string mount_source_name;
  std::vector<std::string> skipped_areas;
  std::vector<std::string> only_areas;
};

std::set<std::string> selectAreas(const Options& options) {
  std::set<std::string> areas;
  if (options.only_areas.empty()) {
    areas.insert(std::begin(kAreas), std::end(kAreas));
  } else {
    areas.insert(options.only_areas.begin(), options.only_areas.end());
  }
  for (const std::string& area : options.skipped_areas) {
    areas.erase(area);
  }
  return areas;
}

int run(const Options& options) {
  Expected<std::string> base_url = baseUrlFor(options.url);
  if (!base_url) {
    std::fprintf(stderr, "outpost_conformance: %s\n",
                 std::string(base_url.status().message()).c_str());
    return kUsageExitStatus;
  }
  for (const std::string& name : {options.name, options.mount_source_name}) {
    if (!isValidRepositoryName(name)) {
      std::fprintf(stderr,
                   "outpost_conformance: invalid repository name \"%s\": use lower-case path "
                   "components such as conformance/test\n",
                   name.c_str());
      return kUsageExitStatus;
    }
  }

  RegistryClient client(*base_url);
  Expected<Exchange> probe = client.send("GET", *base_url + "/v2/");
  if (!probe) {
    std::fprintf(stderr, "outpost_conformance: %s\n",
                 std::string(probe.status().message()).c_str());
    return kFailureExitStatus;
  }

  Session session{client, options.name, options.mount_source_name, ContentFactory(),
                  Runner(client, selectAreas(options), stdout)};
  std::printf("registry %s, repository %s, mount source %s, run %s\n", base_url->c_str(),
              session.name.c_str(), session.mount_source_name.c_str(),
              session.content.runId().c_str());
  if (session.runner.isEnabled("pull")) {
    runPullChecks(session);
  }
  if (session.runner.isEnabled("push")) {
    runPushChecks(session);
  }
  if (session.runner.isEnabled("discovery")) {
    runDiscoveryChecks(session);
  }
  if (session.runner.isEnabled("management")) {
    runManagementChecks(session);
  }
  session.runner.printSummary();
  return session.runner.failed() == 0 ? 0 : kFailureExitStatus;
}

}  // namespace
}  // namespace outpost::conformance

int main(int argc, char** argv) {
  using outpost::conformance::kAreas;
  outpost::conformance::Options options;
  std::vector<std::string> area_names(std::begin(kAreas), std::end(kAreas));

  CLI::App app(
      "Checks a registry on 127.0.0.1 against the OCI distribution specification 1.1. It pushes "
      "generated content to the repositories given, and deletes some of it.",
      "outpost_conformance");
  app.add_option("--url", options.url,
                 "Registry base URL, http://127.0.0.1:PORT or "
                 "http://localhost:PORT")
      ->required();
  app.add_option("--name", options.name,
                 "Repository to push to and pull from, e.g. "
                 "conformance/test")
      ->required();
  app.add_option("--name2", options.mount_source_name,
                 "Second repository, the source of cross-repository mounts (default: "
                 "<name>/mount-source)");
  app.add_option("--skip", options.skipped_areas, "Areas to leave out")
      ->check(CLI::IsMember(area_names));
  app.add_option("--only", options.only_areas, "Areas to run, all four by default")
      ->check(CLI::IsMember(area_names));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    int status = app.exit(error);
    return status == 0 ? 0 : outpost::conformance::kUsageExitStatus;
  }

  if (options.mount_source_name.empty()) {
    options.mount_source_name = options.name + "/mount-source";
  }
  return outpost::conformance::run(options);
}
