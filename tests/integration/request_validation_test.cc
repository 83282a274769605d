// Requests Outpost must reject or answer without the upstream: bad names, tags and digests,
// writes to a remote, unknown routes and mirrors, malformed HTTP; and the registry headers of
// good answers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/digest.h"
#include "base/unique_fd.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/scripted_upstream.h"

namespace outpost::integration {
namespace {

constexpr std::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";

class RequestValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OUTPOST_ASSERT_OK(upstream_.start());
    // Like umoci's output: no mediaType field and a trailing newline, kept byte for byte.
    manifest_ =
        R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json",)"
        R"("digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",)"
        R"("size":2},"layers":[]})"
        "\n";
    manifest_digest_ = sha256Of(manifest_).str();
    upstream_.setResource("/v2/team/app/manifests/v1", manifest_, std::string(kOciManifestType));
    upstream_.setResource("/v2/team/app/manifests/" + manifest_digest_, manifest_,
                          std::string(kOciManifestType));
    upstream_.setResource("/v2/team/app/tags/list",
                          R"({"name":"team/app","tags":["v3","v1","latest","v2"]})",
                          "application/json");
    // A manifest whose bytes do not match the digest it is served under.
    wrong_digest_ = sha256Of("something else").str();
    upstream_.setResource("/v2/team/app/manifests/" + wrong_digest_, manifest_,
                          std::string(kOciManifestType));

    OutpostOptions options = optionsForUpstream(upstream_.url(), upstream_.hostPort());
    options.remotes[0].hosts.push_back("registry.example.test");
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(options));
  }

  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  Expected<HttpResult> send(const std::string& method, const std::string& path,
                            std::vector<HttpHeader> headers = {}) {
    HttpRequest request;
    request.method = method;
    request.url = outpost_->url() + path;
    request.headers = std::move(headers);
    return httpRequest(request);
  }

  ScriptedUpstream upstream_;
  std::unique_ptr<OutpostServer> outpost_;
  std::string manifest_;
  std::string manifest_digest_;
  std::string wrong_digest_;
};

TEST_F(RequestValidationTest, RejectsInvalidInputWithRegistryErrors) {
  struct Case {
    std::string label;
    std::string method;
    std::string path;
    int status;
    std::string code;
  };
  const std::string tag_129(129, 't');
  const std::string long_name(256, 'a');
  const std::vector<Case> cases = {
      {"uppercase name", "GET", "/v2/upstream/Team/app/manifests/v1", 400, "NAME_INVALID"},
      {"dot-dot component", "GET", "/v2/upstream/team/../app/manifests/v1", 400, "NAME_INVALID"},
      {"empty component", "GET", "/v2/upstream/team//app/manifests/v1", 400, "NAME_INVALID"},
      {"name over 255 characters", "GET", "/v2/" + long_name + "/manifests/v1", 400,
       "NAME_INVALID"},
      {"tag of 129 characters", "GET", "/v2/upstream/team/app/manifests/" + tag_129, 400,
       "TAG_INVALID"},
      {"tag with a bad character", "GET", "/v2/upstream/team/app/manifests/v1!", 400,
       "TAG_INVALID"},
      {"manifest digest not hex", "GET", "/v2/upstream/team/app/manifests/sha256:xyz", 400,
       "DIGEST_INVALID"},
      {"blob digest too short", "GET", "/v2/upstream/team/app/blobs/sha256:abcd", 400,
       "DIGEST_INVALID"},
      {"blob digest of unknown algorithm", "GET", "/v2/upstream/team/app/blobs/md5:abcd", 400,
       "DIGEST_INVALID"},
      {"blob digest uppercase hex", "GET",
       "/v2/upstream/team/app/blobs/sha256:" + std::string(64, 'A'), 400, "DIGEST_INVALID"},
      {"push to a remote", "PUT", "/v2/upstream/team/app/manifests/v1", 405, "UNSUPPORTED"},
      {"upload to a remote", "POST", "/v2/upstream/team/app/blobs/uploads/", 405,
       "UNSUPPORTED"},
      {"delete on a remote", "DELETE", "/v2/upstream/team/app/manifests/v1", 405,
       "UNSUPPORTED"},
      {"patch on a remote", "PATCH", "/v2/upstream/team/app/blobs/uploads/abc", 405,
       "UNSUPPORTED"},
      {"unknown registry route", "GET", "/v2/upstream/team/app/unknown", 404, "NAME_UNKNOWN"},
      {"path outside the API", "GET", "/index.html", 404, "NAME_UNKNOWN"},
      {"unknown ns", "GET", "/v2/team/app/manifests/v1?ns=ghcr.io", 404, "NAME_UNKNOWN"},
      {"bad page size", "GET", "/v2/upstream/team/app/tags/list?n=abc", 400,
       "PAGINATION_NUMBER_INVALID"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.label);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, send(test_case.method, test_case.path));
    EXPECT_EQ(result.status, test_case.status) << result.body;
    EXPECT_NE(result.body.find("\"code\":\"" + test_case.code + "\""), std::string::npos)
        << result.body;
    EXPECT_NE(result.header("Content-Type").value_or("").find("application/json"),
              std::string::npos);
  }
  // None of them reached the upstream.
  EXPECT_EQ(upstream_.requestCount("/v2/team/app/manifests/v1"), 0u);
  EXPECT_EQ(upstream_.requestCount("/v2/team/app/tags/list"), 0u);
}

TEST_F(RequestValidationTest, WriteRejectionNamesAllowedMethods) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, send("PUT", "/v2/upstream/team/app/manifests/v1"));
  EXPECT_EQ(result.status, 405);
  EXPECT_EQ(result.header("Allow").value_or(""), "GET, HEAD");
}

TEST_F(RequestValidationTest, ManifestHeadAndGetCarryRegistryHeaders) {
  const std::vector<HttpHeader> accept = {{"Accept", std::string(kOciManifestType)}};
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head,
                               send("HEAD", "/v2/upstream/team/app/manifests/v1", accept));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("Docker-Content-Digest").value_or(""), manifest_digest_);
  EXPECT_EQ(head.header("Content-Length").value_or(""), std::to_string(manifest_.size()));
  EXPECT_EQ(head.header("Content-Type").value_or(""), kOciManifestType);
  EXPECT_EQ(head.header("ETag").value_or(""), "\"" + manifest_digest_ + "\"");
  EXPECT_TRUE(head.body.empty());

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult by_digest, send("GET", "/v2/upstream/team/app/manifests/" + manifest_digest_));
  EXPECT_EQ(by_digest.status, 200);
  EXPECT_TRUE(by_digest.body == manifest_) << "manifest bytes changed";
  // The tag was fetched once; HEAD and GET by digest came from the cache.
  EXPECT_EQ(upstream_.requestCount("/v2/team/app/manifests/" + manifest_digest_), 0u);
  EXPECT_EQ(upstream_.requestCount("/v2/team/app/manifests/v1"), 1u);
}

TEST_F(RequestValidationTest, CachesTagForEachClassOfClient) {
  const std::string path = "/v2/upstream/team/app/manifests/v1";
  // A client that names a single manifest type, like an old Docker or a script.
  const std::vector<HttpHeader> narrow = {{"Accept", std::string(kOciManifestType)}};
  // A client that takes indexes too, like containerd, podman and skopeo.
  const std::vector<HttpHeader> full = {{"Accept", manifestAcceptHeader()}};
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult narrow_result, send("GET", path, narrow));
    EXPECT_EQ(narrow_result.status, 200);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult full_result, send("GET", path, full));
    EXPECT_EQ(full_result.status, 200);
    EXPECT_EQ(full_result.header("Docker-Content-Digest").value_or(""), manifest_digest_);
  }
  // One upstream request per class of client, then the cache serves both.
  EXPECT_EQ(upstream_.requestCount("/v2/team/app/manifests/v1"), 2u);

  // The narrow client's record is not a tag of its own in the list served from the index.
  upstream_.setFault(UpstreamFault::kStatus503);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult tags, send("GET", "/v2/upstream/team/app/tags/list"));
  EXPECT_EQ(tags.status, 200) << tags.body;
  EXPECT_EQ(tags.body, R"({"name":"upstream/team/app","tags":["v1"]})");
}

TEST_F(RequestValidationTest, ManifestNotMatchingItsDigestIsRejected) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result,
                               send("GET", "/v2/upstream/team/app/manifests/" + wrong_digest_));
  EXPECT_EQ(result.status, 502);
  EXPECT_NE(result.body.find("UNAVAILABLE"), std::string::npos) << result.body;
}

TEST_F(RequestValidationTest, RoutesByNsParameter) {
  const std::vector<HttpHeader> accept = {{"Accept", std::string(kOciManifestType)}};
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult by_ns, send("GET", "/v2/team/app/manifests/v1?ns=registry.example.test", accept));
  EXPECT_EQ(by_ns.status, 200) << by_ns.body;
  EXPECT_EQ(by_ns.header("Docker-Content-Digest").value_or(""), manifest_digest_);
  // containerd URL-encodes a host with a port.
  std::string encoded = upstream_.hostPort();
  encoded.replace(encoded.find(':'), 1, "%3A");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult by_port,
                               send("GET", "/v2/team/app/manifests/v1?ns=" + encoded, accept));
  EXPECT_EQ(by_port.status, 200) << by_port.body;
}

TEST_F(RequestValidationTest, PaginatesSortedTagList) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first,
                               send("GET", "/v2/upstream/team/app/tags/list?n=2"));
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, R"({"name":"upstream/team/app","tags":["latest","v1"]})");
  EXPECT_EQ(first.header("Link").value_or(""),
            "</v2/upstream/team/app/tags/list?n=2&last=v1>; rel=\"next\"");

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult second,
                               send("GET", "/v2/upstream/team/app/tags/list?n=2&last=v1"));
  EXPECT_EQ(second.body, R"({"name":"upstream/team/app","tags":["v2","v3"]})");
  EXPECT_FALSE(second.header("Link").has_value());

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult all, send("GET", "/v2/upstream/team/app/tags/list"));
  EXPECT_EQ(all.body, R"({"name":"upstream/team/app","tags":["latest","v1","v2","v3"]})");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult none,
                               send("GET", "/v2/upstream/team/app/tags/list?n=0"));
  EXPECT_EQ(none.body, R"({"name":"upstream/team/app","tags":[]})");
  // The upstream list is reused for the following pages.
  EXPECT_EQ(upstream_.requestCount("/v2/team/app/tags/list"), 1u);
}

TEST_F(RequestValidationTest, FollowsUpstreamTagListPages) {
  upstream_.setResource("/v2/team/paged/tags/list", R"({"name":"team/paged","tags":["b","a"]})",
                        "application/json",
                        "Link: </v2/team/paged/tags/list?last=b&n=2>; rel=\"next\"\r\n");
  upstream_.setResource("/v2/team/paged/tags/list?last=b&n=2",
                        R"({"name":"team/paged","tags":["d","c"]})", "application/json",
                        "Link: <" + upstream_.url() +
                            "/v2/team/paged/tags/list?last=d&n=2>; rel=\"next\"\r\n");
  upstream_.setResource("/v2/team/paged/tags/list?last=d&n=2",
                        R"({"name":"team/paged","tags":["e"]})", "application/json");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult all, send("GET", "/v2/upstream/team/paged/tags/list"));
  EXPECT_EQ(all.status, 200);
  EXPECT_EQ(all.body, R"({"name":"upstream/team/paged","tags":["a","b","c","d","e"]})");
}

TEST_F(RequestValidationTest, AnswersBaseHealthAndMetrics) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult base, send("GET", "/v2/"));
  EXPECT_EQ(base.status, 200);
  EXPECT_EQ(base.header("Docker-Distribution-API-Version").value_or(""), "registry/2.0");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult health, send("GET", "/healthz"));
  EXPECT_EQ(health.status, 200);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult metrics, send("GET", "/metrics"));
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("outpost_requests_total{route=\"base\",status=\"200\"} 1"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("outpost_upstream_requests_total{remote=\"upstream\"}"),
            std::string::npos);
}

TEST_F(RequestValidationTest, AnswersGarbageWith400AndKeepsServing) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::stoi(outpost_->hostPort().substr(10))));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  // The first bytes of a TLS ClientHello, as skopeo sends before falling back to HTTP.
  std::string hello("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11);
  ::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL);
  char buffer[512];
  timeval timeout{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ssize_t received = ::recv(fd.get(), buffer, sizeof(buffer), 0);
  ASSERT_GT(received, 0);
  EXPECT_TRUE(std::string_view(buffer, static_cast<size_t>(received)).starts_with("HTTP/1.1 400"));

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult after, send("GET", "/v2/"));
  EXPECT_EQ(after.status, 200);
}

TEST_F(RequestValidationTest, RejectsOversizedHeadersWith431) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult result, send("GET", "/v2/", {{"X-Padding", std::string(70 * 1024, 'p')}}));
  EXPECT_EQ(result.status, 431);
}

}  // namespace
}  // namespace outpost::integration
