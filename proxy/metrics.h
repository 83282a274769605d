// Metrics: counters an operator graphs, rendered in the Prometheus text format at /metrics.
//
// Every counter is a relaxed atomic: loops add to them without locks, and a scrape reads a
// value that may be a few requests behind, which is what Prometheus expects.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/disk_budget.h"
#include "cache/memory_tier.h"
#include "proxy/http_server.h"
#include "storage/garbage_collector.h"
#include "storage/scrubber.h"

namespace outpost::proxy {

enum class Route : uint8_t {
  kBase,
  kManifest,
  kBlob,
  kBlobUpload,
  kTagsList,
  kCatalog,
  kReferrers,
  kAdmin,
  kMetrics,
  kHealth,
  kOther
};
inline constexpr size_t kRouteCount = 11;

// The state of one cache tier, rendered as the outpost_cache_tier_* metrics with a `tier` label.
// One cache tier's usage and totals, as the outpost_cache_tier_* families render them. A
// family that does not apply to a kind of tier is left empty and not rendered for it.
struct CacheTierSample {
  std::string tier;  // the tier label: "memory", "disk0", "disk1", ...
  uint64_t bytes = 0;
  uint64_t budget_bytes = 0;
  uint64_t entries = 0;
  uint64_t hits = 0;
  uint64_t evictions = 0;
  uint64_t promotions = 0;
  std::optional<uint64_t> misses;           // memory
  std::optional<uint64_t> insertions;       // memory
  std::optional<uint64_t> demotions;        // disk
  std::optional<uint64_t> evicted_bytes;    // disk
  std::optional<uint64_t> failures;         // disk
  std::optional<uint64_t> corrupt_removed;  // disk
};

// Counters of one remote repository.
struct RemoteCounters {
  std::string remote;
  std::atomic<uint64_t> upstream_requests{0};
  std::atomic<uint64_t> upstream_errors{0};
  std::atomic<uint64_t> upstream_bytes{0};
};

class Metrics {
 public:
  Metrics();

  void countRequest(Route route, int status);

  std::atomic<uint64_t> cache_hits{0};
  std::atomic<uint64_t> cache_misses{0};
  std::atomic<uint64_t> cache_stale{0};
  std::atomic<uint64_t> fills_started{0};
  std::atomic<uint64_t> fills_joined{0};
  std::atomic<uint64_t> fills_completed{0};
  std::atomic<uint64_t> fills_failed{0};

  // Registers a remote; the returned counters live as long as this object.
  RemoteCounters& addRemote(std::string_view name);

  // Adds the background scrub's counters to render(). Until then, or with nullptr when the
  // scrub is off, they render as 0. `counters` must outlive this object.
  void setScrubCounters(const storage::ScrubCounters* counters) { scrub_counters_ = counters; }
  // Adds the disk budget's usage and evictions to render(). `budget` must outlive this object.
  void setDiskBudget(const cache::DiskBudget* budget) { disk_budget_ = budget; }
  // Adds the garbage collection's counters to render(). `counters` must outlive this object.
  void setGcCounters(const storage::GcCounters* counters) { gc_counters_ = counters; }
  // Adds the memory tier as tier="memory" to render(). `tier` must outlive this object.
  void setMemoryTier(const cache::MemoryTier* tier) { memory_tier_ = tier; }

  // Renders every counter, with the server's connection and byte counters.
  std::string render(const ServerCounters& server) const;

 private:
  static constexpr std::array<int, 23> kStatuses = {200, 201, 202, 204, 206, 301, 302, 307,
                                                    400, 401, 403, 404, 405, 408, 409, 413,
                                                    416, 429, 431, 500, 502, 503, 504};
  static constexpr size_t kOtherStatus = kStatuses.size();

  void appendScrubCounters(std::string& out) const;
  // The memory tier first, then the disk tiers in order.
  std::vector<CacheTierSample> cacheTierSamples() const;
  void appendDiskBudget(std::string& out) const;
  void appendGcCounters(std::string& out) const;
  void appendCacheTiers(std::string& out) const;

  std::array<std::array<std::atomic<uint64_t>, kStatuses.size() + 1>, kRouteCount> requests_{};
  std::vector<std::unique_ptr<RemoteCounters>> remotes_;
  const storage::ScrubCounters* scrub_counters_ = nullptr;
  const cache::DiskBudget* disk_budget_ = nullptr;
  const storage::GcCounters* gc_counters_ = nullptr;
  const cache::MemoryTier* memory_tier_ = nullptr;
};

}  // namespace outpost::proxy
