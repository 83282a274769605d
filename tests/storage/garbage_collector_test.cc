#include "storage/garbage_collector.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "storage/blob_store.h"
#include "storage/index.h"
#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

using testing::TempFolder;

constexpr int64_t kHourMs = 60 * 60 * 1000;
constexpr std::string_view kImageType = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kIndexType = "application/vnd.oci.image.index.v1+json";

// Reads "config", "layers" and "manifests" descriptors, the fields the server's reader uses.
Expected<ManifestContent> readTestManifest(const ManifestRecord& record) {
  nlohmann::json body = nlohmann::json::parse(record.body, nullptr, false);
  if (!body.is_object()) {
    return invalidArgument("the manifest is not a JSON object");
  }
  ManifestContent content;
  auto add = [](const nlohmann::json& descriptor, std::vector<Digest>& out) {
    Expected<Digest> digest = Digest::parse(descriptor.value("digest", ""));
    if (digest) {
      out.push_back(*digest);
    }
  };
  if (body.contains("config")) {
    add(body["config"], content.blobs);
  }
  for (const nlohmann::json& layer : body.value("layers", nlohmann::json::array())) {
    add(layer, content.blobs);
  }
  for (const nlohmann::json& child : body.value("manifests", nlohmann::json::array())) {
    add(child, content.manifests);
  }
  return content;
}

std::string descriptor(const Digest& digest) {
  return R"({"mediaType":"application/octet-stream","digest":")" + digest.str() + R"(","size":1})";
}

std::string imageManifest(const Digest& config, const std::vector<Digest>& layers,
                          std::string_view label = "") {
  std::string body = R"({"schemaVersion":2,"config":)" + descriptor(config) + R"(,"layers":[)";
  for (size_t i = 0; i < layers.size(); ++i) {
    body += (i > 0 ? "," : "") + descriptor(layers[i]);
  }
  return body + R"(],"annotations":{"label":")" + std::string(label) + R"("}})";
}

std::string indexManifest(const std::vector<Digest>& children) {
  std::string body = R"({"schemaVersion":2,"manifests":[)";
  for (size_t i = 0; i < children.size(); ++i) {
    body += (i > 0 ? "," : "") + descriptor(children[i]);
  }
  return body + "]}";
}

class GarbageCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<BlobStore>> store = BlobStore::open(folder_.path());
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(store).value();
    Expected<std::unique_ptr<Index>> index = Index::open(folder_.path() / "index");
    ASSERT_TRUE(index) << index.status().toString();
    index_ = std::move(index).value();
    makeCollector(kHourMs);
  }

  void makeCollector(int64_t grace_period_ms) {
    collector_ = std::make_unique<GarbageCollector>(*index_, *store_, clock_, readTestManifest,
                                                    GcOptions{.grace_period_ms = grace_period_ms});
  }

  // Commits `bytes` and records it as an upload to one image does: held, indexed and linked.
  Digest pushBlob(std::string_view repository, std::string_view name, std::string_view bytes) {
    Digest digest = sha256Of(bytes);
    Expected<std::unique_ptr<BlobWriter>> writer = store_->createWriter();
    EXPECT_TRUE(writer) << writer.status().toString();
    if (!writer) {
      return digest;
    }
    EXPECT_TRUE((*writer)->append(bytes).isOk());
    Status committed = store_->commit(**writer, digest);
    EXPECT_TRUE(committed.isOk()) << committed.toString();
    int64_t now_ms = clock_.nowMs();
    Index::Batch batch;
    batch.putHeldBlob(digest);
    batch.putBlob(digest, {.size = bytes.size(), .created_ms = now_ms, .last_access_ms = now_ms});
    batch.putLocalBlob(repository, name, digest, {.added_ms = now_ms});
    Status written = index_->write(std::move(batch), Index::WriteMode::kSynced);
    EXPECT_TRUE(written.isOk()) << written.toString();
    return digest;
  }

  // Links a blob to another image, as a mount does.
  void mountBlob(std::string_view repository, std::string_view name, const Digest& digest) {
    Index::Batch batch;
    batch.putLocalBlob(repository, name, digest, {.added_ms = clock_.nowMs()});
    ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());
  }

  Digest pushManifest(std::string_view repository, std::string_view name, const std::string& body,
                      std::string_view media_type = kImageType) {
    Digest digest = sha256Of(body);
    int64_t now_ms = clock_.nowMs();
    Index::Batch batch;
    batch.putManifest(digest,
                      {.media_type = std::string(media_type), .body = body, .created_ms = now_ms});
    batch.putLocalManifest(repository, name, digest, {.added_ms = now_ms});
    Status written = index_->write(std::move(batch), Index::WriteMode::kSynced);
    EXPECT_TRUE(written.isOk()) << written.toString();
    return digest;
  }

  void deleteManifest(std::string_view repository, std::string_view name, const Digest& digest) {
    Index::Batch batch;
    batch.deleteLocalManifest(repository, name, digest);
    ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());
  }

  // Whether the blob's file, blob record and hold are all present.
  bool isBlobKept(const Digest& digest) const {
    return store_->contains(digest) && index_->getBlob(digest).hasValue() &&
           index_->isBlobHeld(digest);
  }

  // Whether the blob's file, blob record and hold are all gone.
  bool isBlobRemoved(const Digest& digest) const {
    return !store_->contains(digest) &&
           index_->getBlob(digest).status().code() == StatusCode::kNotFound &&
           !index_->isBlobHeld(digest);
  }

  bool hasManifestRecord(const Digest& digest) const {
    return index_->getManifest(digest).hasValue();
  }

  GcReport collect(bool dry_run = false) {
    Expected<GcReport> report = collector_->collect(dry_run);
    EXPECT_TRUE(report) << report.status().toString();
    return report ? *report : GcReport{};
  }

  TempFolder folder_;
  ManualClock clock_;
  std::unique_ptr<BlobStore> store_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<GarbageCollector> collector_;
};

TEST_F(GarbageCollectorTest, BlobsOfDeletedManifestGo) {
  Digest config = pushBlob("local", "app", "config");
  Digest kept_layer = pushBlob("local", "app", "layer one");
  Digest dropped_layer = pushBlob("local", "app", "layer two, longer");
  pushManifest("local", "app", imageManifest(config, {kept_layer}));
  Digest dropped = pushManifest("local", "app", imageManifest(config, {dropped_layer}));
  deleteManifest("local", "app", dropped);
  clock_.advanceMs(2 * kHourMs);

  GcReport report = collect();

  EXPECT_TRUE(isBlobKept(config));
  EXPECT_TRUE(isBlobKept(kept_layer));
  EXPECT_TRUE(isBlobRemoved(dropped_layer));
  EXPECT_EQ(index_->getLocalBlob("local", "app", dropped_layer).status().code(),
            StatusCode::kNotFound);
  EXPECT_FALSE(hasManifestRecord(dropped));
  EXPECT_EQ(report.blobs_removed, 1u);
  EXPECT_EQ(report.bytes_removed, std::string_view("layer two, longer").size());
  EXPECT_EQ(report.removed_blobs, std::vector<Digest>{dropped_layer});
  EXPECT_EQ(report.manifests_removed, 1u);
  EXPECT_EQ(report.removed_manifests, std::vector<Digest>{dropped});
  EXPECT_EQ(report.manifests_marked, 1u);
  EXPECT_EQ(report.blobs_marked, 2u);
  EXPECT_FALSE(report.is_dry_run);

  EXPECT_EQ(collector_->counters().runs.load(), 1u);
  EXPECT_EQ(collector_->counters().blobs_removed.load(), 1u);
  EXPECT_EQ(collector_->counters().bytes_removed.load(), report.bytes_removed);
  EXPECT_EQ(collector_->counters().manifests_removed.load(), 1u);
  EXPECT_EQ(collector_->counters().running.load(), 0u);

  // A second run finds nothing more.
  GcReport again = collect();
  EXPECT_EQ(again.blobs_removed, 0u);
  EXPECT_EQ(again.manifests_removed, 0u);
}

TEST_F(GarbageCollectorTest, SharedBlobStaysWhileOtherImageUsesIt) {
  Digest config = pushBlob("local", "app", "config");
  Digest shared = pushBlob("local", "app", "shared layer");
  Digest own = pushBlob("local", "app", "own layer");
  Digest app = pushManifest("local", "app", imageManifest(config, {shared, own}));
  // The other image is in another repository and got the blobs by mount.
  mountBlob("builds", "tool", config);
  mountBlob("builds", "tool", shared);
  pushManifest("builds", "tool", imageManifest(config, {shared}));
  deleteManifest("local", "app", app);
  clock_.advanceMs(2 * kHourMs);

  GcReport report = collect();

  EXPECT_TRUE(isBlobKept(config));
  EXPECT_TRUE(isBlobKept(shared));
  EXPECT_TRUE(isBlobRemoved(own));
  EXPECT_EQ(report.blobs_removed, 1u);
  EXPECT_TRUE(index_->getLocalBlob("builds", "tool", shared).hasValue());
}

TEST_F(GarbageCollectorTest, SameManifestInTwoImagesKeepsBlobs) {
  Digest config = pushBlob("local", "a", "config");
  Digest layer = pushBlob("local", "a", "layer");
  std::string body = imageManifest(config, {layer});
  Digest in_a = pushManifest("local", "a", body);
  mountBlob("local", "b", config);
  mountBlob("local", "b", layer);
  pushManifest("local", "b", body);
  deleteManifest("local", "a", in_a);
  clock_.advanceMs(2 * kHourMs);

  GcReport report = collect();

  EXPECT_TRUE(isBlobKept(config));
  EXPECT_TRUE(isBlobKept(layer));
  EXPECT_TRUE(hasManifestRecord(in_a));
  EXPECT_EQ(report.blobs_removed, 0u);
  EXPECT_EQ(report.manifests_removed, 0u);
}

TEST_F(GarbageCollectorTest, GracePeriodKeepsRecentContent) {
  Digest uploaded = pushBlob("local", "app", "uploaded, no manifest yet");

  GcReport early = collect();
  EXPECT_TRUE(isBlobKept(uploaded));
  EXPECT_EQ(early.blobs_in_grace, 1u);
  EXPECT_EQ(early.blobs_removed, 0u);

  // Exactly one grace period old still counts as within it.
  clock_.advanceMs(kHourMs);
  collect();
  EXPECT_TRUE(isBlobKept(uploaded));

  clock_.advanceMs(1);
  GcReport late = collect();
  EXPECT_TRUE(isBlobRemoved(uploaded));
  EXPECT_EQ(late.blobs_in_grace, 0u);
  EXPECT_EQ(late.blobs_removed, 1u);
}

TEST_F(GarbageCollectorTest, RecentMountKeepsOldBlob) {
  Digest blob = pushBlob("local", "app", "old blob");
  clock_.advanceMs(2 * kHourMs);
  // Mounted into another image just now: its manifest may follow.
  mountBlob("local", "other", blob);

  GcReport report = collect();

  EXPECT_TRUE(isBlobKept(blob));
  EXPECT_EQ(report.blobs_in_grace, 1u);
}

TEST_F(GarbageCollectorTest, IndexKeepsItsChildren) {
  Digest config = pushBlob("local", "multi", "config");
  Digest amd64_layer = pushBlob("local", "multi", "amd64 layer");
  Digest arm64_layer = pushBlob("local", "multi", "arm64 layer");
  Digest amd64 = pushManifest("local", "multi", imageManifest(config, {amd64_layer}, "amd64"));
  Digest arm64 = pushManifest("local", "multi", imageManifest(config, {arm64_layer}, "arm64"));
  Digest index = pushManifest("local", "multi", indexManifest({amd64, arm64}), kIndexType);
  // The child is deleted by digest, but the index still lists it.
  deleteManifest("local", "multi", amd64);
  clock_.advanceMs(2 * kHourMs);

  GcReport kept = collect();

  EXPECT_TRUE(isBlobKept(config));
  EXPECT_TRUE(isBlobKept(amd64_layer));
  EXPECT_TRUE(isBlobKept(arm64_layer));
  EXPECT_TRUE(hasManifestRecord(amd64));
  EXPECT_EQ(kept.blobs_removed, 0u);
  EXPECT_EQ(kept.manifests_removed, 0u);
  EXPECT_EQ(kept.manifests_marked, 3u);

  // Without the index, the child that lost its own record goes with its layer.
  deleteManifest("local", "multi", index);
  GcReport swept = collect();

  EXPECT_TRUE(isBlobRemoved(amd64_layer));
  EXPECT_TRUE(isBlobKept(config));
  EXPECT_TRUE(isBlobKept(arm64_layer));
  EXPECT_FALSE(hasManifestRecord(amd64));
  EXPECT_FALSE(hasManifestRecord(index));
  EXPECT_TRUE(hasManifestRecord(arm64));
  EXPECT_EQ(swept.manifests_removed, 2u);
}

TEST_F(GarbageCollectorTest, DryRunRemovesNothing) {
  Digest config = pushBlob("local", "app", "config");
  Digest layer = pushBlob("local", "app", "layer");
  Digest orphan_hold = sha256Of("held, never committed");
  Index::Batch hold;
  hold.putHeldBlob(orphan_hold);
  ASSERT_TRUE(index_->write(std::move(hold), Index::WriteMode::kSynced).isOk());
  Digest manifest = pushManifest("local", "app", imageManifest(config, {layer}));
  deleteManifest("local", "app", manifest);
  clock_.advanceMs(2 * kHourMs);

  GcReport dry = collect(true);

  EXPECT_TRUE(dry.is_dry_run);
  EXPECT_EQ(dry.blobs_removed, 2u);
  EXPECT_EQ(dry.bytes_removed, 6u + 5u);
  EXPECT_EQ(dry.holds_removed, 1u);
  EXPECT_EQ(dry.manifests_removed, 1u);
  EXPECT_TRUE(isBlobKept(config));
  EXPECT_TRUE(isBlobKept(layer));
  EXPECT_TRUE(index_->isBlobHeld(orphan_hold));
  EXPECT_TRUE(hasManifestRecord(manifest));
  EXPECT_EQ(collector_->counters().blobs_removed.load(), 0u);

  GcReport real = collect();
  EXPECT_EQ(real.removed_blobs, dry.removed_blobs);
  EXPECT_EQ(real.removed_manifests, dry.removed_manifests);
  EXPECT_EQ(real.holds_removed, 1u);
  EXPECT_TRUE(isBlobRemoved(config));
  EXPECT_TRUE(isBlobRemoved(layer));
  EXPECT_FALSE(index_->isBlobHeld(orphan_hold));
}

TEST_F(GarbageCollectorTest, RemoteCachedContentUntouched) {
  // A blob a remote cached: a record and a file, but no hold.
  Digest cached = sha256Of("cached layer");
  {
    Expected<std::unique_ptr<BlobWriter>> writer = store_->createWriter();
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->append("cached layer").isOk());
    ASSERT_TRUE(store_->commit(**writer, cached).isOk());
    ASSERT_TRUE(index_->putBlob(cached, {.size = 12, .created_ms = 1, .last_access_ms = 1}).isOk());
  }
  // A manifest a remote cached (linked) and one that nothing refers to.
  Digest linked = sha256Of("remote manifest");
  ASSERT_TRUE(
      index_->putManifest(linked, {.media_type = "m", .body = "remote manifest", .created_ms = 1})
          .isOk());
  ASSERT_TRUE(index_->putLink("dockerhub", linked).isOk());
  Digest unlinked = sha256Of("orphan manifest");
  ASSERT_TRUE(
      index_->putManifest(unlinked, {.media_type = "m", .body = "orphan manifest", .created_ms = 1})
          .isOk());
  clock_.advanceMs(2 * kHourMs);

  GcReport report = collect();

  EXPECT_TRUE(store_->contains(cached));
  EXPECT_TRUE(index_->getBlob(cached).hasValue());
  EXPECT_TRUE(hasManifestRecord(linked));
  EXPECT_FALSE(hasManifestRecord(unlinked));
  EXPECT_EQ(report.blobs_removed, 0u);
  EXPECT_EQ(report.removed_manifests, std::vector<Digest>{unlinked});
}

TEST_F(GarbageCollectorTest, ReferrersOfRemovedManifestGo) {
  Digest config = pushBlob("local", "app", "config");
  Digest layer = pushBlob("local", "app", "layer");
  Digest subject = pushManifest("local", "app", imageManifest(config, {layer}, "subject"));
  Digest signature = pushManifest("local", "app", imageManifest(config, {}, "signature"));
  Index::Batch referrer;
  referrer.putReferrer("local", "app", subject, signature);
  ASSERT_TRUE(index_->write(std::move(referrer), Index::WriteMode::kSynced).isOk());
  clock_.advanceMs(2 * kHourMs);

  // While the referrer is in the image, its record stays.
  collect();
  Expected<std::vector<Digest>> listed = index_->listReferrers("local", "app", subject);
  ASSERT_TRUE(listed);
  EXPECT_EQ(*listed, std::vector<Digest>{signature});

  deleteManifest("local", "app", signature);
  GcReport report = collect();

  EXPECT_EQ(report.referrers_removed, 1u);
  listed = index_->listReferrers("local", "app", subject);
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  EXPECT_FALSE(hasManifestRecord(signature));
  EXPECT_TRUE(hasManifestRecord(subject));
}

TEST_F(GarbageCollectorTest, HoldWithoutBlobRecordDropped) {
  Digest never_committed = sha256Of("upload that failed after its hold");
  Index::Batch hold;
  hold.putHeldBlob(never_committed);
  ASSERT_TRUE(index_->write(std::move(hold), Index::WriteMode::kSynced).isOk());

  GcReport report = collect();

  EXPECT_FALSE(index_->isBlobHeld(never_committed));
  EXPECT_EQ(report.holds_removed, 1u);
  EXPECT_EQ(report.blobs_removed, 0u);
}

TEST_F(GarbageCollectorTest, ManifestPushedAfterMarkSparesBlobs) {
  makeCollector(0);
  Digest config = pushBlob("local", "app", "config");
  Digest layer = pushBlob("local", "app", "layer");
  Digest first = pushManifest("local", "app", imageManifest(config, {layer}, "first"));
  deleteManifest("local", "app", first);
  clock_.advanceMs(2 * kHourMs);

  // Between the mark and the sweep, a push stores a manifest over the unreferenced blobs, as
  // LocalRepository does: under the push lock, after checking the image's blobs.
  std::optional<Digest> second;
  collector_->setHooksForTest({.after_mark = [&] {
    std::shared_lock push = collector_->lockForPush();
    ASSERT_TRUE(index_->getLocalBlob("local", "app", layer).hasValue());
    second = pushManifest("local", "app", imageManifest(config, {layer}, "second"));
  }});

  GcReport report = collect();

  EXPECT_TRUE(isBlobKept(config));
  EXPECT_TRUE(isBlobKept(layer));
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(hasManifestRecord(*second));
  EXPECT_EQ(report.blobs_removed, 0u);
  EXPECT_EQ(report.removed_manifests, std::vector<Digest>{first});
}

TEST_F(GarbageCollectorTest, WithoutPushAfterMarkSameBlobsGo) {
  makeCollector(0);
  Digest config = pushBlob("local", "app", "config");
  Digest layer = pushBlob("local", "app", "layer");
  Digest first = pushManifest("local", "app", imageManifest(config, {layer}, "first"));
  deleteManifest("local", "app", first);
  clock_.advanceMs(2 * kHourMs);

  GcReport report = collect();

  EXPECT_TRUE(isBlobRemoved(config));
  EXPECT_TRUE(isBlobRemoved(layer));
  EXPECT_EQ(report.blobs_removed, 2u);
}

TEST_F(GarbageCollectorTest, MountAfterMarkSparesBlob) {
  makeCollector(0);
  Digest blob = pushBlob("local", "app", "blob");
  clock_.advanceMs(2 * kHourMs);
  collector_->setHooksForTest({.after_mark = [&] {
    std::shared_lock push = collector_->lockForPush();
    mountBlob("local", "other", blob);
  }});

  GcReport report = collect();

  EXPECT_TRUE(isBlobKept(blob));
  EXPECT_EQ(report.blobs_in_grace, 1u);
}

TEST_F(GarbageCollectorTest, SweepExcludesPushes) {
  Digest blob = pushBlob("local", "app", "blob");
  clock_.advanceMs(2 * kHourMs);
  std::future<void> push;
  std::atomic<bool> is_blob_on_disk_when_push_ran{true};
  collector_->setHooksForTest({.during_sweep = [&] {
    push = std::async(std::launch::async, [&] {
      std::shared_lock lock = collector_->lockForPush();
      is_blob_on_disk_when_push_ran = store_->contains(blob);
    });
    // The push waits for the sweep, however long the sweep takes.
    EXPECT_EQ(push.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  }});

  collect();
  push.wait();

  EXPECT_FALSE(is_blob_on_disk_when_push_ran.load());
  EXPECT_TRUE(isBlobRemoved(blob));
}

TEST_F(GarbageCollectorTest, SecondRunRejectedWhileOneRuns) {
  Status second;
  collector_->setHooksForTest({.after_mark = [&] {
    second =
        std::async(std::launch::async, [&] { return collector_->collect(false).status(); }).get();
  }});

  collect();

  EXPECT_EQ(second.code(), StatusCode::kAlreadyExists) << second.toString();
}

TEST_F(GarbageCollectorTest, UnparsableManifestStopsRun) {
  Digest orphan = pushBlob("local", "app", "orphan");
  pushManifest("local", "app", "not json");
  clock_.advanceMs(2 * kHourMs);

  Expected<GcReport> report = collector_->collect(false);

  ASSERT_FALSE(report);
  EXPECT_EQ(report.status().code(), StatusCode::kCorruption) << report.status().toString();
  EXPECT_TRUE(isBlobKept(orphan));
  EXPECT_EQ(collector_->counters().failures.load(), 1u);
}

TEST_F(GarbageCollectorTest, MissingManifestRecordIsSkipped) {
  Digest orphan = pushBlob("local", "app", "orphan");
  Index::Batch batch;
  batch.putLocalManifest("local", "app", sha256Of("no record"), {.added_ms = 1});
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());
  clock_.advanceMs(2 * kHourMs);

  GcReport report = collect();

  EXPECT_TRUE(isBlobRemoved(orphan));
  EXPECT_EQ(report.manifests_marked, 0u);
}

TEST_F(GarbageCollectorTest, CancelledRunRemovesNothing) {
  Digest orphan = pushBlob("local", "app", "orphan");
  clock_.advanceMs(2 * kHourMs);
  collector_->cancel();

  Expected<GcReport> report = collector_->collect(false);

  ASSERT_FALSE(report);
  EXPECT_EQ(report.status().code(), StatusCode::kCancelled);
  EXPECT_TRUE(isBlobKept(orphan));
}

}  // namespace
}  // namespace outpost::storage
