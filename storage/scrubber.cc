#include "storage/scrubber.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "base/log.h"
#include "base/unique_fd.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::storage {
namespace {

// One byte in the rate limiter's units.
constexpr int64_t kUnitsPerByte = 1000;
// Smallest read, so that a very low rate does not turn into one system call per few bytes.
constexpr uint64_t kMinReadBytes = 4096;
// Shortest time from the start of one pass to the start of the next.
constexpr int64_t kMinPassSpacingMs = 1000;
// Maximum duration of one wait on the condition variable.
constexpr int64_t kMaxWaitSliceMs = 60 * 60 * 1000;

}  // namespace

ByteRateLimiter::ByteRateLimiter(uint64_t bytes_per_second, uint64_t burst_bytes, int64_t now_ms)
    : bytes_per_second_(static_cast<int64_t>(bytes_per_second)),
      capacity_units_(static_cast<int64_t>(burst_bytes) * kUnitsPerByte),
      units_(capacity_units_),
      last_refill_ms_(now_ms) {}

int64_t ByteRateLimiter::take(uint64_t bytes, int64_t now_ms) {
  refill(now_ms);
  units_ -= static_cast<int64_t>(bytes) * kUnitsPerByte;
  if (units_ >= 0) {
    return 0;
  }
  // Round up, so that the bucket is out of debt when the wait ends.
  return (-units_ + bytes_per_second_ - 1) / bytes_per_second_;
}

void ByteRateLimiter::refill(int64_t now_ms) {
  if (now_ms <= last_refill_ms_) {
    return;
  }
  int64_t elapsed_ms = now_ms - last_refill_ms_;
  last_refill_ms_ = now_ms;

  // Compare before multiplying, because a long pause times a high rate could overflow int64_t,
  // and the bucket is full by then anyway.
  int64_t missing_units = capacity_units_ - units_;
  if (elapsed_ms >= missing_units / bytes_per_second_ + 1) {
    units_ = capacity_units_;
    return;
  }
  units_ = std::min(capacity_units_, units_ + elapsed_ms * bytes_per_second_);
}

Scrubber::Scrubber(Index& index, BlobStore& store, const ScrubOptions& options,
                   const Clock& clock)
    : index_(index), store_(store), options_(options), clock_(clock) {}

Scrubber::~Scrubber() { stop(); }

Status Scrubber::start() {
  if (is_started_ || isStopRequested()) {
    return Status(StatusCode::kAlreadyExists, "the scrubber was already started or stopped");
  }
  if (options_.bytes_per_second == 0 || options_.bytes_per_second > kMaxScrubBytesPerSecond) {
    return invalidArgument("scrub rate " + std::to_string(options_.bytes_per_second) +
                           " bytes per second is outside 1 to " +
                           std::to_string(kMaxScrubBytesPerSecond));
  }
  if (options_.chunk_bytes == 0 || options_.chunk_bytes > kMaxScrubChunkBytes) {
    return invalidArgument("scrub chunk of " + std::to_string(options_.chunk_bytes) +
                           " bytes is outside 1 to " + std::to_string(kMaxScrubChunkBytes));
  }
  if (options_.pass_interval_ms < 0) {
    return invalidArgument("scrub pass interval " + std::to_string(options_.pass_interval_ms) +
                           " ms is negative");
  }

  is_started_ = true;
  buffer_.resize(readSizeBytes());
  limiter_ = std::make_unique<ByteRateLimiter>(options_.bytes_per_second, buffer_.size(),
                                               clock_.nowMs());
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void Scrubber::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_.store(true);
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Scrubber::wakeForTest() {
  // Taking the mutex orders the notification after the waiter's last look at the clock.
  { std::lock_guard lock(mutex_); }
  wake_.notify_all();
}

uint64_t Scrubber::readSizeBytes() const {
  uint64_t one_second = std::max(options_.bytes_per_second, kMinReadBytes);
  return std::min(options_.chunk_bytes, one_second);
}

void Scrubber::run() {
  log::storage().info("scrub started bytes_per_second={} pass_interval_ms={} read_bytes={}",
                      options_.bytes_per_second, options_.pass_interval_ms, buffer_.size());
  while (!isStopRequested()) {
    int64_t pass_started_ms = clock_.nowMs();
    PassResult result = runPass();
    if (result == PassResult::kStopped) {
      break;
    }

    int64_t now_ms = clock_.nowMs();
    int64_t deadline_ms = options_.pass_interval_ms > INT64_MAX - now_ms
                              ? INT64_MAX
                              : now_ms + options_.pass_interval_ms;
    // An empty or tiny store with a zero interval would otherwise run passes back to back.
    deadline_ms = std::max(deadline_ms, pass_started_ms + kMinPassSpacingMs);
    if (!waitUntil(deadline_ms)) {
      break;
    }
  }
  log::storage().info("scrub stopped passes={} blobs_verified={} corrupt_removed={}",
                      counters_.passes_completed.load(), counters_.blobs_verified.load(),
                      counters_.corrupt_removed.load());
}

Scrubber::PassResult Scrubber::runPass() {
  int64_t started_ms = clock_.nowMs();
  uint64_t bytes_before = counters_.bytes_verified.load();
  uint64_t corrupt_before = counters_.corrupt_removed.load();
  uint64_t missing_before = counters_.missing_removed.load();
  uint64_t blobs_seen = 0;

  Status walked = index_.forEachBlob(
      [this, &blobs_seen](const Digest& digest, const BlobRecord& record) {
        if (isStopRequested()) {
          return false;
        }
        ++blobs_seen;
        checkBlob(digest, record);
        return !isStopRequested();
      },
      [](std::string_view key, const Status& reason) {
        log::storage().warn(
            "scrub skipped a damaged blob record key_bytes={} error=\"{}\" hint=\"stop the "
            "server and run outpost fsck --repair\"",
            key.size(), reason.toString());
      });

  if (isStopRequested()) {
    return PassResult::kStopped;
  }
  if (!walked.isOk()) {
    log::storage().error("scrub pass failed blobs_checked={} error=\"{}\" retry_in_ms={}",
                         blobs_seen, walked.toString(), options_.pass_interval_ms);
    return PassResult::kFailed;
  }

  counters_.passes_completed.fetch_add(1);
  log::storage().info(
      "scrub pass completed blobs_checked={} bytes={} corrupt_removed={} missing_removed={} "
      "duration_ms={}",
      blobs_seen, counters_.bytes_verified.load() - bytes_before,
      counters_.corrupt_removed.load() - corrupt_before,
      counters_.missing_removed.load() - missing_before, clock_.nowMs() - started_ms);
  return PassResult::kCompleted;
}

void Scrubber::checkBlob(const Digest& digest, const BlobRecord& record) {
  Expected<BlobFile> file = store_.openBlob(digest);
  if (!file) {
    if (file.status().code() == StatusCode::kNotFound) {
      removeMissing(digest);
      return;
    }
    log::storage().error("scrub could not open blob digest={} error=\"{}\"", digest.str(),
                         file.status().toString());
    return;
  }

  // A size mismatch needs no read: the bytes cannot hash to the digest the record was made for.
  if (file->size != record.size) {
    removeCorrupt(digest, *file,
                  "reason=size_mismatch expected_bytes=" + std::to_string(record.size) +
                      " file_bytes=" + std::to_string(file->size));
    return;
  }

  Digest actual = digest;
  ReadResult read = readAndHash(digest, *file, &actual);
  if (read != ReadResult::kDone) {
    return;
  }
  if (actual != digest) {
    removeCorrupt(digest, *file, "reason=digest_mismatch actual=" + actual.str());
    return;
  }
  counters_.blobs_verified.fetch_add(1);
}

Scrubber::ReadResult Scrubber::readAndHash(const Digest& digest, const BlobFile& file,
                                           Digest* actual) {
  DigestHasher hasher(digest.algorithm());
  uint64_t offset = 0;
  while (offset < file.size) {
    if (isStopRequested()) {
      return ReadResult::kStopped;
    }
    // Reading stops at the size fstat reported, so no read is charged for the end of file.
    size_t read_bytes = static_cast<size_t>(std::min<uint64_t>(buffer_.size(), file.size - offset));
    int64_t wait_ms = limiter_->take(read_bytes, clock_.nowMs());
    if (wait_ms > 0 && !waitUntil(clock_.nowMs() + wait_ms)) {
      return ReadResult::kStopped;
    }

    ssize_t count =
        retryOnEintr([&] { return ::read(file.fd.get(), buffer_.data(), read_bytes); });
    if (count < 0) {
      Status status =
          errnoStatus("reading blob " + store_.pathFor(digest, file.tier).string(), errno);
      log::storage().error("scrub could not read blob digest={} error=\"{}\"", digest.str(),
                           status.toString());
      return ReadResult::kFailed;
    }
    if (count == 0) {
      break;  // the file shrank after fstat, and the digest comparison reports it
    }
    auto bytes = static_cast<uint64_t>(count);
    hasher.update(std::span<const std::byte>(buffer_.data(), bytes));
    counters_.bytes_verified.fetch_add(bytes);
    offset += bytes;
  }
  *actual = hasher.finish();
  return ReadResult::kDone;
}

void Scrubber::removeMissing(const Digest& digest) {
  // The pass reads from a snapshot, so a blob evicted since then has neither record nor file.
  Expected<BlobRecord> current = index_.getBlob(digest);
  if (!current) {
    if (current.status().code() != StatusCode::kNotFound) {
      log::storage().error("scrub could not read blob record digest={} error=\"{}\"",
                           digest.str(), current.status().toString());
    }
    return;
  }

  Status deleted = index_.deleteBlob(digest);
  if (!deleted.isOk()) {
    log::storage().error("scrub found blob file missing, deleting its record failed digest={} "
                         "error=\"{}\"",
                         digest.str(), deleted.toString());
    return;
  }
  // The callback runs before the count, so that a reader of the count finds its effect done.
  if (on_removed_) {
    on_removed_(digest);
  }
  counters_.missing_removed.fetch_add(1);
  log::storage().error("scrub found blob file missing, record deleted digest={} tier={}",
                       digest.str(), current->tier);
}

void Scrubber::removeCorrupt(const Digest& digest, const BlobFile& file,
                             const std::string& reason) {
  // BlobStore::commit replaces a file of the wrong size, and a move between tiers copies a
  // blob, so the address may by now name a new, good file. Remove only the file that was
  // checked, in the tier it was found in.
  std::filesystem::path path = store_.pathFor(digest, file.tier);
  struct stat checked {};
  struct stat current {};
  if (::fstat(file.fd.get(), &checked) != 0 || ::stat(path.c_str(), &current) != 0 ||
      checked.st_ino != current.st_ino || checked.st_dev != current.st_dev) {
    log::storage().info("scrub skipped a blob replaced during its check digest={}",
                        digest.str());
    return;
  }

  Status deleted = index_.deleteBlob(digest);
  if (!deleted.isOk()) {
    log::storage().error(
        "scrub found corrupt blob, deleting its record failed digest={} {} error=\"{}\"",
        digest.str(), reason, deleted.toString());
    return;
  }
  Status removed = store_.remove(digest);
  if (!removed.isOk() && removed.code() != StatusCode::kNotFound) {
    // The file stays without a record, and outpost fsck reports it. A later commit of the
    // digest keeps a file of the right size, so the next pass may find it corrupt again.
    log::storage().error(
        "scrub found corrupt blob, record deleted but removing the file failed digest={} {} "
        "error=\"{}\"",
        digest.str(), reason, removed.toString());
  }
  if (on_removed_) {
    on_removed_(digest);
  }
  counters_.corrupt_removed.fetch_add(1);
  log::storage().error("scrub removed corrupt blob digest={} {} path={}", digest.str(), reason,
                       path.string());
}

bool Scrubber::waitUntil(int64_t deadline_ms) {
  std::unique_lock lock(mutex_);
  while (!stop_requested_.load()) {
    int64_t remaining_ms = deadline_ms - clock_.nowMs();
    if (remaining_ms <= 0) {
      return true;
    }
    // Long waits go in slices, because steady_clock::now() plus a duration of centuries
    // overflows inside wait_for.
    wake_.wait_for(lock, std::chrono::milliseconds(std::min(remaining_ms, kMaxWaitSliceMs)));
  }
  return false;
}

}  // namespace outpost::storage
