#include "cache/memory_tier.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outpost::cache {
namespace detail {

struct MemoryNode {
  const Digest* digest = nullptr;  // the key of this node's map entry, which never moves
  ContentKind kind = ContentKind::kBlob;
  MemoryItemRef item;
  uint64_t charge_bytes = 0;
  MemoryNode* older = nullptr;
  MemoryNode* newer = nullptr;
};

// Aligned to 64 bytes, the cache line of x86-64 and common arm64 cores, so that threads locking
// neighbouring shards do not write to one line.
struct alignas(64) MemoryShard {
  std::mutex mutex;
  // One map per ContentKind. Guarded by mutex.
  std::array<std::unordered_map<Digest, MemoryNode>, 2> items;
  MemoryNode* oldest = nullptr;  // guarded by mutex
  MemoryNode* newest = nullptr;  // guarded by mutex
  uint64_t bytes = 0;            // guarded by mutex

  std::unordered_map<Digest, MemoryNode>& mapFor(ContentKind kind) {
    return items[static_cast<size_t>(kind)];
  }

  void unlink(MemoryNode& node) {
    (node.older != nullptr ? node.older->newer : oldest) = node.newer;
    (node.newer != nullptr ? node.newer->older : newest) = node.older;
    node.older = nullptr;
    node.newer = nullptr;
  }

  void append(MemoryNode& node) {
    node.older = newest;
    node.newer = nullptr;
    (newest != nullptr ? newest->newer : oldest) = &node;
    newest = &node;
  }

  void markUsed(MemoryNode& node) {
    if (newest != &node) {
      unlink(node);
      append(node);
    }
  }
};

}  // namespace detail

namespace {

// Scales a shard count to the budget: each shard should hold kItemsPerShard items of the
// maximum size.
size_t shardCountFor(const MemoryTierOptions& options) {
  if (options.budget_bytes == 0) {
    return 1;
  }
  uint64_t per_shard = MemoryTier::kItemsPerShard *
                       MemoryTier::chargeOf(options.max_item_bytes, /*media_type_size=*/0);
  uint64_t count = options.budget_bytes / per_shard;
  return static_cast<size_t>(std::clamp<uint64_t>(count, 1, MemoryTier::kMaxShardCount));
}

std::string promotionKey(ContentKind kind, const Digest& digest) {
  std::string key(1, kind == ContentKind::kBlob ? 'b' : 'm');
  key.append(digest.str());
  return key;
}

}  // namespace

MemoryTier::PromotionClaim::PromotionClaim(PromotionClaim&& other) noexcept
    : tier_(std::exchange(other.tier_, nullptr)), key_(std::move(other.key_)) {}

MemoryTier::PromotionClaim& MemoryTier::PromotionClaim::operator=(PromotionClaim&& other) noexcept {
  if (this != &other) {
    release();
    tier_ = std::exchange(other.tier_, nullptr);
    key_ = std::move(other.key_);
  }
  return *this;
}

MemoryTier::PromotionClaim::~PromotionClaim() { release(); }

void MemoryTier::PromotionClaim::release() {
  if (tier_ != nullptr) {
    tier_->releasePromotion(key_);
    tier_ = nullptr;
  }
}

Status MemoryTier::validate(const MemoryTierOptions& options) {
  if (options.budget_bytes > 0 && options.max_item_bytes > options.budget_bytes) {
    return invalidArgument("the maximum item size (" + std::to_string(options.max_item_bytes) +
                           " bytes) is above the memory budget (" +
                           std::to_string(options.budget_bytes) + " bytes)");
  }
  return Status::ok();
}

MemoryTier::MemoryTier(MemoryTierOptions options)
    : options_(options),
      shard_count_(shardCountFor(options)),
      shard_budget_bytes_(options.budget_bytes / shard_count_),
      shards_(std::make_unique<detail::MemoryShard[]>(shard_count_)) {}

MemoryTier::~MemoryTier() = default;

detail::MemoryShard& MemoryTier::shardFor(const Digest& digest) const {
  const std::string& text = digest.str();
  return shards_[XXH3_64bits(text.data(), text.size()) % shard_count_];
}

MemoryItemRef MemoryTier::find(ContentKind kind, const Digest& digest) {
  if (!isEnabled()) {
    return nullptr;
  }
  detail::MemoryShard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);
  auto& map = shard.mapFor(kind);
  auto found = map.find(digest);
  if (found == map.end()) {
    counters_.misses.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  shard.markUsed(found->second);
  counters_.hits.fetch_add(1, std::memory_order_relaxed);
  return found->second.item;
}

bool MemoryTier::insert(ContentKind kind, const Digest& digest, MemoryItemRef item,
                        InsertOrigin origin) {
  if (item == nullptr || !admits(item->bytes.size())) {
    return false;
  }
  uint64_t charge = chargeOf(item->bytes.size(), item->media_type.size());
  if (charge > shard_budget_bytes_) {
    return false;
  }

  detail::MemoryShard& shard = shardFor(digest);
  // The evicted bytes are freed after the lock is released, since a large free can take a while.
  std::vector<MemoryItemRef> evicted;
  {
    std::lock_guard lock(shard.mutex);
    auto& map = shard.mapFor(kind);
    if (auto found = map.find(digest); found != map.end()) {
      shard.markUsed(found->second);
      return true;
    }

    // Make room, oldest first.
    while (shard.bytes + charge > shard_budget_bytes_ && shard.oldest != nullptr) {
      detail::MemoryNode* victim = shard.oldest;
      shard.unlink(*victim);
      shard.bytes -= victim->charge_bytes;
      bytes_.fetch_sub(victim->charge_bytes, std::memory_order_relaxed);
      entries_.fetch_sub(1, std::memory_order_relaxed);
      counters_.evictions.fetch_add(1, std::memory_order_relaxed);
      evicted.push_back(std::move(victim->item));
      auto& victim_map = shard.mapFor(victim->kind);
      victim_map.erase(victim_map.find(*victim->digest));
    }

    auto entry = map.try_emplace(digest).first;
    detail::MemoryNode& node = entry->second;
    node.digest = &entry->first;
    node.kind = kind;
    node.item = std::move(item);
    node.charge_bytes = charge;
    shard.append(node);
    shard.bytes += charge;
  }
  bytes_.fetch_add(charge, std::memory_order_relaxed);
  entries_.fetch_add(1, std::memory_order_relaxed);
  counters_.insertions.fetch_add(1, std::memory_order_relaxed);
  if (origin == InsertOrigin::kPromotion) {
    counters_.promotions.fetch_add(1, std::memory_order_relaxed);
  }
  return true;
}

size_t MemoryTier::erase(const Digest& digest) {
  if (!isEnabled()) {
    return 0;
  }
  detail::MemoryShard& shard = shardFor(digest);
  size_t removed = 0;
  MemoryItemRef freed[2];
  {
    std::lock_guard lock(shard.mutex);
    for (auto& map : shard.items) {
      auto found = map.find(digest);
      if (found == map.end()) {
        continue;
      }
      detail::MemoryNode& node = found->second;
      shard.unlink(node);
      shard.bytes -= node.charge_bytes;
      bytes_.fetch_sub(node.charge_bytes, std::memory_order_relaxed);
      entries_.fetch_sub(1, std::memory_order_relaxed);
      freed[removed++] = std::move(node.item);
      map.erase(found);
    }
  }
  counters_.erasures.fetch_add(removed, std::memory_order_relaxed);
  return removed;
}

MemoryTier::PromotionClaim MemoryTier::claimPromotion(ContentKind kind, const Digest& digest,
                                                      uint64_t size_bytes) {
  if (!admits(size_bytes)) {
    return PromotionClaim();
  }
  {
    detail::MemoryShard& shard = shardFor(digest);
    std::lock_guard lock(shard.mutex);
    if (shard.mapFor(kind).contains(digest)) {
      return PromotionClaim();
    }
  }
  std::string key = promotionKey(kind, digest);
  std::lock_guard lock(promotions_mutex_);
  if (promotions_.size() >= kMaxPromotionsInFlight || !promotions_.insert(key).second) {
    return PromotionClaim();
  }
  return PromotionClaim(this, std::move(key));
}

void MemoryTier::releasePromotion(const std::string& key) {
  std::lock_guard lock(promotions_mutex_);
  promotions_.erase(key);
}

}  // namespace outpost::cache
