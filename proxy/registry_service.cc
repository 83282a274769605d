#include "proxy/registry_service.h"

#include <algorithm>

#include "base/log.h"
#include "proxy/blocking_work.h"
#include "proxy/content_response.h"
#include "proxy/grammar.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

// How often recorded blob access times are written to the index. A crash loses at most this
// much access history, which only affects eviction order.
constexpr uint64_t kAccessFlushIntervalMs = 10'000;
// Names in a catalog page when the request gives no n, or a larger one.
constexpr uint64_t kMaxCatalogPage = 1000;

constexpr std::string_view kApiVersionHeader = "Docker-Distribution-API-Version";
constexpr std::string_view kApiVersion = "registry/2.0";

void respondMethodNotAllowed(Exchange& exchange, std::string_view allow,
                             std::string_view message) {
  ResponseHead head;
  head.add("Allow", allow);
  respondRegistryError(exchange, 405, error_code::kUnsupported, message, std::move(head));
}

bool isReadMethod(const HttpRequest& request) {
  return request.method() == HttpMethod::kGet || request.method() == HttpMethod::kHead;
}

}  // namespace

cache::DiskBudgetOptions diskBudgetOptions(const StorageConfig& storage) {
  cache::DiskBudgetOptions options{.budget_bytes = storage.disk_budget_bytes,
                                   .high_watermark_percent = storage.high_watermark_percent,
                                   .low_watermark_percent = storage.low_watermark_percent,
                                   .promote_after_hits = storage.promote_after_hits,
                                   .space_wait_ms = storage.space_wait_timeout_ms};
  for (const DiskTierConfig& tier : storage.lower_tiers) {
    options.lower_tiers.push_back(cache::DiskTierOptions{
        tier.budget_bytes, tier.high_watermark_percent, tier.low_watermark_percent});
  }
  return options;
}

std::vector<std::filesystem::path> blobTierRoots(const StorageConfig& storage) {
  std::vector<std::filesystem::path> roots{storage.data_dir};
  for (const DiskTierConfig& tier : storage.lower_tiers) {
    roots.emplace_back(tier.path);
  }
  return roots;
}

RegistryService::RegistryService(const Config& config, storage::BlobStore& store,
                                 storage::Index& index, storage::UploadStore& uploads,
                                 const Clock& clock, size_t loop_count)
    : config_(config),
      store_(store),
      index_(index),
      clock_(clock),
      disk_budget_(index, store, clock, diskBudgetOptions(config.storage)),
      memory_tier_(
          cache::MemoryTierOptions{.budget_bytes = config.storage.memory_cache_bytes,
                                   .max_item_bytes = config.storage.memory_cache_max_item_bytes}),
      garbage_collection_(index, store, clock, config.storage.gc_interval_ms,
                          config.storage.gc_grace_period_ms),
      router_(config),
      uploads_(uploads),
      tag_admin_(config, index, clock, locals_) {
  metrics_.setDiskBudget(&disk_budget_);
  metrics_.setGcCounters(&garbage_collection_.collector().counters());
  metrics_.setMemoryTier(&memory_tier_);
  // Swept content can no longer be served through a local repository, so its memory copies go.
  garbage_collection_.setOnSwept([this](const storage::GcReport& report) {
    for (const Digest& digest : report.removed_blobs) {
      memory_tier_.erase(digest);
    }
    for (const Digest& digest : report.removed_manifests) {
      memory_tier_.erase(digest);
    }
  });
  RemoteContext context{&store_,  &index_,          &fills_,          &disk_budget_,
                        &metrics_, &clock_, config_.upstream, loop_count};
  context.memory = &memory_tier_;
  for (const RemoteConfig& remote : config_.remotes) {
    remotes_.push_back(std::make_unique<RemoteRepository>(remote, context));
  }
  LocalContext local_context{&store_, &index_, &uploads_, &disk_budget_, &metrics_, &clock_};
  local_context.collector = &garbage_collection_.collector();
  local_context.memory = &memory_tier_;
  for (const LocalConfig& local : config_.locals) {
    locals_.push_back(std::make_unique<LocalRepository>(local, local_context));
    locals_.back()->setMountSourceCheck([this](std::string_view from, const Digest& digest) {
      return mountSourceContains(from, digest);
    });
  }
  for (size_t i = 0; i < config_.virtuals.size(); ++i) {
    std::vector<VirtualMember> members;
    for (const RoutedName& member : router_.flattenedMembers(i)) {
      if (member.kind == RepositoryKind::kRemote) {
        members.push_back(VirtualMember{.remote = remotes_[member.index].get()});
      } else {
        members.push_back(VirtualMember{.local = locals_[member.index].get()});
      }
    }
    LocalRepository* deployment = nullptr;
    for (const auto& local : locals_) {
      if (local->name() == config_.virtuals[i].deployment) {
        deployment = local.get();
      }
    }
    virtuals_.push_back(std::make_unique<VirtualRepository>(config_.virtuals[i], std::move(members),
                                                            deployment, store_));
  }
}

RegistryService::~RegistryService() = default;

void RegistryService::startLoop(EventLoop& loop) {
  for (auto& remote : remotes_) {
    remote->startLoop(loop);
  }
  if (loop.index() == 0) {
    uv_timer_init(loop.uv(), &access_flush_timer_);
    access_flush_timer_.data = this;
    is_flush_timer_running_ = true;
    uv_timer_start(
        &access_flush_timer_,
        [](uv_timer_t* timer) {
          auto* self = static_cast<RegistryService*>(timer->data);
          storage::Index* index = &self->index_;
          runBlocking(
              timer->loop,
              [index] {
                if (Status status = index->flushAccessTimes(); !status.isOk()) {
                  log::storage().warn("access times not written error=\"{}\"",
                                      status.toString());
                }
              },
              [] {});
        },
        kAccessFlushIntervalMs, kAccessFlushIntervalMs);
    if (!locals_.empty()) {
      startUploadExpiry(loop);
    }
  }
}

void RegistryService::startUploadExpiry(EventLoop& loop) {
  uv_timer_init(loop.uv(), &upload_expiry_timer_);
  upload_expiry_timer_.data = this;
  is_expiry_timer_running_ = true;
  // Checked ten times per idle timeout, so a session lives at most 10% past it.
  uint64_t interval_ms = static_cast<uint64_t>(
      std::clamp<int64_t>(config_.storage.upload_idle_timeout_ms / 10, 1000, 60'000));
  uv_timer_start(
      &upload_expiry_timer_,
      [](uv_timer_t* timer) {
        auto* self = static_cast<RegistryService*>(timer->data);
        storage::UploadStore* uploads = &self->uploads_;
        int64_t now_ms = self->clock_.nowMs();
        int64_t max_idle_ms = self->config_.storage.upload_idle_timeout_ms;
        runBlocking(
            timer->loop,
            [uploads, now_ms, max_idle_ms] {
              if (size_t removed = uploads->removeIdle(now_ms, max_idle_ms); removed > 0) {
                log::storage().info("idle uploads expired count={}", removed);
              }
            },
            [] {});
      },
      interval_ms, interval_ms);
}

void RegistryService::stopLoop(EventLoop& loop, std::function<void()> on_closed) {
  std::vector<uv_timer_t*> timers;
  if (loop.index() == 0 && is_flush_timer_running_) {
    is_flush_timer_running_ = false;
    timers.push_back(&access_flush_timer_);
  }
  if (loop.index() == 0 && is_expiry_timer_running_) {
    is_expiry_timer_running_ = false;
    timers.push_back(&upload_expiry_timer_);
  }
  auto remaining = std::make_shared<size_t>(remotes_.size() + timers.size());
  auto one_closed = [remaining, on_closed] {
    if (--*remaining == 0) {
      on_closed();
    }
  };
  if (*remaining == 0) {
    on_closed();
    return;
  }
  for (uv_timer_t* timer : timers) {
    timer->data = new std::function<void()>(one_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(timer), [](uv_handle_t* handle) {
      std::unique_ptr<std::function<void()>> done(
          static_cast<std::function<void()>*>(handle->data));
      (*done)();
    });
  }
  for (auto& remote : remotes_) {
    remote->stopLoop(loop, one_closed);
  }
}

void RegistryService::onExchangeComplete(const Exchange& exchange) {
  metrics_.countRequest(static_cast<Route>(exchange.routeLabel()), exchange.status());
}

void RegistryService::handle(const std::shared_ptr<Exchange>& exchange) {
  exchange->setRouteLabel(static_cast<uint8_t>(Route::kOther));
  std::string_view path = exchange->request().path();

  if (path == "/v2" || path == "/v2/") {
    exchange->setRouteLabel(static_cast<uint8_t>(Route::kBase));
    if (!isReadMethod(exchange->request())) {
      respondMethodNotAllowed(*exchange, "GET, HEAD", "only GET and HEAD are allowed on /v2/");
      return;
    }
    ResponseHead head(200);
    head.add("Content-Type", "application/json");
    head.add(kApiVersionHeader, kApiVersion);
    exchange->respond(std::move(head), "{}");
    return;
  }
  if (path.starts_with("/v2/")) {
    handleRegistry(exchange, path.substr(4));
    return;
  }
  if (path.starts_with("/api/v1/")) {
    exchange->setRouteLabel(static_cast<uint8_t>(Route::kAdmin));
    if (path == "/api/v1/gc") {
      garbage_collection_.handle(exchange);
      return;
    }
    tag_admin_.handle(exchange, path.substr(8));
    return;
  }
  if (path == "/healthz") {
    exchange->setRouteLabel(static_cast<uint8_t>(Route::kHealth));
    ResponseHead head(200);
    head.add("Content-Type", "text/plain");
    exchange->respond(std::move(head), "ok\n");
    return;
  }
  if (path == "/metrics") {
    exchange->setRouteLabel(static_cast<uint8_t>(Route::kMetrics));
    ResponseHead head(200);
    head.add("Content-Type", "text/plain; version=0.0.4");
    static const ServerCounters kNoCounters;
    exchange->respond(std::move(head),
                      metrics_.render(server_counters_ ? *server_counters_ : kNoCounters));
    return;
  }
  respondRegistryError(*exchange, 404, error_code::kNameUnknown,
                       "no route for " + std::string(path));
}

bool RegistryService::streamsBody(const HttpRequest& request) {
  HttpMethod method = request.method();
  return (method == HttpMethod::kPut || method == HttpMethod::kPatch ||
          method == HttpMethod::kPost) &&
         request.path().starts_with("/v2/");
}

void RegistryService::handleRegistry(const std::shared_ptr<Exchange>& exchange,
                                     std::string_view path) {
  if (path == "_catalog") {
    exchange->setRouteLabel(static_cast<uint8_t>(Route::kCatalog));
    serveCatalog(exchange);
    return;
  }
  Expected<RegistryPath> parsed = parseRegistryPath(path);
  if (!parsed) {
    if (parsed.status().code() == StatusCode::kInvalidArgument) {
      respondRegistryError(*exchange, 400, error_code::kNameInvalid,
                           std::string(parsed.status().message()));
    } else {
      respondRegistryError(*exchange, 404, error_code::kNameUnknown,
                           "no registry route for /v2/" + std::string(path));
    }
    return;
  }

  Route route = Route::kOther;
  switch (parsed->kind) {
    case RegistryPath::Kind::kManifest: route = Route::kManifest; break;
    case RegistryPath::Kind::kBlob: route = Route::kBlob; break;
    case RegistryPath::Kind::kBlobUploads:
      route = Route::kBlobUpload;
      break;
    case RegistryPath::Kind::kTagsList: route = Route::kTagsList; break;
    case RegistryPath::Kind::kReferrers:
      route = Route::kReferrers;
      break;
    default: break;
  }
  exchange->setRouteLabel(static_cast<uint8_t>(route));

  std::optional<Resolved> resolved = resolve(*exchange, parsed->name);
  if (!resolved) {
    return;
  }
  if (resolved->virtual_repository != nullptr) {
    exchange->setRepository(resolved->virtual_repository->name());
    handleVirtual(exchange, *parsed, *resolved);
  } else if (resolved->local != nullptr) {
    exchange->setRepository(resolved->local->name());
    handleLocal(exchange, *parsed, *resolved);
  } else {
    exchange->setRepository(resolved->remote->name());
    handleRemote(exchange, *parsed, *resolved);
  }
}

void RegistryService::handleRemote(const std::shared_ptr<Exchange>& exchange,
                                   const RegistryPath& path, Resolved& resolved) {
  const HttpRequest& request = exchange->request();
  if (!isReadMethod(request)) {
    // Remote repositories are read-only caches.
    respondMethodNotAllowed(*exchange, "GET, HEAD",
                            "repository " + resolved.remote->name() +
                                " is a remote cache and does not accept " +
                                std::string(request.methodName()));
    return;
  }

  switch (path.kind) {
    case RegistryPath::Kind::kManifest:
      resolved.remote->serveManifest(exchange, std::move(resolved.name),
                                     std::string(path.reference));
      return;
    case RegistryPath::Kind::kBlob: {
      std::optional<Digest> digest = parseDigestOrRespond(*exchange, path.reference);
      if (!digest) {
        return;
      }
      resolved.remote->serveBlob(exchange, std::move(resolved.name), std::move(*digest));
      return;
    }
    case RegistryPath::Kind::kReferrers:
      resolved.remote->serveReferrers(exchange, std::move(resolved.name),
                                      std::string(path.reference));
      return;
    case RegistryPath::Kind::kTagsList:
      if (request.method() != HttpMethod::kGet) {
        respondMethodNotAllowed(*exchange, "GET", "tags/list answers GET only");
        return;
      }
      resolved.remote->serveTagList(exchange, std::move(resolved.name),
                                    std::move(resolved.display_name));
      return;
    default:
      respondRegistryError(*exchange, 404, error_code::kUnsupported,
                           "this endpoint is not served for remote repositories");
      return;
  }
}

void RegistryService::handleLocal(const std::shared_ptr<Exchange>& exchange,
                                  const RegistryPath& path, Resolved& resolved,
                                  ServedBlobCheck served_blob) {
  ImageName image{std::move(resolved.name), std::move(resolved.display_name)};
  LocalRepository& local = *resolved.local;
  switch (path.kind) {
    case RegistryPath::Kind::kManifest:
      local.handleManifest(exchange, image, std::string(path.reference), std::move(served_blob));
      return;
    case RegistryPath::Kind::kBlob:
      local.handleBlob(exchange, image, path.reference);
      return;
    case RegistryPath::Kind::kBlobUploads:
      local.handleUpload(exchange, image, std::string(path.reference));
      return;
    case RegistryPath::Kind::kTagsList:
      if (exchange->request().method() != HttpMethod::kGet) {
        respondMethodNotAllowed(*exchange, "GET", "tags/list answers GET only");
        return;
      }
      local.serveTagList(exchange, image);
      return;
    case RegistryPath::Kind::kReferrers:
      if (exchange->request().method() != HttpMethod::kGet &&
          exchange->request().method() != HttpMethod::kHead) {
        respondMethodNotAllowed(*exchange, "GET, HEAD", "referrers answers GET and HEAD only");
        return;
      }
      local.serveReferrers(exchange, image, path.reference);
      return;
    default:
      respondRegistryError(*exchange, 404, error_code::kUnsupported,
                           "this endpoint is not served for local repositories");
      return;
  }
}

void RegistryService::handleVirtual(const std::shared_ptr<Exchange>& exchange,
                                    const RegistryPath& path, Resolved& resolved) {
  const HttpRequest& request = exchange->request();
  if (!isReadMethod(request) || path.kind == RegistryPath::Kind::kBlobUploads) {
    writeThroughVirtual(exchange, path, resolved);
    return;
  }

  VirtualRepository& repository = *resolved.virtual_repository;
  ImageName image{std::move(resolved.name), std::move(resolved.display_name)};
  switch (path.kind) {
    case RegistryPath::Kind::kManifest:
      repository.serveManifest(exchange, image, std::string(path.reference));
      return;
    case RegistryPath::Kind::kBlob:
    case RegistryPath::Kind::kReferrers: {
      std::optional<Digest> digest = parseDigestOrRespond(*exchange, path.reference);
      if (!digest) {
        return;
      }
      if (path.kind == RegistryPath::Kind::kBlob) {
        repository.serveBlob(exchange, image, *digest);
      } else {
        repository.serveReferrers(exchange, image, *digest);
      }
      return;
    }
    case RegistryPath::Kind::kTagsList:
      if (request.method() != HttpMethod::kGet) {
        respondMethodNotAllowed(*exchange, "GET", "tags/list answers GET only");
        return;
      }
      repository.serveTagList(exchange, image);
      return;
    default:
      respondRegistryError(*exchange, 404, error_code::kUnsupported,
                           "this endpoint is not served for virtual repositories");
      return;
  }
}

void RegistryService::writeThroughVirtual(const std::shared_ptr<Exchange>& exchange,
                                          const RegistryPath& path, Resolved& resolved) {
  VirtualRepository* repository = resolved.virtual_repository;
  if (repository->deployment() == nullptr) {
    respondMethodNotAllowed(
        *exchange, "GET, HEAD",
        "repository " + repository->name() +
            " is a virtual repository without a deployment repository and does not accept " +
            std::string(exchange->request().methodName()) +
            "; push to one of its local repositories, or set its deployment key");
    return;
  }
  // The deployment repository stores the image under the same name; Location headers keep the
  // path the client wrote, under the virtual repository's key.
  resolved.local = repository->deployment();
  resolved.virtual_repository = nullptr;
  ServedBlobCheck served_blob = [repository, name = resolved.name](const Digest& digest) {
    return repository->servesStoredBlob(name, digest);
  };
  handleLocal(exchange, path, resolved, std::move(served_blob));
}

void RegistryService::serveCatalog(const std::shared_ptr<Exchange>& exchange) {
  if (exchange->request().method() != HttpMethod::kGet) {
    respondMethodNotAllowed(*exchange, "GET", "_catalog answers GET only");
    return;
  }
  std::optional<PageRequest> page = readPageRequest(*exchange);
  if (!page) {
    return;
  }
  // Without n, a page contains at most kMaxCatalogPage names, and the Link header leads on.
  if (!page->limit || *page->limit > kMaxCatalogPage) {
    page->limit = kMaxCatalogPage;
  }
  // Each local repository contributes the names after `last` in its own key space; one more
  // than the page shows whether a next page exists.
  std::vector<std::string> names;
  for (const auto& local : locals_) {
    std::string prefix = local->name() + "/";
    std::string_view after;
    if (page->last.starts_with(prefix)) {
      after = std::string_view(page->last).substr(prefix.size());
    } else if (!page->last.empty() && page->last > prefix) {
      continue;  // every name of this repository sorts before `last`
    }
    Expected<std::vector<std::string>> images = local->listImages(after, *page->limit + 1);
    if (!images) {
      log::storage().error("catalog listing failed req={} repo={} error=\"{}\"",
                           exchange->requestId(), local->name(), images.status().toString());
      respondRegistryError(*exchange, 500, error_code::kUnknown, "listing repositories failed");
      return;
    }
    for (std::string& image : *images) {
      names.push_back(prefix + image);
    }
  }
  std::sort(names.begin(), names.end());
  respondListPage(*exchange, "/v2/_catalog", nlohmann::json::object(), "repositories", names,
                  *page);
}

bool RegistryService::mountSourceContains(std::string_view from, const Digest& digest) const {
  if (!isValidRepositoryName(from)) {
    return false;
  }
  Expected<RoutedName> routed = router_.resolve(from, std::nullopt);
  if (!routed) {
    return false;
  }
  if (routed->kind == RepositoryKind::kLocal) {
    return locals_[routed->index]->containsBlob(routed->name, digest);
  }
  if (routed->kind == RepositoryKind::kVirtual) {
    return virtuals_[routed->index]->servesStoredBlob(routed->name, digest);
  }
  // A remote serves every stored blob by its digest, whichever image brought it.
  return store_.contains(digest);
}

std::optional<RegistryService::Resolved> RegistryService::resolve(Exchange& exchange,
                                                                  std::string_view name) {
  std::optional<std::string> ns;
  if (exchange.request().hasQueryParam("ns")) {
    ns = exchange.request().queryParam("ns");
  }
  Expected<RoutedName> routed = router_.resolve(name, ns);
  if (!routed) {
    respondRegistryError(exchange, 404, error_code::kNameUnknown,
                         std::string(routed.status().message()));
    return std::nullopt;
  }
  Resolved resolved;
  switch (routed->kind) {
    case RepositoryKind::kRemote:
      resolved.remote = remotes_[routed->index].get();
      break;
    case RepositoryKind::kLocal:
      resolved.local = locals_[routed->index].get();
      break;
    case RepositoryKind::kVirtual:
      resolved.virtual_repository = virtuals_[routed->index].get();
      break;
  }
  resolved.name = std::move(routed->name);
  resolved.display_name = std::string(name);
  return resolved;
}

}  // namespace outpost::proxy
