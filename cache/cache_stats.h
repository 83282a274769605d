// Cache statistics for a person: what the data folder holds, the largest and least recently
// used blobs and images, read from the index alone (no blob file is opened).
//
// An image is a cached image manifest (OCI or Docker v2, not an index or list). Its size is the
// sum of the config and layer sizes its body lists. Its last use is the latest access time
// among its cached blobs, so an image without any cached blob has no last use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "storage/index.h"

namespace outpost::cache {

struct BlobUse {
  Digest digest;
  uint64_t size_bytes = 0;
  int64_t last_access_ms = 0;
};

struct ImageUse {
  Digest digest;
  std::string media_type;
  // "<repository>/<name>:<tag>" of each tag that points at the image, in key order, once each.
  std::vector<std::string> tags;
  // Config and layers as listed in the manifest.
  uint64_t size_bytes = 0;
  size_t blobs_listed = 0;
  size_t blobs_cached = 0;
  // Latest access time among the cached blobs, 0 when none is cached.
  int64_t last_access_ms = 0;
};

// Blob count and bytes of one disk tier, from the tier field of the blob records.
struct TierUse {
  uint64_t blobs = 0;
  uint64_t blob_bytes = 0;
};

struct CacheStats {
  uint64_t blobs = 0;
  uint64_t blob_bytes = 0;
  // Indexed by tier: 0 is the data folder. As long as the highest tier a record names.
  std::vector<TierUse> tiers;
  uint64_t image_manifests = 0;
  // Manifests that are not image manifests: indexes, lists, and bodies that do not parse.
  uint64_t other_manifests = 0;
  std::vector<BlobUse> largest_blobs;       // largest first
  std::vector<BlobUse> least_recent_blobs;  // least recently used first
  std::vector<ImageUse> largest_images;     // largest first
  std::vector<ImageUse> least_recent_images;
};

// Reads every blob and manifest record of `index` and keeps `top` entries in each list.
// BLOCKING: reads the whole index.
Expected<CacheStats> collectCacheStats(const storage::Index& index, size_t top);

// Limits of one disk tier, printed beside the statistics.
struct CacheLimits {
  std::string path;
  uint64_t budget_bytes = 0;  // 0: no budget
  uint32_t high_watermark_percent = 0;
  uint32_t low_watermark_percent = 0;
};

// One tier's counters as a running server reports them in its outpost_cache_tier_* metrics.
struct TierActivity {
  std::string tier;  // "memory", "disk0", ...
  uint64_t bytes = 0;
  uint64_t budget_bytes = 0;
  uint64_t entries = 0;
  uint64_t hits = 0;
  uint64_t promotions = 0;
  uint64_t demotions = 0;
  uint64_t evictions = 0;
};

// Reads the outpost_cache_tier_* samples of a /metrics page, one entry per tier label in the
// order of first appearance. Lines it does not know are skipped.
std::vector<TierActivity> parseTierActivity(std::string_view metrics_text);

// Formats `stats` as text for a terminal, with times relative to `now_ms`. `limits` has one
// entry per configured disk tier. `activity`, when not empty, adds a running server's counters.
std::string formatCacheStats(const CacheStats& stats, const std::vector<CacheLimits>& limits,
                             const std::vector<TierActivity>& activity, int64_t now_ms);

}  // namespace outpost::cache
