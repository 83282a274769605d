#include "proxy/upstream/upstream_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.h"
#include "tests/proxy/upstream_test_support.h"

namespace outpost::proxy::upstream_test {
namespace {

using std::chrono::milliseconds;

class UpstreamClientTest : public UpstreamLoopTest {};

// ----- Plain exchanges ----------------------------------------------------------------

TEST_F(UpstreamClientTest, GetWithContentLength) {
  FakeUpstream upstream([](const SeenRequest&) {
    return reply(200, {{"Content-Type", "application/json"}}, "{\"ok\":true}");
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  UpstreamRequest request = get("/v2/library/alpine/manifests/latest");
  request.headers = {{"Accept", "application/vnd.oci.image.index.v1+json"}};
  auto handler = fetch(client, std::move(request));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->head_count, 1);
  EXPECT_EQ(handler->head.status, 200);
  EXPECT_EQ(handler->head.header("content-type"), "application/json");
  ASSERT_TRUE(handler->head.content_length.has_value());
  EXPECT_EQ(*handler->head.content_length, 11u);
  EXPECT_EQ(handler->body, "{\"ok\":true}");
  EXPECT_EQ(handler->head.effective_url,
            upstream.baseUrl() + "/v2/library/alpine/manifests/latest");

  std::vector<SeenRequest> seen = upstream.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/v2/library/alpine/manifests/latest");
  EXPECT_EQ(seen[0].header("Host"), "127.0.0.1:" + std::to_string(upstream.port()));
  EXPECT_EQ(seen[0].header("User-Agent"), "outpost/0.1");
  EXPECT_EQ(seen[0].header("Accept"), "application/vnd.oci.image.index.v1+json");
  EXPECT_FALSE(seen[0].hasHeader("Authorization"));
  closeClient(client);
}

TEST_F(UpstreamClientTest, ChunkedBodyArrivesWhole) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n",
                     "1\r\n \r\n6\r\nworld!\r\n", "0\r\n\r\n"};
    answer.pause_ms = 20;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/a/blobs/sha256:1"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->body, "hello world!");
  EXPECT_FALSE(handler->head.content_length.has_value());
  EXPECT_GE(handler->body_count, 2) << "the pieces were expected in separate reads";
  closeClient(client);
}

TEST_F(UpstreamClientTest, BodyEndsWhenServerCloses) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "until the end"};
    answer.pause_ms = 20;
    answer.close_after = true;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/a/blobs/sha256:1"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->body, "until the end");
  closeClient(client);
}

TEST_F(UpstreamClientTest, HeadReadsNoBody) {
  FakeUpstream upstream([](const SeenRequest& request) {
    if (request.method == "HEAD") {
      // The length of the body a GET would return, and no body.
      return FakeReply{
          {"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n"
           "Docker-Content-Digest: sha256:abc\r\n\r\n"}};
    }
    return reply(200, {}, "after head");
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  UpstreamRequest head_request = get("/v2/a/manifests/latest");
  head_request.method = "HEAD";
  auto head_handler = fetch(client, std::move(head_request));
  auto get_handler = fetch(client, get("/v2/a/manifests/latest"));

  EXPECT_TRUE(head_handler->status.isOk()) << head_handler->status.toString();
  ASSERT_TRUE(head_handler->head.content_length.has_value());
  EXPECT_EQ(*head_handler->head.content_length, 1234u);
  EXPECT_EQ(head_handler->head.header("Docker-Content-Digest"), "sha256:abc");
  EXPECT_EQ(head_handler->body_count, 0);
  EXPECT_EQ(get_handler->body, "after head");
  EXPECT_EQ(upstream.acceptedConnections(), 1) << "the HEAD response left the connection usable";
  closeClient(client);
}

TEST_F(UpstreamClientTest, InterimResponseIsSkipped) {
  FakeUpstream upstream([](const SeenRequest&) {
    return FakeReply{
        {"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + httpResponse(200, {}, "final")}};
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 1);
  EXPECT_EQ(handler->head.status, 200);
  EXPECT_EQ(handler->body, "final");
  closeClient(client);
}

TEST_F(UpstreamClientTest, BasePathPrefixesRequests) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl() + "/mirror/"));

  auto handler = fetch(client, get("/v2/"));

  std::vector<SeenRequest> seen = upstream.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/mirror/v2/");
  closeClient(client);
}

// ----- Connection reuse ---------------------------------------------------------------

TEST_F(UpstreamClientTest, KeepAliveReusesConnection) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200, {}, "x"); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  for (int i = 0; i < 3; ++i) {
    auto handler = fetch(client, get("/v2/a/blobs/sha256:" + std::to_string(i)));
    EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  }

  EXPECT_EQ(upstream.acceptedConnections(), 1);
  EXPECT_EQ(client.counters().requests_sent.load(), 3u);
  EXPECT_EQ(client.counters().connections_opened.load(), 1u);
  EXPECT_GT(client.counters().bytes_received.load(), 0u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, ConnectionCloseIsNotReused) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer = reply(200, {{"Connection", "close"}}, "x");
    answer.close_after = true;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto first = fetch(client, get("/v2/"));
  auto second = fetch(client, get("/v2/"));

  EXPECT_TRUE(second->status.isOk()) << second->status.toString();
  EXPECT_EQ(upstream.acceptedConnections(), 2);
  closeClient(client);
}

TEST_F(UpstreamClientTest, ClosedPooledConnectionIsRetriedOnce) {
  // The server reads the second request on the first connection and closes it without a
  // response, as a server does when its idle timeout races with a new request.
  FakeUpstream upstream([](const SeenRequest& request) {
    if (request.connection_index == 0 && request.target == "/v2/second") {
      FakeReply answer;
      answer.close_after = true;
      return answer;
    }
    return reply(200, {}, request.target);
  });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.max_retries = 0;
  UpstreamClient& client = makeClient(options);

  auto first = fetch(client, get("/v2/first"));
  auto second = fetch(client, get("/v2/second"));

  EXPECT_TRUE(second->status.isOk()) << second->status.toString();
  EXPECT_EQ(second->body, "/v2/second");
  EXPECT_EQ(upstream.acceptedConnections(), 2);
  EXPECT_EQ(client.counters().retries.load(), 0u) << "the repeat must not use up a retry";
  closeClient(client);
}

TEST_F(UpstreamClientTest, ConnectionLimitQueuesRequests) {
  FakeUpstream upstream([](const SeenRequest& request) {
    FakeReply answer = reply(200, {}, request.target);
    return answer;
  });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.max_connections_per_host = 1;
  UpstreamClient& client = makeClient(options);

  std::vector<std::unique_ptr<RecordingHandler>> handlers;
  std::vector<std::unique_ptr<UpstreamCall>> calls;
  for (int i = 0; i < 4; ++i) {
    handlers.push_back(std::make_unique<RecordingHandler>());
    calls.push_back(client.start(get("/v2/" + std::to_string(i)), handlers.back().get()));
  }
  ASSERT_TRUE(runUntil([&] {
    for (const auto& handler : handlers) {
      if (!handler->isComplete()) {
        return false;
      }
    }
    return true;
  }));

  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(handlers[i]->status.isOk()) << handlers[i]->status.toString();
    EXPECT_EQ(handlers[i]->body, "/v2/" + std::to_string(i));
  }
  EXPECT_EQ(upstream.acceptedConnections(), 1);
  closeClient(client);
}

TEST_F(UpstreamClientTest, IdleConnectionIsClosed) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200, {}, "x"); });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.idle_connection_timeout_ms = 50;
  UpstreamClient& client = makeClient(options);

  auto first = fetch(client, get("/v2/"));
  ASSERT_TRUE(runUntil([&] { return upstream.closedConnections() == 1; }))
      << "the idle connection was not closed";
  auto second = fetch(client, get("/v2/"));

  EXPECT_TRUE(second->status.isOk()) << second->status.toString();
  EXPECT_EQ(upstream.acceptedConnections(), 2);
  closeClient(client);
}

// ----- Retries ------------------------------------------------------------------------

TEST_F(UpstreamClientTest, ServiceUnavailableIsRetried) {
  std::atomic<int> count{0};
  FakeUpstream upstream([&count](const SeenRequest&) {
    if (count.fetch_add(1) == 0) {
      return reply(503, {}, "busy");
    }
    return reply(200, {}, "fine");
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 1);
  EXPECT_EQ(handler->head.status, 200);
  EXPECT_EQ(handler->body, "fine");
  EXPECT_EQ(upstream.requestCount(), 2u);
  EXPECT_EQ(client.counters().retries.load(), 1u);
  EXPECT_EQ(upstream.acceptedConnections(), 1) << "the short 503 body was read, not dropped";
  closeClient(client);
}

TEST_F(UpstreamClientTest, TooManyRequestsDeliveredAfterLastRetry) {
  FakeUpstream upstream([](const SeenRequest&) {
    return reply(429, {{"Retry-After", "0"}}, "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}");
  });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.max_retries = 2;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/a/manifests/latest"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->head.status, 429);
  EXPECT_EQ(handler->head.header("Retry-After"), "0");
  EXPECT_EQ(handler->body, "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}");
  EXPECT_EQ(upstream.requestCount(), 3u);
  EXPECT_EQ(client.counters().retries.load(), 2u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, LongRetryAfterIsDeliveredAtOnce) {
  FakeUpstream upstream([](const SeenRequest&) {
    return reply(503, {{"Retry-After", "3600"}}, "maintenance");
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head.status, 503);
  EXPECT_EQ(handler->head.header("Retry-After"), "3600");
  EXPECT_EQ(upstream.requestCount(), 1u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, RetryAfterSecondsAreHonoured) {
  std::atomic<int> count{0};
  FakeUpstream upstream([&count](const SeenRequest&) {
    if (count.fetch_add(1) == 0) {
      return reply(429, {{"Retry-After", "1"}});
    }
    return reply(200);
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  const auto started = std::chrono::steady_clock::now();
  auto handler = fetch(client, get("/v2/"));
  const auto elapsed = std::chrono::steady_clock::now() - started;

  EXPECT_EQ(handler->head.status, 200);
  EXPECT_GE(elapsed, milliseconds(950));
  closeClient(client);
}

TEST_F(UpstreamClientTest, NotFoundIsNotRetried) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(404, {}, "unknown"); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/a/manifests/missing"));

  EXPECT_EQ(handler->head.status, 404);
  EXPECT_EQ(handler->body, "unknown");
  EXPECT_EQ(upstream.requestCount(), 1u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, ConnectionRefusedIsUnavailable) {
  const uint16_t port = unusedLoopbackPort();
  UpstreamOptions options = fastOptions("http://127.0.0.1:" + std::to_string(port));
  options.max_retries = 2;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("127.0.0.1:" + std::to_string(port)),
            std::string_view::npos)
      << handler->status.toString();
  EXPECT_NE(handler->status.message().find("connection refused"), std::string_view::npos)
      << handler->status.toString();
  EXPECT_EQ(client.counters().retries.load(), 2u);
  closeClient(client);
}

// ----- Redirects ----------------------------------------------------------------------

TEST_F(UpstreamClientTest, RedirectToOtherPortDropsAuthorization) {
  FakeUpstream storage([](const SeenRequest&) { return reply(200, {}, "blob bytes"); });
  const std::string location = storage.baseUrl() + "/blobs/abc?signature=secret";
  FakeUpstream registry([&location](const SeenRequest& request) {
    if (request.header("Authorization") != "Basic dXNlcjpwYXNz") {
      return reply(401, {{"WWW-Authenticate", "Basic realm=\"registry\""}});
    }
    return reply(307, {{"Location", location}});
  });
  UpstreamOptions options = fastOptions(registry.baseUrl());
  options.username = "user";
  options.password = "pass";
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/a/blobs/sha256:abc"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->head.status, 200);
  EXPECT_EQ(handler->body, "blob bytes");
  EXPECT_EQ(handler->head.effective_url, storage.baseUrl() + "/blobs/abc");
  std::vector<SeenRequest> registry_seen = registry.requests();
  ASSERT_EQ(registry_seen.size(), 2u);
  EXPECT_EQ(registry_seen[1].header("Authorization"), "Basic dXNlcjpwYXNz");
  std::vector<SeenRequest> storage_seen = storage.requests();
  ASSERT_EQ(storage_seen.size(), 1u);
  EXPECT_EQ(storage_seen[0].target, "/blobs/abc?signature=secret");
  EXPECT_FALSE(storage_seen[0].hasHeader("Authorization"));
  EXPECT_EQ(storage_seen[0].header("Host"), "127.0.0.1:" + std::to_string(storage.port()));
  closeClient(client);
}

TEST_F(UpstreamClientTest, SameOriginRedirectKeepsAuthorization) {
  FakeUpstream registry([](const SeenRequest& request) {
    if (request.header("Authorization").empty()) {
      return reply(401, {{"WWW-Authenticate", "Basic realm=\"registry\""}});
    }
    if (request.target == "/v2/old/manifests/1") {
      return reply(301, {{"Location", "../../new/manifests/1"}});
    }
    return reply(200, {}, request.target);
  });
  UpstreamOptions options = fastOptions(registry.baseUrl());
  options.username = "user";
  options.password = "pass";
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/old/manifests/1"));

  EXPECT_EQ(handler->head.status, 200);
  EXPECT_EQ(handler->body, "/v2/new/manifests/1");
  std::vector<SeenRequest> seen = registry.requests();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].header("Authorization"), "Basic dXNlcjpwYXNz");
  closeClient(client);
}

TEST_F(UpstreamClientTest, TooManyRedirectsFail) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(302, {{"Location", "/loop"}}); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable);
  EXPECT_NE(handler->status.message().find("too many redirects"), std::string_view::npos)
      << handler->status.toString();
  EXPECT_EQ(upstream.requestCount(), 6u) << "the first request and five redirects";
  closeClient(client);
}

TEST_F(UpstreamClientTest, SeeOtherSwitchesToGet) {
  FakeUpstream upstream([](const SeenRequest& request) {
    if (request.target == "/v2/") {
      return reply(303, {{"Location", "/other"}});
    }
    return reply(200, {}, request.method);
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  UpstreamRequest request = get("/v2/");
  request.method = "OPTIONS";
  auto handler = fetch(client, std::move(request));

  EXPECT_EQ(handler->body, "GET");
  closeClient(client);
}

TEST_F(UpstreamClientTest, RedirectWithoutLocationIsDelivered) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(302, {}, "nowhere"); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head.status, 302);
  EXPECT_EQ(handler->body, "nowhere");
  closeClient(client);
}

// ----- Authentication -----------------------------------------------------------------

// A token endpoint that grants "token-<n>" for the n-th request, and a registry that accepts
// the tokens a test allows.
class TokenFlow {
 public:
  TokenFlow()
      : token_server_([this](const SeenRequest&) {
          const int number = ++grants_;
          return reply(200, {{"Content-Type", "application/json"}},
                       "{\"token\":\"token-" + std::to_string(number) + "\",\"expires_in\":300}");
        }),
        registry_([this](const SeenRequest& request) {
          std::string_view authorization = request.header("Authorization");
          if (authorization.starts_with("Bearer ") && isAccepted(authorization.substr(7))) {
            return reply(200, {}, "content");
          }
          return reply(401,
                       {{"WWW-Authenticate", "Bearer realm=\"" + token_server_.baseUrl() +
                                                 "/token\",service=\"fake registry\","
                                                 "scope=\"repository:library/alpine:pull\""}},
                       "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
        }) {}

  void rejectToken(const std::string& token) {
    std::lock_guard lock(mutex_);
    rejected_.push_back(token);
  }
  void rejectAll() { reject_all_ = true; }

  FakeUpstream& tokenServer() { return token_server_; }
  FakeUpstream& registry() { return registry_; }

 private:
  bool isAccepted(std::string_view token) {
    std::lock_guard lock(mutex_);
    if (reject_all_) {
      return false;
    }
    for (const std::string& rejected : rejected_) {
      if (rejected == token) {
        return false;
      }
    }
    return token.starts_with("token-");
  }

  std::atomic<int> grants_{0};
  std::atomic<bool> reject_all_{false};
  std::mutex mutex_;
  std::vector<std::string> rejected_;
  FakeUpstream token_server_;
  FakeUpstream registry_;
};

TEST_F(UpstreamClientTest, BearerTokenIsFetchedOnceAndCached) {
  TokenFlow flow;
  UpstreamClient& client = makeClient(fastOptions(flow.registry().baseUrl()));

  auto first = fetch(client, get("/v2/library/alpine/manifests/latest"));
  auto second = fetch(client, get("/v2/library/alpine/blobs/sha256:1"));

  EXPECT_EQ(first->head.status, 200);
  EXPECT_EQ(first->body, "content");
  EXPECT_EQ(second->head.status, 200);
  std::vector<SeenRequest> token_seen = flow.tokenServer().requests();
  ASSERT_EQ(token_seen.size(), 1u);
  EXPECT_EQ(token_seen[0].target,
            "/token?service=fake%20registry&scope=repository%3Alibrary%2Falpine%3Apull");
  EXPECT_FALSE(token_seen[0].hasHeader("Authorization"));
  std::vector<SeenRequest> registry_seen = flow.registry().requests();
  ASSERT_EQ(registry_seen.size(), 3u) << "401, retry with token, then the token up front";
  EXPECT_FALSE(registry_seen[0].hasHeader("Authorization"));
  EXPECT_EQ(registry_seen[1].header("Authorization"), "Bearer token-1");
  EXPECT_EQ(registry_seen[2].header("Authorization"), "Bearer token-1");
  EXPECT_EQ(client.counters().token_requests.load(), 1u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, BearerTokenIsRenewedAfterExpiry) {
  TokenFlow flow;
  ManualClock clock;
  UpstreamOptions options = fastOptions(flow.registry().baseUrl());
  options.clock = &clock;
  UpstreamClient& client = makeClient(options);

  auto first = fetch(client, get("/v2/library/alpine/manifests/latest"));
  clock.advanceMs(295'000);
  auto second = fetch(client, get("/v2/library/alpine/manifests/latest"));

  EXPECT_EQ(second->head.status, 200);
  EXPECT_EQ(flow.tokenServer().requestCount(), 2u) << "a token in its last seconds is not used";
  std::vector<SeenRequest> registry_seen = flow.registry().requests();
  ASSERT_EQ(registry_seen.size(), 4u);
  EXPECT_EQ(registry_seen[3].header("Authorization"), "Bearer token-2");
  closeClient(client);
}

TEST_F(UpstreamClientTest, RejectedCachedTokenIsReplaced) {
  TokenFlow flow;
  UpstreamClient& client = makeClient(fastOptions(flow.registry().baseUrl()));

  auto first = fetch(client, get("/v2/library/alpine/manifests/latest"));
  flow.rejectToken("token-1");
  auto second = fetch(client, get("/v2/library/alpine/manifests/latest"));

  EXPECT_EQ(second->head.status, 200);
  EXPECT_EQ(flow.tokenServer().requestCount(), 2u);
  std::vector<SeenRequest> registry_seen = flow.registry().requests();
  ASSERT_EQ(registry_seen.size(), 4u);
  EXPECT_EQ(registry_seen[2].header("Authorization"), "Bearer token-1");
  EXPECT_EQ(registry_seen[3].header("Authorization"), "Bearer token-2");
  closeClient(client);
}

TEST_F(UpstreamClientTest, SecondUnauthorizedIsDelivered) {
  TokenFlow flow;
  flow.rejectAll();
  UpstreamClient& client = makeClient(fastOptions(flow.registry().baseUrl()));

  auto handler = fetch(client, get("/v2/library/alpine/manifests/latest"));

  EXPECT_TRUE(handler->status.isOk()) << handler->status.toString();
  EXPECT_EQ(handler->head.status, 401);
  EXPECT_EQ(handler->body, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
  EXPECT_EQ(flow.tokenServer().requestCount(), 1u);
  EXPECT_EQ(flow.registry().requestCount(), 2u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, TokenRequestCarriesCredentials) {
  TokenFlow flow;
  UpstreamOptions options = fastOptions(flow.registry().baseUrl());
  options.username = "puller";
  options.password = "s3cret";
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/library/alpine/manifests/latest"));

  EXPECT_EQ(handler->head.status, 200);
  std::vector<SeenRequest> token_seen = flow.tokenServer().requests();
  ASSERT_EQ(token_seen.size(), 1u);
  // base64("puller:s3cret")
  EXPECT_EQ(token_seen[0].header("Authorization"), "Basic cHVsbGVyOnMzY3JldA==");
  closeClient(client);
}

TEST_F(UpstreamClientTest, TokenEndpointRejectionFailsCall) {
  FakeUpstream token_server([](const SeenRequest&) { return reply(401, {}, "bad credentials"); });
  const std::string challenge = "Bearer realm=\"" + token_server.baseUrl() + "/token\"";
  FakeUpstream registry([&challenge](const SeenRequest&) {
    return reply(401, {{"WWW-Authenticate", challenge}});
  });
  UpstreamOptions options = fastOptions(registry.baseUrl());
  options.username = "user";
  options.password = "wrong";
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/library/alpine/manifests/latest"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnauthenticated) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("status 401"), std::string_view::npos)
      << handler->status.toString();
  closeClient(client);
}

TEST_F(UpstreamClientTest, InvalidTokenResponseFailsCall) {
  FakeUpstream token_server([](const SeenRequest&) { return reply(200, {}, "{\"nothing\":1}"); });
  const std::string challenge = "Bearer realm=\"" + token_server.baseUrl() + "/token\"";
  FakeUpstream registry([&challenge](const SeenRequest&) {
    return reply(401, {{"WWW-Authenticate", challenge}});
  });
  UpstreamClient& client = makeClient(fastOptions(registry.baseUrl()));

  auto handler = fetch(client, get("/v2/library/alpine/manifests/latest"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("invalid token response"), std::string_view::npos)
      << handler->status.toString();
  closeClient(client);
}

TEST_F(UpstreamClientTest, BasicChallengeIsAnsweredOnce) {
  FakeUpstream registry([](const SeenRequest& request) {
    if (request.header("Authorization") == "Basic dXNlcjpwYXNz") {
      return reply(200, {}, "welcome");
    }
    return reply(401, {{"WWW-Authenticate", "Basic realm=\"registry\", charset=\"UTF-8\""}});
  });
  UpstreamOptions options = fastOptions(registry.baseUrl());
  options.username = "user";
  options.password = "pass";
  UpstreamClient& client = makeClient(options);

  auto first = fetch(client, get("/v2/"));
  auto second = fetch(client, get("/v2/"));

  EXPECT_EQ(first->head.status, 200);
  EXPECT_EQ(first->body, "welcome");
  EXPECT_EQ(second->head.status, 200);
  std::vector<SeenRequest> seen = registry.requests();
  ASSERT_EQ(seen.size(), 3u) << "401, retry with Basic, then Basic up front";
  EXPECT_FALSE(seen[0].hasHeader("Authorization"));
  EXPECT_EQ(seen[2].header("Authorization"), "Basic dXNlcjpwYXNz");
  closeClient(client);
}

TEST_F(UpstreamClientTest, BasicChallengeWithoutCredentialsIsDelivered) {
  FakeUpstream registry([](const SeenRequest&) {
    return reply(401, {{"WWW-Authenticate", "Basic realm=\"registry\""}});
  });
  UpstreamClient& client = makeClient(fastOptions(registry.baseUrl()));

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head.status, 401);
  EXPECT_EQ(registry.requestCount(), 1u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, WrongBasicCredentialsDeliverSecondUnauthorized) {
  FakeUpstream registry([](const SeenRequest&) {
    return reply(401, {{"WWW-Authenticate", "Basic realm=\"registry\""}});
  });
  UpstreamOptions options = fastOptions(registry.baseUrl());
  options.username = "user";
  options.password = "wrong";
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head.status, 401);
  EXPECT_EQ(registry.requestCount(), 2u);
  closeClient(client);
}

// ----- Timeouts -----------------------------------------------------------------------

TEST_F(UpstreamClientTest, BodyStallTimesOut) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"};
    answer.hold_open = true;
    return answer;
  });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.body_stall_timeout_ms = 100;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/a/blobs/sha256:1"));

  EXPECT_EQ(handler->head_count, 1);
  EXPECT_EQ(handler->body, "partial");
  EXPECT_EQ(handler->status.code(), StatusCode::kTimedOut) << handler->status.toString();
  EXPECT_EQ(upstream.requestCount(), 1u) << "nothing is retried after the head";
  closeClient(client);
}

TEST_F(UpstreamClientTest, MissingHeadTimesOut) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.hold_open = true;
    return answer;
  });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.response_timeout_ms = 100;
  options.max_retries = 1;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kTimedOut) << handler->status.toString();
  EXPECT_EQ(upstream.requestCount(), 2u) << "a missing head counts as a connection failure";
  closeClient(client);
}

TEST_F(UpstreamClientTest, DeadlineEndsRetries) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(503); });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.max_retries = 1000;
  options.retry_base_delay_ms = 20;
  UpstreamClient& client = makeClient(options);

  UpstreamRequest request = get("/v2/");
  request.deadline_ms = 200;
  const auto started = std::chrono::steady_clock::now();
  auto handler = fetch(client, std::move(request));
  const auto elapsed = std::chrono::steady_clock::now() - started;

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kTimedOut) << handler->status.toString();
  EXPECT_GE(elapsed, milliseconds(190));
  EXPECT_LT(elapsed, milliseconds(2000));
  closeClient(client);
}

TEST_F(UpstreamClientTest, DeadlineCoversBody) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"};
    answer.hold_open = true;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  UpstreamRequest request = get("/v2/");
  request.deadline_ms = 150;
  auto handler = fetch(client, std::move(request));

  EXPECT_EQ(handler->head_count, 1);
  EXPECT_EQ(handler->status.code(), StatusCode::kTimedOut) << handler->status.toString();
  closeClient(client);
}

// ----- Failures mid-body, cancellation and handler errors -----------------------------

TEST_F(UpstreamClientTest, TruncatedBodyFails) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"};
    answer.close_after = true;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/a/blobs/sha256:1"));

  EXPECT_EQ(handler->head_count, 1);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("before the response ended"), std::string_view::npos)
      << handler->status.toString();
  closeClient(client);
}

TEST_F(UpstreamClientTest, MalformedResponseFails) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"SSH-2.0-OpenSSH_9.2\r\n\r\n"};
    answer.close_after = true;
    return answer;
  });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.max_retries = 0;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("invalid response"), std::string_view::npos)
      << handler->status.toString();
  closeClient(client);
}

TEST_F(UpstreamClientTest, OversizedResponseHeadFails) {
  FakeUpstream upstream([](const SeenRequest&) {
    return reply(200, {{"X-Padding", std::string(70 * 1024, 'p')}}, "x");
  });
  UpstreamOptions options = fastOptions(upstream.baseUrl());
  options.max_retries = 0;
  UpstreamClient& client = makeClient(options);

  auto handler = fetch(client, get("/v2/"));

  EXPECT_EQ(handler->head_count, 0);
  EXPECT_EQ(handler->status.code(), StatusCode::kUnavailable) << handler->status.toString();
  EXPECT_NE(handler->status.message().find("exceeds 65536 bytes"), std::string_view::npos)
      << handler->status.toString();
  closeClient(client);
}

TEST_F(UpstreamClientTest, CancelMidBodyStopsCallbacks) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst", "second"};
    answer.pause_ms = 50;
    answer.hold_open = true;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  RecordingHandler handler;
  std::unique_ptr<UpstreamCall> call = client.start(get("/v2/a/blobs/sha256:1"), &handler);
  handler.on_body = [&call](std::string_view) {
    call.reset();
    return Status::ok();
  };
  ASSERT_TRUE(runUntil([&] { return handler.body_count > 0; }));
  runFor(milliseconds(150));

  EXPECT_EQ(handler.body_count, 1);
  EXPECT_EQ(handler.body, "first");
  EXPECT_EQ(handler.complete_count, 0);
  EXPECT_TRUE(runUntil([&] { return upstream.closedConnections() == 1; }))
      << "the cancelled call's connection was not closed";
  closeClient(client);
}

TEST_F(UpstreamClientTest, CancelBeforeHeadStopsCallbacks) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.hold_open = true;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  RecordingHandler handler;
  std::unique_ptr<UpstreamCall> call = client.start(get("/v2/"), &handler);
  ASSERT_TRUE(runUntil([&] { return upstream.requestCount() == 1; }));
  call.reset();
  runFor(milliseconds(50));

  EXPECT_EQ(handler.head_count, 0);
  EXPECT_EQ(handler.complete_count, 0);
  closeClient(client);
}

TEST_F(UpstreamClientTest, CancelInsideHeadStopsCallbacks) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200, {}, "body"); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  RecordingHandler handler;
  std::unique_ptr<UpstreamCall> call = client.start(get("/v2/"), &handler);
  handler.on_head = [&call] { call.reset(); };
  ASSERT_TRUE(runUntil([&] { return handler.head_count == 1; }));
  runFor(milliseconds(50));

  EXPECT_EQ(handler.body_count, 0);
  EXPECT_EQ(handler.complete_count, 0);
  closeClient(client);
}

TEST_F(UpstreamClientTest, CallDestroyedInsideCompleteIsSafe) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200, {}, "body"); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  RecordingHandler handler;
  std::unique_ptr<UpstreamCall> call = client.start(get("/v2/"), &handler);
  handler.on_complete = [&call] { call.reset(); };
  ASSERT_TRUE(runUntil([&] { return handler.isComplete(); }));

  EXPECT_EQ(handler.complete_count, 1);
  EXPECT_TRUE(handler.status.isOk()) << handler.status.toString();
  closeClient(client);
}

TEST_F(UpstreamClientTest, BodyErrorAbortsCall) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200, {}, "too much"); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  RecordingHandler handler;
  handler.on_body = [](std::string_view) { return Status(StatusCode::kNoSpace, "disk full"); };
  std::unique_ptr<UpstreamCall> call = client.start(get("/v2/a/blobs/sha256:1"), &handler);
  ASSERT_TRUE(runUntil([&] { return handler.isComplete(); }));
  auto next = fetch(client, get("/v2/"));

  EXPECT_EQ(handler.status.code(), StatusCode::kNoSpace);
  EXPECT_EQ(handler.status.message(), "disk full");
  EXPECT_EQ(handler.complete_count, 1);
  EXPECT_EQ(upstream.acceptedConnections(), 2) << "an aborted response leaves its connection";
  closeClient(client);
}

// ----- Requests the client rejects ----------------------------------------------------

TEST_F(UpstreamClientTest, InvalidRequestsAreRejected) {
  struct Case {
    const char* name;
    std::string method;
    std::string path;
    HeaderList headers;
  };
  const std::vector<Case> cases = {
      {"path without slash", "GET", "v2/", {}},
      {"space in path", "GET", "/v2/a b", {}},
      {"fragment in path", "GET", "/v2/#x", {}},
      {"empty method", "", "/v2/", {}},
      {"method with space", "G T", "/v2/", {}},
      {"CRLF in header value", "GET", "/v2/", {{"Accept", "a\r\nInjected: 1"}}},
      {"colon in header name", "GET", "/v2/", {{"Bad:Name", "x"}}},
      {"host header", "GET", "/v2/", {{"Host", "elsewhere"}}},
      {"authorization header", "GET", "/v2/", {{"authorization", "Bearer x"}}},
      {"content length", "GET", "/v2/", {{"Content-Length", "1"}}},
      {"transfer encoding", "GET", "/v2/", {{"Transfer-Encoding", "chunked"}}},
      {"connection header", "GET", "/v2/", {{"Connection", "close"}}},
  };
  FakeUpstream upstream([](const SeenRequest&) { return reply(200); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    UpstreamRequest request;
    request.method = test_case.method;
    request.path_and_query = test_case.path;
    request.headers = test_case.headers;
    RecordingHandler handler;
    std::unique_ptr<UpstreamCall> call = client.start(std::move(request), &handler);
    EXPECT_FALSE(handler.isComplete()) << "completed inside start()";
    ASSERT_TRUE(runUntil([&] { return handler.isComplete(); }));
    EXPECT_EQ(handler.status.code(), StatusCode::kInvalidArgument) << handler.status.toString();
    EXPECT_EQ(handler.head_count, 0);
  }
  EXPECT_EQ(upstream.requestCount(), 0u);
  closeClient(client);
}

TEST_F(UpstreamClientTest, InvalidBaseUrlFailsEachCall) {
  UpstreamClient& client = makeClient(fastOptions("ftp://127.0.0.1/"));

  RecordingHandler handler;
  std::unique_ptr<UpstreamCall> call = client.start(get("/v2/"), &handler);
  EXPECT_FALSE(handler.isComplete()) << "completed inside start()";
  ASSERT_TRUE(runUntil([&] { return handler.isComplete(); }));

  EXPECT_EQ(handler.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(handler.status.message().find("base_url"), std::string_view::npos)
      << handler.status.toString();
  closeClient(client);
}

// ----- Closing ------------------------------------------------------------------------

TEST_F(UpstreamClientTest, CloseCancelsActiveCalls) {
  FakeUpstream upstream([](const SeenRequest&) {
    FakeReply answer;
    answer.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12"};
    answer.hold_open = true;
    return answer;
  });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  RecordingHandler streaming;
  RecordingHandler waiting;
  std::unique_ptr<UpstreamCall> streaming_call = client.start(get("/v2/1"), &streaming);
  ASSERT_TRUE(runUntil([&] { return streaming.body_count > 0; }));
  std::unique_ptr<UpstreamCall> waiting_call = client.start(get("/v2/2"), &waiting);
  closeClient(client);

  EXPECT_EQ(streaming.complete_count, 1);
  EXPECT_EQ(streaming.status.code(), StatusCode::kCancelled);
  EXPECT_EQ(waiting.complete_count, 1);
  EXPECT_EQ(waiting.status.code(), StatusCode::kCancelled);
  EXPECT_EQ(waiting.head_count, 0);
}

TEST_F(UpstreamClientTest, CloseFreesPooledConnections) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200, {}, "x"); });
  UpstreamClient& client = makeClient(fastOptions(upstream.baseUrl()));

  auto handler = fetch(client, get("/v2/"));
  ASSERT_TRUE(handler->status.isOk()) << handler->status.toString();
  closeClient(client);

  EXPECT_TRUE(runUntil([&] { return upstream.closedConnections() == 1; }))
      << "the pooled connection was not closed";
  // TearDown checks that uv_loop_close returns 0.
}

TEST_F(UpstreamClientTest, ClientDestroyedInsideOnClosed) {
  FakeUpstream upstream([](const SeenRequest&) { return reply(200, {}, "x"); });
  auto client = std::make_unique<UpstreamClient>(&loop_, fastOptions(upstream.baseUrl()));

  auto handler = fetch(*client, get("/v2/"));
  ASSERT_TRUE(handler->status.isOk()) << handler->status.toString();
  bool is_destroyed = false;
  client->close([&] {
    client.reset();
    is_destroyed = true;
  });

  EXPECT_TRUE(runUntil([&] { return is_destroyed; }));
  // TearDown checks that uv_loop_close returns 0.
}

TEST_F(UpstreamClientTest, CloseDuringConnectFreesEverything) {
  const uint16_t port = unusedLoopbackPort();
  UpstreamOptions options = fastOptions("http://127.0.0.1:" + std::to_string(port));
  options.retry_base_delay_ms = 10'000;
  UpstreamClient& client = makeClient(options);

  RecordingHandler handler;
  std::unique_ptr<UpstreamCall> call = client.start(get("/v2/"), &handler);
  ASSERT_TRUE(runUntil([&] { return client.counters().retries.load() == 1; }));
  closeClient(client);

  EXPECT_EQ(handler.status.code(), StatusCode::kCancelled);
}

}  // namespace
}  // namespace outpost::proxy::upstream_test
