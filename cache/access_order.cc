#include "cache/access_order.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace outpost::cache {
namespace detail {

// The slot of an entry in its shard's slab. kNoEntry ends a list, a tree branch or the free list.
// A full shard of AccessOrder::kMaxEntriesPerShard entries uses the slots below it.
using EntryIndex = uint32_t;
constexpr EntryIndex kNoEntry = std::numeric_limits<EntryIndex>::max();

// Bytes of the key that an entry stores itself: all of a sha256, the first half of a sha512.
constexpr size_t kHeadBytes = 32;
using KeyTail = std::array<uint8_t, 32>;

// A digest in binary: its algorithm and raw hash bytes, with the XXH3 hash of those bytes.
struct EntryKey {
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  std::array<uint8_t, 64> bytes{};
  uint64_t hash = 0;

  size_t length() const { return algorithm == DigestAlgorithm::kSha256 ? 32 : 64; }
};

// Bits of AccessEntry::flags.
constexpr uint32_t kIsSha512 = 1;       // the rest of the key is in AccessShard::sha512_tails
constexpr uint32_t kIsRestored = 2;     // in the restored tree, else in the recency list
constexpr uint32_t kIsUncollected = 4;  // touched since the last collectTouches()

// One tracked blob, in one cache line.
struct alignas(64) AccessEntry {
  std::array<uint8_t, kHeadBytes> key_head;
  uint64_t size_bytes;
  int64_t last_access_ms;
  uint32_t pin_count;
  // In the recency list, the neighbours. In the restored tree, the roots of the subtrees of older
  // and newer entries. In the slab's free list, `older` is the next free slot.
  EntryIndex older;
  EntryIndex newer;
  uint32_t flags : 3;
  // The entry's priority in the restored tree, taken from bits of its key's hash.
  uint32_t priority : 29;
};
static_assert(sizeof(AccessEntry) == 64);

// Entries in chunks of kChunkEntries, so that growth never moves an entry: a reference to one
// stays valid while the shard is locked, and a growing shard copies no entries.
class EntrySlab {
 public:
  AccessEntry& operator[](EntryIndex index) {
    return chunks_[index / kChunkEntries][index % kChunkEntries];
  }
  const AccessEntry& operator[](EntryIndex index) const {
    return chunks_[index / kChunkEntries][index % kChunkEntries];
  }

  // Returns a slot for a new entry, a freed one first. Its fields are unset. The caller keeps
  // the number of live entries at or under AccessOrder::kMaxEntriesPerShard.
  EntryIndex allocate() {
    if (free_head_ != kNoEntry) {
      EntryIndex index = free_head_;
      free_head_ = (*this)[index].older;
      return index;
    }

    if (size_ % kChunkEntries == 0) {
      chunks_.push_back(std::make_unique_for_overwrite<AccessEntry[]>(kChunkEntries));
    }
    return size_++;
  }

  void release(EntryIndex index) {
    (*this)[index].older = free_head_;
    free_head_ = index;
  }

 private:
  // 16 KiB per chunk, so a shard with few entries takes little memory.
  static constexpr EntryIndex kChunkEntries = 256;

  std::vector<std::unique_ptr<AccessEntry[]>> chunks_;
  EntryIndex size_ = 0;  // slots handed out at least once
  EntryIndex free_head_ = kNoEntry;
};

// A hash table of entry slots, with open addressing and linear probing. Each position has a
// control byte, kEmpty, kDeleted or 7 bits of the key's hash, so that a probe reads an entry only
// when those bits match. The table grows at a load of 7/8, deleted positions included.
class EntryTable {
 public:
  static constexpr size_t kNoPosition = std::numeric_limits<size_t>::max();

  size_t size() const { return live_; }
  EntryIndex at(size_t position) const { return slots_[position]; }

  // Returns the position of the entry under `hash` for which `is_match(index)` is true, or
  // kNoPosition.
  template <typename IsMatch>
  size_t find(uint64_t hash, const IsMatch& is_match) const {
    if (controls_.empty()) {
      return kNoPosition;
    }
    uint8_t tag = tagOf(hash);
    for (size_t position = homeOf(hash);; position = next(position)) {
      uint8_t control = controls_[position];
      if (control == kEmpty) {
        return kNoPosition;
      }
      if (control == tag && is_match(slots_[position])) {
        return position;
      }
    }
  }

  // Adds `index` under `hash`, whose key the table does not hold yet. A rebuild calls
  // `hash_of(index)` for the hash of each entry already in the table.
  template <typename HashOf>
  void insert(uint64_t hash, EntryIndex index, const HashOf& hash_of) {
    if ((used_ + 1) * 8 > controls_.size() * 7) {
      rebuild(hash_of);
    }
    place(hash, index);
    ++live_;
  }

  void erase(size_t position) {
    --live_;
    controls_[position] = kDeleted;
    if (controls_[next(position)] != kEmpty) {
      return;
    }

    // Every probe that reaches a deleted position followed by an empty one stops at the empty
    // one, so the deleted position may be empty as well, and then so may the one before it.
    for (size_t p = position; controls_[p] == kDeleted; p = previous(p)) {
      controls_[p] = kEmpty;
      --used_;
    }
  }

 private:
  static constexpr uint8_t kEmpty = 0x80;
  static constexpr uint8_t kDeleted = 0xfe;
  static constexpr size_t kMinCapacity = 16;

  // Fibonacci hashing: the top bits of the product depend on every bit of the hash, while the
  // low bits of the hash are the same for all keys of a shard when the shard count is a power
  // of two.
  size_t homeOf(uint64_t hash) const { return (hash * 0x9e37'79b9'7f4a'7c15) >> shift_; }
  static uint8_t tagOf(uint64_t hash) { return static_cast<uint8_t>(hash >> 57); }
  size_t next(size_t position) const { return (position + 1) & (controls_.size() - 1); }
  size_t previous(size_t position) const { return (position - 1) & (controls_.size() - 1); }

  // Stores `index` at the first free position from the home of `hash`.
  void place(uint64_t hash, EntryIndex index) {
    size_t position = homeOf(hash);
    while (controls_[position] != kEmpty && controls_[position] != kDeleted) {
      position = next(position);
    }
    if (controls_[position] == kEmpty) {
      ++used_;
    }
    controls_[position] = tagOf(hash);
    slots_[position] = index;
  }

  // Moves the entries to new arrays without deleted positions, twice as large when the live
  // entries fill more than 7/16 of the current ones.
  template <typename HashOf>
  void rebuild(const HashOf& hash_of) {
    // A rebuild starts at a load of 7/8, so doubling leaves a load of at most 7/16.
    size_t capacity = std::max(kMinCapacity, controls_.size());
    if ((live_ + 1) * 16 > capacity * 7) {
      capacity *= 2;
    }

    std::vector<uint8_t> old_controls =
        std::exchange(controls_, std::vector<uint8_t>(capacity, kEmpty));
    std::vector<EntryIndex> old_slots = std::exchange(slots_, std::vector<EntryIndex>(capacity));
    shift_ = 64 - std::countr_zero(capacity);
    used_ = 0;
    for (size_t position = 0; position < old_controls.size(); ++position) {
      if ((old_controls[position] & 0x80) == 0) {
        place(hash_of(old_slots[position]), old_slots[position]);
      }
    }
  }

  std::vector<uint8_t> controls_;
  std::vector<EntryIndex> slots_;
  int shift_ = 64;   // 64 minus log2 of the capacity
  size_t live_ = 0;  // positions holding an entry
  size_t used_ = 0;  // positions holding an entry or kDeleted
};

// Aligned to 64 bytes, the cache line of x86-64 and common arm64 cores, so that threads locking
// neighbouring shards do not write to one line.
struct alignas(64) AccessShard {
  // NOTE: base/ has no Clang thread-safety annotations yet, so the members below are marked
  // as guarded by comment only, as elsewhere in cache/.
  mutable std::mutex mutex;
  EntrySlab slab;                                        // guarded by mutex
  EntryTable table;                                      // guarded by mutex
  std::unordered_map<EntryIndex, KeyTail> sha512_tails;  // guarded by mutex, by slot
  EntryIndex oldest = kNoEntry;         // guarded by mutex, head of the recency list
  EntryIndex newest = kNoEntry;         // guarded by mutex, tail of the recency list
  EntryIndex restored_root = kNoEntry;  // guarded by mutex

  const KeyTail& tailOf(EntryIndex index) const {
    auto found = sha512_tails.find(index);
    // Every sha512 entry has a tail.
    assert(found != sha512_tails.end());
    return found->second;
  }

  bool hasKey(EntryIndex index, const EntryKey& key) const {
    const AccessEntry& entry = slab[index];
    bool is_sha512 = (entry.flags & kIsSha512) != 0;
    if (is_sha512 != (key.algorithm == DigestAlgorithm::kSha512) ||
        std::memcmp(entry.key_head.data(), key.bytes.data(), kHeadBytes) != 0) {
      return false;
    }
    return !is_sha512 ||
           std::memcmp(tailOf(index).data(), key.bytes.data() + kHeadBytes, kHeadBytes) == 0;
  }

  // Returns the table position of the entry for `key`, or EntryTable::kNoPosition.
  size_t findPosition(const EntryKey& key) const {
    return table.find(key.hash, [&](EntryIndex index) { return hasKey(index, key); });
  }

  // Returns the slot of the entry for `key`, or kNoEntry.
  EntryIndex find(const EntryKey& key) const {
    size_t position = findPosition(key);
    return position == EntryTable::kNoPosition ? kNoEntry : table.at(position);
  }

  // Returns the key of the entry in `index`, without its hash.
  EntryKey keyAt(EntryIndex index) const {
    const AccessEntry& entry = slab[index];
    EntryKey key;
    std::memcpy(key.bytes.data(), entry.key_head.data(), kHeadBytes);
    if ((entry.flags & kIsSha512) != 0) {
      key.algorithm = DigestAlgorithm::kSha512;
      std::memcpy(key.bytes.data() + kHeadBytes, tailOf(index).data(), kHeadBytes);
    }
    return key;
  }

  uint64_t hashAt(EntryIndex index) const {
    EntryKey key = keyAt(index);
    return XXH3_64bits(key.bytes.data(), key.length());
  }

  void appendToList(EntryIndex index) {
    AccessEntry& entry = slab[index];
    entry.older = newest;
    entry.newer = kNoEntry;
    if (newest != kNoEntry) {
      slab[newest].newer = index;
    } else {
      oldest = index;
    }
    newest = index;
  }

  void addRestored(EntryIndex index) {
    slab[index].flags |= kIsRestored;
    insertIntoTree(index);
  }

  // Unlinks the entry in `index` from the restored tree or the recency list, whichever
  // contains it.
  void detach(EntryIndex index) {
    AccessEntry& entry = slab[index];
    if ((entry.flags & kIsRestored) != 0) {
      eraseFromTree(index);
      entry.flags &= ~kIsRestored;
      return;
    }

    (entry.older != kNoEntry ? slab[entry.older].newer : oldest) = entry.newer;
    (entry.newer != kNoEntry ? slab[entry.newer].older : newest) = entry.older;
    entry.older = kNoEntry;
    entry.newer = kNoEntry;
  }

  // The restored tree is a treap: a binary search tree by (last_access_ms, digest) that is also a
  // max-heap by priority. The priorities come from the keys' hashes, which are independent of
  // that order, so its expected depth is O(log n) whatever the order of inserts and erases.
  // Equal priorities keep the tree valid and only make it less balanced. The functions below
  // loop rather than recurse, so even a degenerate tree cannot exhaust the stack.

  bool restoredBefore(EntryIndex a, EntryIndex b) const;

  // Returns the link to the entry in `index`'s place: the root link or a child link of its
  // parent. The tree must contain the entry with the time and digest it was inserted with.
  EntryIndex* linkTo(EntryIndex index) {
    EntryIndex* link = &restored_root;
    while (*link != index) {
      AccessEntry& parent = slab[*link];
      link = restoredBefore(index, *link) ? &parent.older : &parent.newer;
    }
    return link;
  }

  void insertIntoTree(EntryIndex index) {
    AccessEntry& entry = slab[index];
    // Descends to the first entry of lower priority than the new one, which takes its place.
    EntryIndex* link = &restored_root;
    while (*link != kNoEntry && slab[*link].priority >= entry.priority) {
      AccessEntry& parent = slab[*link];
      link = restoredBefore(index, *link) ? &parent.older : &parent.newer;
    }

    // The subtree found there splits into the entries before the new one, which become its older
    // subtree, and those after it.
    EntryIndex* older_link = &entry.older;
    EntryIndex* newer_link = &entry.newer;
    for (EntryIndex root = *link; root != kNoEntry;) {
      AccessEntry& top = slab[root];
      if (restoredBefore(root, index)) {
        *older_link = root;
        older_link = &top.newer;
        root = top.newer;
      } else {
        *newer_link = root;
        newer_link = &top.older;
        root = top.older;
      }
    }
    *older_link = kNoEntry;
    *newer_link = kNoEntry;
    *link = index;
  }

  void eraseFromTree(EntryIndex index) {
    EntryIndex* link = linkTo(index);
    EntryIndex older = slab[index].older;
    EntryIndex newer = slab[index].newer;
    slab[index].older = kNoEntry;
    slab[index].newer = kNoEntry;

    // Merges the two subtrees of the erased entry in its place. Each step puts there the root of
    // higher priority and goes on into that root's subtree on the side of the other tree.
    while (older != kNoEntry && newer != kNoEntry) {
      if (slab[older].priority > slab[newer].priority) {
        *link = older;
        link = &slab[older].newer;
        older = slab[older].newer;
      } else {
        *link = newer;
        link = &slab[newer].older;
        newer = slab[newer].older;
      }
    }
    *link = older != kNoEntry ? older : newer;
  }
};

// Compares the digests of two entries, of one shard or two, as their texts compare: sha256
// before sha512, then by the hash bytes, whose order is that of their lower-case hex.
int compareDigests(const AccessShard& a_shard, EntryIndex a, const AccessShard& b_shard,
                   EntryIndex b) {
  const AccessEntry& x = a_shard.slab[a];
  const AccessEntry& y = b_shard.slab[b];
  uint32_t x_sha512 = x.flags & kIsSha512;
  uint32_t y_sha512 = y.flags & kIsSha512;
  if (x_sha512 != y_sha512) {
    return x_sha512 < y_sha512 ? -1 : 1;
  }
  if (int order = std::memcmp(x.key_head.data(), y.key_head.data(), kHeadBytes); order != 0) {
    return order;
  }
  if (x_sha512 == 0) {
    return 0;
  }
  return std::memcmp(a_shard.tailOf(a).data(), b_shard.tailOf(b).data(), kHeadBytes);
}

bool AccessShard::restoredBefore(EntryIndex a, EntryIndex b) const {
  const AccessEntry& x = slab[a];
  const AccessEntry& y = slab[b];
  if (x.last_access_ms != y.last_access_ms) {
    return x.last_access_ms < y.last_access_ms;
  }
  return compareDigests(*this, a, *this, b) < 0;
}

}  // namespace detail

namespace {

using detail::AccessEntry;
using detail::AccessShard;
using detail::EntryIndex;
using detail::EntryKey;
using detail::kIsRestored;
using detail::kIsSha512;
using detail::kIsUncollected;
using detail::kNoEntry;

// The value of each lower-case hex digit, indexed by its character.
constexpr std::array<uint8_t, 256> kHexValues = [] {
  std::array<uint8_t, 256> values{};
  for (int i = 0; i < 10; ++i) {
    values['0' + i] = static_cast<uint8_t>(i);
  }
  for (int i = 0; i < 6; ++i) {
    values['a' + i] = static_cast<uint8_t>(10 + i);
  }
  return values;
}();

// Returns the binary form of `digest`.
EntryKey keyOf(const Digest& digest) {
  EntryKey key;
  key.algorithm = digest.algorithm();
  // Digest::parse admits only lower-case hex of the algorithm's length. Only a moved-from
  // Digest has less, and the bound keeps the loop inside it.
  std::string_view hex = digest.hex();
  assert(hex.size() == 2 * key.length());
  size_t length = std::min(key.length(), hex.size() / 2);
  for (size_t i = 0; i < length; ++i) {
    auto high = static_cast<unsigned char>(hex[2 * i]);
    auto low = static_cast<unsigned char>(hex[2 * i + 1]);
    key.bytes[i] = static_cast<uint8_t>(kHexValues[high] << 4 | kHexValues[low]);
  }
  key.hash = XXH3_64bits(key.bytes.data(), key.length());
  return key;
}

// Returns the digest whose binary form is `key`.
Digest digestOf(const EntryKey& key) {
  Expected<Digest> digest =
      Digest::fromRaw(key.algorithm, std::span<const uint8_t>(key.bytes.data(), key.length()));
  if (!digest) {
    // The bytes came from a valid digest of the same algorithm, so only memory corruption gets
    // here, and nothing sensible can follow.
    std::abort();
  }
  return std::move(digest).value();
}

Status sizeMismatch(const Digest& digest, uint64_t tracked_bytes, uint64_t size_bytes) {
  return invalidArgument("size of " + digest.str() + " is " + std::to_string(size_bytes) +
                         " bytes but the tracked entry has " + std::to_string(tracked_bytes) +
                         " bytes, but one digest names one content");
}

// Walks one sorted sequence of a shard, the recency list or the restored tree, skipping pinned
// entries. The shard must stay locked while the cursor is in use.
class Cursor {
 public:
  enum class Sequence { kRecencyList, kRestoredTree };

  Cursor(const AccessShard& shard, Sequence sequence) : shard_(&shard), sequence_(sequence) {
    if (sequence == Sequence::kRecencyList) {
      index_ = shard.oldest;
    } else {
      descendOlder(shard.restored_root);
    }
    skipPinned();
  }

  const AccessShard& shard() const { return *shard_; }
  // The slot of the current entry, or kNoEntry when the sequence has no more unpinned entries.
  EntryIndex index() const { return index_; }
  const AccessEntry& entry() const { return shard_->slab[index_]; }

  void advance() {
    step();
    skipPinned();
  }

 private:
  void step() {
    if (sequence_ == Sequence::kRecencyList) {
      index_ = entry().newer;
      return;
    }
    // In order, the newer subtree of an entry comes after it, then its nearest ancestor whose
    // older subtree contains it.
    path_.pop_back();
    descendOlder(entry().newer);
  }

  // Pushes `index` and its chain of older children onto the path, and makes the last the current
  // entry.
  void descendOlder(EntryIndex index) {
    for (; index != kNoEntry; index = shard_->slab[index].older) {
      path_.push_back(index);
    }
    index_ = path_.empty() ? kNoEntry : path_.back();
  }

  // NOTE: pinned entries are walked past, not kept out of the sequences, so oldest() takes
  // longer with every pinned entry older than its last candidate.
  void skipPinned() {
    while (index_ != kNoEntry && entry().pin_count > 0) {
      step();
    }
  }

  const AccessShard* shard_;
  Sequence sequence_;
  EntryIndex index_ = kNoEntry;
  // In the restored tree, the current entry and those of its ancestors that come after it.
  std::vector<EntryIndex> path_;
};

// Orders cursors in a min-heap by their current entry: oldest time first, then lowest digest.
struct CursorAfter {
  bool operator()(const Cursor* a, const Cursor* b) const {
    const AccessEntry& x = a->entry();
    const AccessEntry& y = b->entry();
    if (x.last_access_ms != y.last_access_ms) {
      return x.last_access_ms > y.last_access_ms;
    }
    return detail::compareDigests(a->shard(), a->index(), b->shard(), b->index()) > 0;
  }
};

// An entry read under the shard lock, made into a Digest after the lock is released.
struct EntryCopy {
  EntryKey key;
  uint64_t size_bytes = 0;
  int64_t last_access_ms = 0;
};

}  // namespace

AccessOrder::AccessOrder(const Clock& clock, size_t shard_count)
    : clock_(clock),
      shard_count_(std::max<size_t>(shard_count, 1)),
      shards_(std::make_unique<AccessShard[]>(shard_count_)) {}

AccessOrder::~AccessOrder() = default;

AccessShard& AccessOrder::shardFor(const EntryKey& key) const {
  return shards_[key.hash % shard_count_];
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

Expected<uint32_t> AccessOrder::insertEntry(AccessShard& shard, const Digest& digest,
                                            const EntryKey& key, uint64_t size_bytes) {
  if (shard.table.size() >= max_entries_per_shard_) {
    return Status(StatusCode::kOutOfRange,
                  "cannot track " + digest.str() + ": its shard already contains " +
                      std::to_string(shard.table.size()) +
                      " entries, the maximum per shard, so erase entries first");
  }
  OUTPOST_RETURN_IF_ERROR(reserveBytes(size_bytes));

  EntryIndex index = shard.slab.allocate();
  AccessEntry& entry = shard.slab[index];
  std::memcpy(entry.key_head.data(), key.bytes.data(), detail::kHeadBytes);
  entry.size_bytes = size_bytes;
  entry.last_access_ms = 0;
  entry.pin_count = 0;
  entry.older = kNoEntry;
  entry.newer = kNoEntry;
  entry.flags = 0;
  // The top bits, since the low ones are the same for all keys of a shard when the shard count
  // is a power of two.
  entry.priority = static_cast<uint32_t>(key.hash >> 35);
  if (key.algorithm == DigestAlgorithm::kSha512) {
    entry.flags = kIsSha512;
    detail::KeyTail& tail = shard.sha512_tails[index];
    std::memcpy(tail.data(), key.bytes.data() + detail::kHeadBytes, tail.size());
  }

  shard.table.insert(key.hash, index, [&shard](EntryIndex other) { return shard.hashAt(other); });
  entries_.fetch_add(1, std::memory_order_relaxed);
  return index;
}

Status AccessOrder::touch(const Digest& digest, uint64_t size_bytes) {
  EntryKey key = keyOf(digest);
  AccessShard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);

  EntryIndex index = shard.find(key);
  if (index != kNoEntry) {
    uint64_t tracked_bytes = shard.slab[index].size_bytes;
    if (tracked_bytes != size_bytes) {
      return sizeMismatch(digest, tracked_bytes, size_bytes);
    }
    shard.detach(index);
  } else {
    OUTPOST_ASSIGN_OR_RETURN(index, insertEntry(shard, digest, key, size_bytes));
  }

  // The clock is read under the lock and clamped to the tail's time, so that times never
  // decrease along the list even when two threads race or the wall clock steps back.
  int64_t now_ms = clock_.nowMs();
  if (shard.newest != kNoEntry) {
    now_ms = std::max(now_ms, shard.slab[shard.newest].last_access_ms);
  }
  AccessEntry& entry = shard.slab[index];
  entry.last_access_ms = now_ms;
  entry.flags |= kIsUncollected;
  shard.appendToList(index);
  return Status::ok();
}

Status AccessOrder::restore(const Digest& digest, uint64_t size_bytes, int64_t last_access_ms) {
  EntryKey key = keyOf(digest);
  AccessShard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);

  EntryIndex index = shard.find(key);
  if (index != kNoEntry) {
    AccessEntry& entry = shard.slab[index];
    if (entry.size_bytes != size_bytes) {
      return sizeMismatch(digest, entry.size_bytes, size_bytes);
    }
    if ((entry.flags & kIsRestored) == 0 || last_access_ms <= entry.last_access_ms) {
      return Status::ok();
    }
    // The tree orders by time, so the entry leaves it before its time changes.
    shard.detach(index);
    entry.last_access_ms = last_access_ms;
    shard.addRestored(index);
    return Status::ok();
  }

  OUTPOST_ASSIGN_OR_RETURN(index, insertEntry(shard, digest, key, size_bytes));
  shard.slab[index].last_access_ms = last_access_ms;
  shard.addRestored(index);
  return Status::ok();
}

Status AccessOrder::erase(const Digest& digest) {
  EntryKey key = keyOf(digest);
  AccessShard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);

  size_t position = shard.findPosition(key);
  if (position == detail::EntryTable::kNoPosition) {
    return notFound("no access order entry for " + digest.str());
  }
  EntryIndex index = shard.table.at(position);
  AccessEntry& entry = shard.slab[index];
  if (entry.pin_count > 0) {
    return Status(StatusCode::kUnavailable, digest.str() + " is pinned by " +
                                                std::to_string(entry.pin_count) +
                                                " users, so keep its file until they unpin it");
  }

  shard.detach(index);
  bytes_.fetch_sub(entry.size_bytes, std::memory_order_relaxed);
  entries_.fetch_sub(1, std::memory_order_relaxed);
  shard.table.erase(position);
  if ((entry.flags & kIsSha512) != 0) {
    shard.sha512_tails.erase(index);
  }
  shard.slab.release(index);
  return Status::ok();
}

bool AccessOrder::contains(const Digest& digest) const {
  EntryKey key = keyOf(digest);
  AccessShard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);
  return shard.find(key) != kNoEntry;
}

std::optional<AccessOrder::EntryInfo> AccessOrder::find(const Digest& digest) const {
  EntryKey key = keyOf(digest);
  AccessShard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);

  EntryIndex index = shard.find(key);
  if (index == kNoEntry) {
    return std::nullopt;
  }
  const AccessEntry& entry = shard.slab[index];
  return EntryInfo{entry.size_bytes, entry.last_access_ms, entry.pin_count};
}

Status AccessOrder::pin(const Digest& digest) {
  EntryKey key = keyOf(digest);
  AccessShard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);

  EntryIndex index = shard.find(key);
  if (index == kNoEntry) {
    return notFound("cannot pin " + digest.str() + ": no access order entry");
  }
  AccessEntry& entry = shard.slab[index];
  if (entry.pin_count == std::numeric_limits<uint32_t>::max()) {
    return Status(StatusCode::kOutOfRange, "pin count of " + digest.str() + " is at its maximum");
  }
  ++entry.pin_count;
  return Status::ok();
}

Status AccessOrder::unpin(const Digest& digest) {
  EntryKey key = keyOf(digest);
  AccessShard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);

  EntryIndex index = shard.find(key);
  if (index == kNoEntry) {
    return notFound("cannot unpin " + digest.str() + ": no access order entry");
  }
  AccessEntry& entry = shard.slab[index];
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

  std::vector<EntryCopy> copies;
  {
    // This is the only place that locks more than one shard, and it locks them in index order,
    // so no deadlock can arise.
    std::vector<std::unique_lock<std::mutex>> locks;
    locks.reserve(shard_count_);
    for (size_t i = 0; i < shard_count_; ++i) {
      locks.emplace_back(shards_[i].mutex);
    }

    // Two sorted sequences per shard, merged through a min-heap of their current entries.
    std::vector<Cursor> cursors;
    cursors.reserve(2 * shard_count_);
    for (size_t i = 0; i < shard_count_; ++i) {
      cursors.emplace_back(shards_[i], Cursor::Sequence::kRecencyList);
      cursors.emplace_back(shards_[i], Cursor::Sequence::kRestoredTree);
    }
    std::priority_queue<Cursor*, std::vector<Cursor*>, CursorAfter> heads;
    for (Cursor& cursor : cursors) {
      if (cursor.index() != kNoEntry) {
        heads.push(&cursor);
      }
    }

    // Sizes of distinct entries add up to at most bytes(), so the sum cannot overflow.
    uint64_t freed_bytes = 0;
    while (freed_bytes < bytes_to_free && !heads.empty()) {
      Cursor* cursor = heads.top();
      heads.pop();
      const AccessEntry& entry = cursor->entry();
      copies.push_back(EntryCopy{cursor->shard().keyAt(cursor->index()), entry.size_bytes,
                                 entry.last_access_ms});
      freed_bytes += entry.size_bytes;

      cursor->advance();
      if (cursor->index() != kNoEntry) {
        heads.push(cursor);
      }
    }
  }

  // The digests' text is made after the locks are released, to keep touches waiting less.
  candidates.reserve(copies.size());
  for (const EntryCopy& copy : copies) {
    candidates.push_back(Candidate{digestOf(copy.key), copy.size_bytes, copy.last_access_ms});
  }
  return candidates;
}

std::vector<AccessOrder::AccessTime> AccessOrder::collectTouches() {
  std::vector<AccessTime> touches;
  std::vector<EntryCopy> copies;
  for (size_t i = 0; i < shard_count_; ++i) {
    AccessShard& shard = shards_[i];
    copies.clear();
    {
      std::lock_guard lock(shard.mutex);
      // Every touch marks its entry and appends it to the tail, and this loop unmarks the entries
      // it reports, so the marked entries are exactly the tail run it walks.
      for (EntryIndex index = shard.newest;
           index != kNoEntry && (shard.slab[index].flags & kIsUncollected) != 0;
           index = shard.slab[index].older) {
        AccessEntry& entry = shard.slab[index];
        entry.flags &= ~kIsUncollected;
        copies.push_back(EntryCopy{shard.keyAt(index), entry.size_bytes, entry.last_access_ms});
      }
    }

    for (const EntryCopy& copy : copies) {
      touches.push_back(AccessTime{digestOf(copy.key), copy.last_access_ms});
    }
  }
  return touches;
}

}  // namespace outpost::cache
