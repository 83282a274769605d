#include "cache/fill_registry.h"

#include <xxhash.h>

namespace outpost::cache {

FillRegistry::Shard& FillRegistry::shardFor(const Digest& digest) {
  uint64_t hash = XXH3_64bits(digest.str().data(), digest.str().size());
  return shards_[hash % kShardCount];
}

Expected<FillRegistry::Joined> FillRegistry::join(
    const Digest& digest, const std::function<bool()>& is_cached,
    const std::function<Expected<std::shared_ptr<BlobFill>>()>& make_fill) {
  Shard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);
  auto found = shard.fills.find(digest);
  if (found != shard.fills.end()) {
    return Joined{found->second, false};
  }
  if (is_cached()) {
    return Joined{nullptr, false};
  }
  Expected<std::shared_ptr<BlobFill>> new_fill = make_fill();
  if (!new_fill) {
    return new_fill.status();
  }
  shard.fills.emplace(digest, *new_fill);
  return Joined{std::move(*new_fill), true};
}

std::shared_ptr<BlobFill> FillRegistry::find(const Digest& digest) {
  Shard& shard = shardFor(digest);
  std::lock_guard lock(shard.mutex);
  auto found = shard.fills.find(digest);
  return found == shard.fills.end() ? nullptr : found->second;
}

void FillRegistry::remove(const std::shared_ptr<BlobFill>& fill) {
  Shard& shard = shardFor(fill->digest());
  std::lock_guard lock(shard.mutex);
  auto found = shard.fills.find(fill->digest());
  if (found != shard.fills.end() && found->second == fill) {
    shard.fills.erase(found);
  }
}

size_t FillRegistry::sizeForTest() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    total += shard.fills.size();
  }
  return total;
}

}  // namespace outpost::cache
