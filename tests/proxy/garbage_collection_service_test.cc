#include "proxy/garbage_collection_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "base/clock.h"
#include "storage/blob_store.h"
#include "storage/index.h"
#include "tests/storage/temp_folder.h"

namespace outpost::proxy {
namespace {

constexpr auto kStateTimeout = std::chrono::seconds(10);

// Polls `condition` until it is true or kStateTimeout passes. Returns its last value.
bool waitFor(const std::function<bool()>& condition) {
  auto deadline = std::chrono::steady_clock::now() + kStateTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

std::string descriptor(std::string_view media_type, std::string_view bytes) {
  return R"({"mediaType":")" + std::string(media_type) + R"(","digest":")" + sha256Of(bytes).str() +
         R"(","size":)" + std::to_string(bytes.size()) + "}";
}

class GarbageCollectionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<storage::BlobStore>> store = storage::BlobStore::open(folder_.path());
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(store).value();
    Expected<std::unique_ptr<storage::Index>> index =
        storage::Index::open(folder_.path() / "index");
    ASSERT_TRUE(index) << index.status().toString();
    index_ = std::move(index).value();
  }

  std::unique_ptr<GarbageCollectionService> makeService(int64_t interval_ms) {
    return std::make_unique<GarbageCollectionService>(*index_, *store_, clock_, interval_ms,
                                                      60'000);
  }

  storage::testing::TempFolder folder_;
  ManualClock clock_;
  std::unique_ptr<storage::BlobStore> store_;
  std::unique_ptr<storage::Index> index_;
};

TEST_F(GarbageCollectionServiceTest, SecondRequestRejectedWhileRunning) {
  auto service = makeService(0);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  service->collector().setHooksForTest({.after_mark = [released] { released.wait(); }});
  ASSERT_TRUE(service->start().isOk());

  std::promise<Expected<storage::GcReport>> first;
  Status queued = service->requestRun(
      true, [&first](Expected<storage::GcReport> report) { first.set_value(std::move(report)); });
  ASSERT_TRUE(queued.isOk()) << queued.toString();
  ASSERT_TRUE(waitFor([&] { return service->collector().counters().running.load() == 1; }));

  Status second = service->requestRun(false, [](Expected<storage::GcReport>) {
    ADD_FAILURE() << "a rejected request must not run";
  });
  EXPECT_EQ(second.code(), StatusCode::kAlreadyExists) << second.toString();

  release.set_value();
  Expected<storage::GcReport> report = first.get_future().get();
  ASSERT_TRUE(report) << report.status().toString();
  EXPECT_TRUE(report->is_dry_run);

  // Once the run has ended, the next request is accepted.
  std::promise<void> third;
  ASSERT_TRUE(
      service->requestRun(false, [&third](Expected<storage::GcReport>) { third.set_value(); })
          .isOk());
  third.get_future().wait();
  service->stop();
}

TEST_F(GarbageCollectionServiceTest, StopCancelsRunInProgress) {
  auto service = makeService(0);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  service->collector().setHooksForTest({.after_mark = [released] { released.wait(); }});
  ASSERT_TRUE(service->start().isOk());
  std::promise<Status> outcome;
  ASSERT_TRUE(service
                  ->requestRun(false,
                               [&outcome](Expected<storage::GcReport> report) {
                                 outcome.set_value(report.status());
                               })
                  .isOk());
  ASSERT_TRUE(waitFor([&] { return service->collector().counters().running.load() == 1; }));

  std::thread stopper([&] { service->stop(); });
  // Requests are rejected as unavailable once stop() has cancelled the run. The run checks for
  // the cancel when the hook returns.
  EXPECT_TRUE(waitFor([&] {
    return service->requestRun(false, [](Expected<storage::GcReport>) {}).code() ==
           StatusCode::kUnavailable;
  }));
  release.set_value();
  stopper.join();

  EXPECT_EQ(outcome.get_future().get().code(), StatusCode::kCancelled);
}

TEST_F(GarbageCollectionServiceTest, RequestBeforeStartUnavailable) {
  auto service = makeService(0);

  Status queued = service->requestRun(false, [](Expected<storage::GcReport>) {});

  EXPECT_EQ(queued.code(), StatusCode::kUnavailable) << queued.toString();
}

TEST_F(GarbageCollectionServiceTest, ScheduleRunsRepeatedly) {
  auto service = makeService(10);
  ASSERT_TRUE(service->start().isOk());

  EXPECT_TRUE(waitFor([&] { return service->collector().counters().runs.load() >= 3; }));
  service->stop();
}

TEST_F(GarbageCollectionServiceTest, NoScheduledRunWithoutInterval) {
  auto service = makeService(0);
  ASSERT_TRUE(service->start().isOk());

  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  EXPECT_EQ(service->collector().counters().runs.load(), 0u);
  service->stop();
}

TEST(ReadManifestContentTest, ReadsImageAndIndex) {
  const std::string config = R"({"os":"linux"})";
  const std::string layer = "layer bytes";
  storage::ManifestRecord image{
      .media_type = "application/vnd.oci.image.manifest.v1+json",
      .body = R"({"schemaVersion":2,"config":)" +
              descriptor("application/vnd.oci.image.config.v1+json", config) + R"(,"layers":[)" +
              descriptor("application/vnd.oci.image.layer.v1.tar", layer) + "]}"};

  Expected<storage::ManifestContent> image_content = readManifestContent(image);

  ASSERT_TRUE(image_content) << image_content.status().toString();
  EXPECT_EQ(image_content->blobs, (std::vector<Digest>{sha256Of(config), sha256Of(layer)}));
  EXPECT_TRUE(image_content->manifests.empty());

  storage::ManifestRecord index{
      .media_type = "application/vnd.oci.image.index.v1+json",
      .body = R"({"schemaVersion":2,"manifests":[)" +
              descriptor("application/vnd.oci.image.manifest.v1+json", image.body) + "]}"};

  Expected<storage::ManifestContent> index_content = readManifestContent(index);

  ASSERT_TRUE(index_content) << index_content.status().toString();
  EXPECT_TRUE(index_content->blobs.empty());
  EXPECT_EQ(index_content->manifests, std::vector<Digest>{sha256Of(image.body)});
}

TEST(ReadManifestContentTest, RejectsInvalidManifest) {
  storage::ManifestRecord broken{.media_type = "application/vnd.oci.image.manifest.v1+json",
                                 .body = "{\"schemaVersion\":2"};

  Expected<storage::ManifestContent> content = readManifestContent(broken);

  EXPECT_FALSE(content);
}

}  // namespace
}  // namespace outpost::proxy
