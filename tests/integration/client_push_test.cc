// Pushes by real clients other than skopeo into a local repository: containerd 1.6's
// `ctr images push` of a two-platform index.
#include <gtest/gtest.h>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"

namespace outpost::integration {
namespace {

TEST(ClientPushTest, ContainerdPushesToLocalRepository) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry, DistributionRegistry::start());
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto skopeo, Skopeo::create());
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto builder, ImageBuilder::create(*skopeo));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder->pushIndex(registry->endpoint(), "team/ctr-app:v1"));
  OutpostOptions options;
  options.locals_yaml = "  - name: local\n";
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto outpost, OutpostServer::start(options));
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto containerd, Containerd::start());

  // Every platform's content, so that the push has all of the index.
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir registry_hosts, TempDir::create("hosts"));
  OUTPOST_ASSERT_OK(writeHostsDir(registry_hosts.path(), registry->hostPort(),
                                  {MirrorHost{registry->url(), ""}}));
  std::string source = registry->hostPort() + "/team/ctr-app:v1";
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult pull, containerd->pull(source, registry_hosts.path(), {"--all-platforms"}));
  ASSERT_EQ(pull.exit_code, 0) << pull.stderr_text;

  std::string destination = outpost->hostPort() + "/local/ctr/app:v1";
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult tag,
                               containerd->ctr({"images", "tag", source, destination}));
  ASSERT_EQ(tag.exit_code, 0) << tag.stderr_text;
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir outpost_hosts, TempDir::create("hosts"));
  OUTPOST_ASSERT_OK(writeHostsDir(outpost_hosts.path(), outpost->hostPort(),
                                  {MirrorHost{outpost->url(), "", {"pull", "resolve", "push"}}}));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult push,
      containerd->ctr({"images", "push", "--hosts-dir", outpost_hosts.path(), destination}));
  ASSERT_EQ(push.exit_code, 0) << push.stderr_text << "\n" << outpost->logTail();

  // The index and every platform image read back with their digests.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage pushed, readPushedImage(*skopeo, outpost->endpoint(), "local/ctr/app", "v1"));
  EXPECT_EQ(pushed.manifest_digest, image.manifest_digest);
  EXPECT_EQ(pushed.platform_images.size(), image.platform_images.size());
  for (const BlobDescriptor& blob : image.allBlobs()) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        HttpResult read, httpGet(outpost->url() + "/v2/local/ctr/app/blobs/" + blob.digest));
    EXPECT_EQ(read.status, 200) << blob.digest;
    EXPECT_EQ(sha256Of(read.body).str(), blob.digest);
  }
}

}  // namespace
}  // namespace outpost::integration
