// Scrubber: a background thread that re-reads every indexed blob at a limited byte rate and
// checks it against its digest, so that a blob damaged on disk is found and removed before a
// client is served its bytes.
//
// A pass walks the blob records in key order (Index::forEachBlob, from a snapshot taken when the
// pass starts) and checks each one:
//   file missing           delete the index record
//   file size != record   delete the index record, then unlink the file (corrupt)
//   bytes hash elsewhere   delete the index record, then unlink the file (corrupt)
// The record goes first, as BlobStore::remove requires, so a crash in between leaves an
// unindexed file and never a record without a file. A reader that opened the file earlier keeps
// reading it after the unlink. The next request for the digest is a cache miss and fetches the
// blob from the upstream again. Every removal is logged at error level.
//
// After a pass the thread waits pass_interval_ms, measured from the end of the pass, and then
// starts the next one from the first record. Passes start at least 1 s apart whatever the
// interval, so that an empty store does not keep a core busy. A pass that fails to iterate the
// index waits the same time before the next try.
//
// NOTE: every start() begins at the first record, and the position is not saved. A server that
// restarts more often than a pass takes (a full store at the configured rate) checks the blobs
// at the start of the key order again and again and never reaches the last ones.
//
// The thread does blocking reads, so it is a plain std::thread and never an event loop.
// It does not touch the access times of the blobs it reads, so scrubbing does not change which
// blobs eviction picks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"

namespace outpost::storage {

class BlobStore;
class Index;
struct BlobFile;
struct BlobRecord;

// Maximum scrub rate, 1 TiB/s, which keeps the rate limiter's arithmetic inside int64_t.
inline constexpr uint64_t kMaxScrubBytesPerSecond = uint64_t{1} << 40;
// Maximum read size, which is also the size of the read buffer the scrubber allocates.
inline constexpr uint64_t kMaxScrubChunkBytes = uint64_t{64} << 20;

struct ScrubOptions {
  // Average read rate, from 1 to kMaxScrubBytesPerSecond. A configured rate of 0 turns the scrub
  // off, so the owner does not start a Scrubber at all.
  uint64_t bytes_per_second = uint64_t{8} << 20;
  // Wait between the end of one pass and the start of the next. 0 starts over at once, but
  // passes start at least 1 s apart.
  int64_t pass_interval_ms = int64_t{24} * 60 * 60 * 1000;
  // Size of one read, from 1 to kMaxScrubChunkBytes. A read never exceeds one second of the
  // rate either (but is at least 4 KiB), so a low rate reads in small steps and not in bursts.
  uint64_t chunk_bytes = uint64_t{1} << 20;
};

// Running totals since start(), for /metrics. Any thread may read them.
struct ScrubCounters {
  // Bytes read and hashed, including those of blobs that turned out corrupt.
  std::atomic<uint64_t> bytes_verified{0};
  // Blobs whose bytes matched their digest and size.
  std::atomic<uint64_t> blobs_verified{0};
  // Blobs removed because of a size or digest mismatch.
  std::atomic<uint64_t> corrupt_removed{0};
  // Index records removed because their blob file was missing.
  std::atomic<uint64_t> missing_removed{0};
  // Passes that visited every blob record.
  std::atomic<uint64_t> passes_completed{0};
};

// A token bucket over bytes. It starts full with `burst_bytes`, refills at `bytes_per_second`
// up to `burst_bytes`, and may go into debt by one take. Not thread-safe.
class ByteRateLimiter {
 public:
  // Requires 1 <= bytes_per_second <= kMaxScrubBytesPerSecond and
  // burst_bytes <= kMaxScrubChunkBytes.
  ByteRateLimiter(uint64_t bytes_per_second, uint64_t burst_bytes, int64_t now_ms);

  // Takes `bytes` (at most kMaxScrubChunkBytes) from the bucket and returns how many
  // milliseconds the caller must wait before it reads them: 0 while the bucket is not in debt,
  // otherwise the time until the refill pays the debt. A clock that moves backwards counts as
  // not moving.
  int64_t take(uint64_t bytes, int64_t now_ms);

 private:
  void refill(int64_t now_ms);

  // The bucket counts in thousandths of a byte, so that it refills by exactly
  // bytes_per_second_ units per millisecond.
  int64_t bytes_per_second_;
  int64_t capacity_units_;
  int64_t units_;
  int64_t last_refill_ms_;
};

class Scrubber {
 public:
  // `index`, `store` and `clock` must outlive the scrubber. Nothing runs until start().
  Scrubber(Index& index, BlobStore& store, const ScrubOptions& options,
           const Clock& clock = SystemClock::instance());
  // Calls stop().
  ~Scrubber();
  Scrubber(const Scrubber&) = delete;
  Scrubber& operator=(const Scrubber&) = delete;

  // Starts the scrub thread, whose first pass begins at once. Fails with kInvalidArgument for
  // options out of range, and with kAlreadyExists when called a second time or after stop().
  Status start();

  // Stops the thread and joins it. Returns after the read in progress, because the thread
  // checks for a stop between reads and waits on a condition variable, never in a sleep.
  // Safe to call more than once and without start(). Call it from the owner's thread only.
  void stop();

  // Wakes a waiting thread so that it reads the clock again. Tests call it after they advance a
  // ManualClock, because a wait otherwise lasts its full length in real time.
  void wakeForTest();

  const ScrubCounters& counters() const { return counters_; }

  // Sets a function that runs on the scrub thread after the scrub deleted the index record of a
  // corrupt or missing blob, so that the disk budget stops counting it. Call it before start().
  void setOnRemoved(std::function<void(const Digest&)> on_removed) {
    on_removed_ = std::move(on_removed);
  }

 private:
  enum class PassResult { kCompleted, kFailed, kStopped };
  enum class ReadResult { kDone, kFailed, kStopped };

  void run();
  PassResult runPass();
  void checkBlob(const Digest& digest, const BlobRecord& record);
  // Reads the whole file at the configured rate and stores the digest of its bytes, computed
  // with the algorithm of `digest`, in *actual.
  ReadResult readAndHash(const Digest& digest, const BlobFile& file, Digest* actual);
  void removeMissing(const Digest& digest);
  void removeCorrupt(const Digest& digest, const BlobFile& file, const std::string& reason);
  // Waits until the clock reaches `deadline_ms`. Returns false when stop() was called.
  bool waitUntil(int64_t deadline_ms);
  bool isStopRequested() const { return stop_requested_.load(); }
  uint64_t readSizeBytes() const;

  Index& index_;
  BlobStore& store_;
  const ScrubOptions options_;
  const Clock& clock_;
  ScrubCounters counters_;
  std::function<void(const Digest&)> on_removed_;

  // Set by stop(). Written under mutex_, so that a thread that checked it under mutex_ and then
  // waits on wake_ is sure to be notified.
  std::atomic<bool> stop_requested_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool is_started_ = false;  // touched by the owner's thread only
  std::thread thread_;

  // Used by the scrub thread only, created by start().
  std::vector<std::byte> buffer_;
  std::unique_ptr<ByteRateLimiter> limiter_;
};

}  // namespace outpost::storage
