#include "proxy/media_types.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace outpost::proxy {
namespace {

TEST(MediaTypesTest, RecognisesManifestTypes) {
  for (std::string_view media_type : kManifestMediaTypes) {
    SCOPED_TRACE(std::string(media_type));
    EXPECT_TRUE(isManifestMediaType(media_type));
  }
  EXPECT_FALSE(isManifestMediaType("application/vnd.oci.image.layer.v1.tar+gzip"));
  EXPECT_FALSE(isManifestMediaType("application/json"));
  EXPECT_FALSE(isManifestMediaType(""));
}

struct AcceptCase {
  std::string name;
  std::vector<std::string_view> lines;
  std::string media_type;
  bool is_accepted;
  bool is_accepted_explicitly;
};

TEST(AcceptListTest, AcceptsAndAcceptsExplicitly) {
  const std::string containerd_line =
      std::string(kDockerManifestList) + ", " + std::string(kDockerManifestV2) + ", " +
      std::string(kOciImageIndex) + ", " + std::string(kOciImageManifest) + ", */*";
  // podman and skopeo (containers/image) send one line per type.
  const std::vector<std::string_view> podman_lines = {
      kOciImageManifest,   kDockerManifestV2,       kDockerManifestV1Signed,
      kDockerManifestV1,   kDockerManifestList,     kOciImageIndex,
  };
  const std::vector<AcceptCase> cases = {
      {"no accept accepts anything", {}, std::string(kOciImageIndex), true, false},
      {"containerd line, index", {containerd_line}, std::string(kOciImageIndex), true, true},
      {"containerd line, unlisted type via wildcard",
       {containerd_line},
       std::string(kDockerManifestV1),
       true,
       false},
      {"podman lines, index", podman_lines, std::string(kOciImageIndex), true, true},
      {"podman lines, schema 1", podman_lines, std::string(kDockerManifestV1Signed), true, true},
      {"podman lines, other type", podman_lines, "application/json", false, false},
      {"docker v2 only, index", {kDockerManifestV2}, std::string(kOciImageIndex), false, false},
      {"type wildcard", {"application/*"}, std::string(kOciImageManifest), true, false},
      {"type wildcard, other type", {"text/*"}, std::string(kOciImageManifest), false, false},
      {"all wildcard", {"*/*"}, std::string(kOciImageIndex), true, false},
      {"excluded by zero weight", {"*/*, application/vnd.oci.image.index.v1+json;q=0"},
       std::string(kOciImageIndex), false, false},
      {"zero weight does not exclude others",
       {"*/*, application/vnd.oci.image.index.v1+json;q=0"},
       std::string(kOciImageManifest),
       true,
       false},
      {"zero weight forms", {"a/b;q=0.000, c/d;q=0.0, e/f; Q = 0."}, "a/b", false, false},
      {"zero weight with decimals, second type", {"a/b;q=0.000, c/d;q=0.0"}, "c/d", false, false},
      {"zero weight with space", {"e/f; Q=0."}, "e/f", false, false},
      {"small weight is not zero", {"a/b;q=0.001"}, "a/b", true, true},
      {"weight one", {"a/b;q=1"}, "a/b", true, true},
      {"malformed weight is ignored", {"a/b;q=zero"}, "a/b", true, true},
      {"too many decimals is not zero", {"a/b;q=0.0000"}, "a/b", true, true},
      {"wildcard excluded, specific kept", {"*/*;q=0, a/b"}, "a/b", true, true},
      {"wildcard excluded, other type", {"*/*;q=0, a/b"}, "c/d", false, false},
      {"type wildcard beats all wildcard", {"*/*, application/*;q=0"}, "application/json", false,
       false},
      {"exact beats type wildcard", {"application/*;q=0, application/json"}, "application/json",
       true, true},
      {"duplicate, one not excluded", {"a/b;q=0", "a/b"}, "a/b", true, true},
      {"case-insensitive", {"Application/VND.OCI.Image.Index.V1+JSON"},
       std::string(kOciImageIndex), true, true},
      {"query type with parameters", {"application/json"}, "application/json; charset=utf-8",
       true, true},
      {"other parameters ignored", {"application/json; charset=utf-8; level=1"},
       "application/json", true, true},
      {"quoted comma in parameter", {R"(a/b;x="1,2", c/d)"}, "c/d", true, true},
      {"quoted semicolon and zero weight text", {R"(a/b;x="q=0;q=0")"}, "a/b", true, true},
      {"invalid elements skipped", {"nonsense, /x, y/, */json, a/b"}, "a/b", true, true},
      {"only invalid elements count as no accept", {"nonsense"}, "a/b", true, false},
      {"empty elements", {" , ,a/b,, "}, "a/b", true, true},
      {"whitespace around elements", {"  a/b  ,\tc/d\t"}, "c/d", true, true},
  };
  for (const AcceptCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const AcceptList accept = AcceptList::fromHeaderLines(test_case.lines);
    EXPECT_EQ(accept.accepts(test_case.media_type), test_case.is_accepted);
    EXPECT_EQ(accept.acceptsExplicitly(test_case.media_type), test_case.is_accepted_explicitly);
  }
}

TEST(AcceptListTest, EmptyMeansNoMediaRanges) {
  EXPECT_TRUE(AcceptList().empty());
  EXPECT_TRUE(AcceptList::fromHeaderLines({"", " , "}).empty());
  EXPECT_TRUE(AcceptList::fromHeaderLines({"nonsense"}).empty());
  EXPECT_FALSE(AcceptList::fromHeaderLines({"*/*"}).empty());
}

TEST(AcceptListTest, InvalidQueryTypeIsNotAccepted) {
  const AcceptList accept = AcceptList::fromHeaderLines({"*/*"});
  EXPECT_FALSE(accept.accepts("not-a-media-type"));
  EXPECT_FALSE(accept.acceptsExplicitly(""));
}

TEST(AcceptListTest, JoinsLinesAsWritten) {
  AcceptList accept;
  accept.addHeaderLine("application/vnd.oci.image.manifest.v1+json");
  accept.addHeaderLine(" Application/JSON;q=0.5 ,  */*;q=0");
  accept.addHeaderLine("nonsense");
  EXPECT_EQ(accept.joined(),
            "application/vnd.oci.image.manifest.v1+json, Application/JSON;q=0.5, */*;q=0");
}

TEST(AcceptListTest, JoinedIsEmptyWithoutRanges) { EXPECT_EQ(AcceptList().joined(), ""); }

struct DetectCase {
  std::string name;
  std::string body;
  std::string_view expected;
};

TEST(MediaTypesTest, DetectsManifestMediaType) {
  const std::vector<DetectCase> cases = {
      {"declared docker v2",
       R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",)"
       R"("config":{},"layers":[]})",
       kDockerManifestV2},
      {"declared manifest list",
       R"({"schemaVersion":2,)"
       R"("mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",)"
       R"("manifests":[]})",
       kDockerManifestList},
      {"declared oci index", R"({"mediaType":"application/vnd.oci.image.index.v1+json"})",
       kOciImageIndex},
      {"declared type wins over shape",
       R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]})",
       kOciImageManifest},
      {"declared unknown type",
       R"({"mediaType":"application/vnd.oci.artifact.manifest.v1+json","config":{},"layers":[]})",
       ""},
      {"declared type not a string", R"({"mediaType":5,"manifests":[]})", ""},
      {"oci manifest by shape, umoci style",
       "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:x\"},\"layers\":[{}]}\n",
       kOciImageManifest},
      {"oci index by shape", R"({"schemaVersion":2,"manifests":[{"digest":"sha256:x"}]})",
       kOciImageIndex},
      {"schema 1 signed",
       R"({"schemaVersion":1,"name":"a","tag":"b","fsLayers":[],"history":[],"signatures":[]})",
       kDockerManifestV1Signed},
      {"schema 1 unsigned", R"({"schemaVersion":1,"name":"a","fsLayers":[],"history":[]})",
       kDockerManifestV1},
      {"manifests not an array", R"({"manifests":{}})", ""},
      {"config without layers", R"({"config":{}})", ""},
      {"layers without config", R"({"layers":[]})", ""},
      {"schema version as string", R"({"schemaVersion":"1"})", ""},
      {"empty object", "{}", ""},
      {"json array", "[]", ""},
      {"json string", R"("application/vnd.oci.image.index.v1+json")", ""},
      {"not json", "not json at all", ""},
      {"truncated json", R"({"mediaType":"application/vnd.oci.ima)", ""},
      {"empty body", "", ""},
      {"deep nesting", std::string(10000, '[') + std::string(10000, ']'), ""},
  };
  for (const DetectCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    EXPECT_EQ(detectManifestMediaType(test_case.body), test_case.expected);
  }
}

}  // namespace
}  // namespace outpost::proxy
