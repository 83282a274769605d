// AccessOrder: the blobs of one cache tier in least-recently-used order, with their sizes, so
// that the tier can compare its bytes with its budget and pick the blobs to move down or out.
//
// Design. Entries live in shards picked by the XXH3 hash of the binary digest, each shard with
// its own mutex, so loop threads that touch different blobs rarely wait on each other. A shard
// stores each entry in one 64-byte slot of a slab that grows in chunks, so no entry ever moves.
// An entry stores the raw hash bytes, not the digest text: all 32 bytes of a sha256, or the first
// 32 of a sha512 with the other 32 in a side map of the shard. An open-addressing table of
// 32-bit slot numbers finds the entry of a digest. The entry's two links put it in one of two
// sequences, each sorted by access time:
//   - the recency list, a doubly linked list, oldest first. touch() moves or appends an entry to
//     its tail in O(1). Its times never decrease towards the tail, because touch() records
//     max(clock, time at the tail).
//   - the restored tree, a treap ordered by (last_access_ms, digest), holding entries rebuilt by
//     restore() at start-up and not touched since. Records come from the index in key order,
//     which is random with respect to time, so they are sorted on insert in O(log n) expected
//     time. The first touch moves an entry from the tree to the list.
// oldest() merges all these sorted sequences by access time.
//
// Memory. A sha256 entry takes its 64-byte slot and 6 to 11 bytes of table, as the table's load
// varies between 7/16 and 7/8. Restoring 1,000,000 sha256 entries into 16 shards, where the
// tables are near their lowest load, added 76 bytes of resident memory per entry with glibc
// malloc and with mimalloc alike. With the digest kept as text, the same run added 251 bytes.
// The figures come from BM_LruRestoreResidentBytes in bench/micro/lru_bench.cc. A sha512 entry
// also has a node in the side map, and took 135 to 150 bytes.
// NOTE: erased entries leave their slots for later inserts, and neither the slab nor the table
// ever shrinks, so memory stays at the high-water mark of entries.
//
// Threads: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"

namespace outpost::cache {

namespace detail {
struct AccessShard;
struct EntryKey;
}  // namespace detail

class AccessOrder {
 public:
  static constexpr size_t kDefaultShardCount = 16;

  // An entry that oldest() proposes for eviction.
  struct Candidate {
    Digest digest;
    uint64_t size_bytes = 0;
    int64_t last_access_ms = 0;
  };

  // The state of one entry, as find() reports it.
  struct EntryInfo {
    uint64_t size_bytes = 0;
    int64_t last_access_ms = 0;
    uint32_t pin_count = 0;
  };

  // The latest access time of one digest touched since the previous collectTouches().
  struct AccessTime {
    Digest digest;
    int64_t last_access_ms = 0;
  };

  // Reads access times from `clock`, which must outlive this object. A `shard_count` of 0 is
  // taken as 1.
  explicit AccessOrder(const Clock& clock, size_t shard_count = kDefaultShardCount);
  ~AccessOrder();
  AccessOrder(const AccessOrder&) = delete;
  AccessOrder& operator=(const AccessOrder&) = delete;

  // Inserts `digest` or moves it to most recent, with the clock's time as its access time. A
  // size of 0 is valid, because the empty blob is valid content, and such an entry adds nothing
  // to bytes(). Fails with kInvalidArgument when the entry exists with another size, since one
  // digest names one content, and with kOutOfRange when bytes() would overflow or when a new
  // entry's shard already contains its maximum number of entries. On failure the order is
  // unchanged.
  Status touch(const Digest& digest, uint64_t size_bytes);

  // Inserts an entry read at start-up, from the index's last_access_ms, in any order. Calls in
  // any order build the same order. A digest restored twice keeps the later time. An entry
  // already touched since start-up keeps its place, since that touch is newer than any stored
  // record. Fails like touch().
  Status restore(const Digest& digest, uint64_t size_bytes, int64_t last_access_ms);

  // Removes `digest`. Fails with kNotFound when absent, and with kUnavailable when pinned, so an
  // entry pinned after oldest() proposed it is kept: the evicting caller copies the blob down a
  // tier, calls erase(), and deletes its file only when erase() succeeds.
  Status erase(const Digest& digest);

  bool contains(const Digest& digest) const;
  std::optional<EntryInfo> find(const Digest& digest) const;

  // Counts one more user (a send, a fill or local content) of `digest`. A pinned entry is never
  // an eviction candidate and cannot be erased. Fails with kNotFound when absent and with
  // kOutOfRange when the count would overflow.
  Status pin(const Digest& digest);
  // Counts one user less. Fails with kNotFound when absent and with kInternal when the entry is
  // not pinned, because an unbalanced unpin is a bug in the caller. The entry is unchanged then.
  Status unpin(const Digest& digest);

  // Returns unpinned entries, oldest first, without removing them, until their sizes add up to
  // `bytes_to_free` or more. Returns all unpinned entries when they hold fewer bytes, and an
  // empty vector for 0 bytes. Zero-size entries older than the last candidate are included.
  //
  // How close to a global LRU: the result is exact by recorded access time, to the
  // millisecond, at one instant, because every shard is locked for the merge. Entries with
  // equal times come out in touch order when touched in one shard, else in digest order. Within
  // a shard, a clock that steps back is clamped to the newest time there,
  // but across shards it is not, so an entry touched after the step can come out before older
  // entries of other shards. The locks stall touches for the length of the merge, so call this
  // from the eviction worker, not per request.
  std::vector<Candidate> oldest(uint64_t bytes_to_free) const;

  // Returns each digest touched since the previous call with its latest access time, for a
  // batched write to the index, and starts a new collection. Restored entries are not included,
  // and neither are entries erased before the call. The order of the result is unspecified.
  std::vector<AccessTime> collectTouches();

  // Totals over all entries, pinned ones included. They change under the shard lock of the
  // entry that changes them, so both are exact whenever no touch, restore or erase runs.
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t entries() const { return entries_.load(std::memory_order_relaxed); }

  // Lowers the number of entries one shard may hold, which is otherwise kMaxEntriesPerShard, so
  // that tests reach the limit. Call it before any other method.
  void setMaxEntriesPerShardForTest(uint32_t max_entries) { max_entries_per_shard_ = max_entries; }

  // A shard numbers its entries with 32 bits, one value of which marks "no entry". touch() and
  // restore() of a new digest fail with kOutOfRange when its shard contains this many. With 64
  // bytes per entry that is 256 GiB of memory per shard, so the limit is not reached in practice.
  static constexpr uint32_t kMaxEntriesPerShard = 0xffff'ffff;

 private:
  detail::AccessShard& shardFor(const detail::EntryKey& key) const;
  // Adds `size_bytes` to bytes() unless the total would overflow.
  Status reserveBytes(uint64_t size_bytes);
  // Inserts a new entry for `digest`, whose binary form is `key`, in neither sequence yet, and
  // counts it in the totals. Returns the entry's slot in the shard.
  Expected<uint32_t> insertEntry(detail::AccessShard& shard, const Digest& digest,
                                 const detail::EntryKey& key, uint64_t size_bytes);

  const Clock& clock_;
  size_t shard_count_;
  std::unique_ptr<detail::AccessShard[]> shards_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> entries_{0};
  uint32_t max_entries_per_shard_ = kMaxEntriesPerShard;
};

}  // namespace outpost::cache
