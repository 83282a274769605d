// DiskBudget: keeps the committed blobs of each disk tier within a byte budget. The first tier is
// the data folder, where new blobs land; lower tiers (slower, larger disks) follow in
// configuration order. Above a tier's high watermark, its least recently used blobs move down
// one tier, or leave the cache from the last tier, until the tier is at or under its low
// watermark. A hit on a lower tier counts toward promoting the blob back to the first tier.
//
// Design. Each tier has an AccessOrder holding its blobs with their sizes, in least-recently-used
// order. The orders are rebuilt at start from the blob records of the index (their tier and
// last_access_ms), on the budget's own thread, so that start-up reads no blob file and does not
// wait for the scan. Loop threads record each hit and each commit. The thread does every move.
//
// One eviction (from the last tier):
//   1. erase the entry from the tier's order, which fails if a reader pinned it meanwhile;
//   2. delete the index record (a synced write), so no new request finds the blob;
//   3. unlink the file. A reader that opened it before keeps reading the whole blob, because
//      the file's data stays until its last descriptor closes, so an eviction never shortens a
//      response that has started.
// A crash between 2 and 3 leaves an unindexed file, which fsck reports and removes.
//
// One move (a demotion to the next tier, or a promotion to the first):
//   1. erase the entry from the source tier's order (it fails if pinned, and the blob stays);
//   2. copy the file to the target tier, verifying its digest (BlobStore::copyToTier);
//   3. record the target tier in the index (a synced write);
//   4. unlink the source file, and add the entry to the target tier's order.
// Readers find the blob at every step, since BlobStore::openBlob searches every tier. A crash
// after 2 leaves a copy in both tiers, served from either; fsck removes the one the index does
// not name. A source whose bytes fail the digest check is removed like a scrub finding, and a
// demotion that fails otherwise (the lower disk is full or failing) evicts the blob instead, so
// that the first tier keeps its budget.
//
// Pins. A blob being sent is pinned (pin() returns a guard) and is never chosen to move.
//
// Held blobs. A blob that a local repository contains is held (hold(), a record in the index)
// and never evicted. An eviction checks the hold under the same mutex that hold() takes. So a
// blob held while its eviction runs either keeps its file or is written again by the push.
// NOTE: held blobs are not counted in any tier and stay in the tier they were written to.
//
// Reservations and waiting. A download whose length is known reserves it in the first tier
// (reserve() returns a guard) from its response head until it ends, so that the thread makes
// room while the bytes arrive. A new download starts only while the first tier's committed and
// reserved bytes are under its budget (hasRoomForDownload), and otherwise waits (waitForRoom)
// until the thread has made room, or fails after space_wait_ms. Downloads whose heads have not
// arrived yet are not counted, so a burst admitted together can still overshoot by their sizes.
//
// Threads: recordAccess, pin, waitForRoom and the accessors may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "cache/access_order.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::cache {

// The limits of one lower disk tier.
struct DiskTierOptions {
  uint64_t budget_bytes = 0;
  uint32_t high_watermark_percent = 90;
  uint32_t low_watermark_percent = 80;
};

// The steps of a move, reported to DiskBudgetOptions::on_move_step.
enum class MoveStep { kCopied, kIndexed, kSourceRemoved };

struct DiskBudgetOptions {
  // Bytes of committed blobs the first tier (the data folder) may hold. 0 means no budget:
  // nothing is tracked or evicted, which saves the order's memory (about 76 bytes per blob).
  uint64_t budget_bytes = 0;
  // Moving out starts above high_watermark_percent of the budget and stops at or under
  // low_watermark_percent. 0 < low < high <= 100.
  uint32_t high_watermark_percent = 90;
  uint32_t low_watermark_percent = 80;
  // The tiers below the first, in order. Each needs a budget, and so does the first tier then.
  std::vector<DiskTierOptions> lower_tiers;
  // Hits on a lower tier that promote a blob to the first tier. 0 never promotes.
  uint32_t promote_after_hits = 2;
  // How often the thread checks the usage when no access wakes it.
  int64_t check_interval_ms = 1000;
  // How long a download waits for room in the first tier before it fails.
  int64_t space_wait_ms = 30'000;
  // Called on the thread after each step of a move, so that a test can stop the process there.
  std::function<void(MoveStep step, const Digest& digest)> on_move_step;
};

// Totals since start for one tier, read by /metrics.
struct DiskTierCounters {
  // Reads served from the tier.
  std::atomic<uint64_t> hits{0};
  // Blobs moved into the tier from a lower one.
  std::atomic<uint64_t> promotions{0};
  // Blobs moved from the tier to the next one.
  std::atomic<uint64_t> demotions{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> evicted_bytes{0};
  // Evictions and moves that failed on the index or a file (each also logged).
  std::atomic<uint64_t> failures{0};
  // Blobs removed because their bytes failed the digest check during a move.
  std::atomic<uint64_t> corrupt_removed{0};
};

// Totals since start over all tiers.
struct DiskBudgetCounters {
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> evicted_bytes{0};
  std::atomic<uint64_t> eviction_failures{0};
  // Downloads that waited for room, and those that gave up after space_wait_ms.
  std::atomic<uint64_t> space_waits{0};
  std::atomic<uint64_t> space_wait_timeouts{0};
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

  // Checks the options: kInvalidArgument when the watermarks are out of order or out of range,
  // or a tier has no budget while lower tiers exist, or the tiers do not match the store's.
  static Status validate(const DiskBudgetOptions& options);

  // Starts the thread that restores the order from the index and then evicts. Call once. Does
  // nothing without a budget.
  Status start();
  // Stops the thread and waits for it. Safe to call more than once.
  void stop();

  enum class AccessKind {
    kRead,  // a GET, whole or a range
    // A HEAD, or a read served from the memory tier: keeps the blob recent, but is no disk hit
    // and does not count toward a promotion.
    kRefresh,
  };
  // Records that `digest`, of `size_bytes`, was read now from `tier` (BlobFile::tier), counting a
  // hit there and, on a lower tier, toward its promotion. Wakes the thread when the usage crosses
  // the high watermark. Does nothing without a budget.
  void recordAccess(const Digest& digest, uint64_t size_bytes, uint32_t tier = 0,
                    AccessKind kind = AccessKind::kRead);
  // Records that `digest` was just committed to the first tier. Not a hit.
  void recordCommit(const Digest& digest, uint64_t size_bytes);
  // Returns an empty Pin without a budget, or when `tier` does not count the blob.
  Pin pin(const Digest& digest, uint32_t tier = 0);
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
  // Whether a new download may start: always without a budget, else while the first tier's
  // committed and reserved bytes are under its budget.
  bool hasRoomForDownload() const;
  // Calls `done(true)` on the thread once there is room for a download, or `done(false)` after
  // space_wait_ms or at stop. `done` must not block.
  void waitForRoom(std::function<void(bool has_room)> done);

  // Reads every blob record of the index into the order. BLOCKING: scans the index. start()
  // runs it on its thread; tests call it directly.
  Status restore();
  // Promotes the blobs due for it, then, from the last tier to the first, moves or evicts least
  // recently used blobs until each tier that was above its high watermark is at or under its
  // low watermark. Returns the bytes that left the first tier. BLOCKING: copies, synced index
  // writes and unlinks. The thread calls it; tests call it directly.
  uint64_t evictIfOverBudget();

  // The first tier.
  uint64_t bytesUsed() const { return tiers_[0]->order.bytes(); }
  uint64_t bytesReserved() const { return reserved_bytes_.load(std::memory_order_relaxed); }
  uint64_t entries() const { return tiers_[0]->order.entries(); }
  uint64_t budgetBytes() const { return options_.budget_bytes; }

  size_t tierCount() const { return tiers_.size(); }
  uint64_t tierBytesUsed(uint32_t tier) const { return tiers_[tier]->order.bytes(); }
  uint64_t tierEntries(uint32_t tier) const { return tiers_[tier]->order.entries(); }
  uint64_t tierBudgetBytes(uint32_t tier) const { return tiers_[tier]->limits.budget_bytes; }
  const DiskTierCounters& tierCounters(uint32_t tier) const { return tiers_[tier]->counters; }

  bool isEnabled() const { return options_.budget_bytes > 0; }
  bool isRestored() const { return restored_.load(std::memory_order_acquire); }
  const DiskBudgetCounters& counters() const { return counters_; }

 private:
  struct Tier {
    Tier(const Clock& clock, DiskTierOptions tier_limits) : limits(tier_limits), order(clock) {}

    DiskTierOptions limits;
    AccessOrder order;
    DiskTierCounters counters;
  };
  enum class MoveOutcome { kMoved, kHeld, kSkipped, kRemoved };
  struct RoomWaiter {
    std::function<void(bool)> done;
    std::chrono::steady_clock::time_point deadline;
  };

  static uint64_t percentOf(uint64_t bytes, uint32_t percent);
  // Committed bytes of `tier`, plus the reservations for the first tier.
  uint64_t bytesCounted(uint32_t tier) const;
  bool isOverHighWatermark(uint32_t tier) const;
  void wake();
  // Forgets the lower-tier hits of a blob that left its tier.
  void dropHits(const Digest& digest);
  // Moves or evicts the oldest blobs of `tier` while it is over its low watermark. Returns the
  // bytes that left the tier, and sets `made_progress` when anything left.
  uint64_t shrinkTier(uint32_t tier, bool& made_progress);
  // Evicts one candidate of the last tier. kHeld when a local repository contains it, which
  // drops it from the order, and kSkipped when it was pinned or the eviction failed.
  MoveOutcome evict(uint32_t tier, const AccessOrder::Candidate& candidate);
  // The steps of evict() after the erase from the order. Call with evict_mutex_ held.
  MoveOutcome removeErased(uint32_t tier, const AccessOrder::Candidate& candidate);
  // Moves one candidate from tier `from` to tier `to`, as the file header describes.
  MoveOutcome move(uint32_t from, uint32_t to, const AccessOrder::Candidate& candidate);
  // Removes a blob whose bytes failed the digest check during a move.
  void removeCorrupt(uint32_t tier, const Digest& digest, const Status& reason);
  void promoteDue();
  // Calls the waiters that may go on: all of them when there is room, the expired ones else.
  void releaseWaiters(bool stopping);
  void reportStep(MoveStep step, const Digest& digest) const;
  void run();

  storage::Index& index_;
  storage::BlobStore& store_;
  DiskBudgetOptions options_;
  std::vector<std::unique_ptr<Tier>> tiers_;
  DiskBudgetCounters counters_;
  std::atomic<bool> restored_{false};
  std::atomic<uint64_t> reserved_bytes_{0};

  // Held across one eviction, and across the write of a hold.
  std::mutex evict_mutex_;

  // Hits on lower tiers since the blob entered its tier (dropped when it leaves the tier), and
  // blobs due for promotion with the tier they were hit in.
  std::mutex promote_mutex_;
  std::unordered_map<Digest, uint32_t> lower_hits_;         // guarded by promote_mutex_
  std::deque<std::pair<Digest, uint32_t>> promotions_due_;  // guarded by promote_mutex_

  std::mutex waiters_mutex_;
  std::vector<RoomWaiter> waiters_;  // guarded by waiters_mutex_

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_requested_ = false;  // guarded by mutex_
  bool wake_requested_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace outpost::cache
