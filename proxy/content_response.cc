#include "proxy/content_response.h"

#include <algorithm>
#include <charconv>

#include "base/log.h"
#include "proxy/byte_range.h"
#include "proxy/media_types.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

constexpr std::string_view kApiVersionHeader = "Docker-Distribution-API-Version";
constexpr std::string_view kApiVersion = "registry/2.0";

}  // namespace

void respondManifest(Exchange& exchange, const Digest& digest, std::string_view media_type,
                     std::string_view body) {
  ResponseHead head(200);
  head.add("Content-Type", media_type);
  head.add("Docker-Content-Digest", digest.str());
  head.add("ETag", "\"" + digest.str() + "\"");
  head.add(kApiVersionHeader, kApiVersion);
  exchange.respond(std::move(head), body);
}

std::optional<BlobRangePlan> startBlobResponse(Exchange& exchange, const Digest& digest,
                                               uint64_t size) {
  ResponseHead head(200);
  head.add("Content-Type", "application/octet-stream");
  head.add("Docker-Content-Digest", digest.str());
  head.add("ETag", "\"" + digest.str() + "\"");
  head.add("Accept-Ranges", "bytes");
  head.add(kApiVersionHeader, kApiVersion);

  ByteRange range;
  std::string_view range_header = exchange.request().header("Range");
  RangeResult parsed =
      range_header.empty() ? RangeResult::kNone : parseRange(range_header, size, &range);
  if (parsed == RangeResult::kUnsatisfiable) {
    head.setStatus(416);
    head.add("Content-Range", unsatisfiedContentRangeValue(size));
    exchange.respond(std::move(head), "");
    return std::nullopt;
  }
  if (parsed == RangeResult::kSatisfiable) {
    head.setStatus(206);
    head.add("Content-Range", contentRangeValue(range, size));
    uint64_t length = range.last - range.first + 1;
    exchange.startResponse(std::move(head), length);
    return BlobRangePlan{range.first, length};
  }
  exchange.startResponse(std::move(head), size);
  return BlobRangePlan{0, size};
}

void sendBlobFile(const std::shared_ptr<Exchange>& exchange, const Digest& digest,
                  storage::BlobFile file, cache::DiskBudget::Pin pin) {
  std::optional<BlobRangePlan> plan = startBlobResponse(*exchange, digest, file.size);
  if (!plan) {
    return;
  }
  // The open file keeps the blob's data even if it is unlinked meanwhile, so a removal could
  // not shorten the response anyway.
  struct OpenBlob {
    UniqueFd fd;
    cache::DiskBudget::Pin pin;
  };
  auto owner = std::make_shared<OpenBlob>(OpenBlob{std::move(file.fd), std::move(pin)});
  int fd = owner->fd.get();
  exchange->sendFile(std::move(owner), fd, plan->first, plan->length,
                     [exchange] { exchange->finish(); });
}

std::optional<PageRequest> readPageRequest(Exchange& exchange) {
  const HttpRequest& request = exchange.request();
  PageRequest page;
  if (request.hasQueryParam("n")) {
    std::string text = request.queryParam("n");
    uint64_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
      respondRegistryError(exchange, 400, error_code::kPaginationNumberInvalid,
                           "n must be a non-negative integer");
      return std::nullopt;
    }
    page.limit = value;
  }
  page.last = request.queryParam("last");
  return page;
}

void respondListPage(Exchange& exchange, std::string_view path, nlohmann::json body,
                     const char* field, const std::vector<std::string>& sorted_items,
                     const PageRequest& page) {
  auto begin = page.last.empty()
                   ? sorted_items.begin()
                   : std::upper_bound(sorted_items.begin(), sorted_items.end(), page.last);
  auto end = sorted_items.end();
  bool has_more = false;
  if (page.limit && static_cast<uint64_t>(end - begin) > *page.limit) {
    end = begin + static_cast<std::ptrdiff_t>(*page.limit);
    has_more = *page.limit > 0;
  }
  body[field] = nlohmann::json::array();
  for (auto it = begin; it != end; ++it) {
    body[field].push_back(*it);
  }
  ResponseHead head(200);
  head.add("Content-Type", "application/json");
  head.add(kApiVersionHeader, kApiVersion);
  if (has_more) {
    head.add("Link", "<" + std::string(path) + "?n=" + std::to_string(*page.limit) +
                         "&last=" + *(end - 1) + ">; rel=\"next\"");
  }
  exchange.respond(std::move(head), body.dump());
}

nlohmann::json referrerDescriptors(const Exchange& exchange, const storage::Index& index,
                                   const std::vector<Digest>& referrers,
                                   std::string_view artifact_type) {
  nlohmann::json manifests = nlohmann::json::array();
  for (const Digest& referrer : referrers) {
    Expected<storage::ManifestRecord> record = index.getManifest(referrer);
    if (!record) {
      log::storage().warn("referrer manifest missing req={} digest={} error=\"{}\"",
                          exchange.requestId(), referrer.str(), record.status().toString());
      continue;
    }
    nlohmann::json document =
        nlohmann::json::parse(record->body, nullptr, /*allow_exceptions=*/false);
    if (!document.is_object()) {
      continue;
    }
    // The artifact type is artifactType, or for an image manifest without one its config's
    // media type, as the OCI distribution specification defines it for this API.
    std::string type;
    if (auto field = document.find("artifactType"); field != document.end() && field->is_string()) {
      type = field->get<std::string>();
    } else if (auto config = document.find("config");
               config != document.end() && config->is_object() && config->contains("mediaType") &&
               (*config)["mediaType"].is_string()) {
      type = (*config)["mediaType"].get<std::string>();
    }
    if (!artifact_type.empty() && type != artifact_type) {
      continue;
    }
    nlohmann::json descriptor{{"mediaType", record->media_type},
                              {"digest", referrer.str()},
                              {"size", record->body.size()}};
    if (!type.empty()) {
      descriptor["artifactType"] = type;
    }
    if (auto annotations = document.find("annotations");
        annotations != document.end() && annotations->is_object()) {
      descriptor["annotations"] = *annotations;
    }
    manifests.push_back(std::move(descriptor));
  }
  return manifests;
}

void respondReferrerIndex(Exchange& exchange, nlohmann::json descriptors,
                          std::string_view artifact_type) {
  nlohmann::json body{{"schemaVersion", 2},
                      {"mediaType", std::string(kOciImageIndex)},
                      {"manifests", std::move(descriptors)}};
  ResponseHead head(200);
  head.add("Content-Type", kOciImageIndex);
  head.add(kApiVersionHeader, kApiVersion);
  if (!artifact_type.empty()) {
    head.add("OCI-Filters-Applied", "artifactType");
  }
  exchange.respond(std::move(head), body.dump());
}

void respondReferrers(Exchange& exchange, const storage::Index& index,
                      const std::vector<Digest>& referrers, std::string_view artifact_type) {
  respondReferrerIndex(exchange, referrerDescriptors(exchange, index, referrers, artifact_type),
                       artifact_type);
}

}  // namespace outpost::proxy
