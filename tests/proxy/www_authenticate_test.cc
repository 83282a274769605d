#include "proxy/www_authenticate.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace outpost::proxy {
namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

struct ExpectedChallenge {
  std::string scheme;
  Params params;
  std::string token68;
};

struct ChallengeCase {
  std::string name;
  std::string header;
  std::vector<ExpectedChallenge> expected;
};

void expectChallenges(const std::vector<AuthChallenge>& actual,
                      const std::vector<ExpectedChallenge>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    SCOPED_TRACE("challenge " + std::to_string(i));
    EXPECT_EQ(actual[i].scheme, expected[i].scheme);
    EXPECT_EQ(actual[i].params, expected[i].params);
    EXPECT_EQ(actual[i].token68, expected[i].token68);
  }
}

TEST(WwwAuthenticateTest, ParsesChallenges) {
  const std::vector<ChallengeCase> cases = {
      {"docker hub bearer",
       R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
       R"(scope="repository:library/alpine:pull")",
       {{"bearer",
         {{"realm", "https://auth.docker.io/token"},
          {"service", "registry.docker.io"},
          {"scope", "repository:library/alpine:pull"}},
         ""}}},
      {"comma inside quotes",
       R"(Bearer realm="https://r/token",scope="repository:a/b:pull,push")",
       {{"bearer", {{"realm", "https://r/token"}, {"scope", "repository:a/b:pull,push"}}, ""}}},
      {"two challenges",
       R"(Basic realm="x", Bearer realm="y")",
       {{"basic", {{"realm", "x"}}, ""}, {"bearer", {{"realm", "y"}}, ""}}},
      {"two challenges with several params",
       R"(Bearer realm="a", service="b", Basic realm="c", charset="UTF-8")",
       {{"bearer", {{"realm", "a"}, {"service", "b"}}, ""},
        {"basic", {{"realm", "c"}, {"charset", "UTF-8"}}, ""}}},
      {"scheme without params", "Negotiate", {{"negotiate", {}, ""}}},
      {"schemes without params", "Negotiate, NTLM",
       {{"negotiate", {}, ""}, {"ntlm", {}, ""}}},
      {"scheme without params before one with",
       R"(Negotiate, Basic realm="x")",
       {{"negotiate", {}, ""}, {"basic", {{"realm", "x"}}, ""}}},
      {"token68", "Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXag",
       {{"negotiate", {}, "YIIBhgYGKwYBBQUCoIIBejCCAXag"}}},
      {"token68 with padding", "Custom abc/+~._-==", {{"custom", {}, "abc/+~._-=="}}},
      {"token68 with one pad", "Custom abc=", {{"custom", {}, "abc="}}},
      {"token68 then challenge", R"(Custom abc==, Basic realm="x")",
       {{"custom", {}, "abc=="}, {"basic", {{"realm", "x"}}, ""}}},
      {"token values", "Bearer realm=simple, error=invalid_token",
       {{"bearer", {{"realm", "simple"}, {"error", "invalid_token"}}, ""}}},
      {"case folding", R"(BEARER Realm="Mixed Case Value")",
       {{"bearer", {{"realm", "Mixed Case Value"}}, ""}}},
      {"escaped quote and backslash", R"(Basic realm="a \"b\" c\\d")",
       {{"basic", {{"realm", R"(a "b" c\d)"}}, ""}}},
      {"escaped ordinary character", R"(Basic realm="\a\b")", {{"basic", {{"realm", "ab"}}, ""}}},
      {"empty quoted value", R"(Basic realm="")", {{"basic", {{"realm", ""}}, ""}}},
      {"whitespace everywhere",
       "  Bearer   realm = \"x\" ,\t service=\"y\"  ,  Basic  realm=\"z\"  ",
       {{"bearer", {{"realm", "x"}, {"service", "y"}}, ""}, {"basic", {{"realm", "z"}}, ""}}},
      {"empty list elements", R"(, ,Basic realm="x",, ,)", {{"basic", {{"realm", "x"}}, ""}}},
      {"name and equals sign read as token68", "Basic realm=, Bearer realm=\"y\"",
       {{"basic", {}, "realm="}, {"bearer", {{"realm", "y"}}, ""}}},
      {"empty header", "", {}},
      {"only whitespace", "   ", {}},
  };
  for (const ChallengeCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    expectChallenges(parseWwwAuthenticate(test_case.header), test_case.expected);
  }
}

TEST(WwwAuthenticateTest, StopsAtGarbage) {
  const std::vector<ChallengeCase> cases = {
      {"unterminated quote",
       R"(Bearer realm="https://r/token",service="unterminated)",
       {{"bearer", {{"realm", "https://r/token"}}, ""}}},
      {"unterminated quote in second challenge",
       R"(Basic realm="x", Bearer realm="y)",
       {{"basic", {{"realm", "x"}}, ""}, {"bearer", {}, ""}}},
      {"backslash at end", R"(Basic realm="abc\)", {{"basic", {}, ""}}},
      {"control character in quotes", std::string("Basic realm=\"a\x01z\""), {{"basic", {}, ""}}},
      {"param without comma", R"(Basic realm="x" charset="y")", {{"basic", {{"realm", "x"}}, ""}}},
      {"text after token68", "Custom abc== def", {{"custom", {}, "abc=="}}},
      {"quote where scheme expected", R"("Basic" realm="x")", {}},
      {"scheme runs into quote", R"(Basic"x")", {}},
      {"equals sign instead of scheme", "=abc", {}},
      {"param-like challenge after comma", R"(Basic realm="x", abc=)",
       {{"basic", {{"realm", "x"}}, ""}}},
      {"lone quote", "\"", {}},
      {"lone backslash in token position", "Basic \\", {{"basic", {}, ""}}},
  };
  for (const ChallengeCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    expectChallenges(parseWwwAuthenticate(test_case.header), test_case.expected);
  }
}

TEST(WwwAuthenticateTest, SurvivesEveryPrefixOfRealHeader) {
  const std::string header =
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
      R"(scope="repository:a/b:pull,push", Basic realm="x\"y", Negotiate abc==)";
  for (std::size_t length = 0; length <= header.size(); ++length) {
    SCOPED_TRACE("prefix length " + std::to_string(length));
    const std::vector<AuthChallenge> challenges = parseWwwAuthenticate(header.substr(0, length));
    EXPECT_LE(challenges.size(), 3u);
  }
}

TEST(WwwAuthenticateTest, ParamLookupIgnoresCase) {
  const std::vector<AuthChallenge> challenges =
      parseWwwAuthenticate(R"(Bearer realm="r", Service="s", realm="second")");
  ASSERT_EQ(challenges.size(), 1u);
  EXPECT_EQ(challenges[0].param("realm"), "r");
  EXPECT_EQ(challenges[0].param("REALM"), "r");
  EXPECT_EQ(challenges[0].param("service"), "s");
  EXPECT_EQ(challenges[0].param("scope"), "");
}

struct BasicCase {
  std::string name;
  std::string user;
  std::string password;
  std::string expected;
};

TEST(WwwAuthenticateTest, FormatsBasicAuthorization) {
  const std::vector<BasicCase> cases = {
      // RFC 7617 section 2 example.
      {"rfc example", "Aladdin", "open sesame", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="},
      {"empty user and password", "", "", "Basic Og=="},
      {"no padding", "ab", "cde", "Basic YWI6Y2Rl"},
      {"one pad", "a", "bcd", "Basic YTpiY2Q="},
      {"colon in password", "user", "pa:ss", "Basic dXNlcjpwYTpzcw=="},
      {"utf-8", "user", "p\xc3\xa4ss", "Basic dXNlcjpww6Rzcw=="},
  };
  for (const BasicCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    EXPECT_EQ(basicAuthorization(test_case.user, test_case.password), test_case.expected);
  }
}

TEST(WwwAuthenticateTest, BasicAuthorizationOfLongPassword) {
  // Longer than one encoding chunk, and not a multiple of 3 bytes.
  const std::string password(100 * 1000 + 1, 'x');
  const std::string value = basicAuthorization("u", password);
  const std::size_t credentials_size = 2 + password.size();
  EXPECT_EQ(value.size(), 6 + 4 * ((credentials_size + 2) / 3));
  EXPECT_TRUE(value.starts_with("Basic dTp4eHh4")) << value.substr(0, 20);
  EXPECT_EQ(value.find('='), value.size() - 2) << "padding must appear only at the end";
}

}  // namespace
}  // namespace outpost::proxy
