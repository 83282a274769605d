// Garbage collection of local repository content end to end: images pushed with skopeo, some
// deleted, `outpost gc --dry-run` and `outpost gc` against the blob files on disk, runs
// repeated while skopeo pushes, and bad input for /api/v1/gc.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/digest.h"
#include "storage/index.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/registry_push.h"

namespace outpost::integration {
namespace {

namespace fs = std::filesystem;

// Runs `outpost gc <arguments...> --server <server>`.
CommandResult runGcCommand(const std::string& server, std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), {OUTPOST_BINARY, "gc"});
  arguments.push_back("--server");
  arguments.push_back(server);
  Expected<CommandResult> result = run(std::move(arguments), RunOptions{.timeout_ms = 120'000});
  EXPECT_TRUE(result) << result.status().toString();
  return result ? *result : CommandResult{};
}

// A small image: two layers of 200 and 100 KiB.
ImageSpec smallImage() {
  ImageSpec spec;
  spec.layers = {{"/data/a.bin", 200u << 10}, {"/data/b.bin", 100u << 10}};
  return spec;
}

std::set<std::string> blobDigests(const PushedImage& image) {
  std::set<std::string> digests;
  for (const BlobDescriptor& blob : image.allBlobs()) {
    digests.insert(blob.digest);
  }
  return digests;
}

class GarbageCollectionTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  void startServer(std::string storage_yaml) {
    OutpostOptions options;
    options.locals_yaml = "  - name: local\n";
    options.storage_yaml = std::move(storage_yaml);
    startServer(std::move(options));
  }

  void startServer(OutpostOptions options) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(std::move(options)));
  }

  Expected<HttpResult> send(const std::string& method, const std::string& path) {
    HttpRequest request;
    request.method = method;
    request.url = outpost_->url() + path;
    request.timeout_ms = 120'000;
    return httpRequest(request);
  }

  void deleteManifest(const PushedImage& image) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        HttpResult removed,
        send("DELETE", "/v2/" + image.repository + "/manifests/" + image.manifest_digest));
    ASSERT_EQ(removed.status, 202) << removed.body;
  }

  bool isStored(const std::string& digest) const {
    return fs::exists(outpost_->storedBlobPath(digest));
  }

  // Checks that the image's manifest and every blob read back byte for byte.
  void expectPullsWhole(const Skopeo& skopeo, const PushedImage& image) {
    SCOPED_TRACE(image.reference);
    Expected<PushedImage> again =
        readPushedImage(skopeo, outpost_->endpoint(), image.repository, image.tag);
    ASSERT_TRUE(again) << again.status().toString();
    EXPECT_EQ(again->manifest_digest, image.manifest_digest);
    for (const BlobDescriptor& blob : image.allBlobs()) {
      OUTPOST_ASSERT_OK_AND_ASSIGN(
          HttpResult read, send("GET", "/v2/" + image.repository + "/blobs/" + blob.digest));
      ASSERT_EQ(read.status, 200) << blob.digest;
      EXPECT_EQ(read.body.size(), blob.size) << blob.digest;
      EXPECT_EQ(sha256Of(read.body).str(), blob.digest);
    }
  }

  std::unique_ptr<OutpostServer> outpost_;
};

TEST_F(GarbageCollectionTest, RemovesExactlyUnreferencedBlobs) {
  startServer("  gc_grace_period: 0s\n");
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto skopeo, Skopeo::create());
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto builder, ImageBuilder::create(*skopeo));
  const RegistryEndpoint endpoint = outpost_->endpoint();
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage dropped,
                               builder->pushImage(endpoint, "local/team/app:v1", smallImage()));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage docker,
                               builder->pushImage(endpoint, "local/team/app:v2", smallImage(),
                                                  ManifestFormat::kDockerV2Schema2));
  std::vector<ImageSpec> platforms(2, smallImage());
  platforms[1].architecture = "arm64";
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage multi,
                               builder->pushIndex(endpoint, "local/team/multi:v1", platforms));
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage other,
                               builder->pushImage(endpoint, "local/tool:v1", smallImage()));
  // Copied into a second image, where skopeo mounts its blobs, then deleted from the first. The
  // copy keeps the manifest's digest, so its record stays too.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult copied,
      skopeo->copy(Skopeo::dockerReference(endpoint, "local/tool:v1"),
                   Skopeo::dockerReference(endpoint, "local/tool-copy:v1"), [&] {
                     std::vector<std::string> flags = Skopeo::sourceFlags(endpoint);
                     for (const std::string& flag : Skopeo::destinationFlags(endpoint)) {
                       flags.push_back(flag);
                     }
                     return flags;
                   }()));
  ASSERT_EQ(copied.exit_code, 0) << copied.stderr_text;
  OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage copy,
                               readPushedImage(*skopeo, endpoint, "local/tool-copy", "v1"));
  deleteManifest(dropped);
  deleteManifest(other);

  std::set<std::string> remaining;
  for (const PushedImage* image : {&docker, &multi, &copy}) {
    std::set<std::string> digests = blobDigests(*image);
    remaining.insert(digests.begin(), digests.end());
  }
  std::set<std::string> expected_removed;
  for (const std::string& digest : blobDigests(dropped)) {
    if (!remaining.contains(digest)) {
      expected_removed.insert(digest);
    }
  }
  ASSERT_FALSE(expected_removed.empty());
  for (const std::string& digest : remaining) {
    ASSERT_TRUE(isStored(digest)) << digest;
  }
  for (const std::string& digest : expected_removed) {
    ASSERT_TRUE(isStored(digest)) << digest;
  }

  // A dry run lists the blobs and the manifest, and removes nothing.
  CommandResult dry = runGcCommand(outpost_->url(), {"--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.stderr_text;
  EXPECT_NE(dry.stdout_text.find("dry run: nothing was removed"), std::string::npos)
      << dry.stdout_text;
  EXPECT_NE(dry.stdout_text.find(
                "blobs to remove:      " + std::to_string(expected_removed.size()) + " "),
            std::string::npos)
      << dry.stdout_text;
  for (const std::string& digest : expected_removed) {
    EXPECT_NE(dry.stdout_text.find("blob " + digest + "\n"), std::string::npos) << digest << "\n"
                                                                                << dry.stdout_text;
    EXPECT_TRUE(isStored(digest)) << digest;
  }
  EXPECT_NE(dry.stdout_text.find("manifest " + dropped.manifest_digest + "\n"), std::string::npos)
      << dry.stdout_text;

  // The run removes exactly those files.
  CommandResult real = runGcCommand(outpost_->url(), {});
  ASSERT_EQ(real.exit_code, 0) << real.stderr_text;
  EXPECT_NE(
      real.stdout_text.find("blobs removed:      " + std::to_string(expected_removed.size()) + " "),
      std::string::npos)
      << real.stdout_text;
  EXPECT_EQ(real.stdout_text.find("\nblob sha256:"), std::string::npos) << real.stdout_text;
  for (const std::string& digest : expected_removed) {
    EXPECT_FALSE(isStored(digest)) << digest;
  }
  for (const std::string& digest : remaining) {
    EXPECT_TRUE(isStored(digest)) << digest;
  }
  uint64_t removed_bytes = 0;
  for (const BlobDescriptor& blob : dropped.allBlobs()) {
    removed_bytes += expected_removed.contains(blob.digest) ? blob.size : 0;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t runs, outpost_->metric("outpost_gc_runs_total"));
  EXPECT_EQ(runs, 2u);
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t blobs, outpost_->metric("outpost_gc_blobs_removed_total"));
  EXPECT_EQ(blobs, expected_removed.size());
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint64_t bytes, outpost_->metric("outpost_gc_bytes_removed_total"));
  EXPECT_EQ(bytes, removed_bytes);

  // The images that remain pull whole, the index with every platform image.
  for (const PushedImage* image : {&docker, &multi, &copy}) {
    expectPullsWhole(*skopeo, *image);
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir layout_dir, TempDir::create("pulled"));
  std::vector<std::string> flags = Skopeo::sourceFlags(endpoint);
  flags.push_back("--multi-arch=all");
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      CommandResult pulled, skopeo->copy(Skopeo::dockerReference(endpoint, "local/team/multi:v1"),
                                         "oci:" + layout_dir.path() + ":copy", flags));
  EXPECT_EQ(pulled.exit_code, 0) << pulled.stderr_text;

  // The deleted image's blobs are gone from it, and a second run finds nothing.
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult gone, send("GET", "/v2/local/team/app/blobs/" + *expected_removed.begin()));
  EXPECT_EQ(gone.status, 404);
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult again, send("POST", "/api/v1/gc"));
  ASSERT_EQ(again.status, 200) << again.body;
  nlohmann::json report = nlohmann::json::parse(again.body, nullptr, false);
  ASSERT_TRUE(report.is_object()) << again.body;
  EXPECT_EQ(report["blobs_removed"], 0) << again.body;
  EXPECT_EQ(report["manifests_removed"], 0) << again.body;
  EXPECT_EQ(report["dry_run"], false) << again.body;
}

TEST_F(GarbageCollectionTest, DefaultGracePeriodKeepsNewContent) {
  startServer("");
  const std::string url = outpost_->url();
  const std::string config = R"({"os":"linux"})";
  const std::string layer = randomBytes(10'000, 7);
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", config));
  OUTPOST_ASSERT_OK(pushBlob(url, "local/app", layer));
  const std::string manifest = ociImageManifest(config, layer);
  OUTPOST_ASSERT_OK(pushManifest(url, "local/app", "v1", manifest));
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      HttpResult removed, send("DELETE", "/v2/local/app/manifests/" + sha256Of(manifest).str()));
  ASSERT_EQ(removed.status, 202);

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult run, send("POST", "/api/v1/gc"));

  ASSERT_EQ(run.status, 200) << run.body;
  nlohmann::json report = nlohmann::json::parse(run.body, nullptr, false);
  ASSERT_TRUE(report.is_object()) << run.body;
  EXPECT_EQ(report["blobs_removed"], 0) << run.body;
  EXPECT_EQ(report["blobs_in_grace"], 2) << run.body;
  EXPECT_TRUE(isStored(sha256Of(layer).str()));
}

TEST_F(GarbageCollectionTest, RepeatedRunsDuringPushesLoseNothing) {
  // Blobs uploaded by a push stay unreferenced until its manifest arrives, so the grace period
  // must outlast one skopeo copy. Older content is still removed during the pushes.
  constexpr int kGraceSeconds = 6;
  startServer("  gc_grace_period: " + std::to_string(kGraceSeconds) +
              "s\n"
              "  gc_interval: 200ms\n");
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto skopeo, Skopeo::create());
  OUTPOST_ASSERT_OK_AND_ASSIGN(auto builder, ImageBuilder::create(*skopeo));
  const RegistryEndpoint endpoint = outpost_->endpoint();

  // Images pushed before the grace period, whose manifests are deleted one by one during the
  // pushes below, so that runs remove their blobs while new blobs arrive.
  constexpr int kImages = 4;
  std::vector<PushedImage> old_images;
  for (int i = 0; i < kImages; ++i) {
    OUTPOST_ASSERT_OK_AND_ASSIGN(
        PushedImage image,
        builder->pushImage(endpoint, "local/old-" + std::to_string(i) + ":v1", smallImage()));
    old_images.push_back(std::move(image));
  }
  std::this_thread::sleep_for(std::chrono::seconds(kGraceSeconds + 1));

  std::atomic<bool> is_pushing{true};
  std::atomic<int> completed_runs{0};
  std::atomic<int> unexpected_statuses{0};
  std::thread collector([&] {
    while (is_pushing.load()) {
      Expected<HttpResult> result = send("POST", "/api/v1/gc");
      if (result && result->status == 200) {
        ++completed_runs;
      } else if (!result || result->status != 409) {
        ++unexpected_statuses;
      }
    }
  });
  std::vector<PushedImage> pushed;
  for (int i = 0; i < kImages; ++i) {
    Expected<PushedImage> image =
        builder->pushImage(endpoint, "local/new-" + std::to_string(i) + ":v1", smallImage(),
                           i % 2 == 0 ? ManifestFormat::kOci : ManifestFormat::kDockerV2Schema2);
    EXPECT_TRUE(image) << image.status().toString();
    if (image) {
      pushed.push_back(std::move(*image));
    }
    deleteManifest(old_images[static_cast<size_t>(i)]);
  }
  std::vector<ImageSpec> platforms(2, smallImage());
  platforms[1].architecture = "arm64";
  Expected<PushedImage> index = builder->pushIndex(endpoint, "local/new-multi:v1", platforms);
  EXPECT_TRUE(index) << index.status().toString();
  if (index) {
    pushed.push_back(std::move(*index));
  }
  is_pushing = false;
  collector.join();
  ASSERT_FALSE(HasFailure());
  EXPECT_GT(completed_runs.load(), 0);
  EXPECT_EQ(unexpected_statuses.load(), 0);

  // Once the grace period has passed, only their manifests keep the new blobs in a last run.
  std::this_thread::sleep_for(std::chrono::seconds(kGraceSeconds + 1));
  CommandResult last = runGcCommand(outpost_->url(), {});
  ASSERT_EQ(last.exit_code, 0) << last.stderr_text;
  for (const PushedImage& image : pushed) {
    expectPullsWhole(*skopeo, image);
  }
  for (const PushedImage& image : old_images) {
    for (const BlobDescriptor& blob : image.allBlobs()) {
      EXPECT_FALSE(isStored(blob.digest)) << image.reference << " " << blob.digest;
    }
  }
}

TEST_F(GarbageCollectionTest, RejectsBadRequests) {
  startServer("");

  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult get, send("GET", "/api/v1/gc"));
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.header("Allow"), "POST");
  EXPECT_NE(get.body.find("UNSUPPORTED"), std::string::npos) << get.body;

  for (std::string_view value : {"maybe", "", "TRUE"}) {
    SCOPED_TRACE(value);
    OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult bad,
                                 send("POST", "/api/v1/gc?dry_run=" + std::string(value)));
    EXPECT_EQ(bad.status, 400) << bad.body;
    EXPECT_NE(bad.body.find("dry_run must be true or false"), std::string::npos) << bad.body;
  }
  OUTPOST_ASSERT_OK_AND_ASSIGN(HttpResult dry, send("POST", "/api/v1/gc?dry_run=1"));
  EXPECT_EQ(dry.status, 200) << dry.body;
  EXPECT_NE(dry.body.find("\"dry_run\":true"), std::string::npos) << dry.body;

  // Usage errors exit with 2, an unreachable server with 1.
  Expected<CommandResult> usage =
      run({OUTPOST_BINARY, "gc", "--dry-run", "--no-such-flag"}, RunOptions{.timeout_ms = 30'000});
  ASSERT_TRUE(usage) << usage.status().toString();
  EXPECT_EQ(usage->exit_code, 2) << usage->stderr_text;
  OUTPOST_ASSERT_OK_AND_ASSIGN(uint16_t closed_port, freePort());
  CommandResult unreachable =
      runGcCommand("http://127.0.0.1:" + std::to_string(closed_port), {"--dry-run"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_NE(unreachable.stderr_text.find("cannot connect"), std::string::npos)
      << unreachable.stderr_text;
}

TEST_F(GarbageCollectionTest, ConcurrentRunGetsConflict) {
  // An index with many local manifests makes a run last long enough to be seen running.
  OUTPOST_ASSERT_OK_AND_ASSIGN(TempDir data, TempDir::create("gc-data"));
  {
    Expected<std::unique_ptr<storage::Index>> index =
        storage::Index::open(fs::path(data.path()) / "index");
    ASSERT_TRUE(index) << index.status().toString();
    const std::string config = R"({"os":"linux"})";
    const std::string layer = "layer";
    constexpr int kManifests = 100'000;
    storage::Index::Batch batch;
    for (int i = 0; i < kManifests; ++i) {
      std::string body =
          ociImageManifest(config, layer, R"(,"annotations":{"n":")" + std::to_string(i) + "\"}");
      Digest digest = sha256Of(body);
      batch.putManifest(digest, {.media_type = std::string(kOciImageManifestType),
                                 .body = std::move(body),
                                 .created_ms = 1});
      batch.putLocalManifest("local", "app", digest, {.added_ms = 1});
      if (batch.size() >= 10'000) {
        ASSERT_TRUE((*index)->write(std::move(batch), storage::Index::WriteMode::kUnsynced).isOk());
      }
    }
    ASSERT_TRUE((*index)->write(std::move(batch), storage::Index::WriteMode::kUnsynced).isOk());
    ASSERT_TRUE((*index)->flushMemtables().isOk());
  }
  OutpostOptions options;
  options.locals_yaml = "  - name: local\n";
  options.data_dir = data.path();
  startServer(std::move(options));

  Expected<HttpResult> first = Status(StatusCode::kUnavailable, "the first run did not answer");
  std::thread runner([&] { first = send("POST", "/api/v1/gc?dry_run=true"); });
  bool is_running = false;
  for (int i = 0; i < 5000 && !is_running; ++i) {
    Expected<uint64_t> running = outpost_->metric("outpost_gc_running");
    is_running = running && *running == 1;
    if (!is_running) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  ASSERT_TRUE(is_running) << "the first run was never seen running";
  Expected<HttpResult> second = send("POST", "/api/v1/gc");
  CommandResult command = runGcCommand(outpost_->url(), {});
  runner.join();

  ASSERT_TRUE(second) << second.status().toString();
  EXPECT_EQ(second->status, 409) << second->body;
  EXPECT_NE(second->body.find("already running"), std::string::npos) << second->body;
  EXPECT_EQ(command.exit_code, 1) << command.stdout_text;
  EXPECT_NE(command.stderr_text.find("409"), std::string::npos) << command.stderr_text;
  ASSERT_TRUE(first) << first.status().toString();
  EXPECT_EQ(first->status, 200) << first->body;
  EXPECT_NE(first->body.find("\"manifests_marked\":100000"), std::string::npos)
      << first->body.substr(0, 400);
  OUTPOST_ASSERT_OK_AND_ASSIGN(
      uint64_t conflicts,
      outpost_->metric(R"(outpost_requests_total{route="admin",status="409"})"));
  EXPECT_GE(conflicts, 1u);
}

}  // namespace
}  // namespace outpost::integration
