#include "proxy/metrics.h"

#include <fmt/format.h>

namespace outpost::proxy {
namespace {

constexpr std::array<std::string_view, kRouteCount> kRouteNames = {
    "base",    "manifest",  "blob",  "blob_upload", "tags_list", "catalog",
    "referrers", "admin", "metrics", "health",      "other"};

void appendCounter(std::string& out, std::string_view name, std::string_view help,
                   uint64_t value) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help,
                 name, name, value);
}

void appendGauge(std::string& out, std::string_view name, std::string_view help,
                 uint64_t value) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help,
                 name, name, value);
}

// Renders one metric over every tier: its HELP and TYPE once, then a line per tier.
void appendTierMetric(std::string& out, std::string_view name, std::string_view type,
                      std::string_view help, const std::vector<CacheTierSample>& tiers,
                      uint64_t CacheTierSample::*field) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  for (const CacheTierSample& tier : tiers) {
    fmt::format_to(std::back_inserter(out), "{}{{tier=\"{}\"}} {}\n", name, tier.tier, tier.*field);
  }
}

// The same for a metric that only some kinds of tier have; nothing when no tier has it.
void appendTierMetric(std::string& out, std::string_view name, std::string_view type,
                      std::string_view help, const std::vector<CacheTierSample>& tiers,
                      std::optional<uint64_t> CacheTierSample::*field) {
  bool is_header_sent = false;
  for (const CacheTierSample& tier : tiers) {
    if (!(tier.*field)) {
      continue;
    }
    if (!is_header_sent) {
      fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                     type);
      is_header_sent = true;
    }
    fmt::format_to(std::back_inserter(out), "{}{{tier=\"{}\"}} {}\n", name, tier.tier,
                   *(tier.*field));
  }
}

}  // namespace

Metrics::Metrics() {
  for (auto& route : requests_) {
    for (auto& counter : route) {
      counter.store(0, std::memory_order_relaxed);
    }
  }
}

void Metrics::countRequest(Route route, int status) {
  size_t index = kOtherStatus;
  for (size_t i = 0; i < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) {
      index = i;
      break;
    }
  }
  requests_[static_cast<size_t>(route)][index].fetch_add(1, std::memory_order_relaxed);
}

RemoteCounters& Metrics::addRemote(std::string_view name) {
  remotes_.push_back(std::make_unique<RemoteCounters>());
  remotes_.back()->remote.assign(name);
  return *remotes_.back();
}

void Metrics::appendScrubCounters(std::string& out) const {
  static const storage::ScrubCounters kNoScrub;
  const storage::ScrubCounters& scrub = scrub_counters_ ? *scrub_counters_ : kNoScrub;
  appendCounter(out, "outpost_scrub_bytes_verified_total",
                "Blob bytes read and hashed by the background scrub.",
                scrub.bytes_verified.load());
  appendCounter(out, "outpost_scrub_blobs_verified_total",
                "Blobs the background scrub found intact.", scrub.blobs_verified.load());
  appendCounter(out, "outpost_scrub_corrupt_removed_total",
                "Blobs the background scrub removed for a size or digest mismatch.",
                scrub.corrupt_removed.load());
  appendCounter(out, "outpost_scrub_missing_removed_total",
                "Index entries the background scrub removed because the blob file was missing.",
                scrub.missing_removed.load());
  appendCounter(out, "outpost_scrub_passes_total",
                "Background scrub passes that checked every indexed blob.",
                scrub.passes_completed.load());
}

void Metrics::appendDiskBudget(std::string& out) const {
  if (disk_budget_ == nullptr) {
    return;
  }
  appendGauge(out, "outpost_cache_disk_budget_bytes",
              "Byte budget of the data folder's blobs; 0 means no budget.",
              disk_budget_->budgetBytes());
  if (!disk_budget_->isEnabled()) {
    return;  // without a budget, usage is not tracked
  }
  const cache::DiskBudgetCounters& counters = disk_budget_->counters();
  appendGauge(out, "outpost_cache_disk_reserved_bytes",
              "Bytes announced by blob downloads in progress, counted toward the data folder's "
              "budget.",
              disk_budget_->bytesReserved());
  appendCounter(out, "outpost_cache_space_waits_total",
                "Downloads that waited for room because the data folder was full.",
                counters.space_waits.load());
  appendCounter(out, "outpost_cache_space_wait_timeouts_total",
                "Downloads that failed after waiting for room in the data folder.",
                counters.space_wait_timeouts.load());
}

void Metrics::appendGcCounters(std::string& out) const {
  static const storage::GcCounters kNoGc;
  const storage::GcCounters& gc = gc_counters_ ? *gc_counters_ : kNoGc;
  appendCounter(out, "outpost_gc_runs_total",
                "Garbage collection runs of local repository content that finished, dry runs "
                "included.",
                gc.runs.load());
  appendCounter(out, "outpost_gc_failures_total", "Garbage collection runs that failed.",
                gc.failures.load());
  appendCounter(out, "outpost_gc_blobs_removed_total",
                "Blobs that garbage collection removed with their files.", gc.blobs_removed.load());
  appendCounter(out, "outpost_gc_bytes_removed_total",
                "Bytes of the blobs that garbage collection removed.", gc.bytes_removed.load());
  appendCounter(out, "outpost_gc_manifests_removed_total",
                "Manifest records that garbage collection removed.", gc.manifests_removed.load());
  appendGauge(out, "outpost_gc_running", "1 while a garbage collection runs, else 0.",
              gc.running.load());
}

std::vector<CacheTierSample> Metrics::cacheTierSamples() const {
  std::vector<CacheTierSample> tiers;
  if (memory_tier_ != nullptr) {
    const cache::MemoryTierCounters& counters = memory_tier_->counters();
    tiers.push_back(CacheTierSample{.tier = "memory",
                                    .bytes = memory_tier_->bytes(),
                                    .budget_bytes = memory_tier_->budgetBytes(),
                                    .entries = memory_tier_->entries(),
                                    .hits = counters.hits.load(),
                                    .evictions = counters.evictions.load(),
                                    .promotions = counters.promotions.load(),
                                    .misses = counters.misses.load(),
                                    .insertions = counters.insertions.load()});
  }
  if (disk_budget_ != nullptr && disk_budget_->isEnabled()) {
    for (uint32_t tier = 0; tier < disk_budget_->tierCount(); ++tier) {
      const cache::DiskTierCounters& counters = disk_budget_->tierCounters(tier);
      tiers.push_back(CacheTierSample{.tier = "disk" + std::to_string(tier),
                                      .bytes = disk_budget_->tierBytesUsed(tier),
                                      .budget_bytes = disk_budget_->tierBudgetBytes(tier),
                                      .entries = disk_budget_->tierEntries(tier),
                                      .hits = counters.hits.load(),
                                      .evictions = counters.evictions.load(),
                                      .promotions = counters.promotions.load(),
                                      .demotions = counters.demotions.load(),
                                      .evicted_bytes = counters.evicted_bytes.load(),
                                      .failures = counters.failures.load(),
                                      .corrupt_removed = counters.corrupt_removed.load()});
    }
  }
  return tiers;
}

void Metrics::appendCacheTiers(std::string& out) const {
  std::vector<CacheTierSample> tiers = cacheTierSamples();
  if (tiers.empty()) {
    return;
  }

  appendTierMetric(out, "outpost_cache_tier_bytes", "gauge",
                   "Bytes a cache tier holds. The memory tier adds an estimate of its "
                   "bookkeeping per item.",
                   tiers, &CacheTierSample::bytes);
  appendTierMetric(out, "outpost_cache_tier_budget_bytes", "gauge",
                   "Byte budget of a cache tier; 0 means the tier is off.", tiers,
                   &CacheTierSample::budget_bytes);
  appendTierMetric(out, "outpost_cache_tier_entries", "gauge", "Items a cache tier holds.", tiers,
                   &CacheTierSample::entries);

  appendTierMetric(out, "outpost_cache_tier_hits_total", "counter",
                   "Reads served from a cache tier (HEADs of disk blobs excluded).", tiers,
                   &CacheTierSample::hits);
  appendTierMetric(out, "outpost_cache_tier_misses_total", "counter",
                   "Lookups that did not find the item in a cache tier.", tiers,
                   &CacheTierSample::misses);
  appendTierMetric(out, "outpost_cache_tier_insertions_total", "counter",
                   "Items added to a cache tier, promotions included.", tiers,
                   &CacheTierSample::insertions);
  appendTierMetric(out, "outpost_cache_tier_evictions_total", "counter",
                   "Items removed from the cache because their tier was over its budget (for "
                   "disk, from the last tier only).",
                   tiers, &CacheTierSample::evictions);
  appendTierMetric(out, "outpost_cache_tier_promotions_total", "counter",
                   "Items moved into a cache tier after reads from the tier below it.", tiers,
                   &CacheTierSample::promotions);

  // Families of the disk tiers only.
  appendTierMetric(out, "outpost_cache_tier_demotions_total", "counter",
                   "Blobs moved from a disk tier to the next one.", tiers,
                   &CacheTierSample::demotions);
  appendTierMetric(out, "outpost_cache_tier_evicted_bytes_total", "counter",
                   "Bytes of the blobs evicted from a disk tier.", tiers,
                   &CacheTierSample::evicted_bytes);
  appendTierMetric(out, "outpost_cache_tier_failures_total", "counter",
                   "Moves and evictions of a disk tier that failed on the index or a file.", tiers,
                   &CacheTierSample::failures);
  appendTierMetric(out, "outpost_cache_tier_corrupt_removed_total", "counter",
                   "Blobs removed because their bytes failed the digest check during a move.",
                   tiers, &CacheTierSample::corrupt_removed);
}

std::string Metrics::render(const ServerCounters& server) const {
  std::string out;
  out.reserve(8192);

  out.append("# HELP outpost_requests_total Requests answered, by route and status.\n");
  out.append("# TYPE outpost_requests_total counter\n");
  for (size_t route = 0; route < kRouteCount; ++route) {
    for (size_t i = 0; i <= kStatuses.size(); ++i) {
      uint64_t value = requests_[route][i].load(std::memory_order_relaxed);
      if (value == 0) {
        continue;
      }
      std::string status = i == kOtherStatus ? "other" : std::to_string(kStatuses[i]);
      fmt::format_to(std::back_inserter(out),
                     "outpost_requests_total{{route=\"{}\",status=\"{}\"}} {}\n",
                     kRouteNames[route], status, value);
    }
  }

  appendCounter(out, "outpost_cache_hits_total", "Requests answered from the cache.",
                cache_hits.load());
  appendCounter(out, "outpost_cache_misses_total", "Requests that needed the upstream.",
                cache_misses.load());
  appendCounter(out, "outpost_cache_stale_total",
                "Tags served from the cache because the upstream could not be reached.",
                cache_stale.load());
  appendCounter(out, "outpost_downloads_started_total", "Blob downloads started.",
                fills_started.load());
  appendCounter(out, "outpost_downloads_joined_total",
                "Requests that joined a blob download already running.", fills_joined.load());
  appendCounter(out, "outpost_downloads_completed_total", "Blob downloads verified and stored.",
                fills_completed.load());
  appendCounter(out, "outpost_downloads_failed_total",
                "Blob downloads that failed or had the wrong digest.", fills_failed.load());
  appendCounter(out, "outpost_bytes_sent_total", "Bytes written to client connections.",
                server.bytes_sent.load());
  appendCounter(out, "outpost_connections_accepted_total", "Client connections accepted.",
                server.connections_accepted.load());
  out.append("# HELP outpost_connections_open Client connections open now.\n");
  out.append("# TYPE outpost_connections_open gauge\n");
  fmt::format_to(std::back_inserter(out), "outpost_connections_open {}\n",
                 server.connections_open.load());

  appendScrubCounters(out);
  appendDiskBudget(out);
  appendCacheTiers(out);
  appendGcCounters(out);

  out.append("# HELP outpost_upstream_requests_total Requests sent to upstream registries.\n");
  out.append("# TYPE outpost_upstream_requests_total counter\n");
  for (const auto& remote : remotes_) {
    fmt::format_to(std::back_inserter(out), "outpost_upstream_requests_total{{remote=\"{}\"}} {}\n",
                   remote->remote, remote->upstream_requests.load());
  }
  out.append("# HELP outpost_upstream_errors_total Upstream requests that failed.\n");
  out.append("# TYPE outpost_upstream_errors_total counter\n");
  for (const auto& remote : remotes_) {
    fmt::format_to(std::back_inserter(out), "outpost_upstream_errors_total{{remote=\"{}\"}} {}\n",
                   remote->remote, remote->upstream_errors.load());
  }
  out.append("# HELP outpost_upstream_bytes_total Body bytes received from upstreams.\n");
  out.append("# TYPE outpost_upstream_bytes_total counter\n");
  for (const auto& remote : remotes_) {
    fmt::format_to(std::back_inserter(out), "outpost_upstream_bytes_total{{remote=\"{}\"}} {}\n",
                   remote->remote, remote->upstream_bytes.load());
  }
  return out;
}

}  // namespace outpost::proxy
