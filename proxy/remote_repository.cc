#include "proxy/remote_repository.h"

#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "proxy/blocking_work.h"
#include "proxy/content_response.h"
#include "proxy/grammar.h"
#include "proxy/manifest_check.h"
#include "proxy/media_types.h"
#include "proxy/memory_content.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

// The OCI distribution specification does not bound manifest size; 4 MiB is what CNCF
// distribution accepts on push, and no real image comes near it.
constexpr uint64_t kMaxManifestBytes = 4 * 1024 * 1024;
constexpr uint64_t kMaxTagListBytes = 16 * 1024 * 1024;
// How long an upstream tag list is reused for further pages and repeated requests.
constexpr int64_t kTagListCacheMs = 30 * 1000;
// Tag lists kept at once; past it, expired ones are dropped and new ones are not kept.
constexpr size_t kMaxCachedTagLists = 1024;
// Pages of an upstream tag list followed at most (Docker Hub pages hold 100 tags or so).
constexpr int kMaxTagListPages = 100;
// Connection failures in a row after which a remote counts as down for down_backoff_ms.
constexpr int kFailuresBeforeDown = 3;

std::string_view mediaTypeOf(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ') {
    type.remove_suffix(1);
  }
  return type;
}

// Whether a tag cached as `media_type` may be served to a client with `accept`. Registries match
// manifest types by exact name; a client that sends no Accept gets a Docker v2s2 manifest.
bool isServable(const AcceptList& accept, std::string_view media_type) {
  if (accept.acceptsExplicitly(media_type)) {
    return true;
  }
  return accept.empty() && media_type == kDockerManifestV2;
}

// Whether an upstream response for this client is the tag's full representation. A client
// that names both index types gets the index itself. A narrower client may get one platform's
// manifest in its place, as distribution does for manifest lists.
bool acceptsEveryIndexType(const AcceptList& accept) {
  return accept.acceptsExplicitly(kOciImageIndex) && accept.acceptsExplicitly(kDockerManifestList);
}

// Returns the target of the rel="next" entry of a Link header (RFC 8288) when it points at the
// upstream itself: a path, or an absolute URL under `base_url`. Registries paginate tag lists
// this way, for example `</v2/library/alpine/tags/list?last=3.19&n=100>; rel="next"`.
std::optional<std::string> nextPagePath(std::string_view link, std::string_view base_url) {
  while (!link.empty()) {
    size_t open = link.find('<');
    size_t close = link.find('>', open == std::string_view::npos ? 0 : open);
    if (open == std::string_view::npos || close == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view target = link.substr(open + 1, close - open - 1);
    size_t next_entry = link.find('<', close);
    std::string_view params = link.substr(close + 1, next_entry == std::string_view::npos
                                                         ? std::string_view::npos
                                                         : next_entry - close - 1);
    bool is_next = params.find("rel=\"next\"") != std::string_view::npos ||
                   params.find("rel=next") != std::string_view::npos;
    if (is_next) {
      if (target.starts_with('/')) {
        return std::string(target);
      }
      if (target.starts_with(base_url) && target.substr(base_url.size()).starts_with('/')) {
        return std::string(target.substr(base_url.size()));
      }
      return std::nullopt;
    }
    link = next_entry == std::string_view::npos ? std::string_view() : link.substr(next_entry);
  }
  return std::nullopt;
}

// Percent-encodes every byte of `text` outside RFC 3986's unreserved characters, for a query
// value (a media type's '/' and '+' included).
std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (char c : text) {
    bool is_unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (is_unreserved) {
      encoded.push_back(c);
    } else {
      auto byte = static_cast<unsigned char>(c);
      encoded.push_back('%');
      encoded.push_back(kHex[byte >> 4]);
      encoded.push_back(kHex[byte & 0xf]);
    }
  }
  return encoded;
}

// Whether an image index body has at least one entry in its "manifests" array.
bool listsAnyManifest(std::string_view body) {
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    return false;
  }
  auto manifests = parsed.find("manifests");
  return manifests != parsed.end() && manifests->is_array() && !manifests->empty();
}

std::string allManifestTypes() {
  std::string joined;
  for (std::string_view type : kManifestMediaTypes) {
    if (!joined.empty()) {
      joined.append(", ");
    }
    joined.append(type);
  }
  return joined;
}

// The index record of a tag as one class of client sees it. A client that accepts every index
// type shares the record named after the tag itself. A narrower client's view is kept apart,
// under the tag, '@' and a hash of its Accept ('@' never occurs in a tag), so that a platform
// manifest sent in place of an index never answers a client that accepts the index.
TagView tagViewFor(const std::string& tag, const AcceptList& accept) {
  if (acceptsEveryIndexType(accept)) {
    return TagView{tag, allManifestTypes()};
  }
  std::string joined = accept.joined();
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(joined.data(), joined.size())));
  return TagView{tag + "@" + hash, joined};
}

}  // namespace

struct RemoteRepository::ManifestResult {
  Status failure;             // non-OK: no manifest
  std::string retry_after;    // from an upstream 429
  std::optional<Digest> digest;
  std::string media_type;
  std::string body;
  bool has_body = false;      // false for a revalidation that found the cached digest current
};

RemoteRepository::RemoteRepository(RemoteConfig config, RemoteContext context)
    : config_(std::move(config)),
      context_(context),
      counters_(context.metrics->addRemote(config_.name)) {
  clients_.resize(context_.loop_count);
}

RemoteRepository::~RemoteRepository() = default;

void RemoteRepository::startLoop(EventLoop& loop) {
  UpstreamOptions options;
  options.base_url = config_.url;
  options.username = config_.username;
  options.password = config_.password;
  options.ca_file = config_.ca_file;
  options.insecure_skip_verify = config_.insecure_skip_verify;
  options.connect_timeout_ms = context_.upstream.connect_timeout_ms;
  options.response_timeout_ms = context_.upstream.response_timeout_ms;
  options.body_stall_timeout_ms = context_.upstream.body_stall_timeout_ms;
  options.max_retries = context_.upstream.max_retries;
  options.max_connections_per_host = context_.upstream.max_connections_per_host;
  options.clock = context_.clock;
  clients_[loop.index()] = std::make_unique<UpstreamClient>(loop.uv(), std::move(options));
}

void RemoteRepository::stopLoop(EventLoop& loop, std::function<void()> on_closed) {
  UpstreamClient* upstream = clients_[loop.index()].get();
  if (upstream == nullptr) {
    on_closed();
    return;
  }
  upstream->close([this, &loop, on_closed = std::move(on_closed)] {
    // Resetting the client destroys this lambda too, so copy what runs afterwards first.
    std::function<void()> done = on_closed;
    clients_[loop.index()].reset();  // the client allows this inside its close callback
    done();
  });
}

UpstreamClient& RemoteRepository::client(EventLoop& loop) { return *clients_[loop.index()]; }

UpstreamRequest RemoteRepository::makeRequest(std::string method, std::string path,
                                              std::string_view request_id) const {
  UpstreamRequest request;
  request.method = std::move(method);
  request.path_and_query = std::move(path);
  request.request_id.assign(request_id);
  counters_.upstream_requests.fetch_add(1, std::memory_order_relaxed);
  return request;
}

// ----- Upstream health --------------------------------------------------------------------

Status RemoteRepository::markedDownStatus() const {
  int64_t left_ms = down_until_ms_.load(std::memory_order_relaxed) - context_.clock->nowMs();
  int64_t left_s = std::max<int64_t>(1, (left_ms + 999) / 1000);
  return unavailable("upstream " + config_.name + " is marked down after repeated connection " +
                     "failures; it is tried again in " + std::to_string(left_s) +
                     " s (upstream.down_backoff)");
}

bool RemoteRepository::isMarkedDown() const {
  return context_.clock->nowMs() < down_until_ms_.load(std::memory_order_relaxed);
}

void RemoteRepository::recordUpstreamOutcome(const Status& transport) {
  if (transport.isOk()) {
    consecutive_failures_.store(0, std::memory_order_relaxed);
    return;
  }
  if (transport.code() != StatusCode::kUnavailable && transport.code() != StatusCode::kTimedOut) {
    return;
  }
  counters_.upstream_errors.fetch_add(1, std::memory_order_relaxed);
  int failures = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures >= kFailuresBeforeDown) {
    down_until_ms_.store(context_.clock->nowMs() + context_.upstream.down_backoff_ms,
                         std::memory_order_relaxed);
    consecutive_failures_.store(0, std::memory_order_relaxed);
    log::proxy().warn("upstream marked down remote={} for_ms={} error=\"{}\"", config_.name,
                      context_.upstream.down_backoff_ms, transport.message());
  }
}

Status RemoteRepository::statusFromUpstream(const FetchResult& result) const {
  if (!result.transport.isOk()) {
    return result.transport;
  }
  std::string detail = "upstream " + config_.name + " answered " + std::to_string(result.status);
  switch (result.status) {
    case 404:
      return Status(StatusCode::kNotFound, std::move(detail));
    case 401:
    case 403:
      return Status(StatusCode::kPermissionDenied, std::move(detail));
    case 429:
      return Status(StatusCode::kTooManyRequests, std::move(detail));
    default:
      return Status(StatusCode::kUnavailable, std::move(detail));
  }
}

void RemoteRepository::respondUpstreamFailure(Exchange& exchange, const Status& failure,
                                              std::string_view unknown_code) {
  if (failure.code() != StatusCode::kNotFound) {
    exchange.setOutcome(CacheOutcome::kUpstreamError);
    log::proxy().error("upstream request failed req={} remote={} path={} error=\"{}\"",
                       exchange.requestId(), config_.name, exchange.request().path(),
                       failure.toString());
  }
  std::string message(failure.message());
  switch (failure.code()) {
    case StatusCode::kNotFound:
      respondRegistryError(exchange, 404, unknown_code, message);
      return;
    case StatusCode::kPermissionDenied:
      respondRegistryError(exchange, 403, error_code::kDenied,
                           message + " (check the remote's credentials)");
      return;
    case StatusCode::kTooManyRequests: {
      ResponseHead head;
      int64_t retry_after = retry_after_seconds_.load(std::memory_order_relaxed);
      head.add("Retry-After", static_cast<uint64_t>(retry_after > 0 ? retry_after : 60));
      respondRegistryError(exchange, 429, error_code::kTooManyRequests, message, std::move(head));
      return;
    }
    case StatusCode::kTimedOut:
      respondRegistryError(exchange, 504, error_code::kUnavailable,
                           "upstream " + config_.name + " timed out: " + message);
      return;
    case StatusCode::kCorruption:
      respondRegistryError(exchange, 502, error_code::kUnavailable,
                           "upstream " + config_.name + " sent invalid content: " + message);
      return;
    case StatusCode::kNoSpace:
    case StatusCode::kIOError:
      respondRegistryError(exchange, 503, error_code::kUnavailable,
                           "cache storage failed: " + message);
      return;
    default:
      respondRegistryError(exchange, 503, error_code::kUnavailable,
                           "upstream " + config_.name + " (" + config_.url +
                               ") cannot be reached: " + message);
      return;
  }
}

void RemoteRepository::failRead(Exchange& exchange, const MissHandler& on_miss,
                                const Status& failure, std::string_view unknown_code) {
  if (on_miss) {
    on_miss(failure);
    return;
  }
  respondUpstreamFailure(exchange, failure, unknown_code);
}

// ----- Manifests --------------------------------------------------------------------------

void RemoteRepository::serveManifest(const std::shared_ptr<Exchange>& exchange, std::string name,
                                     std::string reference, MissHandler on_miss) {
  Expected<ReferenceKind> kind = classifyReference(reference);
  if (!kind) {
    bool is_digest = reference.find(':') != std::string::npos;
    respondRegistryError(*exchange, 400,
                         is_digest ? error_code::kDigestInvalid : error_code::kTagInvalid,
                         std::string(kind.status().message()));
    return;
  }
  if (*kind == ReferenceKind::kDigest) {
    Expected<Digest> digest = Digest::parse(reference);
    serveManifestByDigest(exchange, name, *digest, on_miss);
    return;
  }
  serveManifestByTag(exchange, name, reference, on_miss);
}

Expected<RemoteRepository::StoredManifest> RemoteRepository::loadManifest(
    std::string_view digest_text) const {
  OUTPOST_ASSIGN_OR_RETURN(Digest digest, Digest::parse(digest_text));
  OUTPOST_ASSIGN_OR_RETURN(cache::MemoryItemRef item,
                           readManifest(*context_.memory, *context_.index, digest));
  return StoredManifest{std::move(digest), std::move(item)};
}

void RemoteRepository::serveManifestByDigest(const std::shared_ptr<Exchange>& exchange,
                                             const std::string& name, const Digest& digest,
                                             const MissHandler& on_miss) {
  if (context_.index->hasLink(config_.name, digest)) {
    Expected<cache::MemoryItemRef> manifest =
        readManifest(*context_.memory, *context_.index, digest);
    if (manifest) {
      exchange->setOutcome(CacheOutcome::kHit);
      context_.metrics->cache_hits.fetch_add(1, std::memory_order_relaxed);
      respondManifestItem(*exchange, digest, *manifest);
      return;
    }
    if (manifest.status().code() != StatusCode::kNotFound) {
      log::storage().error("manifest read failed req={} digest={} error=\"{}\"",
                           exchange->requestId(), digest.str(), manifest.status().toString());
    }
  }
  fetchManifest(exchange, name, digest.str(), "", on_miss);
}

void RemoteRepository::serveManifestByTag(const std::shared_ptr<Exchange>& exchange,
                                          const std::string& name, const std::string& tag,
                                          const MissHandler& on_miss) {
  // A pinned tag is served at its pinned digest, without revalidation.
  // NOTE: the pinned manifest is served whatever the client's Accept names.
  if (Expected<storage::TagRecord> pinned = context_.index->getPinnedTag(config_.name, name, tag)) {
    Expected<StoredManifest> manifest = loadManifest(pinned->digest);
    if (manifest) {
      exchange->setOutcome(CacheOutcome::kHit);
      context_.metrics->cache_hits.fetch_add(1, std::memory_order_relaxed);
      respondManifestItem(*exchange, manifest->digest, manifest->item);
      return;
    }
    log::storage().error("pinned manifest missing req={} remote={} name={} tag={} digest={}",
                         exchange->requestId(), config_.name, name, tag, pinned->digest);
  }
  AcceptList accept = AcceptList::fromHeaderLines(exchange->request().headerValues("Accept"));
  TagView view = tagViewFor(tag, accept);
  Expected<storage::TagRecord> cached = context_.index->getTag(config_.name, name, view.record_key);
  if (cached && isServable(accept, cached->media_type)) {
    int64_t age_ms = context_.clock->nowMs() - cached->confirmed_ms;
    if (age_ms < config_.tag_ttl_ms) {
      Expected<StoredManifest> manifest = loadManifest(cached->digest);
      if (manifest) {
        exchange->setOutcome(CacheOutcome::kHit);
        context_.metrics->cache_hits.fetch_add(1, std::memory_order_relaxed);
        respondManifestItem(*exchange, manifest->digest, manifest->item);
        return;
      }
    } else {
      revalidateTag(exchange, name, tag, view, *cached, on_miss);
      return;
    }
  }
  fetchManifest(exchange, name, tag, view.record_key, on_miss);
}

void RemoteRepository::respondManifestResult(const std::shared_ptr<Exchange>& exchange,
                                             const ManifestResult& result,
                                             const MissHandler& on_miss) {
  if (!exchange->isOpen()) {
    return;
  }
  if (!result.failure.isOk()) {
    if (result.failure.code() == StatusCode::kTooManyRequests && !result.retry_after.empty()) {
      int64_t seconds = 0;
      std::from_chars(result.retry_after.data(),
                      result.retry_after.data() + result.retry_after.size(), seconds);
      retry_after_seconds_.store(seconds, std::memory_order_relaxed);
    }
    failRead(*exchange, on_miss, result.failure, error_code::kManifestUnknown);
    return;
  }
  respondManifest(*exchange, *result.digest, result.media_type, result.body);
}

void RemoteRepository::fetchManifest(const std::shared_ptr<Exchange>& exchange,
                                     const std::string& name, const std::string& reference,
                                     const std::string& tag_record_key,
                                     const MissHandler& on_miss) {
  AcceptList accept = AcceptList::fromHeaderLines(exchange->request().headerValues("Accept"));
  std::string accept_joined = accept.joined();
  std::string key = name + '\0' + reference + '\0' + accept_joined;

  context_.metrics->cache_misses.fetch_add(1, std::memory_order_relaxed);
  bool is_leader = manifest_flights_.join(
      key, [this, exchange, on_miss](const std::shared_ptr<const ManifestResult>& result) {
        exchange->loop().dispatch([this, exchange, on_miss, result] {
          respondManifestResult(exchange, *result, on_miss);
        });
      });
  exchange->setOutcome(is_leader ? CacheOutcome::kMiss : CacheOutcome::kFillJoined);
  if (!is_leader) {
    return;
  }

  EventLoop& loop = exchange->loop();
  if (isMarkedDown()) {
    auto result = std::make_shared<ManifestResult>();
    result->failure = markedDownStatus();
    manifest_flights_.complete(key, result);
    return;
  }
  UpstreamRequest request =
      makeRequest("GET", "/v2/" + name + "/manifests/" + reference, exchange->requestId());
  if (!accept_joined.empty()) {
    request.headers.emplace_back("Accept", accept_joined);
  }
  fetchBuffered(client(loop), std::move(request), kMaxManifestBytes,
                [this, key, name, reference, tag_record_key, &loop](FetchResult result) {
                  completeManifestFetch(key, name, reference, tag_record_key, loop,
                                        std::move(result));
                });
}

void RemoteRepository::completeManifestFetch(const std::string& key, const std::string& name,
                                             const std::string& reference,
                                             const std::string& tag_record_key,
                                             EventLoop& loop, FetchResult fetched) {
  recordUpstreamOutcome(fetched.transport);
  auto result = std::make_shared<ManifestResult>();
  if (!fetched.transport.isOk() || fetched.status != 200) {
    result->failure = statusFromUpstream(fetched);
    result->retry_after = std::string(fetched.header("Retry-After"));
    manifest_flights_.complete(key, result);
    return;
  }

  std::string media_type(mediaTypeOf(fetched.header("Content-Type")));
  if (!isManifestMediaType(media_type)) {
    media_type = std::string(detectManifestMediaType(fetched.body));
  }
  bool is_digest_reference = reference.find(':') != std::string::npos;
  Digest digest = sha256Of(fetched.body);
  if (is_digest_reference) {
    Expected<Digest> expected = Digest::parse(reference);
    DigestHasher hasher(expected->algorithm());
    hasher.update(fetched.body);
    digest = hasher.finish();
    if (digest != *expected) {
      result->failure = corruption("manifest bytes have digest " + digest.str() + ", expected " +
                                   expected->str());
    }
  }
  if (media_type.empty() && result->failure.isOk()) {
    result->failure = corruption("manifest has no known media type");
  }
  if (!result->failure.isOk()) {
    log::proxy().error("upstream manifest rejected remote={} name={} reference={} error=\"{}\"",
                       config_.name, name, reference, result->failure.toString());
    manifest_flights_.complete(key, result);
    return;
  }

  result->digest = digest;
  result->media_type = media_type;
  result->body = std::move(fetched.body);
  result->has_body = true;

  // Store, then respond to every waiter, so that a request arriving afterwards finds the
  // index filled.
  storage::Index* index = context_.index;
  cache::MemoryTier* memory = context_.memory;
  int64_t now_ms = context_.clock->nowMs();
  std::string remote = config_.name;
  std::string store_tag_as = is_digest_reference ? std::string() : tag_record_key;
  runBlocking(
      loop.uv(),
      [index, memory, result, remote, name, reference, store_tag_as, now_ms] {
        Status status = index->putManifest(
            *result->digest, storage::ManifestRecord{result->media_type, result->body, now_ms});
        if (status.isOk()) {
          keepManifest(*memory, *result->digest, result->media_type, result->body);
          storage::Index::Batch batch;
          batch.putLink(remote, *result->digest);
          // Kept so that the referrers API can serve it from the cache.
          Expected<ManifestReferences> references =
              checkPushedManifest(result->media_type, result->body);
          if (references && references->subject) {
            batch.putReferrer(remote, name, *references->subject, *result->digest);
          }
          status = index->write(std::move(batch), storage::Index::WriteMode::kSynced);
        }
        if (status.isOk() && !store_tag_as.empty()) {
          storage::Index::Batch batch;
          // The history follows the tag as clients that accept every manifest type see it. The
          // views of narrower clients would add entries for the same move, or for none.
          if (store_tag_as.find('@') == std::string::npos) {
            Expected<storage::TagRecord> previous = index->getTag(remote, name, store_tag_as);
            std::string previous_digest = previous ? previous->digest : std::string();
            if (previous_digest != result->digest->str()) {
              batch.putTagChange(remote, name, store_tag_as,
                                 {.time_ms = now_ms,
                                  .old_digest = previous_digest,
                                  .new_digest = result->digest->str(),
                                  .cause = "upstream"});
            }
          }
          batch.putTag(remote, name, store_tag_as,
                       storage::TagRecord{result->digest->str(), result->media_type, now_ms});
          status = index->write(std::move(batch), storage::Index::WriteMode::kSynced);
        }
        if (!status.isOk()) {
          log::storage().error("manifest not stored remote={} name={} reference={} error=\"{}\"",
                               remote, name, reference, status.toString());
        }
      },
      [this, key, result] { manifest_flights_.complete(key, result); });
}

void RemoteRepository::revalidateTag(const std::shared_ptr<Exchange>& exchange,
                                     const std::string& name, const std::string& tag,
                                     const TagView& view, const storage::TagRecord& cached,
                                     const MissHandler& on_miss) {
  auto serve_cached = [this, exchange, cached, on_miss](CacheOutcome outcome) {
    Expected<StoredManifest> manifest = loadManifest(cached.digest);
    if (!manifest) {
      failRead(*exchange, on_miss, notFound("cached manifest is missing; try again"),
               error_code::kManifestUnknown);
      return;
    }
    exchange->setOutcome(outcome);
    if (outcome == CacheOutcome::kStale) {
      context_.metrics->cache_stale.fetch_add(1, std::memory_order_relaxed);
    } else {
      context_.metrics->cache_hits.fetch_add(1, std::memory_order_relaxed);
    }
    respondManifestItem(*exchange, manifest->digest, manifest->item);
  };

  if (isMarkedDown()) {
    log::proxy().warn("stale tag served req={} remote={} name={} tag={} reason=marked_down",
                      exchange->requestId(), config_.name, name, tag);
    serve_cached(CacheOutcome::kStale);
    return;
  }

  std::string key = std::string("revalidate") + '\0' + name + '\0' + view.record_key;
  bool is_leader =
      manifest_flights_.join(key, [this, exchange, name, tag, serve_cached,
                                   on_miss](const std::shared_ptr<const ManifestResult>& result) {
        exchange->loop().dispatch([this, exchange, name, tag, serve_cached, on_miss, result] {
          if (!exchange->isOpen()) {
            return;
          }
          const Status& failure = result->failure;
          if (failure.isOk() && !result->has_body) {
            serve_cached(CacheOutcome::kHit);
          } else if (failure.isOk()) {
            exchange->setOutcome(CacheOutcome::kMiss);
            respondManifest(*exchange, *result->digest, result->media_type, result->body);
          } else if (failure.code() == StatusCode::kNotFound) {
            failRead(*exchange, on_miss, failure, error_code::kManifestUnknown);
          } else {
            log::proxy().warn("stale tag served req={} remote={} name={} tag={} error=\"{}\"",
                              exchange->requestId(), config_.name, name, tag,
                              failure.toString());
            serve_cached(CacheOutcome::kStale);
          }
        });
      });
  if (!is_leader) {
    return;
  }

  // HEAD does not count against Docker Hub's pull limit; the manifest is fetched only when the
  // digest moved.
  EventLoop& loop = exchange->loop();
  UpstreamRequest request =
      makeRequest("HEAD", "/v2/" + name + "/manifests/" + tag, exchange->requestId());
  if (!view.accept.empty()) {
    request.headers.emplace_back("Accept", view.accept);
  }
  request.deadline_ms = context_.upstream.revalidate_timeout_ms;
  fetchBuffered(
      client(loop), std::move(request), 0,
      [this, key, name, tag, view, cached, &loop,
       request_id = exchange->requestId()](FetchResult head) {
        recordUpstreamOutcome(head.transport);
        std::string_view upstream_digest = head.header("Docker-Content-Digest");
        if (head.transport.isOk() && head.status == 200 && upstream_digest == cached.digest) {
          storage::TagRecord confirmed = cached;
          confirmed.confirmed_ms = context_.clock->nowMs();
          storage::Index* index = context_.index;
          std::string remote = config_.name;
          runBlocking(
              loop.uv(),
              [index, remote, name, record_key = view.record_key, confirmed] {
                Status status = index->putTag(remote, name, record_key, confirmed);
                if (!status.isOk()) {
                  log::storage().error("tag not stored remote={} name={} tag={} error=\"{}\"",
                                       remote, name, record_key, status.toString());
                }
              },
              [this, key] {
                manifest_flights_.complete(key, std::make_shared<ManifestResult>());
              });
          return;
        }
        if (!head.transport.isOk() || head.status != 200) {
          auto result = std::make_shared<ManifestResult>();
          result->failure = statusFromUpstream(head);
          manifest_flights_.complete(key, result);
          return;
        }
        // The tag moved: fetch its manifest for this view and store it.
        UpstreamRequest get = makeRequest("GET", "/v2/" + name + "/manifests/" + tag, request_id);
        if (!view.accept.empty()) {
          get.headers.emplace_back("Accept", view.accept);
        }
        log::proxy().info("tag moved upstream remote={} name={} tag={} old={} new={}",
                          config_.name, name, tag, cached.digest, upstream_digest);
        fetchBuffered(client(loop), std::move(get), kMaxManifestBytes,
                      [this, key, name, tag, record_key = view.record_key,
                       &loop](FetchResult result) {
                        completeManifestFetch(key, name, tag, record_key, loop,
                                              std::move(result));
                      });
      });
}

// ----- Referrers --------------------------------------------------------------------------

void RemoteRepository::serveReferrers(const std::shared_ptr<Exchange>& exchange, std::string name,
                                      std::string reference, MissHandler on_miss) {
  std::optional<Digest> subject = parseDigestOrRespond(*exchange, reference);
  if (!subject) {
    return;
  }
  std::string artifact_type = exchange->request().queryParam("artifactType");
  auto from_cache = [this, exchange, name, subject = *subject, artifact_type,
                     on_miss](const Status& failure) {
    Expected<std::vector<Digest>> referrers =
        context_.index->listReferrers(config_.name, name, subject);
    if (!referrers) {
      failRead(*exchange, on_miss, referrers.status(), error_code::kManifestUnknown);
      return;
    }
    nlohmann::json descriptors =
        referrerDescriptors(*exchange, *context_.index, *referrers, artifact_type);
    if (on_miss && descriptors.empty()) {
      on_miss(notFound("no cached referrers of " + subject.str()));
      return;
    }
    exchange->setOutcome(CacheOutcome::kStale);
    log::proxy().info(
        "referrers served from the cache req={} remote={} name={} subject={} "
        "reason=\"{}\"",
        exchange->requestId(), config_.name, name, subject.str(), failure.toString());
    respondReferrerIndex(*exchange, std::move(descriptors), artifact_type);
  };
  if (isMarkedDown()) {
    from_cache(markedDownStatus());
    return;
  }

  std::string path = "/v2/" + name + "/referrers/" + subject->str();
  if (!artifact_type.empty()) {
    path += "?artifactType=" + percentEncode(artifact_type);
  }
  exchange->setOutcome(CacheOutcome::kMiss);
  fetchBuffered(
      client(exchange->loop()), makeRequest("GET", std::move(path), exchange->requestId()),
      kMaxManifestBytes, [this, exchange, from_cache, on_miss](FetchResult result) {
        recordUpstreamOutcome(result.transport);
        if (!exchange->isOpen()) {
          return;
        }
        if (!result.transport.isOk() || result.status != 200) {
          from_cache(statusFromUpstream(result));
          return;
        }
        if (on_miss && !listsAnyManifest(result.body)) {
          on_miss(notFound("upstream " + config_.name + " lists no referrers"));
          return;
        }
        ResponseHead head(200);
        std::string_view content_type = result.header("Content-Type");
        head.add("Content-Type", content_type.empty() ? kOciImageIndex : content_type);
        if (std::string_view filters = result.header("OCI-Filters-Applied"); !filters.empty()) {
          head.add("OCI-Filters-Applied", filters);
        }
        head.add("Docker-Distribution-API-Version", "registry/2.0");
        exchange->respond(std::move(head), result.body);
      });
}

// ----- Tag lists --------------------------------------------------------------------------

void RemoteRepository::fetchTagPages(EventLoop& loop, std::string path, std::string request_id,
                                     std::shared_ptr<TagPages> pages,
                                     std::function<void(Status)> done) {
  fetchBuffered(
      client(loop), makeRequest("GET", std::move(path), request_id), kMaxTagListBytes,
      [this, &loop, request_id, pages, done = std::move(done)](FetchResult result) mutable {
        recordUpstreamOutcome(result.transport);
        if (!result.transport.isOk() || result.status != 200) {
          done(statusFromUpstream(result));
          return;
        }
        nlohmann::json parsed = nlohmann::json::parse(result.body, nullptr, false);
        if (parsed.is_discarded() || !parsed.is_object()) {
          done(corruption("upstream tag list is not a JSON object"));
          return;
        }
        if (auto found = parsed.find("tags"); found != parsed.end() && found->is_array()) {
          for (const auto& tag : *found) {
            if (tag.is_string() && isValidTag(tag.get<std::string>())) {
              pages->tags.push_back(tag.get<std::string>());
            }
          }
        }
        ++pages->count;
        std::optional<std::string> next = nextPagePath(result.header("Link"), config_.url);
        if (!next) {
          done(Status::ok());
          return;
        }
        if (pages->count >= kMaxTagListPages) {
          log::proxy().warn("upstream tag list truncated req={} remote={} pages={}", request_id,
                            config_.name, pages->count);
          done(Status::ok());
          return;
        }
        fetchTagPages(loop, std::move(*next), request_id, pages, std::move(done));
      });
}

void RemoteRepository::serveTagList(const std::shared_ptr<Exchange>& exchange, std::string name,
                                    std::string display_name) {
  std::optional<PageRequest> page = readPageRequest(*exchange);
  if (!page) {
    return;
  }
  collectTags(
      exchange, std::move(name),
      [this, exchange, display_name, page = *page](Expected<std::vector<std::string>> tags) {
        if (!tags) {
          respondUpstreamFailure(*exchange, tags.status(), error_code::kNameUnknown);
          return;
        }
        nlohmann::json body;
        body["name"] = display_name;
        respondListPage(*exchange, "/v2/" + display_name + "/tags/list", std::move(body), "tags",
                        *tags, page);
      });
}

void RemoteRepository::collectTags(
    const std::shared_ptr<Exchange>& exchange, std::string name,
    std::function<void(Expected<std::vector<std::string>> tags)> done) {
  std::string cache_key = name;
  {
    std::unique_lock lock(tag_lists_mutex_);
    auto found = tag_lists_.find(cache_key);
    if (found != tag_lists_.end() &&
        context_.clock->nowMs() - found->second.fetched_ms < kTagListCacheMs) {
      std::vector<std::string> tags = found->second.tags;
      lock.unlock();
      exchange->setOutcome(CacheOutcome::kHit);
      done(std::move(tags));
      return;
    }
  }

  auto from_index = [this, exchange, name, done](const Status& failure) {
    Expected<std::vector<std::string>> tags = context_.index->listTags(config_.name, name);
    if (tags) {
      // Views of narrower clients are records of their own, not tags.
      std::erase_if(*tags, [](const std::string& tag) { return tag.find('@') != std::string::npos; });
    }
    if (tags && !tags->empty()) {
      exchange->setOutcome(CacheOutcome::kStale);
      context_.metrics->cache_stale.fetch_add(1, std::memory_order_relaxed);
      log::proxy().warn("tag list served from the index req={} remote={} name={} error=\"{}\"",
                        exchange->requestId(), config_.name, name, failure.toString());
      done(std::move(*tags));
      return;
    }
    done(failure);
  };

  if (isMarkedDown()) {
    from_index(markedDownStatus());
    return;
  }

  EventLoop& loop = exchange->loop();
  exchange->setOutcome(CacheOutcome::kMiss);
  auto pages = std::make_shared<TagPages>();
  fetchTagPages(
      loop, "/v2/" + name + "/tags/list", exchange->requestId(), pages,
      [this, exchange, pages, cache_key, done, from_index](Status status) {
        if (!exchange->isOpen()) {
          return;
        }
        if (status.code() == StatusCode::kNotFound) {
          done(status);
          return;
        }
        if (!status.isOk()) {
          from_index(status);
          return;
        }
        std::vector<std::string> tags = std::move(pages->tags);
        std::sort(tags.begin(), tags.end());
        tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
        {
          std::lock_guard lock(tag_lists_mutex_);
          int64_t now_ms = context_.clock->nowMs();
          if (tag_lists_.size() >= kMaxCachedTagLists) {
            std::erase_if(tag_lists_, [now_ms](const auto& entry) {
              return now_ms - entry.second.fetched_ms >= kTagListCacheMs;
            });
          }
          if (tag_lists_.size() < kMaxCachedTagLists) {
            tag_lists_[cache_key] = TagListCacheEntry{now_ms, tags};
          }
        }
        done(std::move(tags));
      });
}

}  // namespace outpost::proxy
