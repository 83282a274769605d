// Virtual repositories end to end, over a local repository and a real CNCF distribution
// upstream: shadowing, fall-through, blobs, skopeo pulls and pushes, the deployment
// repository, tag list unions, nesting, mounts, referrers and a stopped upstream.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"

namespace outpost::integration {
namespace {

constexpr std::string_view kOciConfigType = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kOciLayerType = "application/vnd.oci.image.layer.v1.tar";

std::string descriptor(std::string_view media_type, std::string_view digest, uint64_t size) {
  return R"({"mediaType":")" + std::string(media_type) + R"(","digest":")" + std::string(digest) +
         R"(","size":)" + std::to_string(size) + "}";
}

std::string descriptorOf(std::string_view media_type, const std::string& bytes) {
  return descriptor(media_type, sha256Of(bytes).str(), bytes.size());
}

// An OCI image manifest over a config and the given layer descriptors, with optional extra
// fields.
std::string imageManifest(const std::string& config, const std::vector<std::string>& layers,
                          std::string_view extra = "") {
  std::string joined;
  for (const std::string& layer : layers) {
    joined += (joined.empty() ? "" : ",") + layer;
  }
  return R"({"schemaVersion":2,"mediaType":")" + std::string(kOciManifestType) + R"(","config":)" +
         descriptorOf(kOciConfigType, config) + R"(,"layers":[)" + joined + "]" +
         std::string(extra) + "}";
}

bool hasErrorCode(const HttpResult& result, std::string_view code) {
  return result.body.find("\"code\":\"" + std::string(code) + "\"") != std::string::npos;
}

std::vector<std::string> tagsOf(const HttpResult& result) {
  nlohmann::json body = nlohmann::json::parse(result.body, nullptr, false);
  std::vector<std::string> tags;
  if (body.is_object() && body.contains("tags") && body["tags"].is_array()) {
    for (const auto& tag : body["tags"]) {
      tags.push_back(tag.get<std::string>());
    }
  }
  return tags;
}

// Small images keep the pushes quick: two layers of 64 and 16 KiB.
ImageSpec smallImage() {
  ImageSpec spec;
  spec.layers = {{"/data/a.bin", 64u << 10}, {"/data/b.bin", 16u << 10}};
  return spec;
}

// Outpost with the remote "hub" (library_prefix) in front of a distribution registry and the
// local repositories "builds" and "releases". Its virtual repositories are:
//   all       builds, hub; pushes go to builds
//   readonly  builds, hub; no deployment repository
//   outer     releases, all (flattened: releases, builds, hub)
class VirtualRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OUTPOST_ASSERT_OK_AND_ASSIGN(registry_, DistributionRegistry::start());
    OUTPOST_ASSERT_OK_AND_ASSIGN(skopeo_, Skopeo::create());
    OUTPOST_ASSERT_OK_AND_ASSIGN(builder_, ImageBuilder::create(*skopeo_));

    OutpostRemote hub;
    hub.name = "hub";
    hub.url = registry_->url();
    hub.hosts = {registry_->hostPort()};
    hub.library_prefix = true;
    OutpostOptions options;
    options.remotes = {hub};
    options.locals_yaml = "  - name: builds\n  - name: releases\n";
    options.virtuals_yaml =
        "  - name: all\n"
        "    members: [builds, hub]\n"
        "    deployment: builds\n"
        "  - name: readonly\n"
        "    members: [builds, hub]\n"
        "  - name: outer\n"
        "    members: [releases, all]\n";
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(std::move(options)));
  }

  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  Expected<HttpResult> send(const std::string& method, const std::string& path,
                            std::string body = "", std::vector<HttpHeader> headers = {}) {
    HttpRequest request;
    request.method = method;
    request.url = path.starts_with("http://") ? path : outpost_->url() + path;
    request.headers = std::move(headers);
    request.body = std::move(body);
    request.timeout_ms = 30'000;
    return httpRequest(request);
  }

  // The Docker-Content-Digest of a manifest GET (or HEAD) through Outpost, or a description of
  // the failure.
  std::string manifestDigest(const std::string& path, const std::string& method = "GET") {
    Expected<HttpResult> result = send(method, path, "", {{"Accept", manifestAcceptHeader()}});
    if (!result) {
      return "error: " + result.status().toString();
    }
    if (result->status != 200) {
      return "status " + std::to_string(result->status) + ": " + result->body;
    }
    return result->header("Docker-Content-Digest").value_or("no digest");
  }

  // The digest of the manifest that skopeo reads through Outpost.
  std::string skopeoDigest(const std::string& repository_reference) {
    Expected<std::string> raw = skopeo_->inspectRaw(outpost_->endpoint(), repository_reference);
    return raw ? sha256Of(*raw).str() : "error: " + raw.status().toString();
  }

  Expected<PushedImage> pushUpstream(const std::string& repository_tag) {
    return builder_->pushImage(registry_->endpoint(), repository_tag, smallImage());
  }

  Expected<PushedImage> pushToOutpost(const std::string& repository_tag) {
    return builder_->pushImage(outpost_->endpoint(), repository_tag, smallImage());
  }

  // Copies `repository_reference` from Outpost into a new OCI layout with skopeo.
  Expected<CommandResult> pullWithSkopeo(const std::string& repository_reference,
                                         std::vector<std::string> extra = {}) {
    std::string destination =
        "oci:" + skopeo_->workDir() + "/pulled-" + std::to_string(pull_count_++) + ":image";
    extra.push_back("--src-tls-verify=false");
    return skopeo_->copy(Skopeo::dockerReference(outpost_->endpoint(), repository_reference),
                         destination, extra);
  }

  // Pushes `bytes` to `name` in one POST with ?digest= and returns the response.
  Expected<HttpResult> pushBlob(const std::string& name, const std::string& bytes) {
    return send("POST", "/v2/" + name + "/blobs/uploads/?digest=" + sha256Of(bytes).str(), bytes);
  }

  Expected<HttpResult> putManifest(const std::string& name, const std::string& reference,
                                   const std::string& body) {
    return send("PUT", "/v2/" + name + "/manifests/" + reference, body,
                {{"Content-Type", std::string(kOciManifestType)}});
  }

  std::unique_ptr<DistributionRegistry> registry_;
  std::unique_ptr<Skopeo> skopeo_;
  std::unique_ptr<ImageBuilder> builder_;
  std::unique_ptr<OutpostServer> outpost_;
  int pull_count_ = 0;
};

TEST_F(VirtualRepositoryTest, LocalImageShadowsRemoteImage) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage upstream, pushUpstream("library/app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));
  ASSERT_NE(upstream.manifest_digest, local.manifest_digest);

  // builds comes first in "all", so its image is served. The remote alone serves the
  // upstream's.
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/v1"), local.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/v1", "HEAD"), local.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/hub/app/manifests/v1"), upstream.manifest_digest);
  EXPECT_EQ(skopeoDigest("all/app:v1"), local.manifest_digest);

  // By digest, the upstream's manifest is still reached through the virtual repository,
  // because the local member lacks that digest.
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/" + upstream.manifest_digest),
            upstream.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/" + local.manifest_digest),
            local.manifest_digest);

  // The access log names the virtual repository. Info lines are written at least once a
  // second, so the check polls for a little longer than that.
  std::string log;
  for (int attempt = 0; attempt < 30; ++attempt) {
    log = outpost_->logTail(1u << 20);
    if (log.find("/v2/all/app/manifests/v1 status=200") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  size_t line_start = log.find("GET /v2/all/app/manifests/v1 status=200");
  ASSERT_NE(line_start, std::string::npos) << log;
  std::string line = log.substr(line_start, log.find('\n', line_start) - line_start);
  EXPECT_NE(line.find(" repo=all "), std::string::npos) << line;
}

TEST_F(VirtualRepositoryTest, FallsThroughToRemote) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage tool, pushUpstream("library/tool:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage upstream_v2, pushUpstream("library/app:v2"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));

  // A name only the upstream has, with and without the library/ component the remote adds.
  EXPECT_EQ(manifestDigest("/v2/all/tool/manifests/v1"), tool.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/all/library/tool/manifests/v1"), tool.manifest_digest);
  // A tag only the upstream has, of a name both have.
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/v2"), upstream_v2.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/v2", "HEAD"), upstream_v2.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/v1"), local.manifest_digest);

  // Unknown to every member: 404 MANIFEST_UNKNOWN.
  for (const std::string& path :
       {std::string("/v2/all/app/manifests/v9"), std::string("/v2/all/nothing/manifests/v1"),
        "/v2/all/app/manifests/" + sha256Of("no such manifest").str()}) {
    SCOPED_TRACE(path);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult unknown,
                                 send("GET", path, "", {{"Accept", manifestAcceptHeader()}}));
    EXPECT_EQ(unknown.status, 404) << unknown.body;
    EXPECT_TRUE(hasErrorCode(unknown, "MANIFEST_UNKNOWN")) << unknown.body;
  }

  // A malformed reference is rejected before any member is asked.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult bad_tag, send("GET", "/v2/all/app/manifests/-bad"));
  EXPECT_EQ(bad_tag.status, 400) << bad_tag.body;
  EXPECT_TRUE(hasErrorCode(bad_tag, "TAG_INVALID")) << bad_tag.body;
}

TEST_F(VirtualRepositoryTest, ServesBlobsFromEveryMember) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage tool, pushUpstream("library/tool:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));

  struct Case {
    std::string name;
    const PushedImage* image;
  };
  for (const Case& test_case : {Case{"app", &local}, Case{"tool", &tool}}) {
    for (const BlobDescriptor& blob : test_case.image->allBlobs()) {
      SCOPED_TRACE(test_case.name + " " + blob.digest);
      std::string path = "/v2/all/" + test_case.name + "/blobs/" + blob.digest;
      OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, send("HEAD", path));
      EXPECT_EQ(head.status, 200);
      EXPECT_EQ(head.header("Content-Length"), std::to_string(blob.size));
      OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult read, send("GET", path));
      ASSERT_EQ(read.status, 200) << read.body;
      EXPECT_EQ(sha256Of(read.body).str(), blob.digest);
      EXPECT_EQ(read.header("Docker-Content-Digest"), blob.digest);
    }
  }

  // A range of an upstream blob, now cached.
  const BlobDescriptor& layer = tool.layers.front();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult range, send("GET", "/v2/all/tool/blobs/" + layer.digest,
                                                      "", {{"Range", "bytes=0-9"}}));
  EXPECT_EQ(range.status, 206) << range.body;
  EXPECT_EQ(range.body.size(), 10u);

  // A blob that no member has, and a malformed digest.
  std::string unknown_digest = sha256Of("no such blob").str();
  for (const std::string method : {"GET", "HEAD"}) {
    SCOPED_TRACE(method);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult unknown,
                                 send(method, "/v2/all/app/blobs/" + unknown_digest));
    EXPECT_EQ(unknown.status, 404);
    if (method == "GET") {
      EXPECT_TRUE(hasErrorCode(unknown, "BLOB_UNKNOWN")) << unknown.body;
    }
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult bad, send("GET", "/v2/all/app/blobs/sha256:xyz"));
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_TRUE(hasErrorCode(bad, "DIGEST_INVALID")) << bad.body;
}

TEST_F(VirtualRepositoryTest, SkopeoPullsThroughVirtualRepository) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage tool, pushUpstream("library/tool:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage index,
                               builder_->pushIndex(registry_->endpoint(), "library/multi:v1",
                                                   {smallImage(), [] {
                                                      ImageSpec arm = smallImage();
                                                      arm.architecture = "arm64";
                                                      return arm;
                                                    }()}));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));

  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled_local, pullWithSkopeo("all/app:v1"));
  EXPECT_EQ(pulled_local.exit_code, 0) << pulled_local.stderr_text;
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled_tool, pullWithSkopeo("all/tool:v1"));
  EXPECT_EQ(pulled_tool.exit_code, 0) << pulled_tool.stderr_text;
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled_index,
                               pullWithSkopeo("all/multi:v1", {"--multi-arch=all"}));
  EXPECT_EQ(pulled_index.exit_code, 0) << pulled_index.stderr_text;

  EXPECT_EQ(skopeoDigest("all/app:v1"), local.manifest_digest);
  EXPECT_EQ(skopeoDigest("all/tool:v1"), tool.manifest_digest);
  EXPECT_EQ(skopeoDigest("all/multi:v1"), index.manifest_digest);
  for (const PushedImage& platform : index.platform_images) {
    EXPECT_EQ(skopeoDigest("all/multi@" + platform.manifest_digest), platform.manifest_digest);
  }
}

TEST_F(VirtualRepositoryTest, PushLandsInDeploymentRepository) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage pushed, pushToOutpost("all/team/pushed:v1"));

  // Pulled back through the virtual repository, and directly from the deployment repository.
  EXPECT_EQ(skopeoDigest("all/team/pushed:v1"), pushed.manifest_digest);
  EXPECT_EQ(skopeoDigest("builds/team/pushed:v1"), pushed.manifest_digest);
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled, pullWithSkopeo("all/team/pushed:v1"));
  EXPECT_EQ(pulled.exit_code, 0) << pulled.stderr_text;
  for (const BlobDescriptor& blob : pushed.allBlobs()) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult direct,
                                 send("HEAD", "/v2/builds/team/pushed/blobs/" + blob.digest));
    EXPECT_EQ(direct.status, 200) << blob.digest;
  }

  // An index with its platform images.
  ImageSpec arm = smallImage();
  arm.architecture = "arm64";
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage index,
      builder_->pushIndex(outpost_->endpoint(), "all/team/multi:v1", {smallImage(), arm}));
  EXPECT_EQ(skopeoDigest("builds/team/multi:v1"), index.manifest_digest);
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled_index,
                               pullWithSkopeo("all/team/multi:v1", {"--multi-arch=all"}));
  EXPECT_EQ(pulled_index.exit_code, 0) << pulled_index.stderr_text;

  // Nothing reached the other local repository or the upstream.
  EXPECT_EQ(manifestDigest("/v2/releases/team/pushed/manifests/v1").substr(0, 10), "status 404");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult upstream,
                               httpGet(registry_->url() + "/v2/team/pushed/manifests/v1"));
  EXPECT_EQ(upstream.status, 404);
}

TEST_F(VirtualRepositoryTest, PushKeepsLocationsUnderVirtualPath) {
  std::string config = R"({"architecture":"amd64","os":"linux"})";
  std::string layer = randomBytes(100'000, 7);

  // An upload session: its Location stays under the virtual repository's key.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult started,
                               send("POST", "/v2/all/team/manual/blobs/uploads/"));
  ASSERT_EQ(started.status, 202) << started.body;
  std::string location = started.header("Location").value_or("");
  EXPECT_TRUE(location.starts_with("/v2/all/team/manual/blobs/uploads/")) << location;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult status, send("GET", location));
  EXPECT_EQ(status.status, 204) << status.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult completed,
                               send("PUT", location + "?digest=" + sha256Of(layer).str(), layer));
  ASSERT_EQ(completed.status, 201) << completed.body;
  EXPECT_EQ(completed.header("Location"), "/v2/all/team/manual/blobs/" + sha256Of(layer).str());

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult config_pushed, pushBlob("all/team/manual", config));
  ASSERT_EQ(config_pushed.status, 201) << config_pushed.body;
  EXPECT_EQ(config_pushed.header("Location"),
            "/v2/all/team/manual/blobs/" + sha256Of(config).str());

  std::string manifest = imageManifest(config, {descriptorOf(kOciLayerType, layer)});
  std::string digest = sha256Of(manifest).str();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult put, putManifest("all/team/manual", "v1", manifest));
  ASSERT_EQ(put.status, 201) << put.body;
  EXPECT_EQ(put.header("Location"), "/v2/all/team/manual/manifests/" + digest);
  EXPECT_EQ(manifestDigest("/v2/builds/team/manual/manifests/v1"), digest);

  // Deletes go to the deployment repository too.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult deleted,
                               send("DELETE", "/v2/all/team/manual/manifests/" + digest));
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  EXPECT_EQ(manifestDigest("/v2/builds/team/manual/manifests/" + digest).substr(0, 10),
            "status 404");
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult blob_deleted,
      send("DELETE", "/v2/all/team/manual/blobs/" + sha256Of(layer).str()));
  EXPECT_EQ(blob_deleted.status, 202) << blob_deleted.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult blob_gone, send("HEAD", "/v2/builds/team/manual/blobs/" + sha256Of(layer).str()));
  EXPECT_EQ(blob_gone.status, 404);
}

TEST_F(VirtualRepositoryTest, PushLinksBlobThatRemoteMemberServes) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage tool, pushUpstream("library/tool:v1"));
  const BlobDescriptor& base_layer = tool.layers.front();
  // Pulling through the virtual repository caches the upstream layer.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult warm,
                               send("GET", "/v2/all/tool/blobs/" + base_layer.digest));
  ASSERT_EQ(warm.status, 200) << warm.body;
  // The download is committed just after its last byte went out.
  ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(base_layer.digest)));

  // A client that pushes an image on that base first checks whether the layer is there. The
  // virtual repository serves it through its remote member, so the client skips the upload.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult exists,
                               send("HEAD", "/v2/all/team/derived/blobs/" + base_layer.digest));
  ASSERT_EQ(exists.status, 200);

  std::string config = R"({"architecture":"amd64","os":"linux","derived":true})";
  std::string own_layer = randomBytes(20'000, 8);
  for (const std::string* bytes : {&config, &own_layer}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pushed, pushBlob("all/team/derived", *bytes));
    ASSERT_EQ(pushed.status, 201) << pushed.body;
  }
  std::string manifest =
      imageManifest(config, {descriptor(base_layer.media_type, base_layer.digest, base_layer.size),
                             descriptorOf(kOciLayerType, own_layer)});

  // Pushed to the deployment repository directly, the manifest lacks the base layer.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult direct_blob, pushBlob("builds/team/direct", config));
  ASSERT_EQ(direct_blob.status, 201);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult direct_layer, pushBlob("builds/team/direct", own_layer));
  ASSERT_EQ(direct_layer.status, 201);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult direct,
                               putManifest("builds/team/direct", "v1", manifest));
  EXPECT_EQ(direct.status, 400) << direct.body;
  EXPECT_TRUE(hasErrorCode(direct, "MANIFEST_BLOB_UNKNOWN")) << direct.body;

  // Through the virtual repository, the push links the layer into the image.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult put, putManifest("all/team/derived", "v1", manifest));
  ASSERT_EQ(put.status, 201) << put.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult linked,
                               send("GET", "/v2/builds/team/derived/blobs/" + base_layer.digest));
  ASSERT_EQ(linked.status, 200) << linked.body;
  EXPECT_EQ(sha256Of(linked.body).str(), base_layer.digest);
  EXPECT_EQ(manifestDigest("/v2/all/team/derived/manifests/v1"), sha256Of(manifest).str());
}

TEST_F(VirtualRepositoryTest, WritesWithoutDeploymentGet405) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));
  std::string digest = sha256Of("a blob").str();

  struct Case {
    std::string method;
    std::string path;
  };
  const std::vector<Case> cases = {
      {"POST", "/v2/readonly/app/blobs/uploads/"},
      {"POST", "/v2/readonly/app/blobs/uploads/?digest=" + digest},
      {"GET", "/v2/readonly/app/blobs/uploads/0123456789abcdef"},
      {"PUT", "/v2/readonly/app/manifests/v2"},
      {"DELETE", "/v2/readonly/app/manifests/v1"},
      {"DELETE", "/v2/readonly/app/blobs/" + local.layers.front().digest},
      {"POST", "/v2/outer/app/blobs/uploads/"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.method + " " + test_case.path);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result,
                                 send(test_case.method, test_case.path, "a blob"));
    EXPECT_EQ(result.status, 405) << result.body;
    EXPECT_TRUE(hasErrorCode(result, "UNSUPPORTED")) << result.body;
    EXPECT_NE(result.body.find("deployment"), std::string::npos) << result.body;
    EXPECT_EQ(result.header("Allow"), "GET, HEAD");
  }

  // skopeo fails to push there, and the image read through it is unchanged.
  Expected<PushedImage> rejected_push = pushToOutpost("readonly/app:v1");
  EXPECT_FALSE(rejected_push.hasValue());
  EXPECT_EQ(manifestDigest("/v2/readonly/app/manifests/v1"), local.manifest_digest);
}

TEST_F(VirtualRepositoryTest, TagListIsUnionWithPagination) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage upstream, pushUpstream("library/app:v1"));
  for (const std::string tag : {"v2", "v3"}) {
    std::vector<std::string> flags = Skopeo::sourceFlags(registry_->endpoint());
    std::vector<std::string> destination = Skopeo::destinationFlags(registry_->endpoint());
    flags.insert(flags.end(), destination.begin(), destination.end());
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        CommandResult tagged,
        skopeo_->copy(Skopeo::dockerReference(registry_->endpoint(), "library/app:v1"),
                      Skopeo::dockerReference(registry_->endpoint(), "library/app:" + tag), flags));
    ASSERT_EQ(tagged.exit_code, 0) << tagged.stderr_text;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult retagged,
                               putManifest("builds/app", "local", local.raw_manifest));
  ASSERT_EQ(retagged.status, 201) << retagged.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage only_local, pushToOutpost("builds/solo:s1"));
  (void)upstream;
  (void)only_local;

  // v1 is in both members and listed once.
  const std::vector<std::string> all_tags = {"local", "v1", "v2", "v3"};
  for (const std::string virtual_key : {"all", "readonly", "outer"}) {
    SCOPED_TRACE(virtual_key);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult listed,
                                 send("GET", "/v2/" + virtual_key + "/app/tags/list"));
    ASSERT_EQ(listed.status, 200) << listed.body;
    EXPECT_EQ(tagsOf(listed), all_tags);
    EXPECT_EQ(nlohmann::json::parse(listed.body)["name"], virtual_key + "/app");
    EXPECT_FALSE(listed.header("Link"));
  }

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, send("GET", "/v2/all/app/tags/list?n=2"));
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(tagsOf(first), (std::vector<std::string>{"local", "v1"}));
  std::string link = first.header("Link").value_or("");
  EXPECT_EQ(link, "</v2/all/app/tags/list?n=2&last=v1>; rel=\"next\"");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult second, send("GET", "/v2/all/app/tags/list?n=2&last=v1"));
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(tagsOf(second), (std::vector<std::string>{"v2", "v3"}));
  EXPECT_FALSE(second.header("Link"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult after, send("GET", "/v2/all/app/tags/list?last=v2"));
  EXPECT_EQ(tagsOf(after), (std::vector<std::string>{"v3"}));

  // A name that one member has, and a name that none has.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult solo, send("GET", "/v2/all/solo/tags/list"));
  ASSERT_EQ(solo.status, 200) << solo.body;
  EXPECT_EQ(tagsOf(solo), (std::vector<std::string>{"s1"}));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult unknown, send("GET", "/v2/all/nothing/tags/list"));
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_TRUE(hasErrorCode(unknown, "NAME_UNKNOWN")) << unknown.body;

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult bad_n, send("GET", "/v2/all/app/tags/list?n=x"));
  EXPECT_EQ(bad_n.status, 400) << bad_n.body;
  EXPECT_TRUE(hasErrorCode(bad_n, "PAGINATION_NUMBER_INVALID")) << bad_n.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, send("HEAD", "/v2/all/app/tags/list"));
  EXPECT_EQ(head.status, 405);
}

TEST_F(VirtualRepositoryTest, NestedVirtualRepositoryAsksMembersInOrder) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage tool, pushUpstream("library/tool:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage upstream_v2, pushUpstream("library/app:v2"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage built, pushToOutpost("builds/app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage released, pushToOutpost("releases/app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage built_only, pushToOutpost("builds/app:b1"));

  // outer = releases, then all = builds, hub.
  EXPECT_EQ(manifestDigest("/v2/outer/app/manifests/v1"), released.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/outer/app/manifests/b1"), built_only.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/outer/app/manifests/v2"), upstream_v2.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/outer/tool/manifests/v1"), tool.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/outer/app/manifests/" + built.manifest_digest),
            built.manifest_digest);
  EXPECT_EQ(skopeoDigest("outer/app:v1"), released.manifest_digest);

  for (const BlobDescriptor& blob : built.allBlobs()) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult read,
                                 send("GET", "/v2/outer/app/blobs/" + blob.digest));
    ASSERT_EQ(read.status, 200) << blob.digest;
    EXPECT_EQ(sha256Of(read.body).str(), blob.digest);
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult tags, send("GET", "/v2/outer/app/tags/list"));
  ASSERT_EQ(tags.status, 200) << tags.body;
  EXPECT_EQ(tagsOf(tags), (std::vector<std::string>{"b1", "v1", "v2"}));
}

TEST_F(VirtualRepositoryTest, MountFromVirtualRepositoryChecksMembers) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage tool, pushUpstream("library/tool:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));
  const std::string cached_digest = tool.layers.front().digest;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult warm, send("GET", "/v2/all/tool/blobs/" + cached_digest));
  ASSERT_EQ(warm.status, 200);
  // The download is committed just after its last byte went out.
  ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(cached_digest)));

  struct Case {
    std::string label;
    std::string digest;
    std::string from;
    int status;
  };
  const std::vector<Case> cases = {
      {"local member's blob", local.layers.front().digest, "all/app", 201},
      {"cached blob of the remote member", cached_digest, "all/tool", 201},
      {"through the nested virtual", local.layers.back().digest, "outer/app", 201},
      {"blob no member has", sha256Of("missing").str(), "all/app", 202},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.label);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult mounted,
                                 send("POST", "/v2/releases/team/mounted/blobs/uploads/?mount=" +
                                                  test_case.digest + "&from=" + test_case.from));
    EXPECT_EQ(mounted.status, test_case.status) << mounted.body;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult read,
                               send("HEAD", "/v2/releases/team/mounted/blobs/" + cached_digest));
  EXPECT_EQ(read.status, 200);
}

TEST_F(VirtualRepositoryTest, ReferrersComeFromFirstMemberWithAny) {
  std::string config = R"({"os":"linux"})";
  std::string layer = "layer bytes";
  for (const std::string* bytes : {&config, &layer}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pushed, pushBlob("builds/app", *bytes));
    ASSERT_EQ(pushed.status, 201) << pushed.body;
  }
  std::string image = imageManifest(config, {descriptorOf(kOciLayerType, layer)});
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult image_put, putManifest("builds/app", "v1", image));
  ASSERT_EQ(image_put.status, 201) << image_put.body;
  std::string subject = sha256Of(image).str();
  std::string artifact =
      imageManifest(config, {descriptorOf(kOciLayerType, layer)},
                    R"(,"artifactType":"application/vnd.example.sbom.v1","subject":)" +
                        descriptorOf(kOciManifestType, image));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult artifact_put,
                               putManifest("builds/app", sha256Of(artifact).str(), artifact));
  ASSERT_EQ(artifact_put.status, 201) << artifact_put.body;

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult listed, send("GET", "/v2/all/app/referrers/" + subject));
  ASSERT_EQ(listed.status, 200) << listed.body;
  nlohmann::json index = nlohmann::json::parse(listed.body);
  ASSERT_EQ(index["manifests"].size(), 1u) << listed.body;
  EXPECT_EQ(index["manifests"][0]["digest"], sha256Of(artifact).str());

  // No member has a referrer: an empty index, as the referrers API sends.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult none,
                               send("GET", "/v2/all/app/referrers/" + sha256Of("other").str()));
  ASSERT_EQ(none.status, 200) << none.body;
  EXPECT_TRUE(nlohmann::json::parse(none.body)["manifests"].empty()) << none.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult filtered,
      send("GET", "/v2/all/app/referrers/" + subject + "?artifactType=application/other"));
  ASSERT_EQ(filtered.status, 200) << filtered.body;
  EXPECT_TRUE(nlohmann::json::parse(filtered.body)["manifests"].empty()) << filtered.body;
  EXPECT_EQ(filtered.header("OCI-Filters-Applied"), "artifactType");
}

TEST_F(VirtualRepositoryTest, UpstreamStoppedServesCachedAndLocalContent) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage tool, pushUpstream("library/tool:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage cold, pushUpstream("library/cold:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage local, pushToOutpost("builds/app:v1"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult warm, pullWithSkopeo("all/tool:v1"));
  ASSERT_EQ(warm.exit_code, 0) << warm.stderr_text;
  for (const BlobDescriptor& blob : tool.allBlobs()) {
    ASSERT_TRUE(waitForFile(outpost_->storedBlobPath(blob.digest))) << blob.digest;
  }

  registry_->stop();

  // Cached remote content, by tag within its time-to-live and by digest, and its blobs.
  EXPECT_EQ(manifestDigest("/v2/all/tool/manifests/v1"), tool.manifest_digest);
  EXPECT_EQ(manifestDigest("/v2/all/tool/manifests/" + tool.manifest_digest), tool.manifest_digest);
  for (const BlobDescriptor& blob : tool.allBlobs()) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult read, send("GET", "/v2/all/tool/blobs/" + blob.digest));
    EXPECT_EQ(read.status, 200) << blob.digest;
  }
  // Local content.
  EXPECT_EQ(manifestDigest("/v2/all/app/manifests/v1"), local.manifest_digest);
  for (const BlobDescriptor& blob : local.allBlobs()) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult read, send("GET", "/v2/all/app/blobs/" + blob.digest));
    EXPECT_EQ(read.status, 200) << blob.digest;
  }
  for (const std::string reference : {"all/tool:v1", "all/app:v1"}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled, pullWithSkopeo(reference));
    EXPECT_EQ(pulled.exit_code, 0) << reference << ": " << pulled.stderr_text;
  }

  // A reference only the upstream could have gets the upstream's failure, which names it. So
  // does a reference that no member has, because the remote member cannot rule it out.
  for (const std::string& path :
       {std::string("/v2/all/cold/manifests/v1"), std::string("/v2/all/app/manifests/nope"),
        "/v2/all/cold/blobs/" + cold.layers.front().digest}) {
    SCOPED_TRACE(path);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult failed,
                                 send("GET", path, "", {{"Accept", manifestAcceptHeader()}}));
    EXPECT_EQ(failed.status, 503) << failed.body;
    EXPECT_TRUE(hasErrorCode(failed, "UNAVAILABLE")) << failed.body;
    EXPECT_NE(failed.body.find("hub"), std::string::npos) << failed.body;
  }

  // A tag list leaves a failed member out: a name that no member can list gets 404, and a name
  // that the local member has lists its tags.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult unknown_name, send("GET", "/v2/all/nothing/tags/list"));
  EXPECT_EQ(unknown_name.status, 404) << unknown_name.body;
  EXPECT_TRUE(hasErrorCode(unknown_name, "NAME_UNKNOWN")) << unknown_name.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult local_tags, send("GET", "/v2/all/app/tags/list"));
  ASSERT_EQ(local_tags.status, 200) << local_tags.body;
  EXPECT_EQ(tagsOf(local_tags), (std::vector<std::string>{"v1"}));
}

}  // namespace
}  // namespace outpost::integration
