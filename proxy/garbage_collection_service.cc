#include "proxy/garbage_collection_service.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/log.h"
#include "proxy/event_loop.h"
#include "proxy/manifest_check.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

// Maximum wait between scheduled runs, which keeps the deadline arithmetic in range. An interval
// above it (about 100 years) means no scheduled run in practice.
constexpr int64_t kMaxIntervalMs = int64_t{100} * 365 * 24 * 60 * 60 * 1000;

nlohmann::json digestList(const std::vector<Digest>& digests) {
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < digests.size() && i < kMaxListedDigests; ++i) {
    list.push_back(digests[i].str());
  }
  return list;
}

nlohmann::json reportJson(const storage::GcReport& report) {
  return {{"dry_run", report.is_dry_run},
          {"blobs_removed", report.blobs_removed},
          {"bytes_removed", report.bytes_removed},
          {"manifests_removed", report.manifests_removed},
          {"referrers_removed", report.referrers_removed},
          {"holds_removed", report.holds_removed},
          {"blobs_in_grace", report.blobs_in_grace},
          {"manifests_marked", report.manifests_marked},
          {"blobs_marked", report.blobs_marked},
          {"duration_ms", report.duration_ms},
          {"removed_blobs", digestList(report.removed_blobs)},
          {"removed_manifests", digestList(report.removed_manifests)}};
}

void respondReport(Exchange& exchange, const Expected<storage::GcReport>& report) {
  if (!report) {
    if (report.status().code() == StatusCode::kCancelled) {
      respondRegistryError(exchange, 503, error_code::kUnavailable,
                           "garbage collection stopped because the server is stopping");
      return;
    }
    respondRegistryError(exchange, 500, error_code::kUnknown,
                         "garbage collection failed: " + std::string(report.status().message()));
    return;
  }
  ResponseHead head(200);
  head.add("Content-Type", "application/json");
  exchange.respond(std::move(head), reportJson(*report).dump());
}

}  // namespace

Expected<storage::ManifestContent> readManifestContent(const storage::ManifestRecord& record) {
  OUTPOST_ASSIGN_OR_RETURN(ManifestReferences references,
                           checkPushedManifest(record.media_type, record.body));
  storage::ManifestContent content;
  for (const BlobReference& blob : references.blobs) {
    content.blobs.push_back(blob.digest);
  }
  content.manifests = std::move(references.manifests);
  return content;
}

GarbageCollectionService::GarbageCollectionService(storage::Index& index, storage::BlobStore& store,
                                                   const Clock& clock, int64_t interval_ms,
                                                   int64_t grace_period_ms)
    : collector_(index, store, clock, readManifestContent,
                 storage::GcOptions{.grace_period_ms = grace_period_ms}),
      interval_ms_(std::min(interval_ms, kMaxIntervalMs)) {}

GarbageCollectionService::~GarbageCollectionService() { stop(); }

Status GarbageCollectionService::start() {
  std::lock_guard lock(mutex_);
  if (is_started_) {
    return Status(StatusCode::kAlreadyExists, "garbage collection already started");
  }
  is_started_ = true;
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void GarbageCollectionService::stop() {
  // Cancelled first, so that a request rejected for the stop finds the run cancelled too.
  collector_.cancel();
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

Status GarbageCollectionService::requestRun(bool dry_run, RunCallback on_done) {
  {
    std::lock_guard lock(mutex_);
    if (!is_started_ || stop_requested_) {
      return unavailable(
          "garbage collection is not running because the server is starting or stopping");
    }
    if (is_running_ || pending_) {
      return Status(StatusCode::kAlreadyExists,
                    "a garbage collection is already running; try again when it has finished");
    }
    pending_ = Request{dry_run, std::move(on_done)};
  }
  wake_.notify_all();
  return Status::ok();
}

void GarbageCollectionService::run() {
  using SteadyClock = std::chrono::steady_clock;
  const bool is_scheduled = interval_ms_ > 0;
  auto next_run = SteadyClock::now() + std::chrono::milliseconds(interval_ms_);

  std::unique_lock lock(mutex_);
  while (!stop_requested_) {
    bool is_due = is_scheduled && SteadyClock::now() >= next_run;
    if (!pending_ && !is_due) {
      if (is_scheduled) {
        wake_.wait_until(lock, next_run);
      } else {
        wake_.wait(lock);
      }
      continue;
    }

    std::optional<Request> request = std::exchange(pending_, std::nullopt);
    is_running_ = true;
    lock.unlock();
    // A failed run is logged by the collector; the schedule tries again after the interval.
    Expected<storage::GcReport> report = collector_.collect(request && request->dry_run);
    if (report && !report->is_dry_run && on_swept_) {
      on_swept_(*report);
    }
    lock.lock();
    is_running_ = false;
    next_run = SteadyClock::now() + std::chrono::milliseconds(interval_ms_);
    if (request) {
      // Called after the run counts as ended, so that a client may start the next one as soon
      // as it has this one's report.
      lock.unlock();
      request->on_done(std::move(report));
      lock.lock();
    }
  }

  if (pending_) {
    Request request = std::move(*pending_);
    pending_.reset();
    lock.unlock();
    request.on_done(Status(StatusCode::kCancelled, "the server is stopping"));
  }
}

void GarbageCollectionService::handle(const std::shared_ptr<Exchange>& exchange) {
  const HttpRequest& request = exchange->request();
  if (request.method() != HttpMethod::kPost) {
    ResponseHead head;
    head.add("Allow", "POST");
    respondRegistryError(*exchange, 405, error_code::kUnsupported,
                         "/api/v1/gc answers POST only, which starts a garbage collection",
                         std::move(head));
    return;
  }
  bool dry_run = false;
  if (request.hasQueryParam("dry_run")) {
    std::string text = request.queryParam("dry_run");
    if (text == "true" || text == "1") {
      dry_run = true;
    } else if (text != "false" && text != "0") {
      respondRegistryError(*exchange, 400, error_code::kUnsupported,
                           "dry_run must be true or false, not \"" + text.substr(0, 64) + "\"");
      return;
    }
  }

  log::proxy().debug("garbage collection requested req={} dry_run={}", exchange->requestId(),
                     dry_run);
  EventLoop* loop = &exchange->loop();
  // The exchange moves into the task posted to its loop, so that it is released there.
  Status queued = requestRun(dry_run, [loop, exchange](Expected<storage::GcReport> report) mutable {
    loop->post([target = std::move(exchange), report = std::move(report)] {
      respondReport(*target, report);
    });
  });
  if (queued.code() == StatusCode::kAlreadyExists) {
    respondRegistryError(*exchange, 409, error_code::kUnavailable, queued.message());
    return;
  }
  if (!queued.isOk()) {
    respondRegistryError(*exchange, 503, error_code::kUnavailable, queued.message());
  }
}

}  // namespace outpost::proxy
