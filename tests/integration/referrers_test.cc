// The referrers API. A local repository lists the subjects of pushed manifests, with the
// artifactType filter and deletes. A remote repository passes the request upstream and serves
// the cached manifests' subjects when the upstream has no referrers API (distribution 2.8.2
// returns 404).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/registry_push.h"

namespace outpost::integration {
namespace {

constexpr std::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kOciIndexType = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kSbomType = "application/vnd.example.sbom.v1";
constexpr std::string_view kSignatureType = "application/vnd.example.signature.v1";

// The contents pushed for one test: a config, a layer, an image and artifacts that refer to it.
struct Artifacts {
  std::string config = R"({"os":"linux"})";
  std::string layer = "layer bytes";
  std::string image;
  std::string sbom;
  std::string signature;

  Artifacts() {
    std::string layers =
        R"(,"layers":[)" + ociDescriptor("application/vnd.oci.image.layer.v1.tar", layer) + "]";
    image = R"({"schemaVersion":2,"mediaType":")" + std::string(kOciManifestType) +
            R"(","config":)" + ociDescriptor("application/vnd.oci.image.config.v1+json", config) +
            layers + "}";
    sbom = artifact(kSbomType, R"({"tool":"example"})");
    signature = artifact(kSignatureType, R"({"signed":true})");
  }

  // An artifact manifest with `type` as artifactType and the image as subject.
  std::string artifact(std::string_view type, std::string_view annotation_value) const {
    return R"({"schemaVersion":2,"mediaType":")" + std::string(kOciManifestType) +
           R"(","artifactType":")" + std::string(type) +
           R"(","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":")" +
           sha256Of(config).str() + R"(","size":)" + std::to_string(config.size()) +
           R"(},"layers":[)" + ociDescriptor("application/vnd.oci.image.layer.v1.tar", layer) +
           R"(],"subject":)" + ociDescriptor(kOciManifestType, image) +
           R"(,"annotations":{"example.note":)" + nlohmann::json(annotation_value).dump() + "}}";
  }
};

void pushAll(const std::string& base_url, const std::string& name, const Artifacts& artifacts) {
  OUTPOST_ASSERT_OK(pushBlob(base_url, name, artifacts.config));
  OUTPOST_ASSERT_OK(pushBlob(base_url, name, artifacts.layer));
  OUTPOST_ASSERT_OK(pushManifest(base_url, name, "v1", artifacts.image));
  OUTPOST_ASSERT_OK(pushManifest(base_url, name, sha256Of(artifacts.sbom).str(), artifacts.sbom));
  OUTPOST_ASSERT_OK(
      pushManifest(base_url, name, sha256Of(artifacts.signature).str(), artifacts.signature));
}

// The referrers index as a map from digest to descriptor.
std::map<std::string, nlohmann::json> referrersOf(const HttpResult& result) {
  std::map<std::string, nlohmann::json> descriptors;
  nlohmann::json index = nlohmann::json::parse(result.body, nullptr, false);
  EXPECT_TRUE(index.is_object()) << result.body;
  if (!index.is_object()) {
    return descriptors;
  }
  EXPECT_EQ(index.value("mediaType", ""), kOciIndexType);
  EXPECT_EQ(index.value("schemaVersion", 0), 2);
  for (const nlohmann::json& entry : index["manifests"]) {
    descriptors[entry.value("digest", "")] = entry;
  }
  return descriptors;
}

TEST(ReferrersTest, LocalRepositoryListsFiltersAndForgets) {
  OutpostOptions options;
  options.locals_yaml = "  - name: local\n";
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto outpost, OutpostServer::start(options));
  Artifacts artifacts;
  pushAll(outpost->url(), "local/app", artifacts);
  const std::string subject = sha256Of(artifacts.image).str();
  const std::string referrers_url = outpost->url() + "/v2/local/app/referrers/" + subject;

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult all, httpGet(referrers_url));
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(all.header("Content-Type"), kOciIndexType);
  EXPECT_FALSE(all.header("OCI-Filters-Applied"));
  std::map<std::string, nlohmann::json> listed = referrersOf(all);
  ASSERT_EQ(listed.size(), 2u) << all.body;
  const nlohmann::json& sbom = listed[sha256Of(artifacts.sbom).str()];
  EXPECT_EQ(sbom.value("artifactType", ""), kSbomType);
  EXPECT_EQ(sbom.value("mediaType", ""), kOciManifestType);
  EXPECT_EQ(sbom.value("size", 0u), artifacts.sbom.size());
  EXPECT_EQ(sbom["annotations"].value("example.note", ""), R"({"tool":"example"})");

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult filtered,
      httpGet(referrers_url + "?artifactType=application%2Fvnd.example.signature.v1"));
  ASSERT_EQ(filtered.status, 200);
  EXPECT_EQ(filtered.header("OCI-Filters-Applied"), "artifactType");
  std::map<std::string, nlohmann::json> signatures = referrersOf(filtered);
  ASSERT_EQ(signatures.size(), 1u) << filtered.body;
  EXPECT_TRUE(signatures.contains(sha256Of(artifacts.signature).str()));

  // Another image, and a subject without referrers, list nothing.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult other,
                               httpGet(outpost->url() + "/v2/local/other/referrers/" + subject));
  EXPECT_EQ(other.status, 200);
  EXPECT_TRUE(referrersOf(other).empty()) << other.body;

  // A deleted artifact is no longer listed.
  HttpRequest remove;
  remove.method = "DELETE";
  remove.url = outpost->url() + "/v2/local/app/manifests/" + sha256Of(artifacts.sbom).str();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult removed, httpRequest(remove));
  ASSERT_EQ(removed.status, 202) << removed.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult after, httpGet(referrers_url));
  std::map<std::string, nlohmann::json> remaining = referrersOf(after);
  EXPECT_EQ(remaining.size(), 1u) << after.body;
  EXPECT_TRUE(remaining.contains(sha256Of(artifacts.signature).str()));

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult invalid,
                               httpGet(outpost->url() + "/v2/local/app/referrers/sha256:abc"));
  EXPECT_EQ(invalid.status, 400);
  EXPECT_NE(invalid.body.find("DIGEST_INVALID"), std::string::npos) << invalid.body;
}

TEST(ReferrersTest, RemoteServesCachedReferrers) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto upstream, DistributionRegistry::start());
  Artifacts artifacts;
  pushAll(upstream->url(), "team/app", artifacts);
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto outpost, OutpostServer::start(optionsForUpstream(
                                                 upstream->url(), upstream->hostPort())));
  const std::string subject = sha256Of(artifacts.image).str();
  const std::string referrers_url = outpost->url() + "/v2/upstream/team/app/referrers/" + subject;

  // Nothing cached yet, and distribution 2.8.2 returns 404 for the referrers API.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult before, httpGet(referrers_url));
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_TRUE(referrersOf(before).empty()) << before.body;

  // Pulling the artifacts caches them with their subject.
  for (const std::string* manifest : {&artifacts.sbom, &artifacts.signature}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        HttpResult pulled,
        httpGet(outpost->url() + "/v2/upstream/team/app/manifests/" + sha256Of(*manifest).str(),
                {{"Accept", std::string(kOciManifestType)}}));
    ASSERT_EQ(pulled.status, 200) << pulled.body;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult cached, httpGet(referrers_url));
  ASSERT_EQ(cached.status, 200) << cached.body;
  std::map<std::string, nlohmann::json> listed = referrersOf(cached);
  EXPECT_EQ(listed.size(), 2u) << cached.body;
  EXPECT_EQ(listed[sha256Of(artifacts.signature).str()].value("artifactType", ""), kSignatureType);

  // The same with the upstream gone.
  upstream.reset();
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult offline,
      httpGet(referrers_url + "?artifactType=application%2Fvnd.example.sbom.v1"));
  ASSERT_EQ(offline.status, 200) << offline.body;
  EXPECT_EQ(offline.header("OCI-Filters-Applied"), "artifactType");
  std::map<std::string, nlohmann::json> sboms = referrersOf(offline);
  ASSERT_EQ(sboms.size(), 1u) << offline.body;
  EXPECT_TRUE(sboms.contains(sha256Of(artifacts.sbom).str()));
}

}  // namespace
}  // namespace outpost::integration
