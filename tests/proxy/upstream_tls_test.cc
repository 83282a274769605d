// The upstream client over TLS, against a fake upstream whose certificates are issued in memory
// by a test CA.
#include <gtest/gtest.h>
#include <netdb.h>
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "proxy/upstream/upstream_client.h"
#include "tests/proxy/upstream_test_support.h"

namespace outpost::proxy::upstream_test {
namespace {

class UpstreamTlsTest : public UpstreamLoopTest {
 protected:
  void SetUp() override {
    UpstreamLoopTest::SetUp();
    char pattern[] = "/tmp/upstream-tls-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    directory_ = pattern;

    ca_ = issueCertificate("Outpost Test CA", nullptr, nullptr);
    other_ca_ = issueCertificate("Unrelated CA", nullptr, nullptr);
    ca_file_ = directory_ + "/ca.pem";
    other_ca_file_ = directory_ + "/other-ca.pem";
    writeCertificatePem(ca_.certificate.get(), ca_file_);
    writeCertificatePem(other_ca_.certificate.get(), other_ca_file_);
  }

  void TearDown() override {
    UpstreamLoopTest::TearDown();
    std::filesystem::remove_all(directory_);
  }

  // A TLS fake upstream presenting a certificate from the test CA for `subject_alt_name`.
  std::unique_ptr<FakeUpstream> startTlsUpstream(FakeScript script,
                                                 const char* subject_alt_name = "IP:127.0.0.1") {
    KeyAndCertificate server = issueCertificate("upstream", &ca_, subject_alt_name);
    return std::make_unique<FakeUpstream>(std::move(script), serverTlsContext(server));
  }

  UpstreamOptions tlsOptions(const std::string& base_url, const std::string& ca_file) {
    UpstreamOptions options = fastOptions(base_url);
    options.ca_file = ca_file;
    return options;
  }

  std::string directory_;
  KeyAndCertificate ca_;
  KeyAndCertificate other_ca_;
  std::string ca_file_;
  std::string other_ca_file_;
};

TEST_F(UpstreamTlsTest, GetSucceedsWithTrustedCa) {
  auto upstream = startTlsUpstream([](const SeenRequest&) { return reply(200, {}, "secure"); });
  UpstreamClient& client = makeClient(tlsOptions(upstream->baseUrl(), ca_file_));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->head.status, 200);
  EXPECT_EQ(handler->body, "secure");
  EXPECT_EQ(handler->head.effective_url, upstream->baseUrl() + "/v2/");
  std::vector<SeenRequest> seen = upstream->requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].header("Host"), "127.0.0.1:" + std::to_string(upstream->port()));
  closeClient(client);
}

TEST_F(UpstreamTlsTest, ConnectionIsReused) {
  auto upstream =
      startTlsUpstream([](const SeenRequest& request) { return reply(200, {}, request.target); });
  UpstreamClient& client = makeClient(tlsOptions(upstream->baseUrl(), ca_file_));

  auto first = fetch(client, get("/v2/1"));
  auto second = fetch(client, get("/v2/2"));

  EXPECT_EQ(first->body, "/v2/1");
  EXPECT_EQ(second->body, "/v2/2");
  EXPECT_EQ(upstream->acceptedConnections(), 1);
  closeClient(client);
}

TEST_F(UpstreamTlsTest, LargeChunkedBodySpansManyRecords) {
  std::string blob(1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < blob.size(); ++i) {
    blob[i] = static_cast<char>('a' + i % 26);
  }
  auto upstream = startTlsUpstream([&blob](const SeenRequest&) {
    FakeReply answer;
    answer.pieces.push_back("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t offset = 0; offset < blob.size(); offset += 100'000) {
      const std::string_view chunk = std::string_view(blob).substr(offset, 100'000);
      char size_line[32];
      std::snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk.size());
      answer.pieces.push_back(size_line + std::string(chunk) + "\r\n");
    }
    answer.pieces.push_back("0\r\n\r\n");
    return answer;
  });
  UpstreamClient& client = makeClient(tlsOptions(upstream->baseUrl(), ca_file_));

  auto handler = fetch(client, get("/v2/a/blobs/sha256:1"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->body.size(), blob.size());
  EXPECT_TRUE(handler->body == blob) << "body differs from what the server sent";
  closeClient(client);
}

TEST_F(UpstreamTlsTest, UnknownCaFailsWithoutRetry) {
  auto upstream = startTlsUpstream([](const SeenRequest&) { return reply(200); });
  UpstreamOptions options = tlsOptions(upstream->baseUrl(), other_ca_file_);
  options.max_retries = 2;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("certificate verify failed"), std::string_view::npos)
      << handler->status.toString();
  EXPECT_NE(handler->status.message().find("127.0.0.1:" + std::to_string(upstream->port())),
            std::string_view::npos)
      << handler->status.toString();
  EXPECT_EQ(upstream->requestCount(), 0u);
  EXPECT_EQ(client.counters().retries.load(), 0u) << "a certificate failure repeats on retry";
  closeClient(client);
}

TEST_F(UpstreamTlsTest, CertificateForOtherAddressFails) {
  auto upstream = startTlsUpstream([](const SeenRequest&) { return reply(200); }, "IP:127.0.0.2");
  UpstreamClient& client = makeClient(tlsOptions(upstream->baseUrl(), ca_file_));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("IP address mismatch"), std::string_view::npos)
      << handler->status.toString();
  closeClient(client);
}

TEST_F(UpstreamTlsTest, InsecureSkipVerifyAcceptsUnknownCa) {
  auto upstream = startTlsUpstream([](const SeenRequest&) { return reply(200, {}, "ok"); });
  UpstreamOptions options = tlsOptions(upstream->baseUrl(), other_ca_file_);
  options.insecure_skip_verify = true;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->body, "ok");
  closeClient(client);
}

TEST_F(UpstreamTlsTest, MissingCaFileFailsCalls) {
  auto upstream = startTlsUpstream([](const SeenRequest&) { return reply(200); });
  UpstreamClient& client =
      makeClient(tlsOptions(upstream->baseUrl(), directory_ + "/does-not-exist.pem"));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->status.code(), StatusCode::kInvalidArgument) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("does-not-exist.pem"), std::string_view::npos)
      << handler->status.toString();
  EXPECT_EQ(upstream->acceptedConnections(), 0);
  closeClient(client);
}

TEST_F(UpstreamTlsTest, HostNameIsChecked) {
  // Only meaningful where "localhost" resolves to 127.0.0.1 alone, so that no connection goes
  // anywhere else.
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  ASSERT_EQ(::getaddrinfo("localhost", nullptr, &hints, &result), 0);
  bool is_ipv4_loopback_only = true;
  for (addrinfo* info = result; info != nullptr; info = info->ai_next) {
    const auto* address = reinterpret_cast<const sockaddr_in*>(info->ai_addr);
    if (info->ai_family != AF_INET || address->sin_addr.s_addr != htonl(INADDR_LOOPBACK)) {
      is_ipv4_loopback_only = false;
    }
  }
  ::freeaddrinfo(result);
  if (!is_ipv4_loopback_only) {
    GTEST_SKIP() << "localhost resolves to more than 127.0.0.1 here";
  }

  auto matching =
      startTlsUpstream([](const SeenRequest&) { return reply(200, {}, "named"); }, "DNS:localhost");
  auto mismatched =
      startTlsUpstream([](const SeenRequest&) { return reply(200); }, "DNS:registry.invalid");
  const std::string matching_url = "https://localhost:" + std::to_string(matching->port());
  const std::string mismatched_url = "https://localhost:" + std::to_string(mismatched->port());
  UpstreamClient& good_client = makeClient(tlsOptions(matching_url, ca_file_));
  UpstreamClient& bad_client = makeClient(tlsOptions(mismatched_url, ca_file_));

  auto good = fetch(good_client, get("/v2/"));
  auto bad = fetch(bad_client, get("/v2/"));

  EXPECT_TRUE(good->status.isOk()) << good->status.toString();
  EXPECT_EQ(good->body, "named");
  std::vector<SeenRequest> seen = matching->requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].header("Host"), "localhost:" + std::to_string(matching->port()));
  EXPECT_EQ(bad->status.code(), StatusCode::kUnavailable) << bad->status.toString();
  EXPECT_NE(bad->status.message().find("hostname mismatch"), std::string_view::npos)
      << bad->status.toString();
  closeClient(good_client);
  closeClient(bad_client);
}

TEST_F(UpstreamTlsTest, TokenEndpointOverTls) {
  auto token_server = startTlsUpstream(
      [](const SeenRequest&) { return reply(200, {}, "{\"access_token\":\"tls-token\"}"); });
  const std::string challenge =
      "Bearer realm=\"" + token_server->baseUrl() + "/token\",service=\"registry\"";
  FakeUpstream registry([&challenge](const SeenRequest& request) {
    if (request.header("Authorization") == "Bearer tls-token") {
      return reply(200, {}, "manifest");
    }
    return reply(401, {{"WWW-Authenticate", challenge}});
  });
  UpstreamClient& client = makeClient(tlsOptions(registry.baseUrl(), ca_file_));

  auto handler = fetch(client, get("/v2/library/alpine/manifests/latest"));

  EXPECT_EQ(handler->head.status, 200);
  EXPECT_EQ(handler->body, "manifest");
  std::vector<SeenRequest> token_seen = token_server->requests();
  ASSERT_EQ(token_seen.size(), 1u);
  EXPECT_EQ(token_seen[0].target,
            "/token?service=registry&scope=repository%3Alibrary%2Falpine%3Apull");
  closeClient(client);
}

TEST_F(UpstreamTlsTest, CloseWithPooledTlsConnection) {
  auto upstream = startTlsUpstream([](const SeenRequest&) { return reply(200, {}, "x"); });
  UpstreamClient& client = makeClient(tlsOptions(upstream->baseUrl(), ca_file_));

  auto handler = fetch(client, get("/v2/"));
  ASSERT_TRUE(handler->status.isOk()) << handler->status.toString();
  closeClient(client);

  EXPECT_TRUE(runUntil([&] { return upstream->closedConnections() == 1; }));
}

}  // namespace
}  // namespace outpost::proxy::upstream_test
