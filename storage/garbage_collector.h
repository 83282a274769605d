// GarbageCollector: removes the blobs and manifests that no image of a local repository
// references any more, while pushes and pulls go on.
//
// A run is a mark and a sweep.
//   1. Mark, without a lock: read every local_manifests record of every image and parse its
//      manifest (ManifestReader). Its config and layer blobs are referenced. The children of an
//      index are manifests, marked by digest and parsed in turn, whether or not their own
//      local_manifests record remains. The subject of a referrer is not marked.
//      Candidates are the held blobs that are not referenced, and the manifest records that are
//      neither marked nor linked to a remote repository (links family).
//   2. Sweep, under the exclusive push lock: read local_manifests again and parse every digest
//      the mark did not see, so that a manifest stored during the mark spares its content. Then
//      read every local_blobs record to find the candidates' links. A candidate stays when a
//      link to it was added, or its blob record created, at or after (mark start - grace
//      period), so that an upload or mount whose manifest is not pushed yet survives. A manifest
//      record created at or after that time stays too.
//      A swept blob loses its local_blobs links, its held record and its blob record in one
//      synced batch, and then its file. The record goes before the file, as in
//      DiskBudget::evict, so a crash between the two leaves an unindexed file that fsck removes.
//      A held record without a blob record is dropped, and its file, if any, is left alone.
//      A swept manifest loses its record and the referrers records that name it.
//
// Push lock. Every push step that checks local content and then writes a reference to it (a
// manifest store, an upload completion, a mount) holds lockForPush() from its check to its
// write. The sweep holds the lock exclusively from its second read to its last removal (a dry run
// takes no lock). A push step that finishes before the sweep has its references read by the
// sweep. A push step that starts after the sweep reads the index without the removed content: a
// manifest that needs it fails its check, and an upload writes the blob anew. Pulls take no lock.
// NOTE: push steps run on libuv's thread pool, so pushes that wait for a sweep occupy pool
// threads, and other blocking work (blob commits of remote caches) waits with them. The sweep
// reads local_manifests and local_blobs once each, which bounds that wait.
//
// Memory: a run keeps the digests of every referenced blob and parsed manifest in memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "storage/blob_store.h"
#include "storage/index.h"
#include "storage/index_record.h"

namespace outpost::storage {

// The references of a manifest that garbage collection follows.
struct ManifestContent {
  // Config and layer blobs of an image manifest.
  std::vector<Digest> blobs;
  // Child manifests of an index.
  std::vector<Digest> manifests;
};

// Parses a stored manifest. A failure stops the run before anything is removed, because the
// blobs of a manifest that cannot be read are unknown.
using ManifestReader = std::function<Expected<ManifestContent>(const ManifestRecord&)>;

struct GcOptions {
  // Unreferenced content added within this time before the mark started stays.
  int64_t grace_period_ms = int64_t{60} * 60 * 1000;
};

struct GcReport {
  bool is_dry_run = false;
  // Manifests parsed, and distinct blobs they reference.
  uint64_t manifests_marked = 0;
  uint64_t blobs_marked = 0;
  // Blobs removed with their files (or that a dry run would remove), and their bytes.
  uint64_t blobs_removed = 0;
  uint64_t bytes_removed = 0;
  // Unreferenced held blobs kept by the grace period.
  uint64_t blobs_in_grace = 0;
  // Held records dropped because their blob had no blob record.
  uint64_t holds_removed = 0;
  uint64_t manifests_removed = 0;
  uint64_t referrers_removed = 0;
  int64_t duration_ms = 0;
  std::vector<Digest> removed_blobs;
  std::vector<Digest> removed_manifests;
};

// Totals since start, for /metrics. Dry runs count as runs and remove nothing.
struct GcCounters {
  std::atomic<uint64_t> runs{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> blobs_removed{0};
  std::atomic<uint64_t> bytes_removed{0};
  std::atomic<uint64_t> manifests_removed{0};
  // 1 while a run is in progress.
  std::atomic<uint64_t> running{0};
};

// A readers-writer lock that admits a waiting writer before readers that arrive after it, so
// that a steady stream of pushes cannot keep a sweep waiting forever. A reader must not take
// it twice, and must take it before any other lock it holds with it.
class PushLock {
 public:
  std::shared_lock<std::shared_mutex> lockShared();
  std::unique_lock<std::shared_mutex> lockExclusive();

 private:
  // Held by a writer while it waits for the readers in, and briefly by each reader.
  std::mutex turnstile_;
  std::shared_mutex mutex_;
};

class GarbageCollector {
 public:
  // Points where a test can act during a run. Each runs on the thread of collect().
  struct HooksForTest {
    // After the mark, before the sweep takes the push lock.
    std::function<void()> after_mark;
    // Inside the sweep, with the push lock held exclusively (not called in a dry run).
    std::function<void()> during_sweep;
  };

  // `index`, `store` and `clock` must outlive this object.
  GarbageCollector(Index& index, BlobStore& store, const Clock& clock, ManifestReader reader,
                   GcOptions options);
  GarbageCollector(const GarbageCollector&) = delete;
  GarbageCollector& operator=(const GarbageCollector&) = delete;

  // Taken by push steps, see the file comment. Waits while a sweep runs.
  [[nodiscard]] std::shared_lock<std::shared_mutex> lockForPush() {
    return push_lock_.lockShared();
  }

  // Runs a mark and a sweep. A dry run takes no lock and removes nothing, and its report lists
  // what a run would remove at that moment. Fails with kAlreadyExists while another run is in
  // progress, kCancelled after cancel(), kCorruption when a local manifest cannot be parsed,
  // and with the index's error when a read or write fails. A failed run may have removed part
  // of what its report would have listed. BLOCKING: reads the index and unlinks files.
  Expected<GcReport> collect(bool dry_run);

  // Makes a run in progress, and every later one, stop with kCancelled at its next check.
  void cancel() { is_cancelled_.store(true); }

  const GcOptions& options() const { return options_; }
  const GcCounters& counters() const { return counters_; }
  void setHooksForTest(HooksForTest hooks) { hooks_ = std::move(hooks); }

 private:
  // The referenced blobs, and the manifests visited (parsed, or found missing).
  struct Mark {
    std::unordered_set<Digest> blobs;
    std::unordered_set<Digest> manifests;
    uint64_t manifests_parsed = 0;
  };
  // An unreferenced held blob, the images that link it, and its blob record when it has one.
  struct BlobCandidate {
    struct Link {
      std::string repository;
      std::string name;
    };
    Digest digest;
    std::vector<Link> links;
    int64_t newest_link_ms = INT64_MIN;
    std::optional<BlobRecord> record;
  };
  struct Referrer {
    std::string repository;
    std::string name;
    Digest subject;
    Digest referrer;
  };
  // The content a run removes.
  struct Sweep {
    std::vector<BlobCandidate> blobs;
    std::vector<Digest> manifests;
    std::vector<Referrer> referrers;
  };

  Expected<GcReport> run(bool dry_run);
  // Marks the manifests of every local_manifests record that `mark` has not seen yet.
  Status markLocalManifests(Mark& mark);
  // Marks `root` and what it references, following the children of an index.
  Status markManifest(const Digest& root, Mark& mark);
  Expected<std::vector<Digest>> findUnmarkedHeldBlobs(const Mark& mark) const;
  Expected<std::vector<Digest>> findUnmarkedManifests(const Mark& mark, int64_t cutoff_ms) const;
  // Picks the blobs to sweep from `held` and counts those kept by the grace period.
  Status chooseBlobs(const std::vector<Digest>& held, const Mark& mark, int64_t cutoff_ms,
                     Sweep& sweep, GcReport& report) const;
  Status chooseManifests(const std::vector<Digest>& unmarked, const Mark& mark, int64_t cutoff_ms,
                         Sweep& sweep) const;
  Status removeBlobs(const Sweep& sweep, GcReport& report);
  Status removeManifests(const Sweep& sweep, GcReport& report);
  // kCancelled after cancel().
  Status checkCancelled() const;

  Index& index_;
  BlobStore& store_;
  const Clock& clock_;
  ManifestReader reader_;
  GcOptions options_;
  GcCounters counters_;
  HooksForTest hooks_;
  PushLock push_lock_;
  // Held by the run in progress.
  std::mutex run_mutex_;
  std::atomic<bool> is_cancelled_{false};
};

}  // namespace outpost::storage
