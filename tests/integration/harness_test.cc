// Tests of the integration harness itself: its parsers and process handling, then each fixture
// against the real distribution registry, skopeo and containerd, with no Outpost involved.
#include "tests/integration/harness.h"

#include <gmock/gmock.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace outpost::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// True while a process with this pid exists (a zombie counts).
bool pidExists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

bool pathExists(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0;
}

// HEADs `/v2/<repository>/manifests/<reference>` on a plain registry, accepting every
// manifest type.
Expected<HttpResult> headManifest(const DistributionRegistry& registry,
                                  const std::string& repository, const std::string& reference) {
  return httpHead(registry.url() + "/v2/" + repository + "/manifests/" + reference,
                  {{"Accept", manifestAcceptHeader()}});
}

// ---------------------------------------------------------------------------------------------
// Parsers

enum class ParseOutcome { kComplete, kIncomplete, kError };

struct ParseCase {
  const char* name;
  std::string bytes;
  bool is_head;
  bool is_at_eof;
  ParseOutcome outcome;
  int status;
  std::string body;
};

TEST(HttpResponseParseTest, TableOfResponses) {
  const std::vector<ParseCase> cases = {
      {"content length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, false,
       ParseOutcome::kComplete, 200, "hello"},
      {"content length with more to come", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
       false, false, ParseOutcome::kIncomplete, 0, ""},
      {"content length cut by close", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false,
       true, ParseOutcome::kError, 0, ""},
      {"chunked with extension and trailer",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nDigest: x\r\n\r\n",
       false, false, ParseOutcome::kComplete, 200, "hello world"},
      {"chunked missing last chunk",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", false, false,
       ParseOutcome::kIncomplete, 0, ""},
      {"chunked cut by close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
       false, true, ParseOutcome::kError, 0, ""},
      {"chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false,
       false, ParseOutcome::kError, 0, ""},
      {"chunk data without CRLF",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n", false, false,
       ParseOutcome::kError, 0, ""},
      {"head ignores content length", "HTTP/1.1 200 OK\r\nContent-Length: 591\r\n\r\n", true, false,
       ParseOutcome::kComplete, 200, ""},
      {"no content 204", "HTTP/1.1 204 No Content\r\n\r\n", false, false, ParseOutcome::kComplete,
       204, ""},
      {"body until close", "HTTP/1.0 400 Bad Request\r\n\r\nplain text to a TLS port", false, true,
       ParseOutcome::kComplete, 400, "plain text to a TLS port"},
      {"body until close still open", "HTTP/1.0 400 Bad Request\r\n\r\npartial", false, false,
       ParseOutcome::kIncomplete, 0, ""},
      {"interim 100 skipped",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", false,
       false, ParseOutcome::kComplete, 201, ""},
      {"headers not finished", "HTTP/1.1 200 OK\r\nContent-Len", false, false,
       ParseOutcome::kIncomplete, 0, ""},
      {"closed inside headers", "HTTP/1.1 200 OK\r\nContent-Len", false, true, ParseOutcome::kError,
       0, ""},
      {"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", false, false, ParseOutcome::kError, 0, ""},
      {"status not a number", "HTTP/1.1 2x0 OK\r\n\r\n", false, false, ParseOutcome::kError, 0, ""},
      {"header without colon", "HTTP/1.1 200 OK\r\nBroken\r\n\r\n", false, false,
       ParseOutcome::kError, 0, ""},
      {"content length not a number", "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", false,
       false, ParseOutcome::kError, 0, ""},
  };

  for (const ParseCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<std::optional<HttpResult>> parsed =
        parseHttpResponse(test_case.bytes, test_case.is_head, test_case.is_at_eof);
    switch (test_case.outcome) {
      case ParseOutcome::kError:
        EXPECT_FALSE(parsed.hasValue());
        break;
      case ParseOutcome::kIncomplete:
        ASSERT_TRUE(parsed.hasValue()) << parsed.status().toString();
        EXPECT_FALSE(parsed->has_value());
        break;
      case ParseOutcome::kComplete:
        ASSERT_TRUE(parsed.hasValue()) << parsed.status().toString();
        ASSERT_TRUE(parsed->has_value());
        EXPECT_EQ((*parsed)->status, test_case.status);
        EXPECT_EQ((*parsed)->body, test_case.body);
        break;
    }
  }
}

TEST(HttpResponseParseTest, HeaderLookupIgnoresCase) {
  Expected<std::optional<HttpResult>> parsed = parseHttpResponse(
      "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:ab\r\nVary: a\r\nvary: b\r\n"
      "Content-Length: 0\r\n\r\n",
      false, false);
  ASSERT_TRUE(parsed.hasValue()) << parsed.status().toString();
  ASSERT_TRUE(parsed->has_value());
  const HttpResult& result = **parsed;

  EXPECT_EQ(result.header("docker-content-digest").value_or(""), "sha256:ab");
  EXPECT_EQ(result.headerValues("VARY"), (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(result.header("Location").has_value());
}

TEST(ParseUrlTest, AcceptsLoopbackOnly) {
  struct UrlCase {
    const char* url;
    bool is_valid;
    uint16_t port;
    const char* target;
  };
  const std::vector<UrlCase> cases = {
      {"http://127.0.0.1:5000/v2/", true, 5000, "/v2/"},
      {"http://localhost:8080", true, 8080, "/"},
      {"https://127.0.0.1/v2/x?ns=docker.io", true, 443, "/v2/x?ns=docker.io"},
      {"http://example.invalid:5000/v2/", false, 0, ""},
      {"http://127.0.0.2:5000/", false, 0, ""},
      {"ftp://127.0.0.1/", false, 0, ""},
      {"http://127.0.0.1:0/", false, 0, ""},
      {"http://127.0.0.1:99999/", false, 0, ""},
      {"http://127.0.0.1:/", false, 0, ""},
  };

  for (const UrlCase& test_case : cases) {
    SCOPED_TRACE(test_case.url);
    Expected<ParsedUrl> parsed = parseUrl(test_case.url);
    ASSERT_EQ(parsed.hasValue(), test_case.is_valid) << parsed.status().toString();
    if (test_case.is_valid) {
      EXPECT_EQ(parsed->port, test_case.port);
      EXPECT_EQ(parsed->target, test_case.target);
      EXPECT_EQ(parsed->host, "127.0.0.1");
    }
  }
}

TEST(HttpClientTest, RejectsRequestOffLoopback) {
  Expected<HttpResult> result = httpGet("http://example.invalid/v2/");

  ASSERT_FALSE(result.hasValue());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
}

TEST(HttpClientTest, BasicAuthHeaderEncodesCredentials) {
  HttpHeader header = basicAuthHeader("alice", "s3cret");

  EXPECT_EQ(header.name, "Authorization");
  EXPECT_EQ(header.value, "Basic YWxpY2U6czNjcmV0");
}

TEST(RegistryHostTest, TableOfReferences) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"alpine", "docker.io"},
      {"library/alpine:3", "docker.io"},
      {"docker.io/library/alpine:3", "docker.io"},
      {"ghcr.io/owner/app@sha256:abc", "ghcr.io"},
      {"127.0.0.1:5000/app:v1", "127.0.0.1:5000"},
      {"localhost/app:v1", "localhost"},
  };
  for (const auto& [reference, host] : cases) {
    SCOPED_TRACE(reference);
    EXPECT_EQ(registryHostOf(reference), host);
  }
}

// ---------------------------------------------------------------------------------------------
// TempDir and processes

TEST(TempDirTest, RemovesFolderOnDestruction) {
  if (std::getenv("OUTPOST_KEEP_TEST_DIRS") != nullptr) {
    GTEST_SKIP() << "OUTPOST_KEEP_TEST_DIRS keeps test folders";
  }
  std::string path;
  {
    OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("tempdir-test"));
    path = dir.path();
    OUTPOST_ASSERT_OK(writeFile(dir.file("note"), "x"));
    OUTPOST_ASSERT_OK(dir.makeSubdir("nested/deeper").status());
    ASSERT_TRUE(pathExists(dir.file("nested/deeper")));
  }

  EXPECT_FALSE(pathExists(path)) << path;
}

TEST(ProcessTest, StopEndsChildByPid) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("process-test"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      Process process, Process::start({.argv = {"sleep", "60"}, .log_path = dir.file("log")}));
  pid_t pid = process.pid();
  ASSERT_TRUE(process.isRunning());

  process.stop();

  EXPECT_FALSE(pidExists(pid)) << "pid " << pid << " still exists";
  EXPECT_EQ(process.exitDescription(), "killed by signal 15");
}

TEST(ProcessTest, StopEscalatesToSigkill) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("process-test"));
  // An ignored signal stays ignored across exec, so `sleep` ignores SIGTERM.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      Process process,
      Process::start({.argv = {"sh", "-c", "trap '' TERM; echo ready; exec sleep 60"},
                      .log_path = dir.file("log")}));
  pid_t pid = process.pid();
  // SIGTERM before the trap is set would end the shell at once.
  while (process.logTail().find("ready") == std::string::npos && process.isRunning()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  auto started = std::chrono::steady_clock::now();
  process.stop(300);
  auto elapsed = std::chrono::steady_clock::now() - started;

  EXPECT_FALSE(pidExists(pid)) << "pid " << pid << " still exists";
  EXPECT_EQ(process.exitDescription(), "killed by signal 9");
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST(ProcessTest, DestructorStopsChild) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("process-test"));
  pid_t pid = -1;
  {
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        Process process, Process::start({.argv = {"sleep", "60"}, .log_path = dir.file("log")}));
    pid = process.pid();
    ASSERT_TRUE(pidExists(pid));
  }

  EXPECT_FALSE(pidExists(pid)) << "pid " << pid << " still exists";
}

TEST(ProcessTest, StartReportsMissingBinary) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("process-test"));

  Expected<Process> process = Process::start(
      {.argv = {"/nonexistent/outpost-missing-binary"}, .log_path = dir.file("log")});

  ASSERT_FALSE(process.hasValue());
  EXPECT_EQ(process.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(std::string(process.status().message()), HasSubstr("outpost-missing-binary"));
}

TEST(ProcessTest, LogCapturesOutput) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("process-test"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      Process process, Process::start({.argv = {"sh", "-c", "echo to-stdout; echo to-stderr >&2"},
                                       .log_path = dir.file("log")}));
  while (process.isRunning()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  EXPECT_EQ(process.exitDescription(), "exited with code 0");
  EXPECT_THAT(process.logTail(), HasSubstr("to-stdout"));
  EXPECT_THAT(process.logTail(), HasSubstr("to-stderr"));
}

TEST(RunTest, CapturesOutputAndExitCode) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result,
                               run({"sh", "-c", "echo out; echo err >&2; exit 3"}));

  EXPECT_EQ(result.exit_code, 3);
  EXPECT_FALSE(result.timed_out);
  EXPECT_FALSE(result.succeeded());
  EXPECT_EQ(result.stdout_text, "out\n");
  EXPECT_EQ(result.stderr_text, "err\n");
}

TEST(RunTest, TimeoutKillsChild) {
  auto started = std::chrono::steady_clock::now();
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult result, run({"sleep", "30"}, {.timeout_ms = 300}));
  auto elapsed = std::chrono::steady_clock::now() - started;

  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.term_signal, SIGKILL);
  EXPECT_EQ(result.toStatus().code(), StatusCode::kTimedOut);
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST(RunTest, AppliesEnvironmentChanges) {
  ::setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json", 1);
  ::setenv("http_proxy", "http://127.0.0.1:9", 1);
  RunOptions options;
  options.env.set = {{"OUTPOST_HARNESS_VALUE", "set"}};
  options.env.unset_prefixes = {"REGISTRY_"};

  Expected<CommandResult> result = run(
      {"sh", "-c",
       "echo \"${OUTPOST_HARNESS_VALUE-unset} ${REGISTRY_AUTH_FILE-unset} ${http_proxy-unset}\""},
      options);
  ::unsetenv("REGISTRY_AUTH_FILE");
  ::unsetenv("http_proxy");

  ASSERT_TRUE(result.hasValue()) << result.status().toString();
  EXPECT_EQ(result->stdout_text, "set unset unset\n");
}

TEST(CommandResultTest, DescribeMasksCredentials) {
  CommandResult result;
  result.argv = {"skopeo", "copy", "--dest-creds", "user:secret", "--creds=user:secret", "a"};
  result.exit_code = 1;
  result.stderr_text = "unauthorized";

  std::string text = result.describe();

  EXPECT_THAT(text, ::testing::Not(HasSubstr("secret")));
  EXPECT_THAT(text, HasSubstr("--dest-creds *** --creds=*** a: exited with code 1"));
  EXPECT_THAT(text, HasSubstr("unauthorized"));
}

// ---------------------------------------------------------------------------------------------
// The distribution registry in each mode

class RegistryFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OUTPOST_ASSERT_OK_AND_ASSIGN(skopeo_, Skopeo::create());
    OUTPOST_ASSERT_OK_AND_ASSIGN(builder_, ImageBuilder::create(*skopeo_));
  }

  // Small layers keep the tests that need no particular size fast.
  static ImageSpec smallImage(const char* architecture = "amd64") {
    ImageSpec spec;
    spec.architecture = architecture;
    spec.layers = {{"/data/small-1.bin", 256u << 10}, {"/data/small-2.bin", 128u << 10}};
    return spec;
  }

  // Checks, over plain HTTP, that the registry serves the manifest and every blob of `image`
  // with the digests and sizes that the push reported.
  static void expectServed(const DistributionRegistry& registry, const PushedImage& image) {
    SCOPED_TRACE(image.reference);
    Expected<HttpResult> manifest = headManifest(
        registry, image.repository, image.tag.empty() ? image.manifest_digest : image.tag);
    ASSERT_TRUE(manifest.hasValue()) << manifest.status().toString();
    EXPECT_EQ(manifest->status, 200);
    EXPECT_EQ(manifest->header("Docker-Content-Digest").value_or(""), image.manifest_digest);
    EXPECT_EQ(manifest->header("Content-Type").value_or(""), image.media_type);
    EXPECT_EQ(manifest->header("Content-Length").value_or(""),
              std::to_string(image.raw_manifest.size()));

    for (const BlobDescriptor& blob : image.allBlobs()) {
      SCOPED_TRACE(blob.digest);
      Expected<HttpResult> head =
          httpHead(registry.url() + "/v2/" + image.repository + "/blobs/" + blob.digest);
      ASSERT_TRUE(head.hasValue()) << head.status().toString();
      EXPECT_EQ(head->status, 200);
      EXPECT_EQ(head->header("Content-Length").value_or(""), std::to_string(blob.size));
    }
  }

  std::unique_ptr<Skopeo> skopeo_;
  std::unique_ptr<ImageBuilder> builder_;
};

TEST_F(RegistryFixtureTest, PlainPushOfEachImageKind) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry, DistributionRegistry::start());

  // An OCI image, pushed byte for byte from the layout.
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage oci,
                               builder_->pushImage(registry->endpoint(), "harness/oci:v1"));
  EXPECT_EQ(oci.media_type, kOciManifestType);
  EXPECT_EQ(oci.layers.size(), 3u);
  EXPECT_EQ(oci.config->media_type, "application/vnd.oci.image.config.v1+json");
  expectServed(*registry, oci);

  // A Docker v2 schema 2 image, converted by skopeo.
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage docker,
                               builder_->pushImage(registry->endpoint(), "harness/docker:v1", {},
                                                   ManifestFormat::kDockerV2Schema2));
  EXPECT_EQ(docker.media_type, kDockerManifestType);
  ASSERT_EQ(docker.layers.size(), 3u);
  EXPECT_EQ(docker.layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip");
  expectServed(*registry, docker);

  // A multi-platform OCI index over linux/amd64 and linux/arm64.
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage index,
                               builder_->pushIndex(registry->endpoint(), "harness/multi:v1"));
  EXPECT_EQ(index.media_type, kOciIndexType);
  ASSERT_EQ(index.platform_images.size(), 2u);
  ASSERT_NE(index.findPlatform("linux/amd64"), nullptr);
  ASSERT_NE(index.findPlatform("linux/arm64"), nullptr);
  EXPECT_NE(index.findPlatform("linux/amd64")->manifest_digest,
            index.findPlatform("linux/arm64")->manifest_digest);
  expectServed(*registry, index);
  for (const PushedImage& platform_image : index.platform_images) {
    expectServed(*registry, platform_image);
  }

  // The layer sizes follow the default spec: 3, 2 and 1 MiB of random bytes, plus tar and
  // gzip framing.
  EXPECT_GT(oci.layers[0].size, uint64_t{3} << 20);
  EXPECT_LT(oci.layers[0].size, (uint64_t{3} << 20) + (64u << 10));
}

TEST_F(RegistryFixtureTest, HtpasswdRejectsAnonymousAndAcceptsCredentials) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry,
                               DistributionRegistry::start({.auth = RegistryAuth::kHtpasswd}));

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult anonymous, httpGet(registry->url() + "/v2/"));
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_THAT(anonymous.header("WWW-Authenticate").value_or(""), StartsWith("Basic"));

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult authorized,
      httpGet(registry->url() + "/v2/",
              {basicAuthHeader(registry->username(), registry->password())}));
  EXPECT_EQ(authorized.status, 200);

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage image,
      builder_->pushImage(registry->endpoint(), "harness/basic:v1", smallImage()));
  EXPECT_EQ(image.layers.size(), 2u);

  Expected<std::string> anonymous_read =
      skopeo_->inspectRaw(registry->anonymousEndpoint(), "harness/basic:v1");
  ASSERT_FALSE(anonymous_read.hasValue());
  EXPECT_THAT(std::string(anonymous_read.status().message()), HasSubstr("unauthorized"));

  RegistryEndpoint wrong_password = registry->endpoint();
  wrong_password.password = "not-the-password";
  EXPECT_FALSE(skopeo_->inspectRaw(wrong_password, "harness/basic:v1").hasValue());
}

TEST_F(RegistryFixtureTest, TokenAuthGoesThroughIssuer) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry,
                               DistributionRegistry::start({.auth = RegistryAuth::kToken}));
  TokenIssuer* issuer = registry->tokenIssuer();
  ASSERT_NE(issuer, nullptr);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult challenge, httpGet(registry->url() + "/v2/"));
  EXPECT_EQ(challenge.status, 401);
  EXPECT_EQ(
      challenge.header("WWW-Authenticate").value_or(""),
      "Bearer realm=\"" + issuer->realm() + "\",service=\"" + registry->options().service + "\"");

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage image,
      builder_->pushImage(registry->endpoint(), "harness/token:v1", smallImage()));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage read_back,
      readPushedImage(*skopeo_, registry->endpoint(), "harness/token", "v1"));
  EXPECT_EQ(read_back.manifest_digest, image.manifest_digest);

  OUTPOST_ASSERT_OK_AND_ASSIGN(TokenIssuerStats stats, issuer->stats());
  EXPECT_GT(stats.token_requests, 0);
  EXPECT_GT(stats.tokens_issued, 0);
  EXPECT_EQ(stats.rejected, 0);
  EXPECT_NE(
      std::find(stats.scopes.begin(), stats.scopes.end(), "repository:harness/token:pull,push"),
      stats.scopes.end());

  // Without credentials the issuer rejects the token request, so skopeo fails.
  EXPECT_FALSE(skopeo_->inspectRaw(registry->anonymousEndpoint(), "harness/token:v1").hasValue());
  OUTPOST_ASSERT_OK_AND_ASSIGN(TokenIssuerStats after_anonymous, issuer->stats());
  EXPECT_GT(after_anonymous.rejected, 0);

  OUTPOST_ASSERT_OK(issuer->resetStats());
  OUTPOST_ASSERT_OK_AND_ASSIGN(TokenIssuerStats after_reset, issuer->stats());
  EXPECT_EQ(after_reset.token_requests, 0);
}

TEST_F(RegistryFixtureTest, TlsNeedsTheTestCa) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry, DistributionRegistry::start({.use_tls = true}));
  EXPECT_THAT(registry->url(), StartsWith("https://"));

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage image, builder_->pushImage(registry->endpoint(), "harness/tls:v1", smallImage()));

  // skopeo with --src-cert-dir copies from the registry, and without it verification fails.
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir target, TempDir::create("tls-copy"));
  std::vector<std::string> with_ca = Skopeo::sourceFlags(registry->endpoint());
  ASSERT_NE(std::find(with_ca.begin(), with_ca.end(), "--src-cert-dir"), with_ca.end());
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult copied,
      skopeo_->copy(Skopeo::dockerReference(registry->endpoint(), "harness/tls:v1"),
                    "oci:" + target.file("with-ca") + ":v1", with_ca));
  EXPECT_TRUE(copied.succeeded()) << copied.describe();

  RegistryEndpoint without_ca = registry->endpoint();
  without_ca.ca_dir.clear();
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult rejected,
      skopeo_->copy(Skopeo::dockerReference(without_ca, "harness/tls:v1"),
                    "oci:" + target.file("without-ca") + ":v1", Skopeo::sourceFlags(without_ca)));
  EXPECT_FALSE(rejected.succeeded());
  EXPECT_THAT(rejected.stderr_text, HasSubstr("certificate signed by unknown authority"));

  // The https path of the HTTP client, through curl.
  HttpRequest request;
  request.method = "HEAD";
  request.url = registry->url() + "/v2/harness/tls/manifests/v1";
  request.headers = {{"Accept", manifestAcceptHeader()}};
  request.ca_file = registry->caFile();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, httpRequest(request));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("Docker-Content-Digest").value_or(""), image.manifest_digest);

  request.ca_file.clear();
  EXPECT_FALSE(httpRequest(request).hasValue());
}

TEST_F(RegistryFixtureTest, ProxyModeServesUpstreamImage) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto upstream, DistributionRegistry::start());
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage image,
      builder_->pushImage(upstream->endpoint(), "library/cached:v1", smallImage()));

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      auto cache,
      DistributionRegistry::start({.proxy = ProxyUpstream{.remote_url = upstream->url()}}));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage through_cache,
      readPushedImage(*skopeo_, cache->endpoint(), "library/cached", "v1"));

  EXPECT_EQ(through_cache.manifest_digest, image.manifest_digest);
  EXPECT_THAT(upstream->logTail(20'000), HasSubstr("GET /v2/library/cached/manifests/v1"));
}

TEST_F(RegistryFixtureTest, RestartKeepsPortAndStorage) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry, DistributionRegistry::start());
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage image,
      builder_->pushImage(registry->endpoint(), "harness/restart:v1", smallImage()));
  uint16_t port = registry->port();

  registry->stop();
  EXPECT_FALSE(registry->isRunning());
  EXPECT_FALSE(httpGet(registry->url() + "/v2/").hasValue());

  OUTPOST_ASSERT_OK(registry->restart());
  EXPECT_EQ(registry->port(), port);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, headManifest(*registry, "harness/restart", "v1"));
  EXPECT_EQ(head.header("Docker-Content-Digest").value_or(""), image.manifest_digest);
}

TEST(DistributionRegistryTest, DestroyingFixtureLeavesNoProcess) {
  pid_t registry_pid = -1;
  pid_t issuer_pid = -1;
  std::string storage_dir;
  {
    OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry,
                                 DistributionRegistry::start({.auth = RegistryAuth::kToken}));
    registry_pid = registry->pid();
    issuer_pid = registry->tokenIssuer()->process().pid();
    storage_dir = registry->storageDir();
    ASSERT_TRUE(pidExists(registry_pid));
    ASSERT_TRUE(pidExists(issuer_pid));
  }

  EXPECT_FALSE(pidExists(registry_pid)) << "registry pid " << registry_pid;
  EXPECT_FALSE(pidExists(issuer_pid)) << "token issuer pid " << issuer_pid;
  if (std::getenv("OUTPOST_KEEP_TEST_DIRS") == nullptr) {
    EXPECT_FALSE(pathExists(storage_dir)) << storage_dir;
  }
}

// ---------------------------------------------------------------------------------------------
// containerd

TEST_F(RegistryFixtureTest, ContainerdPullsThroughMirror) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry, DistributionRegistry::start());
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      PushedImage image,
      builder_->pushImage(registry->endpoint(), "library/harness:v1", smallImage()));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage index,
                               builder_->pushIndex(registry->endpoint(), "library/harness-multi:v1",
                                                   {smallImage("amd64"), smallImage("arm64")}));

  OUTPOST_ASSERT_OK_AND_ASSIGN(auto containerd, Containerd::start());
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir hosts, TempDir::create("hosts"));

  // A hosts folder without a file for docker.io is rejected before ctr runs.
  Expected<CommandResult> rejected_pull =
      containerd->pull("docker.io/library/harness:v1", hosts.path());
  ASSERT_FALSE(rejected_pull.hasValue());
  EXPECT_EQ(rejected_pull.status().code(), StatusCode::kInvalidArgument);

  // The registry serves mirror requests, which carry ?ns=docker.io, like any other.
  OUTPOST_ASSERT_OK(writeHostsDir(hosts.path(), "docker.io", {{.url = registry->url()}}));
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled,
                               containerd->pull("docker.io/library/harness:v1", hosts.path(),
                                                {"--platform", "linux/amd64"}));
  ASSERT_TRUE(pulled.succeeded()) << pulled.describe() << "\n" << containerd->logTail();
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string digest,
                               containerd->imageDigest("docker.io/library/harness:v1"));
  EXPECT_EQ(digest, image.manifest_digest);
  EXPECT_THAT(registry->logTail(50'000),
              HasSubstr("/v2/library/harness/manifests/v1?ns=docker.io"));

  // For an index, containerd records the index digest and fetches the amd64 image.
  OUTPOST_ASSERT_OK_AND_ASSIGN(CommandResult pulled_index,
                               containerd->pull("docker.io/library/harness-multi:v1", hosts.path(),
                                                {"--platform", "linux/amd64"}));
  ASSERT_TRUE(pulled_index.succeeded()) << pulled_index.describe();
  OUTPOST_ASSERT_OK_AND_ASSIGN(std::string index_digest,
                               containerd->imageDigest("docker.io/library/harness-multi:v1"));
  EXPECT_EQ(index_digest, index.manifest_digest);

  OUTPOST_EXPECT_OK(containerd->removeImage("docker.io/library/harness:v1"));
  EXPECT_FALSE(containerd->imageDigest("docker.io/library/harness:v1").hasValue());

  pid_t containerd_pid = containerd->process().pid();
  containerd.reset();
  EXPECT_FALSE(pidExists(containerd_pid)) << "containerd pid " << containerd_pid;
}

}  // namespace
}  // namespace outpost::integration
