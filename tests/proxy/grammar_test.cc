#include "proxy/grammar.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace outpost::proxy {
namespace {

const std::string kSha256Digest =
    "sha256:" + std::string(64, 'a');

struct NameCase {
  std::string name;
  std::string input;
  bool is_valid;
};

TEST(GrammarTest, RepositoryNames) {
  const std::vector<NameCase> cases = {
      {"single component", "alpine", true},
      {"two components", "library/alpine", true},
      {"many components", "a/b/c/d/e", true},
      {"digits only", "0123", true},
      {"single dot separator", "my.image", true},
      {"single underscore", "my_image", true},
      {"double underscore", "my__image", true},
      {"one dash", "my-image", true},
      {"dash run", "my---image", true},
      {"separators in every component", "a.b/c_d/e__f/g--h", true},
      {"keyword components", "foo/blobs/manifests", true},
      {"empty", "", false},
      {"upper case", "Library/alpine", false},
      {"upper case after separator", "library/alpine-Edge", false},
      {"double dot", "a..b", false},
      {"triple underscore", "a___b", false},
      {"dot then underscore", "a._b", false},
      {"dash then dot", "a-.b", false},
      {"leading slash", "/alpine", false},
      {"trailing slash", "alpine/", false},
      {"double slash", "library//alpine", false},
      {"only a slash", "/", false},
      {"leading separator", ".alpine", false},
      {"leading dash in component", "library/-alpine", false},
      {"trailing separator", "alpine_", false},
      {"trailing dash in component", "library-/alpine", false},
      {"colon", "alpine:3.19", false},
      {"at sign", "alpine@sha256", false},
      {"space", "my image", false},
      {"percent encoding", "my%2Fimage", false},
      {"non-ASCII byte", "caf\xc3\xa9", false},
      {"dot component", "library/./alpine", false},
      {"dot dot component", "library/../alpine", false},
      {"maximum length", std::string(255, 'a'), true},
      {"one over maximum length", std::string(256, 'a'), false},
      {"maximum length with components", std::string(127, 'a') + "/" + std::string(127, 'b'),
       true},
  };
  for (const NameCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    EXPECT_EQ(isValidRepositoryName(test_case.input), test_case.is_valid) << test_case.input;
    EXPECT_EQ(validateRepositoryName(test_case.input).isOk(), test_case.is_valid)
        << test_case.input;
  }
}

struct NameMessageCase {
  std::string name;
  std::string input;
  std::string expected_fragment;
};

TEST(GrammarTest, RepositoryNameMessagesNameTheRule) {
  const std::vector<NameMessageCase> cases = {
      {"empty", "", "is empty"},
      {"too long", std::string(300, 'a'), "300 characters long, more than the maximum of 255"},
      {"empty component", "a//b", "empty component"},
      {"upper case", "Alpine", "upper-case"},
      {"invalid character", "a b", "character other than"},
      {"separator at edge", "a/_b", "starts or ends with"},
      {"invalid separator", "a..b", "invalid separator"},
  };
  for (const NameMessageCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Status status = validateRepositoryName(test_case.input);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(status.message().starts_with("NAME_INVALID: ")) << status.message();
    EXPECT_NE(status.message().find(test_case.expected_fragment), std::string_view::npos)
        << status.message();
  }
}

TEST(GrammarTest, Tags) {
  const std::vector<NameCase> cases = {
      {"simple", "latest", true},
      {"version", "3.19.1", true},
      {"upper case", "Latest", true},
      {"leading underscore", "_tag", true},
      {"leading digit", "1.0", true},
      {"dashes and dots inside", "v1.0-rc.1_build", true},
      {"single character", "a", true},
      {"maximum length", std::string(128, 'a'), true},
      {"one over maximum length", std::string(129, 'a'), false},
      {"empty", "", false},
      {"leading dot", ".hidden", false},
      {"leading dash", "-rc", false},
      {"colon", "sha256:abc", false},
      {"slash", "a/b", false},
      {"plus", "1.0+build", false},
      {"space", "a b", false},
  };
  for (const NameCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    EXPECT_EQ(isValidTag(test_case.input), test_case.is_valid) << test_case.input;
  }
}

struct RouteCase {
  std::string name;
  std::string input;
  RegistryPath::Kind kind;
  std::string expected_name;
  std::string expected_reference;
};

TEST(GrammarTest, ParsesRoutes) {
  using Kind = RegistryPath::Kind;
  const std::vector<RouteCase> cases = {
      {"base", "", Kind::kBase, "", ""},
      {"manifest by tag", "library/alpine/manifests/3.19", Kind::kManifest, "library/alpine",
       "3.19"},
      {"manifest by digest", "library/alpine/manifests/" + kSha256Digest, Kind::kManifest,
       "library/alpine", kSha256Digest},
      {"one-component name", "alpine/manifests/latest", Kind::kManifest, "alpine", "latest"},
      {"blob", "a/blobs/" + kSha256Digest, Kind::kBlob, "a", kSha256Digest},
      {"tags list", "a/b/tags/list", Kind::kTagsList, "a/b", ""},
      {"start upload", "a/b/blobs/uploads/", Kind::kBlobUploads, "a/b", ""},
      {"start upload without slash", "a/b/blobs/uploads", Kind::kBlobUploads, "a/b", ""},
      {"upload session", "a/b/blobs/uploads/5f2c-11ee", Kind::kBlobUploads, "a/b", "5f2c-11ee"},
      {"referrers", "a/referrers/" + kSha256Digest, Kind::kReferrers, "a", kSha256Digest},
      {"name containing blobs and manifests", "foo/blobs/bar/manifests/latest", Kind::kManifest,
       "foo/blobs/bar", "latest"},
      {"name ending in manifests", "foo/manifests/manifests/v1", Kind::kManifest,
       "foo/manifests", "v1"},
      {"name ending in blobs", "foo/blobs/blobs/" + kSha256Digest, Kind::kBlob, "foo/blobs",
       kSha256Digest},
      {"name ending in blobs with upload", "foo/blobs/blobs/uploads/", Kind::kBlobUploads,
       "foo/blobs", ""},
      {"name containing tags", "tags/list/tags/list", Kind::kTagsList, "tags/list", ""},
      {"name containing uploads", "uploads/manifests/x", Kind::kManifest, "uploads", "x"},
      {"reference not validated", "a/manifests/NOT..valid", Kind::kManifest, "a", "NOT..valid"},
  };
  for (const RouteCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<RegistryPath> route = parseRegistryPath(test_case.input);
    ASSERT_TRUE(route.hasValue()) << route.status().toString();
    EXPECT_EQ(route->kind, test_case.kind);
    EXPECT_EQ(route->name, test_case.expected_name);
    EXPECT_EQ(route->reference, test_case.expected_reference);
  }
}

struct RouteFailureCase {
  std::string name;
  std::string input;
  StatusCode code;
};

TEST(GrammarTest, RejectsUnknownRoutesAndInvalidNames) {
  const std::vector<RouteFailureCase> cases = {
      {"catalog", "_catalog", StatusCode::kNotFound},
      {"name only", "library/alpine", StatusCode::kNotFound},
      {"manifest without name", "manifests/latest", StatusCode::kNotFound},
      {"manifest without reference", "alpine/manifests/", StatusCode::kNotFound},
      {"blob without digest", "alpine/blobs/", StatusCode::kNotFound},
      {"reference with slash", "alpine/manifests/a/b", StatusCode::kNotFound},
      {"tags without list", "alpine/tags/", StatusCode::kNotFound},
      {"tags list with trailing slash", "alpine/tags/list/", StatusCode::kNotFound},
      {"tags list without name", "tags/list", StatusCode::kNotFound},
      {"uploads without blobs", "alpine/uploads/x", StatusCode::kNotFound},
      {"upload without name", "blobs/uploads/", StatusCode::kNotFound},
      {"unknown keyword", "alpine/layers/x", StatusCode::kNotFound},
      {"leading slash", "/alpine/manifests/latest", StatusCode::kInvalidArgument},
      {"upper-case name", "Library/alpine/manifests/latest", StatusCode::kInvalidArgument},
      {"empty component", "library//alpine/blobs/" + kSha256Digest, StatusCode::kInvalidArgument},
      {"dot dot component", "../etc/manifests/latest", StatusCode::kInvalidArgument},
      {"invalid name for tags", "a..b/tags/list", StatusCode::kInvalidArgument},
      {"too long name", std::string(256, 'a') + "/manifests/latest", StatusCode::kInvalidArgument},
  };
  for (const RouteFailureCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<RegistryPath> route = parseRegistryPath(test_case.input);
    ASSERT_FALSE(route.hasValue()) << test_case.input;
    EXPECT_EQ(route.status().code(), test_case.code) << route.status().toString();
  }
}

TEST(GrammarTest, InvalidNameInPathReportsNameInvalid) {
  const Expected<RegistryPath> route = parseRegistryPath("My/Image/manifests/latest");
  ASSERT_FALSE(route.hasValue());
  EXPECT_TRUE(route.status().message().starts_with("NAME_INVALID: "))
      << route.status().toString();
}

TEST(GrammarTest, RouteViewsPointIntoInput) {
  const std::string path = "library/alpine/manifests/3.19";
  const Expected<RegistryPath> route = parseRegistryPath(path);
  ASSERT_TRUE(route.hasValue());
  EXPECT_EQ(route->name.data(), path.data());
  EXPECT_EQ(route->reference.data(), path.data() + path.size() - 4);
}

struct ReferenceCase {
  std::string name;
  std::string input;
  StatusCode code;
  ReferenceKind kind;
};

TEST(GrammarTest, ClassifiesReferences) {
  const std::vector<ReferenceCase> cases = {
      {"tag", "latest", StatusCode::kOk, ReferenceKind::kTag},
      {"version tag", "3.19.1", StatusCode::kOk, ReferenceKind::kTag},
      {"sha256 digest", kSha256Digest, StatusCode::kOk, ReferenceKind::kDigest},
      {"sha512 digest", "sha512:" + std::string(128, '0'), StatusCode::kOk,
       ReferenceKind::kDigest},
      {"short digest", "sha256:abc", StatusCode::kInvalidArgument, ReferenceKind::kDigest},
      {"upper-case digest", "sha256:" + std::string(64, 'A'), StatusCode::kInvalidArgument,
       ReferenceKind::kDigest},
      {"empty algorithm", ":" + std::string(64, 'a'), StatusCode::kInvalidArgument,
       ReferenceKind::kDigest},
      {"unsupported algorithm", "md5:" + std::string(32, 'a'), StatusCode::kOutOfRange,
       ReferenceKind::kDigest},
      {"empty", "", StatusCode::kInvalidArgument, ReferenceKind::kTag},
      {"leading dot tag", ".x", StatusCode::kInvalidArgument, ReferenceKind::kTag},
      {"too long tag", std::string(129, 'a'), StatusCode::kInvalidArgument, ReferenceKind::kTag},
  };
  for (const ReferenceCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<ReferenceKind> kind = classifyReference(test_case.input);
    EXPECT_EQ(kind.status().code(), test_case.code) << kind.status().toString();
    if (kind.hasValue()) {
      EXPECT_EQ(*kind, test_case.kind);
    }
  }
}

TEST(GrammarTest, InvalidDigestReportsDigestInvalid) {
  const Expected<ReferenceKind> kind = classifyReference("sha256:xyz");
  ASSERT_FALSE(kind.hasValue());
  EXPECT_TRUE(kind.status().message().starts_with("DIGEST_INVALID: ")) << kind.status().toString();
}

}  // namespace
}  // namespace outpost::proxy
