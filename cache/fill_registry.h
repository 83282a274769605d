// FillRegistry: the downloads in progress, by digest, so that a blob is fetched once however
// many requests ask for it at the same moment.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "base/digest.h"
#include "cache/blob_fill.h"

namespace outpost::cache {

class FillRegistry {
 public:
  struct Joined {
    std::shared_ptr<BlobFill> fill;  // null when is_cached() returned true
    bool is_new = false;             // true: the caller must run the download
  };

  // Returns the running fill for `digest`, or makes one with `make_fill` and returns it with
  // is_new set. `is_cached` runs under the registry lock first: when the blob was committed
  // between the caller's cache lookup and this call, it returns true and no fill is made.
  // `make_fill` may fail (no temporary file); its Status is returned then.
  Expected<Joined> join(const Digest& digest, const std::function<bool()>& is_cached,
                        const std::function<Expected<std::shared_ptr<BlobFill>>()>& make_fill);

  // Returns the running fill for `digest`, or null.
  std::shared_ptr<BlobFill> find(const Digest& digest);

  // Forgets the fill for `digest` once it is committed or failed, so the next request reads
  // the committed blob or starts afresh. Only removes `fill` itself, not a newer one.
  void remove(const std::shared_ptr<BlobFill>& fill);

  size_t sizeForTest() const;

 private:
  static constexpr size_t kShardCount = 16;
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<Digest, std::shared_ptr<BlobFill>> fills;  // guarded by mutex
  };
  Shard& shardFor(const Digest& digest);

  std::array<Shard, kShardCount> shards_;
};

}  // namespace outpost::cache
