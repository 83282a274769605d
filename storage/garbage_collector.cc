#include "storage/garbage_collector.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <utility>

#include "base/log.h"

namespace outpost::storage {
namespace {

// Blobs or manifests removed per synced index batch.
constexpr size_t kRemovalBatchSize = 256;
// Records read between two checks for cancel().
constexpr uint64_t kRecordsPerCancelCheck = 4096;

int64_t subtractSaturating(int64_t value, int64_t amount) {
  int64_t result = 0;
  if (__builtin_sub_overflow(value, amount, &result)) {
    return amount > 0 ? INT64_MIN : INT64_MAX;
  }
  return result;
}

}  // namespace

std::shared_lock<std::shared_mutex> PushLock::lockShared() {
  std::lock_guard turnstile(turnstile_);
  return std::shared_lock(mutex_);
}

std::unique_lock<std::shared_mutex> PushLock::lockExclusive() {
  std::lock_guard turnstile(turnstile_);
  return std::unique_lock(mutex_);
}

GarbageCollector::GarbageCollector(Index& index, BlobStore& store, const Clock& clock,
                                   ManifestReader reader, GcOptions options)
    : index_(index), store_(store), clock_(clock), reader_(std::move(reader)), options_(options) {}

Expected<GcReport> GarbageCollector::collect(bool dry_run) {
  std::unique_lock run_lock(run_mutex_, std::try_to_lock);
  if (!run_lock.owns_lock()) {
    return Status(StatusCode::kAlreadyExists,
                  "a garbage collection is already running; try again when it has finished");
  }
  counters_.running.store(1);
  auto started = std::chrono::steady_clock::now();
  Expected<GcReport> report = run(dry_run);
  int64_t duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - started)
                            .count();
  counters_.running.store(0);

  if (!report) {
    counters_.failures.fetch_add(1, std::memory_order_relaxed);
    log::storage().error("garbage collection failed dry_run={} duration_ms={} error=\"{}\"",
                         dry_run, duration_ms, report.status().toString());
    return report;
  }
  report->duration_ms = duration_ms;
  counters_.runs.fetch_add(1, std::memory_order_relaxed);
  counters_.blobs_removed.fetch_add(report->is_dry_run ? 0 : report->blobs_removed,
                                    std::memory_order_relaxed);
  counters_.bytes_removed.fetch_add(report->is_dry_run ? 0 : report->bytes_removed,
                                    std::memory_order_relaxed);
  counters_.manifests_removed.fetch_add(report->is_dry_run ? 0 : report->manifests_removed,
                                        std::memory_order_relaxed);
  log::storage().info(
      "garbage collection finished dry_run={} blobs_removed={} bytes_removed={} "
      "manifests_removed={} referrers_removed={} holds_removed={} blobs_in_grace={} "
      "manifests_marked={} blobs_marked={} duration_ms={}",
      report->is_dry_run, report->blobs_removed, report->bytes_removed, report->manifests_removed,
      report->referrers_removed, report->holds_removed, report->blobs_in_grace,
      report->manifests_marked, report->blobs_marked, report->duration_ms);
  return report;
}

Expected<GcReport> GarbageCollector::run(bool dry_run) {
  GcReport report;
  report.is_dry_run = dry_run;
  const int64_t mark_start_ms = clock_.nowMs();
  const int64_t cutoff_ms = subtractSaturating(mark_start_ms, options_.grace_period_ms);

  Mark mark;
  OUTPOST_RETURN_IF_ERROR(markLocalManifests(mark));
  OUTPOST_ASSIGN_OR_RETURN(std::vector<Digest> held, findUnmarkedHeldBlobs(mark));
  OUTPOST_ASSIGN_OR_RETURN(std::vector<Digest> unmarked_manifests,
                           findUnmarkedManifests(mark, cutoff_ms));
  if (hooks_.after_mark) {
    hooks_.after_mark();
  }

  std::unique_lock<std::shared_mutex> exclusive;
  if (!dry_run) {
    exclusive = push_lock_.lockExclusive();
    if (hooks_.during_sweep) {
      hooks_.during_sweep();
    }
  }
  OUTPOST_RETURN_IF_ERROR(checkCancelled());
  // Manifests stored since the first pass spare what they reference.
  OUTPOST_RETURN_IF_ERROR(markLocalManifests(mark));
  report.manifests_marked = mark.manifests_parsed;
  report.blobs_marked = mark.blobs.size();

  Sweep sweep;
  OUTPOST_RETURN_IF_ERROR(chooseBlobs(held, mark, cutoff_ms, sweep, report));
  OUTPOST_RETURN_IF_ERROR(chooseManifests(unmarked_manifests, mark, cutoff_ms, sweep));
  if (dry_run) {
    for (const BlobCandidate& blob : sweep.blobs) {
      if (!blob.record) {
        ++report.holds_removed;
        continue;
      }
      ++report.blobs_removed;
      report.bytes_removed += blob.record->size;
      report.removed_blobs.push_back(blob.digest);
    }
    report.manifests_removed = sweep.manifests.size();
    report.referrers_removed = sweep.referrers.size();
    report.removed_manifests = sweep.manifests;
    return report;
  }
  OUTPOST_RETURN_IF_ERROR(removeBlobs(sweep, report));
  OUTPOST_RETURN_IF_ERROR(removeManifests(sweep, report));
  return report;
}

Status GarbageCollector::checkCancelled() const {
  if (is_cancelled_.load()) {
    return Status(StatusCode::kCancelled, "garbage collection cancelled because the server stops");
  }
  return Status::ok();
}

Status GarbageCollector::markLocalManifests(Mark& mark) {
  std::vector<Digest> unseen;
  uint64_t read = 0;
  bool is_cancelled = false;
  OUTPOST_RETURN_IF_ERROR(index_.forEachLocalManifest(
      [&](std::string_view, std::string_view, const Digest& digest, const ContentRecord&) {
        if (++read % kRecordsPerCancelCheck == 0 && !checkCancelled().isOk()) {
          is_cancelled = true;
          return false;
        }
        // A manifest that several images contain is listed once per image and parsed once.
        if (!mark.manifests.contains(digest)) {
          unseen.push_back(digest);
        }
        return true;
      }));
  if (is_cancelled) {
    return checkCancelled();
  }
  for (const Digest& digest : unseen) {
    OUTPOST_RETURN_IF_ERROR(markManifest(digest, mark));
  }
  return Status::ok();
}

Status GarbageCollector::markManifest(const Digest& root, Mark& mark) {
  std::vector<Digest> pending{root};
  while (!pending.empty()) {
    Digest digest = std::move(pending.back());
    pending.pop_back();
    if (!mark.manifests.insert(digest).second) {
      continue;
    }
    if (mark.manifests.size() % kRecordsPerCancelCheck == 0) {
      OUTPOST_RETURN_IF_ERROR(checkCancelled());
    }

    Expected<ManifestRecord> record = index_.getManifest(digest);
    if (!record && record.status().code() == StatusCode::kNotFound) {
      // Nothing can serve it, so nothing it referenced is needed through it.
      log::storage().warn("manifest of a local image has no record digest={}", digest.str());
      continue;
    }
    if (!record) {
      return record.status();
    }
    Expected<ManifestContent> content = reader_(*record);
    if (!content) {
      return corruption("manifest " + digest.str() +
                        " cannot be parsed, so its blobs are unknown and nothing is removed: " +
                        std::string(content.status().message()));
    }
    ++mark.manifests_parsed;
    for (Digest& blob : content->blobs) {
      mark.blobs.insert(std::move(blob));
    }
    for (Digest& child : content->manifests) {
      pending.push_back(std::move(child));
    }
  }
  return Status::ok();
}

Expected<std::vector<Digest>> GarbageCollector::findUnmarkedHeldBlobs(const Mark& mark) const {
  std::vector<Digest> held;
  OUTPOST_RETURN_IF_ERROR(index_.forEachHeldBlob([&](const Digest& digest) {
    if (!mark.blobs.contains(digest)) {
      held.push_back(digest);
    }
    return true;
  }));
  return held;
}

Expected<std::vector<Digest>> GarbageCollector::findUnmarkedManifests(const Mark& mark,
                                                                      int64_t cutoff_ms) const {
  std::unordered_set<Digest> unmarked;
  OUTPOST_RETURN_IF_ERROR(
      index_.forEachManifest([&](const Digest& digest, const ManifestRecord& record) {
        if (!mark.manifests.contains(digest) && record.created_ms < cutoff_ms) {
          unmarked.insert(digest);
        }
        return true;
      }));
  // A manifest that a remote repository caches stays.
  if (!unmarked.empty()) {
    OUTPOST_RETURN_IF_ERROR(index_.forEachLink([&](std::string_view, const Digest& digest) {
      unmarked.erase(digest);
      return true;
    }));
  }
  std::vector<Digest> sorted(unmarked.begin(), unmarked.end());
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

Status GarbageCollector::chooseBlobs(const std::vector<Digest>& held, const Mark& mark,
                                     int64_t cutoff_ms, Sweep& sweep, GcReport& report) const {
  std::vector<BlobCandidate> candidates;
  std::unordered_map<Digest, size_t> position;
  for (const Digest& digest : held) {
    if (!mark.blobs.contains(digest)) {
      position.emplace(digest, candidates.size());
      candidates.push_back(BlobCandidate{.digest = digest});
    }
  }
  if (candidates.empty()) {
    return Status::ok();
  }

  OUTPOST_RETURN_IF_ERROR(
      index_.forEachLocalBlob([&](std::string_view repository, std::string_view name,
                                  const Digest& digest, const ContentRecord& record) {
        auto found = position.find(digest);
        if (found != position.end()) {
          BlobCandidate& candidate = candidates[found->second];
          candidate.links.push_back({std::string(repository), std::string(name)});
          candidate.newest_link_ms = std::max(candidate.newest_link_ms, record.added_ms);
        }
        return true;
      }));

  for (BlobCandidate& candidate : candidates) {
    Expected<BlobRecord> record = index_.getBlob(candidate.digest);
    if (!record && record.status().code() != StatusCode::kNotFound) {
      return record.status();
    }
    if (record) {
      candidate.record = *record;
    }
    bool is_in_grace = candidate.newest_link_ms >= cutoff_ms ||
                       (candidate.record && candidate.record->created_ms >= cutoff_ms);
    if (is_in_grace) {
      ++report.blobs_in_grace;
      continue;
    }
    sweep.blobs.push_back(std::move(candidate));
  }
  return Status::ok();
}

Status GarbageCollector::chooseManifests(const std::vector<Digest>& unmarked, const Mark& mark,
                                         int64_t cutoff_ms, Sweep& sweep) const {
  for (const Digest& digest : unmarked) {
    if (mark.manifests.contains(digest)) {
      continue;
    }
    // Read again, since a remote repository may have fetched the manifest since the mark.
    Expected<ManifestRecord> record = index_.getManifest(digest);
    if (!record && record.status().code() == StatusCode::kNotFound) {
      continue;
    }
    if (!record) {
      return record.status();
    }
    if (record->created_ms < cutoff_ms) {
      sweep.manifests.push_back(digest);
    }
  }
  if (sweep.manifests.empty()) {
    return Status::ok();
  }

  std::unordered_set<Digest> removed(sweep.manifests.begin(), sweep.manifests.end());
  return index_.forEachReferrer([&](std::string_view repository, std::string_view name,
                                    const Digest& subject, const Digest& referrer) {
    if (removed.contains(referrer)) {
      sweep.referrers.push_back({std::string(repository), std::string(name), subject, referrer});
    }
    return true;
  });
}

Status GarbageCollector::removeBlobs(const Sweep& sweep, GcReport& report) {
  for (size_t first = 0; first < sweep.blobs.size(); first += kRemovalBatchSize) {
    OUTPOST_RETURN_IF_ERROR(checkCancelled());
    size_t end = std::min(sweep.blobs.size(), first + kRemovalBatchSize);
    Index::Batch batch;
    for (size_t i = first; i < end; ++i) {
      const BlobCandidate& blob = sweep.blobs[i];
      for (const BlobCandidate::Link& link : blob.links) {
        batch.deleteLocalBlob(link.repository, link.name, blob.digest);
      }
      batch.deleteHeldBlob(blob.digest);
      if (blob.record) {
        batch.deleteBlob(blob.digest);
      }
    }
    OUTPOST_RETURN_IF_ERROR(index_.write(std::move(batch), Index::WriteMode::kSynced));

    for (size_t i = first; i < end; ++i) {
      const BlobCandidate& blob = sweep.blobs[i];
      if (!blob.record) {
        ++report.holds_removed;
        log::storage().debug("held record without blob record removed digest={}",
                             blob.digest.str());
        continue;
      }
      if (Status removed = store_.remove(blob.digest);
          !removed.isOk() && removed.code() != StatusCode::kNotFound) {
        // The index no longer names the file, so nothing serves it, and fsck removes it.
        log::storage().error("collected blob file not removed digest={} error=\"{}\"",
                             blob.digest.str(), removed.toString());
        continue;
      }
      ++report.blobs_removed;
      report.bytes_removed += blob.record->size;
      report.removed_blobs.push_back(blob.digest);
      log::storage().debug("blob collected digest={} bytes={} links={}", blob.digest.str(),
                           blob.record->size, blob.links.size());
    }
  }
  return Status::ok();
}

Status GarbageCollector::removeManifests(const Sweep& sweep, GcReport& report) {
  // Referrers records go first: one left without its manifest would list a missing manifest.
  for (size_t first = 0; first < sweep.referrers.size(); first += kRemovalBatchSize) {
    size_t end = std::min(sweep.referrers.size(), first + kRemovalBatchSize);
    Index::Batch batch;
    for (size_t i = first; i < end; ++i) {
      const Referrer& referrer = sweep.referrers[i];
      batch.deleteReferrer(referrer.repository, referrer.name, referrer.subject, referrer.referrer);
    }
    OUTPOST_RETURN_IF_ERROR(index_.write(std::move(batch), Index::WriteMode::kSynced));
    report.referrers_removed += end - first;
  }

  for (size_t first = 0; first < sweep.manifests.size(); first += kRemovalBatchSize) {
    OUTPOST_RETURN_IF_ERROR(checkCancelled());
    size_t end = std::min(sweep.manifests.size(), first + kRemovalBatchSize);
    Index::Batch batch;
    for (size_t i = first; i < end; ++i) {
      batch.deleteManifest(sweep.manifests[i]);
    }
    OUTPOST_RETURN_IF_ERROR(index_.write(std::move(batch), Index::WriteMode::kSynced));
    report.manifests_removed += end - first;
    report.removed_manifests.insert(report.removed_manifests.end(),
                                    sweep.manifests.begin() + static_cast<ptrdiff_t>(first),
                                    sweep.manifests.begin() + static_cast<ptrdiff_t>(end));
  }
  return Status::ok();
}

}  // namespace outpost::storage
