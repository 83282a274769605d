// GarbageCollectionService: runs the garbage collection of local repository content
// (storage::GarbageCollector) on a thread of its own, on request and on a schedule.
//
//   POST /api/v1/gc[?dry_run=true]
//
// The request waits for the run and returns its report as JSON. The report counts what was
// removed (or, in a dry run, what would be), lists the digests of the removed blobs and manifests
// (at most kMaxListedDigests of each, while the counts are complete), and gives the duration.
// One run at a time:
// a request while a run is in progress, scheduled or requested, gets 409. With
// storage.gc_interval above 0, the thread also starts a run that long after the end of the
// previous one. Errors carry the registry error body.
// NOTE: like the rest of the admin API, this endpoint has no authentication yet.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "base/status.h"
#include "proxy/http_server.h"
#include "storage/blob_store.h"
#include "storage/garbage_collector.h"
#include "storage/index.h"

namespace outpost::proxy {

// Digests of each kind that a report lists.
inline constexpr size_t kMaxListedDigests = 1000;

// Reads what a stored manifest references, with the checks of a pushed manifest.
Expected<storage::ManifestContent> readManifestContent(const storage::ManifestRecord& record);

class GarbageCollectionService {
 public:
  using RunCallback = std::function<void(Expected<storage::GcReport>)>;

  // `index`, `store` and `clock` must outlive this object. `interval_ms` 0 runs only on request.
  GarbageCollectionService(storage::Index& index, storage::BlobStore& store, const Clock& clock,
                           int64_t interval_ms, int64_t grace_period_ms);
  // Calls stop().
  ~GarbageCollectionService();
  GarbageCollectionService(const GarbageCollectionService&) = delete;
  GarbageCollectionService& operator=(const GarbageCollectionService&) = delete;

  // Starts the thread. Call once.
  Status start();
  // Cancels a run in progress, completes a waiting request with kCancelled, and joins the
  // thread. Safe to call more than once and without start().
  void stop();

  // Queues a run. `on_done` runs on the service's thread with the report. Fails with
  // kAlreadyExists while a run is in progress or queued, and with kUnavailable before start()
  // or after stop().
  Status requestRun(bool dry_run, RunCallback on_done);

  // Handles /api/v1/gc on the loop thread. The response is sent from the loop once the run ends.
  void handle(const std::shared_ptr<Exchange>& exchange);

  storage::GarbageCollector& collector() { return collector_; }
  // Sets a function that runs on the service's thread after each run that removed content,
  // with its report. Call before start().
  void setOnSwept(std::function<void(const storage::GcReport&)> on_swept) {
    on_swept_ = std::move(on_swept);
  }

 private:
  struct Request {
    bool dry_run = false;
    RunCallback on_done;
  };

  void run();

  storage::GarbageCollector collector_;
  const int64_t interval_ms_;
  std::function<void(const storage::GcReport&)> on_swept_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::optional<Request> pending_;  // guarded by mutex_
  bool is_running_ = false;         // guarded by mutex_
  bool is_started_ = false;         // guarded by mutex_
  bool stop_requested_ = false;     // guarded by mutex_
  std::thread thread_;
};

}  // namespace outpost::proxy
