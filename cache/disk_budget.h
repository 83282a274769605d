// DiskBudget: keeps the committed blobs of the data folder within a byte budget by evicting
// the least recently used ones.
//
// Design. An AccessOrder contains every committed blob with its size, in least-recently-used order.
// It is rebuilt at start from the blob records of the index (their last_access_ms), on the
// budget's own thread, so that start-up reads no blob file and does not wait for the scan. Loop
// threads record each hit and each commit (recordAccess). When the bytes exceed the high
// watermark, the thread evicts the oldest unpinned blobs until the bytes are at or under the
// low watermark. One eviction, in this order:
//   1. erase the entry from the access order, which fails if a reader pinned it meanwhile;
//   2. delete the index record (a synced write), so no new request finds the blob;
//   3. unlink the file. A reader that opened it before keeps reading the whole blob, because
//      the file's data stays until its last descriptor closes, so an eviction never shortens a
//      response that has started.
// A crash between 2 and 3 leaves an unindexed file, which fsck reports and removes.
//
// Pins. A blob being sent is pinned (pin() returns a guard) and is never chosen for eviction.
//
// Held blobs. A blob that a local repository contains is held (hold(), a record in the index)
// and never evicted. An eviction checks the hold under the same mutex that hold() takes. So a
// blob held while its eviction runs either keeps its file or is written again by the push.
//
// Reservations. A download whose length is known reserves it (reserve() returns a guard) from
// its response head until it ends, so that the thread makes room while the bytes arrive.
// NOTE: nothing makes a new download wait for space, so a burst of downloads larger than the
// evictable blobs still overshoots the budget until they end.
//
// Threads: recordAccess, pin and the accessors may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "cache/access_order.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::cache {

struct DiskBudgetOptions {
  // Bytes of committed blobs the data folder may hold. 0 means no budget: nothing is tracked or
  // evicted, which saves the order's memory (about 250 bytes per blob).
  uint64_t budget_bytes = 0;
  // Eviction starts above high_watermark_percent of the budget and stops at or under
  // low_watermark_percent. 0 < low < high <= 100.
  uint32_t high_watermark_percent = 90;
  uint32_t low_watermark_percent = 80;
  // How often the eviction thread checks the usage when no access wakes it.
  int64_t check_interval_ms = 1000;
};

// Totals since start, read by /metrics.
struct DiskBudgetCounters {
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> evicted_bytes{0};
  // Evictions that failed on the index or the file (each also logged).
  std::atomic<uint64_t> eviction_failures{0};
};

class DiskBudget {
 public:
  // Keeps a blob from being evicted while it lives. Empty (nothing pinned) when the blob is not
  // tracked, for instance before the order is restored.
  class Pin {
   public:
    Pin() = default;
    Pin(Pin&& other) noexcept;
    Pin& operator=(Pin&& other) noexcept;
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    ~Pin();

    bool isPinned() const { return order_ != nullptr; }

   private:
    friend class DiskBudget;
    Pin(AccessOrder* order, const Digest& digest) : order_(order), digest_(digest) {}
    void release();

    AccessOrder* order_ = nullptr;
    std::optional<Digest> digest_;
  };

  // Counts `bytes` of a download in progress toward the watermarks while it lives. Empty when
  // there is no budget.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation();

    uint64_t bytes() const { return bytes_; }

   private:
    friend class DiskBudget;
    Reservation(DiskBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}
    void release();

    DiskBudget* budget_ = nullptr;
    uint64_t bytes_ = 0;
  };

  // `index`, `store` and `clock` must outlive this object.
  DiskBudget(storage::Index& index, storage::BlobStore& store, const Clock& clock,
             DiskBudgetOptions options);
  ~DiskBudget();
  DiskBudget(const DiskBudget&) = delete;
  DiskBudget& operator=(const DiskBudget&) = delete;

  // Checks the options: kInvalidArgument when the watermarks are out of order or out of range.
  static Status validate(const DiskBudgetOptions& options);

  // Starts the thread that restores the order from the index and then evicts. Call once. Does
  // nothing without a budget.
  Status start();
  // Stops the thread and waits for it. Safe to call more than once.
  void stop();

  // Records that `digest`, of `size_bytes`, was committed or read now. Wakes the eviction
  // thread when the usage crosses the high watermark. Does nothing without a budget.
  void recordAccess(const Digest& digest, uint64_t size_bytes);
  // Returns an empty Pin without a budget.
  Pin pin(const Digest& digest);
  // Records that a local repository contains `digest`, so that it is never evicted, and stops
  // counting it. Waits for an eviction of any blob in progress. Once this returns OK, a
  // committed file of the blob stays, and a blob committed later is never evicted. Writes the
  // record with or without a budget. BLOCKING: a synced index write.
  Status hold(const Digest& digest);
  // Stops counting a blob that was removed by other means (the scrub). A pinned entry stays
  // until an eviction finds its file gone.
  void forget(const Digest& digest);
  // Reserves `bytes` for a download in progress and wakes the eviction thread when the usage
  // with reservations crosses the high watermark. The Reservation must not outlive this object.
  Reservation reserve(uint64_t bytes);

  // Reads every blob record of the index into the order. BLOCKING: scans the index. start()
  // runs it on its thread; tests call it directly.
  Status restore();
  // Evicts least recently used blobs until the usage is at or under the low watermark, if it is
  // above the high watermark. Returns the bytes freed. BLOCKING: synced index writes and
  // unlinks. The thread calls it; tests call it directly.
  uint64_t evictIfOverBudget();

  uint64_t bytesUsed() const { return order_.bytes(); }
  uint64_t bytesReserved() const { return reserved_bytes_.load(std::memory_order_relaxed); }
  uint64_t entries() const { return order_.entries(); }
  uint64_t budgetBytes() const { return options_.budget_bytes; }
  bool isEnabled() const { return options_.budget_bytes > 0; }
  bool isRestored() const { return restored_.load(std::memory_order_acquire); }
  const DiskBudgetCounters& counters() const { return counters_; }

 private:
  uint64_t highWatermarkBytes() const;
  // Committed bytes plus reservations.
  uint64_t bytesCounted() const { return order_.bytes() + bytesReserved(); }
  void wakeIfOverHighWatermark();
  uint64_t lowWatermarkBytes() const;
  enum class EvictOutcome { kEvicted, kHeld, kSkipped };
  // Evicts one candidate. kHeld when a local repository contains it, which drops it from the order, and
  // kSkipped when it was pinned or the eviction failed.
  EvictOutcome evict(const AccessOrder::Candidate& candidate);
  void run();

  storage::Index& index_;
  storage::BlobStore& store_;
  DiskBudgetOptions options_;
  AccessOrder order_;
  DiskBudgetCounters counters_;
  std::atomic<bool> restored_{false};
  std::atomic<uint64_t> reserved_bytes_{0};

  // Held across one eviction, and across the write of a hold.
  std::mutex evict_mutex_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_requested_ = false;  // guarded by mutex_
  bool wake_requested_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace outpost::cache
