// End-to-end pulls through Outpost: real CNCF distribution upstreams, real skopeo and
// containerd clients, all on 127.0.0.1.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <regex>
#include <thread>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"

namespace outpost::integration {
namespace {

// Counts upstream GET requests for `path` in the registry's access log.
size_t countUpstreamGets(const DistributionRegistry& registry, const std::string& path) {
  std::string log = registry.logTail(64u << 20);
  size_t count = 0;
  std::string needle = "\"GET " + path + " ";
  for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

std::string registryDigestOf(const Skopeo& skopeo, const RegistryEndpoint& endpoint,
                             const std::string& repository_reference) {
  Expected<std::string> raw = skopeo.inspectRaw(endpoint, repository_reference);
  return raw ? sha256Of(*raw).str() : "error: " + raw.status().toString();
}

class PullThroughTest : public ::testing::Test {
 protected:
  void startAll(RegistryOptions registry_options = {}, OutpostRemote remote = {},
                OutpostOptions outpost_options = {}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(registry_, DistributionRegistry::start(registry_options));
    OUTPOST_ASSERT_OK_AND_ASSIGN(skopeo_, Skopeo::create());
    OUTPOST_ASSERT_OK_AND_ASSIGN(builder_, ImageBuilder::create(*skopeo_));
    remote.name = remote.name.empty() ? "upstream" : remote.name;
    remote.url = registry_->url();
    if (remote.hosts.empty()) {
      remote.hosts = {registry_->hostPort()};
    }
    if (registry_options.auth != RegistryAuth::kNone) {
      remote.username = registry_->username();
      remote.password = registry_->password();
    }
    if (registry_options.use_tls) {
      remote.ca_file = registry_->caFile();
    }
    outpost_options.remotes.insert(outpost_options.remotes.begin(), remote);
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(outpost_options));
  }

  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  // "docker://127.0.0.1:OUTPOST/upstream/<repository_reference>".
  std::string viaOutpost(const std::string& repository_reference) const {
    return "docker://" + outpost_->hostPort() + "/upstream/" + repository_reference;
  }

  // Copies an image from Outpost into a fresh OCI layout; returns skopeo's result.
  Expected<CommandResult> pullWithSkopeo(const std::string& repository_reference,
                                         std::vector<std::string> extra = {}) {
    static std::atomic<int> counter{0};
    std::string destination =
        "oci:" + skopeo_->workDir() + "/pulled-" + std::to_string(counter++) + ":image";
    extra.push_back("--src-tls-verify=false");
    return skopeo_->copy(viaOutpost(repository_reference), destination, extra);
  }

  std::unique_ptr<DistributionRegistry> registry_;
  std::unique_ptr<Skopeo> skopeo_;
  std::unique_ptr<ImageBuilder> builder_;
  std::unique_ptr<OutpostServer> outpost_;
};

TEST_F(PullThroughTest, SkopeoPullsEveryManifestKindWithSameDigests) {
  startAll();
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage oci, builder_->pushImage(registry_->endpoint(), "team/oci-app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage docker,
      builder_->pushImage(registry_->endpoint(), "team/docker-app:v1", ImageSpec{},
                          ManifestFormat::kDockerV2Schema2));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage index,
                               builder_->pushIndex(registry_->endpoint(), "team/multi:v1"));

  RegistryEndpoint outpost = outpost_->endpoint();
  for (const PushedImage* image : {&oci, &docker, &index}) {
    SCOPED_TRACE(image->repository);
    std::string reference = "upstream/" + image->repository + ":" + image->tag;
    EXPECT_EQ(registryDigestOf(*skopeo_, outpost, reference), image->manifest_digest);
    std::vector<std::string> extra;
    if (image->isIndex()) {
      extra.push_back("--multi-arch=all");
    }
    OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult copy,
                                 pullWithSkopeo(image->repository + ":" + image->tag, extra));
    EXPECT_EQ(copy.exit_code, 0) << copy.stderr_text;
  }

  // Each blob crossed from the upstream once.
  for (const PushedImage* image : {&oci, &docker, &index}) {
    for (const BlobDescriptor& blob : image->allBlobs()) {
      EXPECT_EQ(countUpstreamGets(*registry_, "/v2/" + image->repository + "/blobs/" + blob.digest),
                1u)
          << blob.digest;
    }
  }
}

TEST_F(PullThroughTest, CachedImagePullsWhileUpstreamIsDown) {
  startAll();
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage cached,
                               builder_->pushImage(registry_->endpoint(), "team/cached:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage uncached,
                               builder_->pushImage(registry_->endpoint(), "team/uncached:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult warm, pullWithSkopeo("team/cached:v1"));
  ASSERT_EQ(warm.exit_code, 0) << warm.stderr_text;

  registry_->stop();

  // By digest: always served from the cache.
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult by_digest,
                               pullWithSkopeo("team/cached@" + cached.manifest_digest));
  EXPECT_EQ(by_digest.exit_code, 0) << by_digest.stderr_text;
  // By tag within its time-to-live.
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult by_tag, pullWithSkopeo("team/cached:v1"));
  EXPECT_EQ(by_tag.exit_code, 0) << by_tag.stderr_text;

  // An image never pulled fails with an error that names the remote.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult missing,
      httpGet(outpost_->url() + "/v2/upstream/team/uncached/manifests/v1",
              {{"Accept", manifestAcceptHeader()}}));
  EXPECT_EQ(missing.status, 503) << missing.body;
  EXPECT_NE(missing.body.find("UNAVAILABLE"), std::string::npos) << missing.body;
  EXPECT_NE(missing.body.find("upstream"), std::string::npos) << missing.body;
  (void)uncached;
}

TEST_F(PullThroughTest, StaleTagServedWhenUpstreamDownAfterTtl) {
  OutpostRemote remote;
  remote.tag_ttl = "1s";
  startAll({}, remote);
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder_->pushImage(registry_->endpoint(), "team/stale:v1"));
  std::string url = outpost_->url() + "/v2/upstream/team/stale/manifests/v1";
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, httpGet(url, {{"Accept", manifestAcceptHeader()}}));
  ASSERT_EQ(first.status, 200);

  registry_->stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult stale, httpGet(url, {{"Accept", manifestAcceptHeader()}}));
  EXPECT_EQ(stale.status, 200) << stale.body;
  EXPECT_EQ(stale.header("Docker-Content-Digest").value_or(""), image.manifest_digest);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t stale_count, outpost_->metric("outpost_cache_stale_total"));
  EXPECT_GE(stale_count, 1u);
}

TEST_F(PullThroughTest, MovedTagSeenAfterTtl) {
  constexpr auto kTagTtl = std::chrono::seconds(4);
  OutpostRemote remote;
  remote.tag_ttl = "4s";
  startAll({}, remote);
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage first,
                               builder_->pushImage(registry_->endpoint(), "team/moving:latest"));
  RegistryEndpoint outpost = outpost_->endpoint();
  auto cached_at = std::chrono::steady_clock::now();
  EXPECT_EQ(registryDigestOf(*skopeo_, outpost, "upstream/team/moving:latest"),
            first.manifest_digest);

  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage second,
                               builder_->pushImage(registry_->endpoint(), "team/moving:latest"));
  ASSERT_NE(first.manifest_digest, second.manifest_digest);
  // Within the time-to-live the cached digest is still served. The push above takes a
  // variable time, so the check runs only while a good margin of the TTL is left.
  if (std::chrono::steady_clock::now() - cached_at < kTagTtl - std::chrono::seconds(1)) {
    EXPECT_EQ(registryDigestOf(*skopeo_, outpost, "upstream/team/moving:latest"),
              first.manifest_digest);
  }
  std::this_thread::sleep_until(cached_at + kTagTtl + std::chrono::milliseconds(300));
  EXPECT_EQ(registryDigestOf(*skopeo_, outpost, "upstream/team/moving:latest"),
            second.manifest_digest);
}

TEST_F(PullThroughTest, ConcurrentPullsFetchEachBlobOnce) {
  startAll();
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder_->pushImage(registry_->endpoint(), "team/popular:v1"));
  constexpr int kClients = 20;
  std::vector<std::thread> clients;
  std::vector<int> exit_codes(kClients, -1);
  std::vector<std::string> errors(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      Expected<CommandResult> result = pullWithSkopeo("team/popular:v1");
      exit_codes[i] = result ? result->exit_code : -2;
      errors[i] = result ? result->stderr_text : result.status().toString();
    });
  }
  for (auto& client : clients) {
    client.join();
  }
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(exit_codes[i], 0) << "client " << i << ": " << errors[i];
  }
  for (const BlobDescriptor& blob : image.allBlobs()) {
    EXPECT_EQ(countUpstreamGets(*registry_, "/v2/team/popular/blobs/" + blob.digest), 1u)
        << blob.digest;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t started,
                               outpost_->metric("outpost_downloads_started_total"));
  EXPECT_EQ(started, image.allBlobs().size());
}

TEST_F(PullThroughTest, ContainerdPullsThroughHostsMirrorWithNs) {
  startAll();
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder_->pushIndex(registry_->endpoint(), "team/ctr-app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto containerd, Containerd::start());
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir hosts, TempDir::create("hosts"));
  // The image is named after the upstream registry; containerd sends ?ns=127.0.0.1%3APORT to
  // the mirror, which Outpost matches against the remote's hosts.
  OUTPOST_ASSERT_OK(writeHostsDir(hosts.path(), registry_->hostPort(),
                                  {MirrorHost{outpost_->url(), ""}}));
  std::string reference = registry_->hostPort() + "/team/ctr-app:v1";
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pull, containerd->pull(reference, hosts.path()));
  ASSERT_EQ(pull.exit_code, 0) << pull.stderr_text << "\n" << containerd->logTail();
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string digest, containerd->imageDigest(reference));
  EXPECT_EQ(digest, image.manifest_digest);
  // Everything came through Outpost: its counters saw the blobs.
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t started,
                               outpost_->metric("outpost_downloads_started_total"));
  EXPECT_GE(started, 2u);
}

TEST_F(PullThroughTest, PullsFromHtpasswdUpstream) {
  RegistryOptions options;
  options.auth = RegistryAuth::kHtpasswd;
  startAll(options);
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder_->pushImage(registry_->endpoint(), "team/basic:v1"));
  EXPECT_EQ(registryDigestOf(*skopeo_, outpost_->endpoint(), "upstream/team/basic:v1"),
            image.manifest_digest);
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult copy, pullWithSkopeo("team/basic:v1"));
  EXPECT_EQ(copy.exit_code, 0) << copy.stderr_text;
}

TEST_F(PullThroughTest, PullsFromTokenUpstreamAndCachesToken) {
  RegistryOptions options;
  options.auth = RegistryAuth::kToken;
  startAll(options);
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder_->pushImage(registry_->endpoint(), "team/token:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(TokenIssuerStats before, registry_->tokenIssuer()->stats());
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult copy, pullWithSkopeo("team/token:v1"));
  EXPECT_EQ(copy.exit_code, 0) << copy.stderr_text;
  OUTPOST_ASSERT_OK_AND_ASSIGN(TokenIssuerStats after, registry_->tokenIssuer()->stats());
  // Tokens are cached per scope in each loop's client (two loops here), so the pull's requests
  // (manifest, config, three layers) need at most a couple of tokens per loop.
  int64_t token_requests = after.token_requests - before.token_requests;
  EXPECT_GE(token_requests, 1);
  EXPECT_LE(token_requests, 4);
  (void)image;
}

TEST_F(PullThroughTest, PullsFromTlsUpstreamWithConfiguredCa) {
  RegistryOptions options;
  options.use_tls = true;
  startAll(options);
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder_->pushImage(registry_->endpoint(), "team/tls:v1"));
  EXPECT_EQ(registryDigestOf(*skopeo_, outpost_->endpoint(), "upstream/team/tls:v1"),
            image.manifest_digest);
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult copy, pullWithSkopeo("team/tls:v1"));
  EXPECT_EQ(copy.exit_code, 0) << copy.stderr_text;
}

TEST_F(PullThroughTest, CorruptUpstreamBlobIsNeverCached) {
  startAll();
  ImageSpec spec;
  spec.layers = {{"/data/one.bin", 1u << 20}};
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
                               builder_->pushImage(registry_->endpoint(), "team/corrupt:v1", spec));
  const BlobDescriptor& layer = image.layers.at(0);
  std::string hex = layer.digest.substr(7);
  std::string data_path = registry_->storageDir() + "/docker/registry/v2/blobs/sha256/" +
                          hex.substr(0, 2) + "/" + hex + "/data";
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string original, readFile(data_path));
  std::string flipped = original;
  flipped[flipped.size() / 2] ^= 0x01;
  OUTPOST_ASSERT_OK(writeFile(data_path, flipped));

  std::string blob_url = outpost_->url() + "/v2/upstream/team/corrupt/blobs/" + layer.digest;
  Expected<HttpResult> corrupt = httpGet(blob_url);
  // The connection is closed before the last byte: a transport error or a short body.
  if (corrupt) {
    EXPECT_LT(corrupt->body.size(), original.size());
  }
  std::string stored = outpost_->storedBlobPath(layer.digest);
  EXPECT_FALSE(std::filesystem::exists(stored));
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t failed, outpost_->metric("outpost_downloads_failed_total"));
  EXPECT_EQ(failed, 1u);

  // Once the upstream is repaired, the next request downloads afresh and succeeds.
  OUTPOST_ASSERT_OK(writeFile(data_path, original));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult repaired, httpGet(blob_url));
  EXPECT_EQ(repaired.status, 200);
  EXPECT_EQ(repaired.body.size(), original.size());
  EXPECT_TRUE(repaired.body == original);
  EXPECT_TRUE(waitForFile(stored));
}

}  // namespace
}  // namespace outpost::integration
