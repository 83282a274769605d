#include "cache/cache_stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace outpost::cache {
namespace {

struct BlobFacts {
  uint64_t size_bytes = 0;
  int64_t last_access_ms = 0;
};

// The digests and sizes an image manifest lists (config first, then layers), or nothing when
// `body` is not an image manifest.
std::optional<std::vector<std::pair<std::string, uint64_t>>> listedBlobs(std::string_view body) {
  nlohmann::json manifest = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!manifest.is_object()) {
    return std::nullopt;
  }
  auto config = manifest.find("config");
  auto layers = manifest.find("layers");
  if (config == manifest.end() || !config->is_object() || layers == manifest.end() ||
      !layers->is_array()) {
    return std::nullopt;
  }
  std::vector<std::pair<std::string, uint64_t>> listed;
  auto add = [&listed](const nlohmann::json& descriptor) {
    if (!descriptor.is_object()) {
      return false;
    }
    auto digest = descriptor.find("digest");
    auto size = descriptor.find("size");
    if (digest == descriptor.end() || !digest->is_string() || size == descriptor.end() ||
        !size->is_number_unsigned()) {
      return false;
    }
    listed.emplace_back(digest->get<std::string>(), size->get<uint64_t>());
    return true;
  };
  if (!add(*config)) {
    return std::nullopt;
  }
  for (const nlohmann::json& layer : *layers) {
    if (!add(layer)) {
      return std::nullopt;
    }
  }
  return listed;
}

// Keeps the first `top` elements of `items` in the order of `before`.
template <typename T, typename Before>
void keepTop(std::vector<T>& items, size_t top, Before before) {
  size_t kept_count = std::min(top, items.size());
  auto kept_end = items.begin() + static_cast<std::ptrdiff_t>(kept_count);
  std::partial_sort(items.begin(), kept_end, items.end(), before);
  items.erase(kept_end, items.end());
}

std::string formatBytes(uint64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string formatAge(int64_t last_access_ms, int64_t now_ms) {
  if (last_access_ms <= 0) {
    return "never";
  }
  int64_t seconds = std::max<int64_t>(0, (now_ms - last_access_ms) / 1000);
  if (seconds < 120) {
    return fmt::format("{}s ago", seconds);
  }
  if (seconds < 2 * 3600) {
    return fmt::format("{}m ago", seconds / 60);
  }
  if (seconds < 2 * 86400) {
    return fmt::format("{}h ago", seconds / 3600);
  }
  return fmt::format("{}d ago", seconds / 86400);
}

}  // namespace

Expected<CacheStats> collectCacheStats(const storage::Index& index, size_t top) {
  CacheStats stats;
  std::unordered_map<std::string, BlobFacts> blobs;
  std::vector<BlobUse> all_blobs;
  OUTPOST_RETURN_IF_ERROR(index.forEachBlob([&](const Digest& digest,
                                                const storage::BlobRecord& record) {
    ++stats.blobs;
    stats.blob_bytes += record.size;
    if (stats.tiers.size() <= record.tier) {
      stats.tiers.resize(record.tier + 1u);
    }
    ++stats.tiers[record.tier].blobs;
    stats.tiers[record.tier].blob_bytes += record.size;
    blobs.emplace(digest.str(), BlobFacts{record.size, record.last_access_ms});
    all_blobs.push_back(BlobUse{digest, record.size, record.last_access_ms});
    return true;
  }));

  // A record "<tag>@<hash>" is the view of <tag> for clients with a narrower Accept header,
  // so it names the image as <tag>, once.
  std::unordered_map<std::string, std::vector<std::string>> tags_by_digest;
  OUTPOST_RETURN_IF_ERROR(index.forEachTag([&](std::string_view repository, std::string_view name,
                                               std::string_view tag,
                                               const storage::TagRecord& record) {
    std::string label = fmt::format("{}/{}:{}", repository, name, tag.substr(0, tag.find('@')));
    std::vector<std::string>& labels = tags_by_digest[record.digest];
    if (std::find(labels.begin(), labels.end(), label) == labels.end()) {
      labels.push_back(std::move(label));
    }
    return true;
  }));

  std::vector<ImageUse> images;
  OUTPOST_RETURN_IF_ERROR(index.forEachManifest([&](const Digest& digest,
                                                    const storage::ManifestRecord& record) {
    std::optional<std::vector<std::pair<std::string, uint64_t>>> listed =
        listedBlobs(record.body);
    if (!listed) {
      ++stats.other_manifests;
      return true;
    }
    ++stats.image_manifests;
    ImageUse image{digest, record.media_type, {}, 0, listed->size(), 0, 0};
    if (auto tagged = tags_by_digest.find(digest.str()); tagged != tags_by_digest.end()) {
      image.tags = std::move(tagged->second);
    }
    for (const auto& [blob_digest, size] : *listed) {
      image.size_bytes += size;
      auto cached = blobs.find(blob_digest);
      if (cached != blobs.end()) {
        ++image.blobs_cached;
        image.last_access_ms = std::max(image.last_access_ms, cached->second.last_access_ms);
      }
    }
    images.push_back(std::move(image));
    return true;
  }));

  stats.largest_blobs = all_blobs;
  keepTop(stats.largest_blobs, top,
          [](const BlobUse& a, const BlobUse& b) { return a.size_bytes > b.size_bytes; });
  stats.least_recent_blobs = std::move(all_blobs);
  keepTop(stats.least_recent_blobs, top, [](const BlobUse& a, const BlobUse& b) {
    return a.last_access_ms < b.last_access_ms;
  });

  std::vector<ImageUse> used_images;
  std::copy_if(images.begin(), images.end(), std::back_inserter(used_images),
               [](const ImageUse& image) { return image.blobs_cached > 0; });
  stats.largest_images = std::move(images);
  keepTop(stats.largest_images, top,
          [](const ImageUse& a, const ImageUse& b) { return a.size_bytes > b.size_bytes; });
  // An image without any cached blob takes no space, so it is left out of the eviction view.
  stats.least_recent_images = std::move(used_images);
  keepTop(stats.least_recent_images, top, [](const ImageUse& a, const ImageUse& b) {
    return a.last_access_ms < b.last_access_ms;
  });
  return stats;
}

std::vector<TierActivity> parseTierActivity(std::string_view metrics_text) {
  static constexpr std::pair<std::string_view, uint64_t TierActivity::*> kFields[] = {
      {"outpost_cache_tier_bytes", &TierActivity::bytes},
      {"outpost_cache_tier_budget_bytes", &TierActivity::budget_bytes},
      {"outpost_cache_tier_entries", &TierActivity::entries},
      {"outpost_cache_tier_hits_total", &TierActivity::hits},
      {"outpost_cache_tier_promotions_total", &TierActivity::promotions},
      {"outpost_cache_tier_demotions_total", &TierActivity::demotions},
      {"outpost_cache_tier_evictions_total", &TierActivity::evictions},
  };
  constexpr std::string_view kLabel = "{tier=\"";
  std::vector<TierActivity> tiers;
  size_t start = 0;
  while (start < metrics_text.size()) {
    size_t end = metrics_text.find('\n', start);
    std::string_view line = metrics_text.substr(
        start, end == std::string_view::npos ? std::string_view::npos : end - start);
    start = end == std::string_view::npos ? metrics_text.size() : end + 1;
    size_t label = line.find(kLabel);
    size_t label_end = label == std::string_view::npos ? std::string_view::npos
                                                       : line.find("\"} ", label + kLabel.size());
    if (label_end == std::string_view::npos) {
      continue;
    }
    std::string_view name = line.substr(0, label);
    auto field = std::find_if(std::begin(kFields), std::end(kFields),
                              [&](const auto& known) { return known.first == name; });
    if (field == std::end(kFields)) {
      continue;
    }
    std::string_view tier = line.substr(label + kLabel.size(), label_end - label - kLabel.size());
    std::string_view number = line.substr(label_end + 3);
    uint64_t value = 0;
    auto [ptr, error] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (error != std::errc() || ptr != number.data() + number.size()) {
      continue;
    }
    auto row = std::find_if(tiers.begin(), tiers.end(),
                            [&](const TierActivity& known) { return known.tier == tier; });
    if (row == tiers.end()) {
      tiers.push_back(TierActivity{.tier = std::string(tier)});
      row = tiers.end() - 1;
    }
    (*row).*(field->second) = value;
  }
  return tiers;
}

std::string formatCacheStats(const CacheStats& stats, const std::vector<CacheLimits>& limits,
                             const std::vector<TierActivity>& activity, int64_t now_ms) {
  std::string out;
  auto line = [&out](const std::string& text) {
    out += text;
    out += '\n';
  };

  line(fmt::format("blobs: {} ({})", stats.blobs, formatBytes(stats.blob_bytes)));
  size_t tier_count = std::max(limits.size(), stats.tiers.size());
  for (size_t tier = 0; tier < tier_count; ++tier) {
    TierUse use = tier < stats.tiers.size() ? stats.tiers[tier] : TierUse{};
    if (tier >= limits.size()) {
      line(fmt::format("disk tier {}: not configured, {} blobs ({}) recorded there", tier,
                       use.blobs, formatBytes(use.blob_bytes)));
      continue;
    }
    const CacheLimits& tier_limits = limits[tier];
    std::string head = fmt::format("disk tier {} ({}): {} blobs ({})", tier, tier_limits.path,
                                   use.blobs, formatBytes(use.blob_bytes));
    if (tier_limits.budget_bytes == 0) {
      line(head + ", no budget (storage.disk_budget_bytes is 0)");
    } else {
      line(fmt::format("{}, budget {} ({:.1f}% used), moving out above {}% down to {}%", head,
                       formatBytes(tier_limits.budget_bytes),
                       100.0 * static_cast<double>(use.blob_bytes) /
                           static_cast<double>(tier_limits.budget_bytes),
                       tier_limits.high_watermark_percent, tier_limits.low_watermark_percent));
    }
  }
  if (!activity.empty()) {
    line("");
    line("since the server started:");
    line(fmt::format("  {:<8} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10}", "tier", "used",
                     "budget", "entries", "hits", "promoted", "demoted", "evicted"));
    for (const TierActivity& tier : activity) {
      line(fmt::format("  {:<8} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10}", tier.tier,
                       formatBytes(tier.bytes), formatBytes(tier.budget_bytes), tier.entries,
                       tier.hits, tier.promotions, tier.demotions, tier.evictions));
    }
  }
  line(fmt::format("manifests: {} images, {} indexes and others", stats.image_manifests,
                   stats.other_manifests));

  auto images = [&](const char* title, const std::vector<ImageUse>& list) {
    line("");
    line(title);
    if (list.empty()) {
      line("  (none)");
    }
    for (const ImageUse& image : list) {
      line(fmt::format("  {}  {:>10}  {}/{} blobs cached  used {}", image.digest.str(),
                       formatBytes(image.size_bytes), image.blobs_cached, image.blobs_listed,
                       formatAge(image.last_access_ms, now_ms)));
      // Three names at most, so that an image with many tags keeps the list readable.
      constexpr size_t kMaxNames = 3;
      for (size_t i = 0; i < std::min(image.tags.size(), kMaxNames); ++i) {
        line("      " + image.tags[i]);
      }
      if (image.tags.size() > kMaxNames) {
        line(fmt::format("      and {} more tags", image.tags.size() - kMaxNames));
      }
    }
  };
  auto blobs = [&](const char* title, const std::vector<BlobUse>& list) {
    line("");
    line(title);
    if (list.empty()) {
      line("  (none)");
    }
    for (const BlobUse& blob : list) {
      line(fmt::format("  {}  {:>10}  used {}", blob.digest.str(), formatBytes(blob.size_bytes),
                       formatAge(blob.last_access_ms, now_ms)));
    }
  };
  images("largest images:", stats.largest_images);
  images("least recently used images:", stats.least_recent_images);
  blobs("largest blobs:", stats.largest_blobs);
  blobs("least recently used blobs:", stats.least_recent_blobs);
  return out;
}

}  // namespace outpost::cache
