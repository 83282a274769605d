// End-to-end runs of `outpost fsck`: the built binary against a data folder that a real server
// created, with the server running and after it stopped.
#include <gmock/gmock.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"

namespace outpost::integration {
namespace {

using ::testing::HasSubstr;

// Writes a configuration for `data_dir` and returns its path. fsck reads only storage.data_dir,
// and the remote is never contacted.
Expected<std::string> writeFsckConfig(const TempDir& dir, const std::string& data_dir) {
  std::string path = dir.file("fsck.yaml");
  std::string yaml = "storage:\n  data_dir: " + data_dir +
                     "\ndefault_repository: local\nremotes:\n  - name: local\n"
                     "    url: http://127.0.0.1:1\n";
  OUTPOST_RETURN_IF_ERROR(writeFile(path, yaml));
  return path;
}

Expected<CommandResult> runFsck(const std::string& config_path,
                                std::vector<std::string> extra_arguments = {}) {
  std::vector<std::string> argv = {OUTPOST_BINARY, "fsck", "--config", config_path};
  argv.insert(argv.end(), extra_arguments.begin(), extra_arguments.end());
  return run(argv, RunOptions{.timeout_ms = 30'000});
}

TEST(FsckCommandTest, ReportsRepairsAndRespectsServerLock) {
  OutpostOptions options;
  options.remotes.push_back(OutpostRemote{.name = "local", .url = "http://127.0.0.1:1"});
  Expected<std::unique_ptr<OutpostServer>> server = OutpostServer::start(options);
  ASSERT_TRUE(server) << server.status().toString();
  Expected<TempDir> dir = TempDir::create("fsck");
  ASSERT_TRUE(dir) << dir.status().toString();
  Expected<std::string> config = writeFsckConfig(*dir, (*server)->dataDir());
  ASSERT_TRUE(config) << config.status().toString();

  // While the server has the index open, fsck stops before it reads anything.
  Expected<CommandResult> locked = runFsck(*config, {"--repair"});
  ASSERT_TRUE(locked) << locked.status().toString();
  EXPECT_EQ(locked->exit_code, 2) << locked->describe();
  EXPECT_THAT(locked->stderr_text, HasSubstr("stop it and run fsck again"));

  (*server)->stop();
  std::string stray_folder = (*server)->dataDir() + "/blobs/sha256/zz";
  std::string stray_path = stray_folder + "/stray";
  std::error_code error;
  std::filesystem::create_directories(stray_folder, error);
  ASSERT_FALSE(error) << error.message();
  ASSERT_TRUE(writeFile(stray_path, "stray bytes").isOk());

  Expected<CommandResult> found = runFsck(*config);
  ASSERT_TRUE(found) << found.status().toString();
  EXPECT_EQ(found->exit_code, 1) << found->describe();
  EXPECT_THAT(found->stdout_text,
              HasSubstr("kind=stray_file digest=- path=" + stray_path + " action=none\n"));
  EXPECT_THAT(found->stdout_text, HasSubstr("summary findings=1 repaired=0 remaining=1 "));

  Expected<CommandResult> repaired = runFsck(*config, {"--repair", "--verify-digests"});
  ASSERT_TRUE(repaired) << repaired.status().toString();
  EXPECT_EQ(repaired->exit_code, 0) << repaired->describe();
  EXPECT_THAT(repaired->stdout_text, HasSubstr("action=quarantined"));

  Expected<CommandResult> clean = runFsck(*config);
  ASSERT_TRUE(clean) << clean.status().toString();
  EXPECT_EQ(clean->exit_code, 0) << clean->describe();
  EXPECT_THAT(clean->stdout_text, HasSubstr("summary findings=0 "));
}

TEST(FsckCommandTest, UsageErrorExitsWithTwo) {
  Expected<CommandResult> result = run({OUTPOST_BINARY, "fsck", "--no-such-flag"});

  ASSERT_TRUE(result) << result.status().toString();
  EXPECT_EQ(result->exit_code, 2) << result->describe();
}

}  // namespace
}  // namespace outpost::integration
