#include "cache/access_order.h"

#include <xxhash.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>

namespace outpost::cache {
namespace detail {

struct AccessEntry {
  const Digest* digest = nullptr;  // the key of this entry's map node, which never moves
  uint64_t size_bytes = 0;
  int64_t last_access_ms = 0;
  // AccessShard::touch_sequence at this entry's latest touch, 0 while it is restored.
  uint64_t touch_sequence = 0;
  uint32_t pin_count = 0;
  bool is_restored = false;  // in AccessShard::restored, else in the recency list
  AccessEntry* older = nullptr;
  AccessEntry* newer = nullptr;
};

// Orders restored entries by time, then by digest, so that equal times sort the same way
// whatever the restore order.
struct RestoredBefore {
  bool operator()(const AccessEntry* a, const AccessEntry* b) const {
    if (a->last_access_ms != b->last_access_ms) {
      return a->last_access_ms < b->last_access_ms;
    }
    return *a->digest < *b->digest;
  }
};
using RestoredSet = std::set<AccessEntry*, RestoredBefore>;

// Aligned to 64 bytes, the cache line of x86-64 and common arm64 cores, so that threads locking
// neighbouring shards do not write to one line.
struct alignas(64) AccessShard {
  // NOTE: base/ has no Clang thread-safety annotations yet, so the members below are marked
  // as guarded by comment only, as elsewhere in cache/.
  mutable std::mutex mutex;
  std::unordered_map<Digest, AccessEntry> entries;  // guarded by mutex
  AccessEntry* oldest = nullptr;                    // guarded by mutex, head of the recency list
  AccessEntry* newest = nullptr;                    // guarded by mutex, tail of the recency list
  RestoredSet restored;                             // guarded by mutex
  uint64_t touch_sequence = 0;                      // guarded by mutex, counts touches
  uint64_t collected_sequence = 0;  // guarded by mutex, touch_sequence at the last collection

  void appendToList(AccessEntry& entry) {
    entry.older = newest;
    entry.newer = nullptr;
    if (newest != nullptr) {
      newest->newer = &entry;
    } else {
      oldest = &entry;
    }
    newest = &entry;
  }

  // Unlinks `entry` from the restored set or the recency list, whichever contains it.
  void detach(AccessEntry& entry) {
    if (entry.is_restored) {
      restored.erase(&entry);
      entry.is_restored = false;
      return;
    }

    (entry.older != nullptr ? entry.older->newer : oldest) = entry.newer;
    (entry.newer != nullptr ? entry.newer->older : newest) = entry.older;
    entry.older = nullptr;
    entry.newer = nullptr;
  }
};

}  // namespace detail

namespace {

using detail::AccessEntry;
using detail::AccessShard;
using detail::RestoredSet;

Status sizeMismatch(const Digest& digest, uint64_t tracked_bytes, uint64_t size_bytes) {
  return invalidArgument("size of " + digest.str() + " is " + std::to_string(size_bytes) +
                         " bytes but the tracked entry has " + std::to_string(tracked_bytes) +
                         " bytes, but one digest names one content");
}

// Walks one sorted sequence of a shard, the recency list or the restored set, skipping pinned
// entries. The shard must stay locked while the cursor is in use.
class Cursor {
 public:
  explicit Cursor(const AccessEntry* list_head) : entry_(list_head) { skipPinned(); }
  explicit Cursor(const RestoredSet& restored)
      : is_restored_(true), next_(restored.begin()), end_(restored.end()) {
    entry_ = next_ != end_ ? *next_ : nullptr;
    skipPinned();
  }

  // The current entry, or null when the sequence has no more unpinned entries.
  const AccessEntry* entry() const { return entry_; }

  void advance() {
    step();
    skipPinned();
  }

 private:
  void step() {
    if (!is_restored_) {
      entry_ = entry_->newer;
      return;
    }
    ++next_;
    entry_ = next_ != end_ ? *next_ : nullptr;
  }

  // NOTE: pinned entries are walked past, not kept out of the sequences, so oldest() takes
  // longer with every pinned entry older than its last candidate.
  void skipPinned() {
    while (entry_ != nullptr && entry_->pin_count > 0) {
      step();
    }
  }

  const AccessEntry* entry_ = nullptr;
  bool is_restored_ = false;
  RestoredSet::const_iterator next_;
  RestoredSet::const_iterator end_;
};

// Orders cursors in a min-heap by their current entry: oldest time first, then lowest digest.
struct CursorAfter {
  bool operator()(const Cursor* a, const Cursor* b) const {
    const AccessEntry* x = a->entry();
    const AccessEntry* y = b->entry();
    if (x->last_access_ms != y->last_access_ms) {
      return x->last_access_ms > y->last_access_ms;
    }
    return *x->digest > *y->digest;
  }
};

}  // namespace

AccessOrder::AccessOrder(const Clock& clock, size_t shard_count)
    : clock_(clock),
      shard_count_(std::max<size_t>(shard_count, 1)),
      shards_(std::make_unique<AccessShard[]>(shard_count_)) {}

AccessOrder::~AccessOrder() = default;

AccessShard& AccessOrder::shardFor(const Digest& digest) const {
  uint64_t hash = XXH3_64bits(digest.str().data(), digest.str().size());
  return shards_[hash % shard_count_];
}

Status AccessOrder::reserveBytes(uint64_t size_bytes) {
  uint64_t total = bytes_.load(std::memory_order_relaxed);
  do {
    if (size_bytes > std::numeric_limits<uint64_t>::max() - total) {
      return Status(StatusCode::kOutOfRange, "adding " + std::to_string(size_bytes) +
                                                 " bytes to the " + std::to_string(total) +
                                                 " tracked bytes overflows the total");
    }
  } while (!bytes_.compare_exchange_weak(total, total + size_bytes, std::memory_order_relaxed));
  return Status::ok();
}

Expected<AccessEntry*> AccessOrder::insertEntry(AccessShard& shard, const Digest& digest,
                                                uint64_t size_bytes) {
  OUTPOST_RETURN_IF_ERROR(reserveBytes(size_bytes));

  auto node = shard.entries.try_emplace(digest).first;
  AccessEntry& entry = node->second;
  entry.digest = &node->first;
  entry.size_bytes = size_bytes;
  entries_.fetch_add(1, std::memory_order_relaxed);
  return &entry;
}

Status AccessOrder::touch(const Digest& digest, uint64_t size_bytes) {
  AccessShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);

  AccessEntry* entry = nullptr;
  auto found = shard.entries.find(digest);
  if (found != shard.entries.end()) {
    entry = &found->second;
    if (entry->size_bytes != size_bytes) {
      return sizeMismatch(digest, entry->size_bytes, size_bytes);
    }
    shard.detach(*entry);
  } else {
    OUTPOST_ASSIGN_OR_RETURN(entry, insertEntry(shard, digest, size_bytes));
  }

  // The clock is read under the lock and clamped to the tail's time, so that times never
  // decrease along the list even when two threads race or the wall clock steps back.
  int64_t now_ms = clock_.nowMs();
  if (shard.newest != nullptr) {
    now_ms = std::max(now_ms, shard.newest->last_access_ms);
  }
  entry->last_access_ms = now_ms;
  entry->touch_sequence = ++shard.touch_sequence;
  shard.appendToList(*entry);
  return Status::ok();
}

Status AccessOrder::restore(const Digest& digest, uint64_t size_bytes, int64_t last_access_ms) {
  AccessShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);

  auto found = shard.entries.find(digest);
  if (found != shard.entries.end()) {
    AccessEntry& entry = found->second;
    if (entry.size_bytes != size_bytes) {
      return sizeMismatch(digest, entry.size_bytes, size_bytes);
    }
    if (!entry.is_restored || last_access_ms <= entry.last_access_ms) {
      return Status::ok();
    }
    // The set orders by time, so the entry leaves it before its time changes.
    shard.restored.erase(&entry);
    entry.last_access_ms = last_access_ms;
    shard.restored.insert(&entry);
    return Status::ok();
  }

  OUTPOST_ASSIGN_OR_RETURN(AccessEntry * entry, insertEntry(shard, digest, size_bytes));
  entry->last_access_ms = last_access_ms;
  entry->is_restored = true;
  shard.restored.insert(entry);
  return Status::ok();
}

Status AccessOrder::erase(const Digest& digest) {
  AccessShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);

  auto found = shard.entries.find(digest);
  if (found == shard.entries.end()) {
    return notFound("no access order entry for " + digest.str());
  }
  AccessEntry& entry = found->second;
  if (entry.pin_count > 0) {
    return Status(StatusCode::kUnavailable, digest.str() + " is pinned by " +
                                                std::to_string(entry.pin_count) +
                                                " users, so keep its file until they unpin it");
  }

  shard.detach(entry);
  bytes_.fetch_sub(entry.size_bytes, std::memory_order_relaxed);
  entries_.fetch_sub(1, std::memory_order_relaxed);
  shard.entries.erase(found);
  return Status::ok();
}

bool AccessOrder::contains(const Digest& digest) const {
  AccessShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);
  return shard.entries.contains(digest);
}

std::optional<AccessOrder::EntryInfo> AccessOrder::find(const Digest& digest) const {
  AccessShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);

  auto found = shard.entries.find(digest);
  if (found == shard.entries.end()) {
    return std::nullopt;
  }
  const AccessEntry& entry = found->second;
  return EntryInfo{entry.size_bytes, entry.last_access_ms, entry.pin_count};
}

Status AccessOrder::pin(const Digest& digest) {
  AccessShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);

  auto found = shard.entries.find(digest);
  if (found == shard.entries.end()) {
    return notFound("cannot pin " + digest.str() + ": no access order entry");
  }
  AccessEntry& entry = found->second;
  if (entry.pin_count == std::numeric_limits<uint32_t>::max()) {
    return Status(StatusCode::kOutOfRange, "pin count of " + digest.str() + " is at its maximum");
  }
  ++entry.pin_count;
  return Status::ok();
}

Status AccessOrder::unpin(const Digest& digest) {
  AccessShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);

  auto found = shard.entries.find(digest);
  if (found == shard.entries.end()) {
    return notFound("cannot unpin " + digest.str() + ": no access order entry");
  }
  AccessEntry& entry = found->second;
  if (entry.pin_count == 0) {
    return internalError("cannot unpin " + digest.str() +
                         ": it is not pinned, so pin and unpin calls are unbalanced");
  }
  --entry.pin_count;
  return Status::ok();
}

std::vector<AccessOrder::Candidate> AccessOrder::oldest(uint64_t bytes_to_free) const {
  std::vector<Candidate> candidates;
  if (bytes_to_free == 0) {
    return candidates;
  }

  // This is the only place that locks more than one shard, and it locks them in index order, so
  // no deadlock can arise.
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(shard_count_);
  for (size_t i = 0; i < shard_count_; ++i) {
    locks.emplace_back(shards_[i].mutex);
  }

  // Two sorted sequences per shard, merged through a min-heap of their current entries.
  std::vector<Cursor> cursors;
  cursors.reserve(2 * shard_count_);
  for (size_t i = 0; i < shard_count_; ++i) {
    cursors.emplace_back(shards_[i].oldest);
    cursors.emplace_back(shards_[i].restored);
  }
  std::priority_queue<Cursor*, std::vector<Cursor*>, CursorAfter> heads;
  for (Cursor& cursor : cursors) {
    if (cursor.entry() != nullptr) {
      heads.push(&cursor);
    }
  }

  // Sizes of distinct entries add up to at most bytes(), so the sum cannot overflow.
  uint64_t freed_bytes = 0;
  while (freed_bytes < bytes_to_free && !heads.empty()) {
    Cursor* cursor = heads.top();
    heads.pop();
    const AccessEntry* entry = cursor->entry();
    candidates.push_back(Candidate{*entry->digest, entry->size_bytes, entry->last_access_ms});
    freed_bytes += entry->size_bytes;

    cursor->advance();
    if (cursor->entry() != nullptr) {
      heads.push(cursor);
    }
  }
  return candidates;
}

std::vector<AccessOrder::AccessTime> AccessOrder::collectTouches() {
  std::vector<AccessTime> touches;
  for (size_t i = 0; i < shard_count_; ++i) {
    AccessShard& shard = shards_[i];
    std::lock_guard lock(shard.mutex);

    // Every touch appends to the tail with a higher sequence, so the entries touched since the
    // last collection are exactly the tail run with a sequence above it.
    for (const AccessEntry* entry = shard.newest;
         entry != nullptr && entry->touch_sequence > shard.collected_sequence;
         entry = entry->older) {
      touches.push_back(AccessTime{*entry->digest, entry->last_access_ms});
    }
    shard.collected_sequence = shard.touch_sequence;
  }
  return touches;
}

}  // namespace outpost::cache
