// MemoryTier: the top tier of the cache. It keeps manifests and small blobs in memory as
// immutable buffers, so that a hit is sent without touching the disk.
//
// Design. Items are keyed by kind (blob or manifest) and digest. A digest names one content, so
// an item never changes: inserting a key that is present only marks it used. Each item is a
// std::shared_ptr<const MemoryItem>. A response holds its own reference while it sends the
// bytes, so neither an eviction nor erase() frees bytes that are being written.
//
// Items live in shards picked by the XXH3 hash of the digest. Each shard has its own mutex, its
// own least-recently-used list and an equal share of the byte budget, and evicts from its own
// list when an insertion would exceed its share. So the order is least recently used within a
// shard and only approximate across shards, and the tier never keeps more than its budget.
// There are at most kMaxShardCount shards, and fewer when the budget is small, so that a
// shard can contain at least kItemsPerShard items of the maximum size. A small budget gets one
// shard and an exact order.
//
// Charge. An item counts the bytes of its content and media type plus kEntryOverheadBytes, an
// estimate of the map node, list node and shared pointer around it. So many tiny manifests
// cannot exceed the budget through their bookkeeping. bytes() reports the charged total.
//
// Promotions. An insertion whose bytes were read from a lower tier (a blob file, a manifest
// record of the index) counts as a promotion. An insertion of bytes that were at hand anyway (a
// download that just committed, a manifest that was just fetched or pushed) does not.
// claimPromotion() lets one caller at a time read a given item from below, and bounds the reads
// in flight over all items.
//
// Threads: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "base/digest.h"
#include "base/status.h"

namespace outpost::cache {

namespace detail {
struct MemoryShard;
}  // namespace detail

enum class ContentKind : uint8_t { kBlob, kManifest };

// The immutable content of one item.
struct MemoryItem {
  std::string bytes;
  // The media type of a manifest; empty for a blob.
  std::string media_type;
};
using MemoryItemRef = std::shared_ptr<const MemoryItem>;

// The source of an item given to insert(); see "Promotions" above.
enum class InsertOrigin : uint8_t { kFill, kPromotion };

struct MemoryTierOptions {
  // Bytes the tier may hold, charged as described above. 0 turns the tier off.
  uint64_t budget_bytes = 0;
  // Largest content, in bytes, that the tier keeps. At most budget_bytes when that is above 0.
  uint64_t max_item_bytes = 0;
};

// Totals since construction, read by /metrics.
struct MemoryTierCounters {
  // Lookups that found the item, and lookups that did not (blobs too large to keep included).
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  // Items added, promotions among them.
  std::atomic<uint64_t> insertions{0};
  std::atomic<uint64_t> promotions{0};
  // Items removed to make room for others.
  std::atomic<uint64_t> evictions{0};
  // Items removed by erase().
  std::atomic<uint64_t> erasures{0};
};

class MemoryTier {
 public:
  // An estimate of the memory around one item besides its bytes and media type: the digest
  // text, the map node with its list links, and the shared pointer's control block with the
  // two string headers. It is their sizes added up for x86-64 and libstdc++, with a malloc
  // header each, not a measurement.
  static constexpr uint64_t kEntryOverheadBytes = 320;
  static constexpr size_t kMaxShardCount = 16;
  static constexpr uint64_t kItemsPerShard = 8;
  // Reads from a lower tier in flight at once; claimPromotion() rejects more.
  static constexpr size_t kMaxPromotionsInFlight = 8;

  // Lets its owner read one item from a lower tier; see claimPromotion(). Releases the claim
  // when destroyed. Empty when the claim was rejected.
  class PromotionClaim {
   public:
    PromotionClaim() = default;
    PromotionClaim(PromotionClaim&& other) noexcept;
    PromotionClaim& operator=(PromotionClaim&& other) noexcept;
    PromotionClaim(const PromotionClaim&) = delete;
    PromotionClaim& operator=(const PromotionClaim&) = delete;
    ~PromotionClaim();

    explicit operator bool() const { return tier_ != nullptr; }

   private:
    friend class MemoryTier;
    PromotionClaim(MemoryTier* tier, std::string key) : tier_(tier), key_(std::move(key)) {}
    void release();

    MemoryTier* tier_ = nullptr;
    std::string key_;
  };

  // Checks the options: kInvalidArgument when max_item_bytes is above a budget that is not 0.
  static Status validate(const MemoryTierOptions& options);

  // Options that fail validate() still make a tier, one that keeps no item above its budget.
  explicit MemoryTier(MemoryTierOptions options);
  ~MemoryTier();
  MemoryTier(const MemoryTier&) = delete;
  MemoryTier& operator=(const MemoryTier&) = delete;

  bool isEnabled() const { return options_.budget_bytes > 0; }
  // Whether content of `size_bytes` may be kept: the tier is on and the size is at most
  // max_item_bytes.
  bool admits(uint64_t size_bytes) const {
    return isEnabled() && size_bytes <= options_.max_item_bytes;
  }

  // Returns the item and marks it most recently used, or nullptr. Counts a hit or a miss, and
  // nothing while the tier is off.
  MemoryItemRef find(ContentKind kind, const Digest& digest);

  // Keeps `item` under (kind, digest), evicting the least recently used items of its shard as
  // needed. Returns false when the item is not kept: the tier is off, the content is larger
  // than max_item_bytes, or its charge exceeds the shard's share of the budget. An item already
  // present stays and is marked most recently used, because a digest names one content.
  // The caller vouches that the bytes match the digest.
  bool insert(ContentKind kind, const Digest& digest, MemoryItemRef item, InsertOrigin origin);

  // Removes the items of `digest`, of both kinds. Returns how many were removed.
  size_t erase(const Digest& digest);

  // Claims the right to read (kind, digest) from a lower tier and insert it as a promotion.
  // Rejected (an empty claim) when the tier would not keep `size_bytes`, when the item is
  // present, when another caller has the claim, or when kMaxPromotionsInFlight claims are
  // taken. Does not count a hit or a miss.
  PromotionClaim claimPromotion(ContentKind kind, const Digest& digest, uint64_t size_bytes);

  // The charged bytes and the items held now.
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t entries() const { return entries_.load(std::memory_order_relaxed); }
  uint64_t budgetBytes() const { return options_.budget_bytes; }
  uint64_t maxItemBytes() const { return options_.max_item_bytes; }
  size_t shardCount() const { return shard_count_; }
  const MemoryTierCounters& counters() const { return counters_; }

  // The bytes an item of `bytes_size` content and `media_type_size` media type is charged.
  static uint64_t chargeOf(uint64_t bytes_size, uint64_t media_type_size) {
    return bytes_size + media_type_size + kEntryOverheadBytes;
  }

 private:
  detail::MemoryShard& shardFor(const Digest& digest) const;
  void releasePromotion(const std::string& key);

  const MemoryTierOptions options_;
  size_t shard_count_ = 0;
  uint64_t shard_budget_bytes_ = 0;
  std::unique_ptr<detail::MemoryShard[]> shards_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> entries_{0};
  MemoryTierCounters counters_;

  std::mutex promotions_mutex_;
  std::unordered_set<std::string> promotions_;  // guarded by promotions_mutex_
};

}  // namespace outpost::cache
