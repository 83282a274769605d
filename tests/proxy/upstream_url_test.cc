#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/upstream/http_headers.h"
#include "proxy/upstream/url.h"

namespace outpost::proxy::upstream {
namespace {

TEST(UpstreamUrlTest, ParsesValidUrls) {
  struct Case {
    const char* name;
    const char* text;
    Scheme scheme;
    const char* host;
    uint16_t port;
    const char* path_and_query;
  };
  const std::vector<Case> cases = {
      {"https default port", "https://registry-1.docker.io", Scheme::kHttps, "registry-1.docker.io",
       443, "/"},
      {"http with port", "http://127.0.0.1:5001", Scheme::kHttp, "127.0.0.1", 5001, "/"},
      {"upper-case scheme and host", "HTTPS://GHCR.IO/v2/", Scheme::kHttps, "ghcr.io", 443, "/v2/"},
      {"path and query", "https://auth.docker.io/token?service=x", Scheme::kHttps, "auth.docker.io",
       443, "/token?service=x"},
      {"query without path", "http://h?q=1", Scheme::kHttp, "h", 80, "/?q=1"},
      {"fragment dropped", "http://h/a#frag", Scheme::kHttp, "h", 80, "/a"},
      {"dot segments removed", "http://h/a/./b/../c", Scheme::kHttp, "h", 80, "/a/c"},
      {"IPv6 literal", "http://[::1]:8080/x", Scheme::kHttp, "::1", 8080, "/x"},
      {"empty port means default", "http://h:/x", Scheme::kHttp, "h", 80, "/x"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<Url> url = parseUrl(test_case.text);
    ASSERT_TRUE(url.hasValue()) << url.status().toString();
    EXPECT_EQ(url->scheme, test_case.scheme);
    EXPECT_EQ(url->host, test_case.host);
    EXPECT_EQ(url->port, test_case.port);
    EXPECT_EQ(url->path_and_query, test_case.path_and_query);
  }
}

TEST(UpstreamUrlTest, RejectsInvalidUrls) {
  struct Case {
    const char* name;
    const char* text;
  };
  const std::vector<Case> cases = {
      {"empty", ""},
      {"relative", "/v2/"},
      {"other scheme", "ftp://host/"},
      {"user information", "https://user:pass@host/"},
      {"empty host", "http:///path"},
      {"port zero", "http://h:0/"},
      {"port too large", "http://h:65536/"},
      {"port not a number", "http://h:80a/"},
      {"space in path", "http://h/a b"},
      {"newline in path", "http://h/a\r\nX: y"},
      {"bad host character", "http://h%2e/"},
      {"unclosed IPv6 literal", "http://[::1/"},
      {"invalid IPv6 literal", "http://[zz::1]/"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<Url> url = parseUrl(test_case.text);
    EXPECT_FALSE(url.hasValue());
    EXPECT_EQ(url.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(UpstreamUrlTest, FormatsOriginAndHostHeader) {
  struct Case {
    const char* text;
    const char* origin;
    const char* host_header;
    const char* without_query;
  };
  const std::vector<Case> cases = {
      {"https://ghcr.io/v2/x?sig=1", "https://ghcr.io:443", "ghcr.io", "https://ghcr.io/v2/x"},
      {"http://127.0.0.1:5001/a", "http://127.0.0.1:5001", "127.0.0.1:5001",
       "http://127.0.0.1:5001/a"},
      {"http://[::1]:80/", "http://[::1]:80", "[::1]", "http://[::1]/"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.text);
    Expected<Url> url = parseUrl(test_case.text);
    ASSERT_TRUE(url.hasValue()) << url.status().toString();
    EXPECT_EQ(url->origin(), test_case.origin);
    EXPECT_EQ(url->hostHeader(), test_case.host_header);
    EXPECT_EQ(url->withoutQuery(), test_case.without_query);
  }
}

TEST(UpstreamUrlTest, ComparesOrigins) {
  Url base = parseUrl("https://registry.example/v2/").value();
  EXPECT_TRUE(isSameOrigin(base, parseUrl("https://REGISTRY.example:443/other").value()));
  EXPECT_FALSE(isSameOrigin(base, parseUrl("http://registry.example/v2/").value()));
  EXPECT_FALSE(isSameOrigin(base, parseUrl("https://registry.example:8443/v2/").value()));
  EXPECT_FALSE(isSameOrigin(base, parseUrl("https://cdn.example/v2/").value()));
}

TEST(UpstreamUrlTest, RecognizesIpLiterals) {
  EXPECT_TRUE(parseUrl("https://127.0.0.1/").value().isIpLiteral());
  EXPECT_TRUE(parseUrl("https://[2001:db8::1]/").value().isIpLiteral());
  EXPECT_FALSE(parseUrl("https://registry.example/").value().isIpLiteral());
}

TEST(UpstreamUrlTest, ResolvesLocations) {
  struct Case {
    const char* name;
    const char* location;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"absolute URL", "https://cdn.example/blobs/1?sig=x", "https://cdn.example/blobs/1"},
      {"network path", "//cdn.example:8443/b", "https://cdn.example:8443/b"},
      {"absolute path", "/v2/other/blobs/2", "https://registry.example/v2/other/blobs/2"},
      {"relative path", "other", "https://registry.example/v2/repo/blobs/other"},
      // RFC 3986 section 4.2: a first segment with ':' needs "./", or it reads as a scheme.
      {"relative path with colon", "./sha256:2", "https://registry.example/v2/repo/blobs/sha256:2"},
      {"parent path", "../manifests/x", "https://registry.example/v2/repo/manifests/x"},
      {"query only", "?page=2", "https://registry.example/v2/repo/blobs/sha256:1"},
      {"fragment dropped", "/a#b", "https://registry.example/a"},
  };
  const Url base = parseUrl("https://registry.example/v2/repo/blobs/sha256:1?x=1").value();
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<Url> resolved = resolveLocation(base, test_case.location);
    ASSERT_TRUE(resolved.hasValue()) << resolved.status().toString();
    EXPECT_EQ(resolved->withoutQuery(), test_case.expected);
  }
}

TEST(UpstreamUrlTest, ResolvedLocationKeepsQuery) {
  const Url base = parseUrl("https://registry.example/v2/repo/blobs/sha256:1").value();
  Expected<Url> resolved = resolveLocation(base, "https://cdn.example/b?X-Amz-Signature=abc");
  ASSERT_TRUE(resolved.hasValue()) << resolved.status().toString();
  EXPECT_EQ(resolved->path_and_query, "/b?X-Amz-Signature=abc");
  Expected<Url> query_only = resolveLocation(base, "?page=2");
  ASSERT_TRUE(query_only.hasValue()) << query_only.status().toString();
  EXPECT_EQ(query_only->path_and_query, "/v2/repo/blobs/sha256:1?page=2");
}

TEST(UpstreamUrlTest, RejectsInvalidLocations) {
  const Url base = parseUrl("https://registry.example/v2/").value();
  for (const char* location : {"", "#only-fragment", "ftp://elsewhere/", "/a b", "mailto:x@y"}) {
    SCOPED_TRACE(location);
    EXPECT_FALSE(resolveLocation(base, location).hasValue());
  }
}

TEST(UpstreamUrlTest, PercentEncodesAllButUnreserved) {
  EXPECT_EQ(percentEncode("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull");
  EXPECT_EQ(percentEncode("a-b_c.d~e"), "a-b_c.d~e");
  EXPECT_EQ(percentEncode("a b&c=d"), "a%20b%26c%3Dd");
  EXPECT_EQ(percentEncode("\xc3\xa9"), "%C3%A9");
}

TEST(UpstreamHeadersTest, FindsHeadersIgnoringCase) {
  const HeaderList headers = {{"Content-Type", "a"}, {"content-type", "b"}, {"X-Empty", ""}};
  EXPECT_EQ(findHeader(headers, "CONTENT-TYPE"), "a");
  EXPECT_EQ(findHeader(headers, "X-Empty"), "");
  EXPECT_EQ(findHeader(headers, "Missing"), "");
}

TEST(UpstreamHeadersTest, ValidatesNamesAndValues) {
  EXPECT_TRUE(isValidHeaderName("Accept"));
  EXPECT_TRUE(isValidHeaderName("X-Custom_1!"));
  EXPECT_FALSE(isValidHeaderName(""));
  EXPECT_FALSE(isValidHeaderName("Bad Name"));
  EXPECT_FALSE(isValidHeaderName("Bad:Name"));
  EXPECT_TRUE(isValidHeaderValue("application/json, */*; q=0.5\t"));
  EXPECT_TRUE(isValidHeaderValue(""));
  EXPECT_FALSE(isValidHeaderValue("a\r\nb"));
  EXPECT_FALSE(isValidHeaderValue(std::string("a\0b", 3)));
  EXPECT_TRUE(isValidMethod("GET"));
  EXPECT_FALSE(isValidMethod("G T"));
}

}  // namespace
}  // namespace outpost::proxy::upstream
