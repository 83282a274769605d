// Local repositories end to end: blob uploads (monolithic, chunked, resumed after a restart,
// cancelled, expired), mounts, manifest pushes with their checks, pulls, tag lists, the catalog,
// deletes, immutable tags, bad input for each endpoint, and skopeo pushing real images.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/registry_push.h"

namespace outpost::integration {
namespace {

constexpr std::string_view kOciConfigType = "application/vnd.oci.image.config.v1+json";

bool hasErrorCode(const HttpResult& result, std::string_view code) {
  return result.body.find("\"code\":\"" + std::string(code) + "\"") != std::string::npos;
}

class LocalRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override { startServer(defaultOptions()); }

  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  static OutpostOptions defaultOptions() {
    OutpostOptions options;
    options.locals_yaml =
        "  - name: local\n"
        "  - name: frozen\n"
        "    allow_delete: false\n"
        "    immutable_tags: true\n"
        "    max_manifest_bytes: 2048\n"
        "  - name: tagsonly\n"
        "    allow_delete: [tags]\n";
    return options;
  }

  void startServer(OutpostOptions options) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(std::move(options)));
  }

  Expected<HttpResult> send(const std::string& method, const std::string& path,
                            std::string body = "", std::vector<HttpHeader> headers = {}) {
    HttpRequest request;
    request.method = method;
    request.url = path.starts_with("http://") ? path : outpost_->url() + path;
    request.headers = std::move(headers);
    request.body = std::move(body);
    request.timeout_ms = 30'000;
    return httpRequest(request);
  }

  // Pushes `bytes` to `name` in one POST with ?digest= and checks the 201.
  void pushBlob(const std::string& name, const std::string& bytes) {
    std::string digest = sha256Of(bytes).str();
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        HttpResult pushed, send("POST", "/v2/" + name + "/blobs/uploads/?digest=" + digest, bytes));
    ASSERT_EQ(pushed.status, 201) << pushed.body;
    EXPECT_EQ(pushed.header("Location"), "/v2/" + name + "/blobs/" + digest);
    EXPECT_EQ(pushed.header("Docker-Content-Digest"), digest);
  }

  // Pushes a manifest and returns the response.
  Expected<HttpResult> putManifest(const std::string& name, const std::string& reference,
                                   const std::string& body,
                                   std::string_view content_type = kOciImageManifestType) {
    return send("PUT", "/v2/" + name + "/manifests/" + reference, body,
                {{"Content-Type", std::string(content_type)}});
  }

  // Starts an upload session and returns its Location.
  std::string startUpload(const std::string& name) {
    Expected<HttpResult> started = send("POST", "/v2/" + name + "/blobs/uploads/");
    EXPECT_TRUE(started) << started.status().toString();
    if (!started) {
      return "";
    }
    EXPECT_EQ(started->status, 202) << started->body;
    EXPECT_EQ(started->header("Range"), "0-0");
    std::string location = started->header("Location").value_or("");
    EXPECT_TRUE(location.starts_with("/v2/" + name + "/blobs/uploads/")) << location;
    EXPECT_EQ(started->header("Docker-Upload-UUID"),
              location.substr(location.find_last_of('/') + 1));
    return location;
  }

  std::unique_ptr<OutpostServer> outpost_;
};

TEST_F(LocalRepositoryTest, MonolithicPushThenPull) {
  std::string config = R"({"architecture":"amd64","os":"linux"})";
  std::string layer = randomBytes(300'000, 1);
  pushBlob("local/team/app", config);
  pushBlob("local/team/app", layer);

  std::string manifest = ociImageManifest(config, layer);
  std::string digest = sha256Of(manifest).str();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pushed, putManifest("local/team/app", "v1", manifest));
  ASSERT_EQ(pushed.status, 201) << pushed.body;
  EXPECT_EQ(pushed.header("Location"), "/v2/local/team/app/manifests/" + digest);
  EXPECT_EQ(pushed.header("Docker-Content-Digest"), digest);
  EXPECT_FALSE(pushed.header("OCI-Subject"));

  for (const std::string& reference : {std::string("v1"), digest}) {
    SCOPED_TRACE(reference);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pulled,
                                 send("GET", "/v2/local/team/app/manifests/" + reference));
    ASSERT_EQ(pulled.status, 200) << pulled.body;
    EXPECT_EQ(pulled.body, manifest);
    EXPECT_EQ(pulled.header("Content-Type"), kOciImageManifestType);
    EXPECT_EQ(pulled.header("Docker-Content-Digest"), digest);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head,
                                 send("HEAD", "/v2/local/team/app/manifests/" + reference));
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.header("Content-Length"), std::to_string(manifest.size()));
  }

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult blob,
                               send("GET", "/v2/local/team/app/blobs/" + sha256Of(layer).str()));
  ASSERT_EQ(blob.status, 200);
  EXPECT_TRUE(blob.body == layer);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult range,
                               send("GET", "/v2/local/team/app/blobs/" + sha256Of(layer).str(), "",
                                    {{"Range", "bytes=10-19"}}));
  EXPECT_EQ(range.status, 206);
  EXPECT_EQ(range.body, layer.substr(10, 10));

  // The blob belongs to team/app only.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult elsewhere,
                               send("GET", "/v2/local/team/other/blobs/" + sha256Of(layer).str()));
  EXPECT_EQ(elsewhere.status, 404);
  EXPECT_TRUE(hasErrorCode(elsewhere, "BLOB_UNKNOWN")) << elsewhere.body;
}

TEST_F(LocalRepositoryTest, ChunkedUploadInOrder) {
  std::string bytes = randomBytes(3'000'000, 2);
  std::string location = startUpload("local/app");
  ASSERT_FALSE(location.empty());

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult first,
      send("PATCH", location, bytes.substr(0, 1'000'000),
           {{"Content-Range", "0-999999"}, {"Content-Type", "application/octet-stream"}}));
  ASSERT_EQ(first.status, 202) << first.body;
  EXPECT_EQ(first.header("Range"), "0-999999");
  EXPECT_EQ(first.header("Location"), location);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult status, send("GET", location));
  EXPECT_EQ(status.status, 204);
  EXPECT_EQ(status.header("Range"), "0-999999");

  // A chunk that skips bytes is rejected and changes nothing.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult skipped,
      send("PATCH", location, bytes.substr(2'000'000, 10), {{"Content-Range", "2000000-2000009"}}));
  EXPECT_EQ(skipped.status, 416) << skipped.body;
  EXPECT_EQ(skipped.header("Range"), "0-999999");
  EXPECT_TRUE(hasErrorCode(skipped, "BLOB_UPLOAD_INVALID")) << skipped.body;

  // A Content-Range that does not match the body's length drops the chunk.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult mismatched,
      send("PATCH", location, bytes.substr(1'000'000, 10), {{"Content-Range", "1000000-1000019"}}));
  EXPECT_EQ(mismatched.status, 400) << mismatched.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult unchanged, send("GET", location));
  EXPECT_EQ(unchanged.header("Range"), "0-999999");

  // A chunk without Content-Range goes at the end.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult second,
                               send("PATCH", location, bytes.substr(1'000'000, 1'000'000)));
  ASSERT_EQ(second.status, 202) << second.body;
  EXPECT_EQ(second.header("Range"), "0-1999999");

  // The last chunk comes with the closing PUT.
  std::string digest = sha256Of(bytes).str();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult closed,
                               send("PUT", location + "?digest=" + digest, bytes.substr(2'000'000),
                                    {{"Content-Range", "2000000-2999999"}}));
  ASSERT_EQ(closed.status, 201) << closed.body;
  EXPECT_EQ(closed.header("Location"), "/v2/local/app/blobs/" + digest);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult blob, send("GET", "/v2/local/app/blobs/" + digest));
  ASSERT_EQ(blob.status, 200);
  EXPECT_TRUE(blob.body == bytes);
  // The session is gone once completed.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult after, send("GET", location));
  EXPECT_EQ(after.status, 404);
  EXPECT_TRUE(hasErrorCode(after, "BLOB_UPLOAD_UNKNOWN")) << after.body;
}

TEST_F(LocalRepositoryTest, UploadResumesAfterRestart) {
  std::string bytes = randomBytes(500'000, 3);
  std::string location = startUpload("local/app");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, send("PATCH", location, bytes.substr(0, 200'000),
                                                      {{"Content-Range", "0-199999"}}));
  ASSERT_EQ(first.status, 202) << first.body;

  OUTPOST_ASSERT_OK(outpost_->restart());

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult status, send("GET", location));
  ASSERT_EQ(status.status, 204) << status.body;
  EXPECT_EQ(status.header("Range"), "0-199999");
  std::string digest = sha256Of(bytes).str();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult closed,
                               send("PUT", location + "?digest=" + digest, bytes.substr(200'000),
                                    {{"Content-Range", "200000-499999"}}));
  ASSERT_EQ(closed.status, 201) << closed.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult blob, send("GET", "/v2/local/app/blobs/" + digest));
  EXPECT_TRUE(blob.body == bytes);
}

TEST_F(LocalRepositoryTest, CurlUploadsChunkedAndMonolithic) {
  // curl streams a file of unknown length with chunked transfer coding, and sends
  // `Expect: 100-continue` before a large body, as many scripted clients do.
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::create("curl-upload"));
  std::string first_part = randomBytes(3'000'000, 7);
  std::string second_part = randomBytes(2'000'000, 8);
  OUTPOST_ASSERT_OK(writeFile(dir.file("first"), first_part));
  OUTPOST_ASSERT_OK(writeFile(dir.file("second"), second_part));
  auto curl = [&](std::vector<std::string> arguments) {
    arguments.insert(arguments.begin(),
                     {"curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "60",
                      "--output", "/dev/null", "--write-out", "%{http_code}"});
    Expected<CommandResult> result = run(std::move(arguments));
    EXPECT_TRUE(result) << result.status().toString();
    return result ? result->stdout_text + result->stderr_text : std::string();
  };

  std::string location = startUpload("local/curl");
  std::string chunked = curl({"--request", "PATCH", "--header", "Transfer-Encoding: chunked",
                              "--upload-file", dir.file("first"), outpost_->url() + location});
  EXPECT_EQ(chunked, "202");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult status, send("GET", location));
  EXPECT_EQ(status.header("Range"), "0-2999999");
  std::string whole = first_part + second_part;
  std::string closed = curl(
      {"--request", "PUT", "--header", "Content-Type: application/octet-stream", "--data-binary",
       "@" + dir.file("second"), outpost_->url() + location + "?digest=" + sha256Of(whole).str()});
  EXPECT_EQ(closed, "201");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult blob,
                               send("GET", "/v2/local/curl/blobs/" + sha256Of(whole).str()));
  EXPECT_TRUE(blob.body == whole);

  // One POST with the whole blob, which curl announces with Expect: 100-continue.
  std::string monolithic = curl(
      {"--request", "POST", "--header", "Content-Type: application/octet-stream", "--data-binary",
       "@" + dir.file("first"),
       outpost_->url() + "/v2/local/curl/blobs/uploads/?digest=" + sha256Of(first_part).str()});
  EXPECT_EQ(monolithic, "201");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first_blob,
                               send("HEAD", "/v2/local/curl/blobs/" + sha256Of(first_part).str()));
  EXPECT_EQ(first_blob.status, 200);
  EXPECT_EQ(first_blob.header("Content-Length"), std::to_string(first_part.size()));
}

TEST_F(LocalRepositoryTest, CancelledUploadIsGone) {
  std::string location = startUpload("local/app");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult chunk, send("PATCH", location, "some bytes"));
  ASSERT_EQ(chunk.status, 202);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult cancelled, send("DELETE", location));
  EXPECT_EQ(cancelled.status, 204);

  for (const char* method : {"GET", "PATCH", "DELETE"}) {
    SCOPED_TRACE(method);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult after, send(method, location));
    EXPECT_EQ(after.status, 404);
    EXPECT_TRUE(hasErrorCode(after, "BLOB_UPLOAD_UNKNOWN")) << after.body;
  }
  EXPECT_TRUE(std::filesystem::is_empty(std::filesystem::path(outpost_->dataDir()) / "uploads"));
}

TEST_F(LocalRepositoryTest, IdleUploadExpires) {
  outpost_->stop();
  OutpostOptions options = defaultOptions();
  options.storage_yaml = "  upload_idle_timeout: 1s\n";
  startServer(options);
  std::string location = startUpload("local/app");

  // The sweep runs every second and removes sessions idle for over a second.
  bool expired = false;
  for (int attempt = 0; attempt < 50 && !expired; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Expected<HttpResult> status = send("GET", location);
    ASSERT_TRUE(status) << status.status().toString();
    expired = status->status == 404;
  }
  EXPECT_TRUE(expired);
  EXPECT_TRUE(std::filesystem::is_empty(std::filesystem::path(outpost_->dataDir()) / "uploads"));
}

TEST_F(LocalRepositoryTest, WrongDigestStoresNothing) {
  std::string bytes = "the real bytes";
  std::string wrong = sha256Of("other bytes").str();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult monolithic,
                               send("POST", "/v2/local/app/blobs/uploads/?digest=" + wrong, bytes));
  EXPECT_EQ(monolithic.status, 400);
  EXPECT_TRUE(hasErrorCode(monolithic, "DIGEST_INVALID")) << monolithic.body;

  // The same with a digest of another algorithm over the same bytes' sha256 hex.
  std::string location = startUpload("local/app");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult chunk, send("PATCH", location, bytes));
  ASSERT_EQ(chunk.status, 202);
  std::string sha512 = "sha512:" + std::string(128, 'a');
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult closed, send("PUT", location + "?digest=" + sha512));
  EXPECT_EQ(closed.status, 400);
  EXPECT_TRUE(hasErrorCode(closed, "DIGEST_INVALID")) << closed.body;

  for (const std::string& digest : {wrong, sha256Of(bytes).str(), sha512}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult head, send("HEAD", "/v2/local/app/blobs/" + digest));
    EXPECT_EQ(head.status, 404) << digest;
  }
  EXPECT_FALSE(std::filesystem::exists(outpost_->storedBlobPath(sha256Of(bytes).str())));
  EXPECT_TRUE(std::filesystem::is_empty(std::filesystem::path(outpost_->dataDir()) / "uploads"));
}

TEST_F(LocalRepositoryTest, MountsFromAnotherImage) {
  std::string bytes = randomBytes(10'000, 4);
  std::string digest = sha256Of(bytes).str();
  pushBlob("local/base", bytes);

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult mounted,
      send("POST", "/v2/local/app/blobs/uploads/?mount=" + digest + "&from=local/base"));
  ASSERT_EQ(mounted.status, 201) << mounted.body;
  EXPECT_EQ(mounted.header("Location"), "/v2/local/app/blobs/" + digest);
  EXPECT_EQ(mounted.header("Docker-Content-Digest"), digest);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult blob, send("GET", "/v2/local/app/blobs/" + digest));
  EXPECT_TRUE(blob.body == bytes);

  // A source without the blob, or no source, starts a normal upload.
  for (const std::string& query : {"?mount=" + digest + "&from=local/nothing", "?mount=" + digest,
                                   "?mount=" + sha256Of("absent").str() + "&from=local/base"}) {
    SCOPED_TRACE(query);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult fallback,
                                 send("POST", "/v2/local/other/blobs/uploads/" + query));
    EXPECT_EQ(fallback.status, 202) << fallback.body;
    EXPECT_TRUE(fallback.header("Location"));
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult missing, send("HEAD", "/v2/local/other/blobs/" + digest));
  EXPECT_EQ(missing.status, 404);

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult bad_digest, send("POST", "/v2/local/app/blobs/uploads/?mount=sha256:xyz&from=a"));
  EXPECT_EQ(bad_digest.status, 400);
  EXPECT_TRUE(hasErrorCode(bad_digest, "DIGEST_INVALID")) << bad_digest.body;
}

TEST_F(LocalRepositoryTest, MountsFromRemoteCache) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto upstream, DistributionRegistry::start());
  std::string bytes = randomBytes(20'000, 6);
  std::string digest = sha256Of(bytes).str();
  OUTPOST_ASSERT_OK(integration::pushBlob(upstream->url(), "team/base", bytes));
  outpost_->stop();
  OutpostOptions options = optionsForUpstream(upstream->url(), upstream->hostPort());
  options.locals_yaml = defaultOptions().locals_yaml;
  startServer(options);

  // Not cached yet: the mount starts an upload instead.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult uncached,
      send("POST", "/v2/local/app/blobs/uploads/?mount=" + digest + "&from=upstream/team/base"));
  EXPECT_EQ(uncached.status, 202) << uncached.body;

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pulled,
                               send("GET", "/v2/upstream/team/base/blobs/" + digest));
  ASSERT_EQ(pulled.status, 200) << pulled.body;
  // The fill commits right after the last byte is sent, so the mount may have to wait for it.
  int mount_status = 0;
  for (int attempt = 0; attempt < 50 && mount_status != 201; ++attempt) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        HttpResult mounted,
        send("POST", "/v2/local/app/blobs/uploads/?mount=" + digest + "&from=upstream/team/base"));
    mount_status = mounted.status;
    if (mount_status != 201) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ASSERT_EQ(mount_status, 201);

  // The mounted blob stays readable in the local image with the upstream gone.
  upstream.reset();
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult local, send("GET", "/v2/local/app/blobs/" + digest));
  ASSERT_EQ(local.status, 200) << local.body;
  EXPECT_TRUE(local.body == bytes);
}

TEST_F(LocalRepositoryTest, ManifestChecks) {
  std::string config = R"({"os":"linux"})";
  std::string layer = "layer bytes";
  pushBlob("local/app", config);

  // The layer was never pushed.
  std::string missing_layer = ociImageManifest(config, layer);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult missing, putManifest("local/app", "v1", missing_layer));
  EXPECT_EQ(missing.status, 400);
  EXPECT_TRUE(hasErrorCode(missing, "MANIFEST_BLOB_UNKNOWN")) << missing.body;

  pushBlob("local/app", layer);
  struct Case {
    std::string label;
    std::string reference;
    std::string body;
    int status;
    std::string code;
  };
  std::string good = ociImageManifest(config, layer);
  std::string wrong_size = good;
  wrong_size.replace(wrong_size.rfind(std::to_string(layer.size())),
                     std::to_string(layer.size()).size(), "999");
  const std::vector<Case> cases = {
      {"invalid JSON", "v1", "{\"schemaVersion\":", 400, "MANIFEST_INVALID"},
      {"no layers", "v1",
       R"({"schemaVersion":2,"config":)" + ociDescriptor(kOciConfigType, config) + "}", 400,
       "MANIFEST_INVALID"},
      {"layer size differs", "v1", wrong_size, 400, "MANIFEST_INVALID"},
      {"digest mismatch", sha256Of("not this").str(), good, 400, "DIGEST_INVALID"},
      {"bad digest reference", "sha256:short", good, 400, "DIGEST_INVALID"},
      {"129-character tag", std::string(129, 'a'), good, 400, "TAG_INVALID"},
      {"tag with a slash-free bad character", "v1!", good, 400, "TAG_INVALID"},
      {"child manifest missing", "index",
       R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)" +
           ociDescriptor(kOciImageManifestType, "child") + "]}",
       400, "MANIFEST_BLOB_UNKNOWN"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.label);
    std::string_view type = test_case.reference == "index"
                                ? "application/vnd.oci.image.index.v1+json"
                                : kOciImageManifestType;
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        HttpResult result, putManifest("local/app", test_case.reference, test_case.body, type));
    EXPECT_EQ(result.status, test_case.status) << result.body;
    EXPECT_TRUE(hasErrorCode(result, test_case.code)) << result.body;
  }
  // Nothing of the rejected pushes is visible.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult tags, send("GET", "/v2/local/app/tags/list"));
  EXPECT_EQ(tags.status, 404) << tags.body;
  EXPECT_TRUE(hasErrorCode(tags, "NAME_UNKNOWN")) << tags.body;

  // Too large for the frozen repository's 2048-byte limit.
  pushBlob("frozen/app", config);
  pushBlob("frozen/app", layer);
  std::string padded = ociImageManifest(
      config, layer, R"(,"annotations":{"pad":")" + std::string(3000, 'x') + "\"}");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult large, putManifest("frozen/app", "v1", padded));
  EXPECT_EQ(large.status, 413) << large.body;
  EXPECT_TRUE(hasErrorCode(large, "MANIFEST_INVALID")) << large.body;

  // A manifest with a subject gets OCI-Subject, even when the subject is not in the registry.
  std::string subject = sha256Of("subject manifest").str();
  std::string referrer =
      ociImageManifest(config, layer,
                       R"(,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                       R"("digest":")" +
                           subject + R"(","size":10})");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult with_subject,
                               putManifest("local/app", sha256Of(referrer).str(), referrer));
  ASSERT_EQ(with_subject.status, 201) << with_subject.body;
  EXPECT_EQ(with_subject.header("OCI-Subject"), subject);
}

TEST_F(LocalRepositoryTest, InvalidNamesRejected) {
  for (const std::string& name : {std::string("local/Team/app"), std::string("local/a/../b"),
                                  std::string("local/-app"), "local/" + std::string(260, 'a')}) {
    SCOPED_TRACE(name);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult result,
                                 send("POST", "/v2/" + name + "/blobs/uploads/"));
    EXPECT_EQ(result.status, 400) << result.body;
    EXPECT_TRUE(hasErrorCode(result, "NAME_INVALID")) << result.body;
  }
  EXPECT_TRUE(std::filesystem::is_empty(std::filesystem::path(outpost_->dataDir()) / "uploads"));

  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult unknown,
      send("PATCH", "/v2/local/app/blobs/uploads/0123456789abcdef0123456789abcdef", "bytes"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_TRUE(hasErrorCode(unknown, "BLOB_UPLOAD_UNKNOWN")) << unknown.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult traversal,
      send("PUT", "/v2/local/app/blobs/uploads/..%2Fdata?digest=" + sha256Of("").str()));
  EXPECT_EQ(traversal.status, 404) << traversal.body;

  // An upload belongs to the image it was started for.
  std::string location = startUpload("local/app");
  std::string id = location.substr(location.find_last_of('/') + 1);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult other,
                               send("GET", "/v2/local/other/blobs/uploads/" + id));
  EXPECT_EQ(other.status, 404);
}

TEST_F(LocalRepositoryTest, TagListAndCatalogPages) {
  std::string config = R"({"os":"linux"})";
  std::string layer = "layer";
  for (const char* name : {"local/b", "local/a", "local/c/d"}) {
    pushBlob(name, config);
    pushBlob(name, layer);
    for (const char* tag : {"v2", "v10", "latest", "v1"}) {
      OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pushed,
                                   putManifest(name, tag, ociImageManifest(config, layer)));
      ASSERT_EQ(pushed.status, 201) << pushed.body;
    }
  }

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult all, send("GET", "/v2/local/a/tags/list"));
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(all.body, R"({"name":"local/a","tags":["latest","v1","v10","v2"]})");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult page, send("GET", "/v2/local/a/tags/list?n=2"));
  EXPECT_EQ(page.body, R"({"name":"local/a","tags":["latest","v1"]})");
  EXPECT_EQ(page.header("Link"), R"(</v2/local/a/tags/list?n=2&last=v1>; rel="next")");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult next, send("GET", "/v2/local/a/tags/list?n=2&last=v1"));
  EXPECT_EQ(next.body, R"({"name":"local/a","tags":["v10","v2"]})");
  EXPECT_FALSE(next.header("Link"));
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult bad_n, send("GET", "/v2/local/a/tags/list?n=-1"));
  EXPECT_EQ(bad_n.status, 400);
  EXPECT_TRUE(hasErrorCode(bad_n, "PAGINATION_NUMBER_INVALID")) << bad_n.body;

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult catalog, send("GET", "/v2/_catalog"));
  ASSERT_EQ(catalog.status, 200) << catalog.body;
  EXPECT_EQ(catalog.body, R"({"repositories":["local/a","local/b","local/c/d"]})");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult first, send("GET", "/v2/_catalog?n=1"));
  EXPECT_EQ(first.body, R"({"repositories":["local/a"]})");
  EXPECT_EQ(first.header("Link"), R"(</v2/_catalog?n=1&last=local/a>; rel="next")");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult second, send("GET", "/v2/_catalog?n=5&last=local/a"));
  EXPECT_EQ(second.body, R"({"repositories":["local/b","local/c/d"]})");
}

TEST_F(LocalRepositoryTest, DeletesAndTheirSwitches) {
  std::string config = R"({"os":"linux"})";
  std::string layer = "layer";
  std::string manifest = ociImageManifest(config, layer);
  std::string digest = sha256Of(manifest).str();
  for (const char* name : {"local/app", "frozen/app"}) {
    pushBlob(name, config);
    pushBlob(name, layer);
    for (const char* tag : {"v1", "v2"}) {
      OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pushed, putManifest(name, tag, manifest));
      ASSERT_EQ(pushed.status, 201) << pushed.body;
    }
  }

  // A tag goes alone.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult tag, send("DELETE", "/v2/local/app/manifests/v1"));
  EXPECT_EQ(tag.status, 202) << tag.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult gone_tag, send("GET", "/v2/local/app/manifests/v1"));
  EXPECT_EQ(gone_tag.status, 404);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult kept, send("GET", "/v2/local/app/manifests/v2"));
  EXPECT_EQ(kept.status, 200);

  // A manifest takes its remaining tags along.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult by_digest,
                               send("DELETE", "/v2/local/app/manifests/" + digest));
  EXPECT_EQ(by_digest.status, 202) << by_digest.body;
  for (const std::string& reference : {std::string("v2"), digest}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult gone,
                                 send("GET", "/v2/local/app/manifests/" + reference));
    EXPECT_EQ(gone.status, 404) << reference;
    EXPECT_TRUE(hasErrorCode(gone, "MANIFEST_UNKNOWN")) << gone.body;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult again,
                               send("DELETE", "/v2/local/app/manifests/" + digest));
  EXPECT_EQ(again.status, 404);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult blob,
                               send("DELETE", "/v2/local/app/blobs/" + sha256Of(layer).str()));
  EXPECT_EQ(blob.status, 202) << blob.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult gone_blob,
                               send("HEAD", "/v2/local/app/blobs/" + sha256Of(layer).str()));
  EXPECT_EQ(gone_blob.status, 404);
  // The other repository's link to the same bytes stays.
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult shared,
                               send("GET", "/v2/frozen/app/blobs/" + sha256Of(layer).str()));
  EXPECT_EQ(shared.status, 200);
  EXPECT_EQ(shared.body, layer);

  // Deletes are off in the frozen repository, and its tags do not move.
  for (const std::string& path :
       {std::string("/v2/frozen/app/manifests/v1"), "/v2/frozen/app/manifests/" + digest,
        "/v2/frozen/app/blobs/" + sha256Of(layer).str()}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult refused, send("DELETE", path));
    EXPECT_EQ(refused.status, 405) << path;
    EXPECT_TRUE(hasErrorCode(refused, "UNSUPPORTED")) << refused.body;
  }
  std::string other = ociImageManifest(config, layer, R"(,"annotations":{"a":"b"})");
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult moved, putManifest("frozen/app", "v1", other));
  EXPECT_EQ(moved.status, 403) << moved.body;
  EXPECT_TRUE(hasErrorCode(moved, "DENIED")) << moved.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult same, putManifest("frozen/app", "v1", manifest));
  EXPECT_EQ(same.status, 201) << same.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult fresh, putManifest("frozen/app", "v3", other));
  EXPECT_EQ(fresh.status, 201) << fresh.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult still, send("GET", "/v2/frozen/app/manifests/v1"));
  EXPECT_EQ(still.header("Docker-Content-Digest"), digest);
}

TEST_F(LocalRepositoryTest, DeletesAllowedByKind) {
  std::string config = R"({"os":"linux"})";
  std::string layer = "layer";
  std::string manifest = ociImageManifest(config, layer);
  std::string digest = sha256Of(manifest).str();
  pushBlob("tagsonly/app", config);
  pushBlob("tagsonly/app", layer);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pushed, putManifest("tagsonly/app", "v1", manifest));
  ASSERT_EQ(pushed.status, 201) << pushed.body;

  // Only tags may be deleted here.
  for (const std::string& path : {"/v2/tagsonly/app/manifests/" + digest,
                                  "/v2/tagsonly/app/blobs/" + sha256Of(layer).str()}) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult refused, send("DELETE", path));
    EXPECT_EQ(refused.status, 405) << path;
    EXPECT_TRUE(hasErrorCode(refused, "UNSUPPORTED")) << refused.body;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult tag, send("DELETE", "/v2/tagsonly/app/manifests/v1"));
  EXPECT_EQ(tag.status, 202) << tag.body;
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult by_digest,
                               send("GET", "/v2/tagsonly/app/manifests/" + digest));
  EXPECT_EQ(by_digest.status, 200);
}

TEST_F(LocalRepositoryTest, PushesSurviveRestart) {
  std::string config = R"({"os":"linux"})";
  std::string layer = randomBytes(50'000, 5);
  pushBlob("local/app", config);
  pushBlob("local/app", layer);
  std::string manifest = ociImageManifest(config, layer);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pushed, putManifest("local/app", "v1", manifest));
  ASSERT_EQ(pushed.status, 201);

  outpost_->kill();
  OUTPOST_ASSERT_OK(outpost_->restart());

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult pulled, send("GET", "/v2/local/app/manifests/v1"));
  EXPECT_EQ(pulled.body, manifest);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult blob,
                               send("GET", "/v2/local/app/blobs/" + sha256Of(layer).str()));
  EXPECT_TRUE(blob.body == layer);
}

TEST_F(LocalRepositoryTest, SkopeoPushesImagesAndPullsThemBack) {
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto skopeo, Skopeo::create());
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto builder, ImageBuilder::create(*skopeo));
  const RegistryEndpoint endpoint = outpost_->endpoint();

  ImageSpec small;
  small.layers = {{"/data/a.bin", 1u << 20}, {"/data/b.bin", 300u << 10}};
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage oci,
                               builder->pushImage(endpoint, "local/team/oci:v1", small));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage docker,
                               builder->pushImage(endpoint, "local/team/docker:v1", small,
                                                  ManifestFormat::kDockerV2Schema2));
  EXPECT_EQ(docker.media_type, kDockerManifestType);
  std::vector<ImageSpec> platforms(2, small);
  platforms[1].architecture = "arm64";
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage index,
                               builder->pushIndex(endpoint, "local/team/multi:v1", platforms));
  ASSERT_TRUE(index.isIndex());

  // Each blob reads back byte for byte, and a second copy through skopeo into an OCI layout
  // finds the same digests.
  for (const PushedImage* image : {&oci, &docker, &index}) {
    for (const BlobDescriptor& blob : image->allBlobs()) {
      OUTPOST_ASSERT_OK_AND_ASSIGN(
          HttpResult read, send("GET", "/v2/" + image->repository + "/blobs/" + blob.digest));
      ASSERT_EQ(read.status, 200) << image->repository << " " << blob.digest;
      EXPECT_EQ(sha256Of(read.body).str(), blob.digest);
      EXPECT_EQ(read.body.size(), blob.size);
    }
    OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage again,
                                 readPushedImage(*skopeo, endpoint, image->repository, image->tag));
    EXPECT_EQ(again.manifest_digest, image->manifest_digest);
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir layout_dir, TempDir::create("pulled"));
  std::vector<std::string> flags = Skopeo::sourceFlags(endpoint);
  flags.push_back("--multi-arch=all");
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult copied, skopeo->copy(Skopeo::dockerReference(endpoint, "local/team/multi:v1"),
                                         "oci:" + layout_dir.path() + ":copy", flags));
  EXPECT_EQ(copied.exit_code, 0) << copied.stderr_text;
}

}  // namespace
}  // namespace outpost::integration
