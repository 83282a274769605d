#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/clock.h"
#include "proxy/upstream/token_cache.h"

namespace outpost::proxy::upstream {
namespace {

TEST(UpstreamTokenResponseTest, ParsesValidResponses) {
  struct Case {
    const char* name;
    const char* body;
    const char* token;
    int64_t expires_in_s;
  };
  const std::vector<Case> cases = {
      {"token and expiry", R"({"token":"abc","expires_in":300})", "abc", 300},
      {"access_token only", R"({"access_token":"xyz"})", "xyz", 60},
      {"token wins over access_token", R"({"token":"t","access_token":"a"})", "t", 60},
      {"empty token falls back", R"({"token":"","access_token":"a"})", "a", 60},
      {"fractional expiry", R"({"token":"t","expires_in":90.7})", "t", 90},
      {"zero expiry means default", R"({"token":"t","expires_in":0})", "t", 60},
      {"negative expiry means default", R"({"token":"t","expires_in":-5})", "t", 60},
      {"string expiry means default", R"({"token":"t","expires_in":"300"})", "t", 60},
      {"huge expiry is capped", R"({"token":"t","expires_in":1e300})", "t", 86400},
      {"extra fields", R"({"token":"t","issued_at":"2024-01-01T00:00:00Z","x":[1]})", "t", 60},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<TokenGrant> grant = parseTokenResponse(test_case.body);
    ASSERT_TRUE(grant.hasValue()) << grant.status().toString();
    EXPECT_EQ(grant->token, test_case.token);
    EXPECT_EQ(grant->expires_in_s, test_case.expires_in_s);
  }
}

TEST(UpstreamTokenResponseTest, RejectsInvalidResponses) {
  struct Case {
    const char* name;
    const char* body;
  };
  const std::vector<Case> cases = {
      {"empty body", ""},
      {"not JSON", "<html>login</html>"},
      {"truncated JSON", R"({"token":"abc")"},
      {"array", R"(["token"])"},
      {"no token", R"({"expires_in":300})"},
      {"token not a string", R"({"token":42})"},
      {"empty tokens", R"({"token":"","access_token":""})"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<TokenGrant> grant = parseTokenResponse(test_case.body);
    EXPECT_FALSE(grant.hasValue());
    EXPECT_EQ(grant.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(UpstreamTokenScopeTest, DerivesPullScopeFromPath) {
  struct Case {
    const char* path;
    const char* scope;
  };
  const std::vector<Case> cases = {
      {"/v2/library/alpine/manifests/latest", "repository:library/alpine:pull"},
      {"/v2/library/alpine/blobs/sha256:abc", "repository:library/alpine:pull"},
      {"/v2/org/team/app/tags/list?n=10", "repository:org/team/app:pull"},
      {"/v2/foo/blobs/bar/manifests/1", "repository:foo/blobs/bar:pull"},
      {"/v2/", ""},
      {"/v2/_catalog", ""},
      {"/v2/library/alpine/blobs/uploads/", ""},
      {"/v1/library/alpine/manifests/latest", ""},
      {"/v2/UPPER/manifests/latest", ""},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.path);
    EXPECT_EQ(pullScopeForPath(test_case.path), test_case.scope);
  }
}

TEST(UpstreamTokenRequestTest, BuildsQueryFromChallenge) {
  struct Case {
    const char* name;
    TokenKey key;
    const char* path_and_query;
  };
  const std::vector<Case> cases = {
      {"service and scope",
       {"https://auth.docker.io/token", "registry.docker.io", "repository:library/alpine:pull"},
       "/token?service=registry.docker.io&scope=repository%3Alibrary%2Falpine%3Apull"},
      {"no scope", {"https://auth.example/token", "svc", ""}, "/token?service=svc"},
      {"no service",
       {"https://auth.example/token", "", "repository:a:pull"},
       "/token?scope=repository%3Aa%3Apull"},
      {"several scopes",
       {"https://auth.example/token", "", "repository:a:pull repository:b:pull"},
       "/token?scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull"},
      {"realm with query",
       {"https://auth.example/token?account=x", "svc", ""},
       "/token?account=x&service=svc"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<Url> url = tokenRequestUrl(test_case.key);
    ASSERT_TRUE(url.hasValue()) << url.status().toString();
    EXPECT_EQ(url->path_and_query, test_case.path_and_query);
  }
}

TEST(UpstreamTokenRequestTest, RejectsInvalidRealm) {
  for (const char* realm : {"", "/token", "ftp://auth.example/token"}) {
    SCOPED_TRACE(realm);
    Expected<Url> url = tokenRequestUrl(TokenKey{realm, "svc", ""});
    EXPECT_FALSE(url.hasValue());
    EXPECT_EQ(url.status().code(), StatusCode::kInvalidArgument);
  }
}

class UpstreamTokenCacheTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  TokenCache cache_{&clock_};
  const TokenKey alpine_{"https://auth.example/token", "registry", "repository:alpine:pull"};
  const TokenKey redis_{"https://auth.example/token", "registry", "repository:redis:pull"};
};

TEST_F(UpstreamTokenCacheTest, ReturnsTokenUntilShortlyBeforeExpiry) {
  cache_.insert(alpine_, TokenGrant{"t1", 300});

  ASSERT_TRUE(cache_.find(alpine_).has_value());
  EXPECT_EQ(*cache_.find(alpine_), "t1");
  clock_.advanceMs(289'999);
  EXPECT_TRUE(cache_.find(alpine_).has_value());
  clock_.advanceMs(1);
  EXPECT_FALSE(cache_.find(alpine_).has_value()) << "the last 10 s of a token are not used";
}

TEST_F(UpstreamTokenCacheTest, ShortLivedTokenKeepsHalfItsLifetime) {
  cache_.insert(alpine_, TokenGrant{"t1", 10});

  clock_.advanceMs(4'999);
  EXPECT_TRUE(cache_.find(alpine_).has_value());
  clock_.advanceMs(1);
  EXPECT_FALSE(cache_.find(alpine_).has_value());
}

TEST_F(UpstreamTokenCacheTest, KeysAreIndependent) {
  cache_.insert(alpine_, TokenGrant{"alpine-token", 300});

  EXPECT_FALSE(cache_.find(redis_).has_value());
  TokenKey other_service = alpine_;
  other_service.service = "other";
  EXPECT_FALSE(cache_.find(other_service).has_value());
}

TEST_F(UpstreamTokenCacheTest, InsertReplacesAndEraseForgets) {
  cache_.insert(alpine_, TokenGrant{"old", 300});
  cache_.insert(alpine_, TokenGrant{"new", 300});

  ASSERT_TRUE(cache_.find(alpine_).has_value());
  EXPECT_EQ(*cache_.find(alpine_), "new");
  EXPECT_EQ(cache_.size(), 1u);
  cache_.erase(alpine_);
  EXPECT_FALSE(cache_.find(alpine_).has_value());
}

TEST_F(UpstreamTokenCacheTest, FullCacheEvictsExpiredThenSoonest) {
  for (size_t i = 0; i < TokenCache::kMaxEntries; ++i) {
    TokenKey key = alpine_;
    key.scope = "repository:r" + std::to_string(i) + ":pull";
    // r0 expires first, r1 second, and so on.
    cache_.insert(key, TokenGrant{"t", static_cast<int64_t>(100 + i)});
  }
  cache_.insert(redis_, TokenGrant{"redis", 3600});

  EXPECT_EQ(cache_.size(), TokenCache::kMaxEntries);
  EXPECT_TRUE(cache_.find(redis_).has_value());
  TokenKey first = alpine_;
  first.scope = "repository:r0:pull";
  EXPECT_FALSE(cache_.find(first).has_value()) << "the token that expires soonest goes first";
  TokenKey second = alpine_;
  second.scope = "repository:r1:pull";
  EXPECT_TRUE(cache_.find(second).has_value());

  // Once the others have expired, one insert removes all of them.
  clock_.advanceMs(2'000'000);
  TokenKey late = alpine_;
  late.scope = "repository:late:pull";
  cache_.insert(late, TokenGrant{"late", 300});
  EXPECT_EQ(cache_.size(), 2u) << "only the redis token and the new one are left";
}

}  // namespace
}  // namespace outpost::proxy::upstream
