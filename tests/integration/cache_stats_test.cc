// End-to-end runs of `outpost cache stats`: the built binary reads the index of a serving
// Outpost that has cached a blob.
#include <gmock/gmock.h>

#include <string>
#include <vector>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/scripted_upstream.h"

namespace outpost::integration {
namespace {

using ::testing::HasSubstr;

Expected<CommandResult> runCacheStats(const std::string& config_path) {
  return run({OUTPOST_BINARY, "cache", "stats", "--config", config_path, "--top", "3"},
             RunOptions{.timeout_ms = 30'000});
}

TEST(CacheStatsCommandTest, ReadsIndexWhileServing) {
  ScriptedUpstream upstream;
  ASSERT_TRUE(upstream.start().isOk());
  std::string blob = randomBytes(3 << 20, 11);
  std::string digest = sha256Of(blob).str();
  upstream.setResource("/v2/team/app/blobs/" + digest, blob);
  OutpostOptions options = optionsForUpstream(upstream.url(), upstream.hostPort());
  options.storage_yaml = "  disk_budget_bytes: 10485760\n";
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::unique_ptr<OutpostServer> server,
                               OutpostServer::start(options));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pulled,
                               httpGet(server->url() + "/v2/upstream/team/app/blobs/" + digest));
  ASSERT_EQ(pulled.status, 200);
  ASSERT_TRUE(waitForFile(server->storedBlobPath(digest)));

  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("cache-stats"));
  std::string config_path = dir.file("stats.yaml");
  ASSERT_TRUE(writeFile(config_path, "storage:\n  data_dir: " + server->dataDir() +
                                         "\n  disk_budget_bytes: 10485760\n"
                                         "remotes:\n  - name: upstream\n"
                                         "    url: http://127.0.0.1:1\n")
                  .isOk());

  // The server holds the index's lock; the report opens it read-only beside it.
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result, runCacheStats(config_path));
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_THAT(result.stdout_text, HasSubstr("blobs: 1 (3.0 MiB)"));
  EXPECT_THAT(result.stdout_text, HasSubstr("budget 10.0 MiB (30.0% used)"));
  EXPECT_THAT(result.stdout_text, HasSubstr("least recently used blobs:\n  " + digest));
}

TEST(CacheStatsCommandTest, MissingIndexExitsWithTwo) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("cache-stats"));
  std::string config_path = dir.file("stats.yaml");
  ASSERT_TRUE(writeFile(config_path, "storage:\n  data_dir: " + dir.file("empty") +
                                         "\nremotes:\n  - name: upstream\n"
                                         "    url: http://127.0.0.1:1\n")
                  .isOk());

  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result, runCacheStats(config_path));
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_THAT(result.stderr_text, HasSubstr("cannot read the index"));
}

TEST(CacheStatsCommandTest, TopOutOfRangeExitsWithTwo) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("cache-stats"));
  std::string config_path = dir.file("stats.yaml");
  ASSERT_TRUE(writeFile(config_path, "remotes:\n  - name: upstream\n    url: http://127.0.0.1:1\n")
                  .isOk());

  Expected<CommandResult> result = run(
      {OUTPOST_BINARY, "cache", "stats", "--config", config_path, "--top", "0"},
      RunOptions{.timeout_ms = 30'000});

  ASSERT_TRUE(result) << result.status().toString();
  EXPECT_EQ(result->exit_code, 2) << result->describe();
  EXPECT_THAT(result->stderr_text, HasSubstr("--top"));
}

}  // namespace
}  // namespace outpost::integration
