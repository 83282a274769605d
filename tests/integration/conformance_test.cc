// The conformance program (tests/conformance, outpost_conformance) against a real CNCF
// distribution 2.8.2 registry and against a local repository of Outpost, and its handling of
// options.
//
// Every check must pass, except the known differences of the registry under test, each listed
// with its reason. To check another registry, start it and call runConformance() and
// expectOnlyKnownDifferences() with its own list.
#include <gmock/gmock.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"

namespace outpost::integration {
namespace {

using ::testing::HasSubstr;

// One "PASS|FAIL|SKIP <area>/<check>[: detail]" line of the program's output.
struct CheckLine {
  std::string outcome;
  std::string check;
  std::string line;
};

struct ConformanceReport {
  CommandResult command;
  std::vector<CheckLine> checks;

  const CheckLine* find(std::string_view check) const {
    auto line = std::find_if(checks.begin(), checks.end(),
                             [&](const CheckLine& entry) { return entry.check == check; });
    return line == checks.end() ? nullptr : &*line;
  }
};

// A check that a registry is known to fail, and why.
struct KnownDifference {
  std::string_view check;
  std::string_view reason;
};

// What CNCF distribution 2.8.2 (Debian 12's docker-registry) does differently from the OCI
// distribution specification 1.1, as outpost_conformance finds it.
constexpr KnownDifference kDistributionDifferences[] = {
    {"pull/name-invalid-uppercase",
     "a name outside the grammar matches no route: 404 with a plain-text body, no error code"},
    {"pull/name-invalid-double-dot", "the same router 404 as for upper-case names"},
    {"push/chunk-out-of-order",
     "Content-Range on PATCH is not compared with the upload offset: a chunk with a gap is "
     "appended with 202, not rejected with 416"},
    {"push/upload-unknown-id",
     "an upload URL without its signed _state parameter gets 404 BLOB_UPLOAD_INVALID, "
     "not BLOB_UPLOAD_UNKNOWN"},
    {"push/manifest-subject-header",
     "2.8.2 predates the referrers API, so it stores the subject field without processing it "
     "and sends no OCI-Subject"},
    {"discovery/tags-list", "tags come in the storage driver's directory order, not sorted"},
    {"discovery/tags-list-n", "the n parameter is ignored: every tag comes back"},
    {"discovery/tags-list-last", "the last parameter is ignored: every tag comes back"},
    {"discovery/tags-list-n-zero", "n=0 is ignored like any n: every tag comes back"},
    {"discovery/referrers-list", "no referrers API: /v2/<name>/referrers/<digest> is 404"},
    {"discovery/referrers-filter", "no referrers API, so no artifactType filter either"},
    {"discovery/referrers-none", "no referrers API: 404 where an empty index is due"},
    {"discovery/referrers-invalid-digest", "no referrers API: 404 where 400 is due"},
};

std::vector<CheckLine> parseCheckLines(const std::string& output) {
  std::vector<CheckLine> checks;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    std::string line = output.substr(start, end == std::string::npos ? end : end - start);
    start = end == std::string::npos ? output.size() : end + 1;

    std::string outcome = line.substr(0, 4);
    if (line.size() < 6 || line[4] != ' ' ||
        (outcome != "PASS" && outcome != "FAIL" && outcome != "SKIP")) {
      continue;
    }
    size_t name_end = line.find_first_of(": ", 5);
    checks.push_back(CheckLine{outcome, line.substr(5, name_end - 5), line});
  }
  return checks;
}

// Runs outpost_conformance with `arguments` and parses its check lines.
Expected<ConformanceReport> runConformance(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), OUTPOST_CONFORMANCE_BINARY);
  OUTPOST_ASSIGN_OR_RETURN(CommandResult command,
                           run(std::move(arguments), RunOptions{.timeout_ms = 300'000}));
  std::vector<CheckLine> checks = parseCheckLines(command.stdout_text);
  return ConformanceReport{std::move(command), std::move(checks)};
}

// Runs every area against the registry at `url`, pushing to repository `name` and mounting
// from `mount_source_name`.
Expected<ConformanceReport> runConformance(const std::string& url, const std::string& name,
                                           const std::string& mount_source_name) {
  return runConformance({"--url", url, "--name", name, "--name2", mount_source_name});
}

// Expects every failed check of `report` to be one of `known`, and every entry of `known` in
// an area that ran to still fail or be skipped, so that the list stays true.
void expectOnlyKnownDifferences(const ConformanceReport& report,
                                std::span<const KnownDifference> known) {
  auto isKnown = [&](std::string_view check) {
    return std::any_of(known.begin(), known.end(), [&](const KnownDifference& difference) {
      return difference.check == check;
    });
  };
  auto hasRunArea = [&](std::string_view check) {
    std::string_view area = check.substr(0, check.find('/') + 1);
    return std::any_of(report.checks.begin(), report.checks.end(),
                       [&](const CheckLine& line) { return line.check.starts_with(area); });
  };
  for (const CheckLine& line : report.checks) {
    if (line.outcome == "FAIL") {
      EXPECT_TRUE(isKnown(line.check)) << "unexpected failure: " << line.line;
    }
  }
  for (const KnownDifference& difference : known) {
    if (!hasRunArea(difference.check)) {
      continue;
    }
    const CheckLine* line = report.find(difference.check);
    if (line == nullptr) {
      ADD_FAILURE() << "the known difference " << difference.check << " (" << difference.reason
                    << ") was not reported at all";
      continue;
    }
    EXPECT_NE(line->outcome, "PASS") << "the known difference " << difference.check << " ("
                                     << difference.reason << ") passes now: " << line->line;
  }

  bool has_failure = std::any_of(report.checks.begin(), report.checks.end(),
                                 [](const CheckLine& line) { return line.outcome == "FAIL"; });
  EXPECT_EQ(report.command.exit_code, has_failure ? 1 : 0) << report.command.describe();
  EXPECT_THAT(report.command.stdout_text, HasSubstr("conformance: "));
}

class ConformanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Expected<std::unique_ptr<DistributionRegistry>> registry = DistributionRegistry::start();
    ASSERT_TRUE(registry) << registry.status().toString();
    registry_ = std::move(*registry);
  }

  static void TearDownTestSuite() { registry_.reset(); }

  void SetUp() override { ASSERT_NE(registry_, nullptr) << "the registry did not start"; }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "--- outpost_conformance output ---\n" << output_ << "\n";
      std::cerr << "--- registry log ---\n" << registry_->logTail() << "\n";
    }
  }

  // Keeps the output for TearDown, which prints it when the test failed.
  Expected<ConformanceReport> keepOutput(Expected<ConformanceReport> report) {
    if (report) {
      output_ = report->command.stdout_text + report->command.stderr_text;
    }
    return report;
  }

  // One registry for the suite, since every run pushes to repositories of its own.
  static std::unique_ptr<DistributionRegistry> registry_;
  std::string output_;
};

std::unique_ptr<DistributionRegistry> ConformanceTest::registry_;

TEST_F(ConformanceTest, DistributionFailsOnlyKnownDifferences) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      ConformanceReport report,
      keepOutput(runConformance(registry_->url(), "conformance/full", "conformance/source")));

  EXPECT_FALSE(report.command.timed_out) << report.command.describe();
  for (std::string_view area : {"pull/", "push/", "discovery/", "management/"}) {
    EXPECT_TRUE(std::any_of(report.checks.begin(), report.checks.end(),
                            [&](const CheckLine& line) { return line.check.starts_with(area); }))
        << "no check of area " << area;
  }
  expectOnlyKnownDifferences(report, kDistributionDifferences);
}

TEST_F(ConformanceTest, OutpostLocalRepositoryPassesEveryCheck) {
  OutpostOptions options;
  options.locals_yaml = "  - name: local\n";
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::unique_ptr<OutpostServer> outpost,
                               OutpostServer::start(options));
  Expected<ConformanceReport> report = keepOutput(
      runConformance(outpost->url(), "local/conformance/test", "local/conformance/source"));
  if (HasFailure() || !report || report->command.exit_code != 0) {
    std::cerr << "--- outpost log ---\n" << outpost->logTail() << "\n";
  }
  ASSERT_TRUE(report) << report.status().toString();

  EXPECT_FALSE(report->command.timed_out) << report->command.describe();
  expectOnlyKnownDifferences(*report, {});
  for (const CheckLine& line : report->checks) {
    EXPECT_NE(line.outcome, "SKIP") << line.line;
  }
}

TEST_F(ConformanceTest, SecondRunOnSameRepositoryAgrees) {
  // Leftovers of the first run (tags, blobs, upload sessions) must not change the outcome.
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        ConformanceReport report,
        keepOutput(runConformance({"--url", registry_->url(), "--name", "conformance/again",
                                   "--only", "push", "--only", "discovery"})));
    expectOnlyKnownDifferences(report, kDistributionDifferences);
    for (const CheckLine& line : report.checks) {
      EXPECT_TRUE(line.check.starts_with("push/") || line.check.starts_with("discovery/"))
          << line.line;
    }
  }
}

TEST_F(ConformanceTest, SkipLeavesAreasOut) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      ConformanceReport report,
      keepOutput(runConformance({"--url", registry_->url(), "--name", "conformance/skip", "--skip",
                                 "push", "--skip", "discovery"})));
  ASSERT_FALSE(report.checks.empty()) << report.command.describe();
  for (const CheckLine& line : report.checks) {
    EXPECT_TRUE(line.check.starts_with("pull/") || line.check.starts_with("management/"))
        << line.line;
  }
}

TEST_F(ConformanceTest, RejectsUrlOffThisMachine) {
  for (std::string url : {"http://registry.example.invalid:5000",
                          "http://127.0.0.1.example.invalid:5000", "ftp://127.0.0.1:5000"}) {
    SCOPED_TRACE(url);
    OUTPOST_ASSERT_OK_AND_ASSIGN(ConformanceReport report,
                                 runConformance({"--url", url, "--name", "conformance/test"}));
    EXPECT_EQ(report.command.exit_code, 2) << report.command.describe();
    EXPECT_TRUE(report.checks.empty()) << report.command.stdout_text;
    EXPECT_THAT(report.command.stderr_text, HasSubstr(url));
  }
}

TEST_F(ConformanceTest, RejectsInvalidOptions) {
  const std::string url = registry_->url();
  const std::vector<std::vector<std::string>> cases = {
      {"--name", "conformance/test"},
      {"--url", url},
      {"--url", url, "--name", "Conformance/Test"},
      {"--url", url, "--name", "conformance/test", "--name2", "bad..name"},
      {"--url", url, "--name", "conformance/test", "--only", "everything"},
      {"--url", url + "/v2/", "--name", "conformance/test"},
      {"--url", "https://127.0.0.1:" + std::to_string(registry_->port()), "--name", "a/b"},
  };
  for (const std::vector<std::string>& arguments : cases) {
    std::string joined;
    for (const std::string& argument : arguments) {
      joined += argument + " ";
    }
    SCOPED_TRACE(joined);
    OUTPOST_ASSERT_OK_AND_ASSIGN(ConformanceReport report, runConformance(arguments));
    EXPECT_EQ(report.command.exit_code, 2) << report.command.describe();
    EXPECT_TRUE(report.checks.empty()) << report.command.stdout_text;
  }
}

}  // namespace
}  // namespace outpost::integration
