#include "tests/conformance/registry_client.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace outpost::conformance {
namespace {

TEST(ResolveReferenceTest, FollowsEachLocationForm) {
  const std::string request = "http://127.0.0.1:5000/v2/app/blobs/uploads/?digest=sha256%3Aab";
  struct Case {
    const char* name;
    const char* reference;
    const char* expected;
  };
  const Case cases[] = {
      {"absolute URL", "http://localhost:5000/v2/app/blobs/uploads/1?_state=x",
       "http://localhost:5000/v2/app/blobs/uploads/1?_state=x"},
      {"absolute path", "/v2/app/blobs/uploads/1?_state=x",
       "http://127.0.0.1:5000/v2/app/blobs/uploads/1?_state=x"},
      {"relative path", "1?_state=x", "http://127.0.0.1:5000/v2/app/blobs/uploads/1?_state=x"},
      {"query only", "?page=2", "http://127.0.0.1:5000/v2/app/blobs/uploads/?page=2"},
      {"network path", "//127.0.0.1:6000/v2/app", "http://127.0.0.1:6000/v2/app"},
      {"empty", "", "http://127.0.0.1:5000/v2/app/blobs/uploads/?digest=sha256%3Aab"},
  };
  for (const Case& entry : cases) {
    SCOPED_TRACE(entry.name);
    EXPECT_EQ(resolveReference(request, entry.reference), entry.expected);
  }
}

TEST(ResolveReferenceTest, RelativePathFromUrlWithoutPath) {
  EXPECT_EQ(resolveReference("http://127.0.0.1:5000", "v2/app"), "http://127.0.0.1:5000/v2/app");
}

TEST(NextLinkTargetTest, FindsNextRelation) {
  struct Case {
    const char* name;
    const char* link;
    std::optional<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"quoted", "</v2/app/tags/list?n=2&last=b>; rel=\"next\"", "/v2/app/tags/list?n=2&last=b"},
      {"token", "</v2/app/tags/list?last=b>;rel=next", "/v2/app/tags/list?last=b"},
      {"upper-case key", "</next>; REL=\"next\"", "/next"},
      {"several relations", "</next>; rel=\"prefetch next\"", "/next"},
      {"second entry", "</first>; rel=\"first\", </next>; rel=\"next\"", "/next"},
      {"other relation only", "</prev>; rel=\"prev\"", std::nullopt},
      {"no angle brackets", "/v2/app/tags/list; rel=\"next\"", std::nullopt},
      {"empty", "", std::nullopt},
  };
  for (const Case& entry : cases) {
    SCOPED_TRACE(entry.name);
    EXPECT_EQ(nextLinkTarget(entry.link), entry.expected);
  }
}

TEST(EncodeQueryValueTest, EscapesAllButUnreserved) {
  EXPECT_EQ(encodeQueryValue("sha256:ab"), "sha256%3Aab");
  EXPECT_EQ(encodeQueryValue("application/vnd.oci.image.manifest.v1+json"),
            "application%2Fvnd.oci.image.manifest.v1%2Bjson");
  EXPECT_EQ(encodeQueryValue("a-b_c.d~e"), "a-b_c.d~e");
}

TEST(AppendQueryTest, ChoosesSeparator) {
  EXPECT_EQ(appendQuery("http://127.0.0.1:1/u", "digest", "sha256:a"),
            "http://127.0.0.1:1/u?digest=sha256%3Aa");
  EXPECT_EQ(appendQuery("http://127.0.0.1:1/u?_state=x", "digest", "sha256:a"),
            "http://127.0.0.1:1/u?_state=x&digest=sha256%3Aa");
}

TEST(ErrorCodesTest, ReadsCodesOfErrorBody) {
  EXPECT_EQ(errorCodes(R"({"errors":[{"code":"BLOB_UNKNOWN","message":"x"},{"code":"DENIED"}]})"),
            (std::vector<std::string>{"BLOB_UNKNOWN", "DENIED"}));
  EXPECT_TRUE(errorCodes("404 page not found\n").empty());
  EXPECT_TRUE(errorCodes(R"({"errors":"BLOB_UNKNOWN"})").empty());
  EXPECT_TRUE(errorCodes(R"({"errors":[{"message":"no code"}]})").empty());
}

TEST(ExchangeTest, DescribesRequestAndResponse) {
  Exchange exchange;
  exchange.method = "PUT";
  exchange.url = "http://127.0.0.1:5000/v2/app/manifests/v1";
  exchange.response.status = 400;
  exchange.response.body = R"({"errors":[{"code":"MANIFEST_INVALID"}]})";
  EXPECT_EQ(exchange.describeRequest(), "PUT /v2/app/manifests/v1");
  EXPECT_EQ(exchange.describeResponse(), "400 MANIFEST_INVALID");

  exchange.response.status = 404;
  exchange.response.body = "404 page not found\n";
  EXPECT_EQ(exchange.describeResponse(), "404 (body: 404 page not found)");

  exchange.response.body.clear();
  EXPECT_EQ(exchange.describeResponse(), "404");
}

}  // namespace
}  // namespace outpost::conformance
