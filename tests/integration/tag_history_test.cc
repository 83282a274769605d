// Tag history and rollback through the admin API and the `outpost tag` commands. The tests cover
// pushes and deletes of a local tag and rollbacks that move it, an upstream that moves a remote
// tag and a pin that keeps it in place until unpinned, and bad input for each endpoint.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/registry_push.h"

namespace outpost::integration {
namespace {

const std::string kConfig = R"({"os":"linux"})";
const std::string kLayer = "layer bytes";

// Two manifests over the same blobs that differ in an annotation.
std::string manifestNamed(std::string_view label) {
  return ociImageManifest(kConfig, kLayer,
                          R"(,"annotations":{"example.label":")" + std::string(label) + "\"}");
}

// Runs `outpost tag <arguments...> --server <server>`.
CommandResult runTagCommand(const std::string& server, std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), {OUTPOST_BINARY, "tag"});
  arguments.push_back("--server");
  arguments.push_back(server);
  Expected<CommandResult> result = run(std::move(arguments), RunOptions{.timeout_ms = 30'000});
  EXPECT_TRUE(result) << result.status().toString();
  return result ? *result : CommandResult{};
}

// The changes of a tag's history, newest first, as (cause, old, new) lines.
std::vector<std::string> historyLines(const std::string& server, const std::string& path) {
  Expected<HttpResult> result = httpGet(server + path);
  EXPECT_TRUE(result) << result.status().toString();
  std::vector<std::string> lines;
  if (!result) {
    return lines;
  }
  EXPECT_EQ(result->status, 200) << result->body;
  nlohmann::json body = nlohmann::json::parse(result->body, nullptr, false);
  if (!body.is_object() || !body["changes"].is_array()) {
    ADD_FAILURE() << result->body;
    return lines;
  }
  auto text = [](const nlohmann::json& value) {
    return value.is_string() ? value.get<std::string>() : std::string("-");
  };
  for (const nlohmann::json& change : body["changes"]) {
    lines.push_back(text(change["cause"]) + " " + text(change["old_digest"]) + " " +
                    text(change["new_digest"]));
  }
  return lines;
}

// The digest a client that accepts every manifest type gets for a tag. A remote records the
// history of the tag as such clients see it.
std::string digestOfTag(const std::string& url) {
  Expected<HttpResult> result = httpGet(url, {{"Accept", manifestAcceptHeader()}});
  EXPECT_TRUE(result) << result.status().toString();
  return result && result->status == 200 ? result->header("Docker-Content-Digest").value_or("")
                                         : "status " + std::to_string(result ? result->status : 0);
}

class TagHistoryTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  std::unique_ptr<OutpostServer> outpost_;
};

TEST_F(TagHistoryTest, LocalTagRollsBack) {
  OutpostOptions options;
  options.locals_yaml = "  - name: local\n";
  OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(options));
  const std::string url = outpost_->url();
  const std::string first = manifestNamed("first");
  const std::string second = manifestNamed("second");
  const std::string first_digest = sha256Of(first).str();
  const std::string second_digest = sha256Of(second).str();
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", kConfig));
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", kLayer));
  OUTPOST_ASSERT_OK(pushManifest(url, "local/app", "v1", first));
  OUTPOST_ASSERT_OK(pushManifest(url, "local/app", "v1", second));
  // A push of the digest the tag has already changes nothing.
  OUTPOST_ASSERT_OK(pushManifest(url, "local/app", "v1", second));
  const std::string history = "/api/v1/repositories/local/images/app/tags/v1/history";

  EXPECT_EQ(historyLines(url, history),
            (std::vector<std::string>{"push " + first_digest + " " + second_digest,
                                      "push - " + first_digest}));

  CommandResult rolled = runTagCommand(url, {"rollback", "local/app:v1", "--digest", first_digest});
  EXPECT_EQ(rolled.exit_code, 0) << rolled.stderr_text;
  EXPECT_NE(rolled.stdout_text.find(first_digest), std::string::npos) << rolled.stdout_text;
  EXPECT_EQ(digestOfTag(url + "/v2/local/app/manifests/v1"), first_digest);
  EXPECT_EQ(historyLines(url, history).front(), "rollback " + second_digest + " " + first_digest);

  // The command prints the history with the rollback on top.
  CommandResult printed = runTagCommand(url, {"history", "local/app:v1"});
  EXPECT_EQ(printed.exit_code, 0) << printed.stderr_text;
  EXPECT_NE(printed.stdout_text.find("current: " + first_digest), std::string::npos)
      << printed.stdout_text;
  EXPECT_LT(printed.stdout_text.find("rollback"), printed.stdout_text.find("push"))
      << printed.stdout_text;

  // A digest the tag never had is rejected, and the tag stays.
  const std::string other = manifestNamed("other");
  OUTPOST_ASSERT_OK(pushManifest(url, "local/app", "v2", other));
  CommandResult unrelated =
      runTagCommand(url, {"rollback", "local/app:v1", "--digest", sha256Of(other).str()});
  EXPECT_EQ(unrelated.exit_code, 1);
  EXPECT_NE(unrelated.stderr_text.find("never pointed to"), std::string::npos)
      << unrelated.stderr_text;
  EXPECT_EQ(digestOfTag(url + "/v2/local/app/manifests/v1"), first_digest);

  // A deleted manifest cannot be rolled back to.
  HttpRequest remove;
  remove.method = "DELETE";
  remove.url = url + "/v2/local/app/manifests/" + second_digest;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult removed, httpRequest(remove));
  ASSERT_EQ(removed.status, 202);
  CommandResult deleted_rollback =
      runTagCommand(url, {"rollback", "local/app:v1", "--digest", second_digest});
  EXPECT_EQ(deleted_rollback.exit_code, 1);
  EXPECT_NE(deleted_rollback.stderr_text.find("no longer contains"), std::string::npos)
      << deleted_rollback.stderr_text;

  // Deleting the tag is recorded too.
  remove.url = url + "/v2/local/app/manifests/v1";
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult untagged, httpRequest(remove));
  ASSERT_EQ(untagged.status, 202);
  EXPECT_EQ(historyLines(url, history).front(), "delete " + first_digest + " -");
}

TEST_F(TagHistoryTest, RemoteTagPinsUntilUnpinned) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto upstream, DistributionRegistry::start());
  const std::string first = manifestNamed("first");
  const std::string second = manifestNamed("second");
  const std::string first_digest = sha256Of(first).str();
  const std::string second_digest = sha256Of(second).str();
  OUTPOST_ASSERT_OK(pushBlob(upstream->url(), "team/app", kConfig));
  OUTPOST_ASSERT_OK(pushBlob(upstream->url(), "team/app", kLayer));
  OUTPOST_ASSERT_OK(pushManifest(upstream->url(), "team/app", "latest", first));

  OutpostOptions options = optionsForUpstream(upstream->url(), upstream->hostPort());
  options.remotes[0].tag_ttl = "0s";  // revalidated on every request
  OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(options));
  const std::string url = outpost_->url();
  const std::string tag_url = url + "/v2/upstream/team/app/manifests/latest";
  const std::string history = "/api/v1/repositories/upstream/images/team/app/tags/latest/history";

  EXPECT_EQ(digestOfTag(tag_url), first_digest);
  OUTPOST_ASSERT_OK(pushManifest(upstream->url(), "team/app", "latest", second));
  EXPECT_EQ(digestOfTag(tag_url), second_digest);
  EXPECT_EQ(historyLines(url, history),
            (std::vector<std::string>{"upstream " + first_digest + " " + second_digest,
                                      "upstream - " + first_digest}));

  CommandResult pinned =
      runTagCommand(url, {"rollback", "upstream/team/app:latest", "--digest", first_digest});
  EXPECT_EQ(pinned.exit_code, 0) << pinned.stderr_text;
  EXPECT_NE(pinned.stdout_text.find("pinned"), std::string::npos) << pinned.stdout_text;
  for (int request = 0; request < 3; ++request) {
    EXPECT_EQ(digestOfTag(tag_url), first_digest) << "request " << request;
  }
  // The history endpoint reports the pin.
  Expected<HttpResult> state = httpGet(url + history);
  ASSERT_TRUE(state);
  EXPECT_NE(state->body.find("\"pinned\":\"" + first_digest + "\""), std::string::npos)
      << state->body;

  CommandResult unpinned = runTagCommand(url, {"unpin", "upstream/team/app:latest"});
  EXPECT_EQ(unpinned.exit_code, 0) << unpinned.stderr_text;
  EXPECT_EQ(digestOfTag(tag_url), second_digest);
  std::vector<std::string> lines = historyLines(url, history);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0], "unpin " + first_digest + " " + second_digest);
  EXPECT_EQ(lines[1], "pin " + second_digest + " " + first_digest);

  CommandResult again = runTagCommand(url, {"unpin", "upstream/team/app:latest"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.stderr_text.find("not pinned"), std::string::npos) << again.stderr_text;
}

TEST_F(TagHistoryTest, RejectsBadRequests) {
  OutpostOptions options;
  options.locals_yaml = "  - name: local\n  - name: frozen\n    immutable_tags: true\n";
  OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(options));
  const std::string url = outpost_->url();
  const std::string manifest = manifestNamed("only");
  const std::string digest = sha256Of(manifest).str();
  OUTPOST_ASSERT_OK(pushBlob(url, "frozen/app", kConfig));
  OUTPOST_ASSERT_OK(pushBlob(url, "frozen/app", kLayer));
  OUTPOST_ASSERT_OK(pushManifest(url, "frozen/app", "v1", manifest));

  struct Case {
    std::string label;
    std::string method;
    std::string path;
    std::string body;
    int status;
    std::string code;
  };
  const std::string base = "/api/v1/repositories/";
  const std::string rollback_body = R"({"digest":")" + digest + "\"}";
  const std::vector<Case> cases = {
      {"unknown repository", "GET", base + "nope/images/app/tags/v1/history", "", 404,
       "NAME_UNKNOWN"},
      {"invalid name", "GET", base + "local/images/App/tags/v1/history", "", 400, "NAME_INVALID"},
      {"129-character tag", "GET",
       base + "local/images/app/tags/" + std::string(129, 'a') + "/history", "", 400,
       "TAG_INVALID"},
      {"unknown action", "GET", base + "local/images/app/tags/v1/everything", "", 404,
       "NAME_UNKNOWN"},
      {"no images segment", "GET", base + "local/app/tags/v1/history", "", 404, "NAME_UNKNOWN"},
      {"wrong method", "POST", base + "local/images/app/tags/v1/history", "", 405, "UNSUPPORTED"},
      {"bad history length", "GET", base + "local/images/app/tags/v1/history?n=many", "", 400,
       "PAGINATION_NUMBER_INVALID"},
      {"body not JSON", "POST", base + "local/images/app/tags/v1/rollback", "digest", 400,
       "DIGEST_INVALID"},
      {"invalid digest", "POST", base + "local/images/app/tags/v1/rollback",
       R"({"digest":"sha256:abc"})", 400, "DIGEST_INVALID"},
      {"digest never of the tag", "POST", base + "local/images/app/tags/v1/rollback", rollback_body,
       400, "UNSUPPORTED"},
      {"immutable tags", "POST", base + "frozen/images/app/tags/v1/rollback", rollback_body, 403,
       "DENIED"},
      {"unpin a local tag", "DELETE", base + "local/images/app/tags/v1/pin", "", 400,
       "UNSUPPORTED"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.label);
    HttpRequest request;
    request.method = test_case.method;
    request.url = url + test_case.path;
    request.body = test_case.body;
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result, httpRequest(request));
    EXPECT_EQ(result.status, test_case.status) << result.body;
    EXPECT_NE(result.body.find("\"code\":\"" + test_case.code + "\""), std::string::npos)
        << result.body;
  }
  EXPECT_EQ(digestOfTag(url + "/v2/frozen/app/manifests/v1"), digest);

  // The commands reject a malformed reference before any request, and report a server that is
  // not there.
  for (std::string reference : {"app:v1", "local/app", "local/:v1", "local/app:"}) {
    CommandResult malformed = runTagCommand(url, {"history", reference});
    EXPECT_EQ(malformed.exit_code, 2) << reference;
    EXPECT_NE(malformed.stderr_text.find("is not a tag reference"), std::string::npos)
        << malformed.stderr_text;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint16_t closed_port, freePort());
  CommandResult offline =
      runTagCommand("http://127.0.0.1:" + std::to_string(closed_port), {"history", "local/app:v1"});
  EXPECT_EQ(offline.exit_code, 1);
  EXPECT_NE(offline.stderr_text.find("cannot connect"), std::string::npos) << offline.stderr_text;
  CommandResult bad_url = runTagCommand("https://127.0.0.1:1", {"history", "local/app:v1"});
  EXPECT_EQ(bad_url.exit_code, 1);
  EXPECT_NE(bad_url.stderr_text.find("must start with http://"), std::string::npos)
      << bad_url.stderr_text;
}

}  // namespace
}  // namespace outpost::integration
