#include "proxy/manifest_check.h"

#include <gtest/gtest.h>

#include <string>

#include "proxy/media_types.h"

namespace outpost::proxy {
namespace {

const Digest kConfig = sha256Of("config");
const Digest kLayer = sha256Of("layer");
const Digest kChild = sha256Of("child manifest");

std::string descriptor(std::string_view media_type, const Digest& digest, int64_t size) {
  return R"({"mediaType":")" + std::string(media_type) + R"(","digest":")" + digest.str() +
         R"(","size":)" + std::to_string(size) + "}";
}

std::string imageManifest(std::string_view extra = "") {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
         R"("config":)" +
         descriptor("application/vnd.oci.image.config.v1+json", kConfig, 6) + R"(,"layers":[)" +
         descriptor("application/vnd.oci.image.layer.v1.tar+gzip", kLayer, 5) + "]" +
         std::string(extra) + "}";
}

TEST(ManifestCheckTest, ImageManifestReferences) {
  Expected<ManifestReferences> references = checkPushedManifest(kOciImageManifest, imageManifest());
  ASSERT_TRUE(references) << references.status().toString();

  EXPECT_EQ(references->media_type, kOciImageManifest);
  ASSERT_EQ(references->blobs.size(), 2u);
  EXPECT_EQ(references->blobs[0].digest, kConfig);
  EXPECT_EQ(references->blobs[0].size, 6u);
  EXPECT_EQ(references->blobs[1].digest, kLayer);
  EXPECT_FALSE(references->blobs[1].is_external);
  EXPECT_TRUE(references->manifests.empty());
  EXPECT_FALSE(references->subject);
  EXPECT_EQ(references->artifact_type, "application/vnd.oci.image.config.v1+json");
}

TEST(ManifestCheckTest, IndexReferencesChildren) {
  std::string body = R"({"schemaVersion":2,"mediaType":")" + std::string(kDockerManifestList) +
                     R"(","manifests":[)" + descriptor(kDockerManifestV2, kChild, 100) + "]}";
  Expected<ManifestReferences> references = checkPushedManifest("", body);
  ASSERT_TRUE(references) << references.status().toString();

  EXPECT_EQ(references->media_type, kDockerManifestList);
  EXPECT_TRUE(references->blobs.empty());
  ASSERT_EQ(references->manifests.size(), 1u);
  EXPECT_EQ(references->manifests[0], kChild);
}

TEST(ManifestCheckTest, SubjectAndArtifactType) {
  std::string body = imageManifest(R"(,"artifactType":"application/vnd.example.sbom","subject":)" +
                                   descriptor(kOciImageManifest, kChild, 10));
  Expected<ManifestReferences> references = checkPushedManifest(kOciImageManifest, body);
  ASSERT_TRUE(references) << references.status().toString();

  ASSERT_TRUE(references->subject);
  EXPECT_EQ(*references->subject, kChild);
  EXPECT_EQ(references->artifact_type, "application/vnd.example.sbom");
}

TEST(ManifestCheckTest, ContentTypeParametersIgnored) {
  Expected<ManifestReferences> references = checkPushedManifest(
      "Application/VND.oci.image.manifest.v1+json; charset=utf-8", imageManifest());
  ASSERT_TRUE(references) << references.status().toString();
  EXPECT_EQ(references->media_type, kOciImageManifest);
}

TEST(ManifestCheckTest, ForeignLayerIsExternal) {
  std::string body =
      R"({"schemaVersion":2,"mediaType":")" + std::string(kDockerManifestV2) + R"(","config":)" +
      descriptor("application/vnd.docker.container.image.v1+json", kConfig, 6) + R"(,"layers":[)" +
      descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", kLayer, 5) + "]}";
  Expected<ManifestReferences> references = checkPushedManifest(kDockerManifestV2, body);
  ASSERT_TRUE(references) << references.status().toString();
  ASSERT_EQ(references->blobs.size(), 2u);
  EXPECT_TRUE(references->blobs[1].is_external);
}

TEST(ManifestCheckTest, RejectsInvalidManifests) {
  struct Case {
    std::string label;
    std::string content_type;
    std::string body;
    std::string expected_message;
  };
  std::string index_type(kOciImageIndex);
  const std::vector<Case> cases = {
      {"not JSON", "", "{not json", "not valid JSON"},
      {"JSON array", "", "[1,2]", "not a JSON object"},
      {"unknown shape", "", R"({"schemaVersion":2})", "media type is unknown"},
      {"body type differs", index_type, imageManifest(), "differs from the Content-Type"},
      {"schema 1", "", R"({"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]})",
       "cannot be pushed"},
      {"unknown media type", "", R"({"schemaVersion":2,"mediaType":"text/plain"})",
       "cannot be pushed"},
      {"schema version 3", kOciImageManifest.data(),
       R"({"schemaVersion":3,"config":)" + descriptor("a/b", kConfig, 1) + R"(,"layers":[]})",
       "schemaVersion must be 2"},
      {"missing config", std::string(kOciImageManifest), R"({"schemaVersion":2,"layers":[]})",
       "needs a config descriptor"},
      {"layers not an array", std::string(kOciImageManifest),
       R"({"schemaVersion":2,"config":)" + descriptor("a/b", kConfig, 1) + R"(,"layers":{}})",
       "needs a layers array"},
      {"bad layer digest", std::string(kOciImageManifest),
       R"({"schemaVersion":2,"config":)" + descriptor("a/b", kConfig, 1) +
           R"(,"layers":[{"mediaType":"a/b","digest":"sha256:abc","size":1}]})",
       "layers[0].digest is invalid"},
      {"negative size", std::string(kOciImageManifest),
       R"({"schemaVersion":2,"config":)" + descriptor("a/b", kConfig, -1) + R"(,"layers":[]})",
       "config.size is missing or not a non-negative integer"},
      {"size as text", std::string(kOciImageManifest),
       R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":")" + kConfig.str() +
           R"(","size":"1"},"layers":[]})",
       "config.size is missing"},
      {"index without manifests", index_type, R"({"schemaVersion":2})", "needs a manifests array"},
      {"bad subject", std::string(kOciImageManifest), imageManifest(R"(,"subject":"x")"),
       "subject is not a descriptor"},
      {"artifactType not a string", std::string(kOciImageManifest),
       imageManifest(R"(,"artifactType":1)"), "artifactType is not a string"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.label);
    Expected<ManifestReferences> references =
        checkPushedManifest(test_case.content_type, test_case.body);
    ASSERT_FALSE(references);
    EXPECT_EQ(references.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(references.status().message().find(test_case.expected_message), std::string::npos)
        << references.status().message();
  }
}

}  // namespace
}  // namespace outpost::proxy
