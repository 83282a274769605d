#include "proxy/registry_service.h"

#include "base/log.h"
#include "proxy/blocking_work.h"
#include "proxy/grammar.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

// How often recorded blob access times are written to the index. A crash loses at most this
// much access history, which only affects eviction order.
constexpr uint64_t kAccessFlushIntervalMs = 10'000;

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

RegistryService::RegistryService(const Config& config, storage::BlobStore& store,
                                 storage::Index& index, const Clock& clock, size_t loop_count)
    : config_(config),
      store_(store),
      index_(index),
      clock_(clock),
      disk_budget_(index, store, clock,
                   cache::DiskBudgetOptions{
                       .budget_bytes = config.storage.disk_budget_bytes,
                       .high_watermark_percent = config.storage.high_watermark_percent,
                       .low_watermark_percent = config.storage.low_watermark_percent}),
      router_(config) {
  metrics_.setDiskBudget(&disk_budget_);
  RemoteContext context{&store_,  &index_,          &fills_,          &disk_budget_,
                        &metrics_, &clock_, config_.upstream, loop_count};
  for (const RemoteConfig& remote : config_.remotes) {
    remotes_.push_back(std::make_unique<RemoteRepository>(remote, context));
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
  }
}

void RegistryService::stopLoop(EventLoop& loop, std::function<void()> on_closed) {
  // One more for the flush timer on the first loop.
  bool closes_timer = loop.index() == 0 && is_flush_timer_running_;
  auto remaining = std::make_shared<size_t>(remotes_.size() + (closes_timer ? 1 : 0));
  auto one_closed = [remaining, on_closed] {
    if (--*remaining == 0) {
      on_closed();
    }
  };
  if (*remaining == 0) {
    on_closed();
    return;
  }
  if (closes_timer) {
    is_flush_timer_running_ = false;
    access_flush_timer_.data = new std::function<void()>(one_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&access_flush_timer_), [](uv_handle_t* handle) {
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

void RegistryService::handleRegistry(const std::shared_ptr<Exchange>& exchange,
                                     std::string_view path) {
  if (path == "_catalog") {
    respondRegistryError(*exchange, 404, error_code::kUnsupported,
                         "the catalog is not served: remote repositories cannot list upstream "
                         "repositories");
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
    case RegistryPath::Kind::kTagsList: route = Route::kTagsList; break;
    default: break;
  }
  exchange->setRouteLabel(static_cast<uint8_t>(route));

  std::optional<Resolved> resolved = resolve(*exchange, parsed->name);
  if (!resolved) {
    return;
  }
  exchange->setRepository(resolved->remote->name());

  const HttpRequest& request = exchange->request();
  if (!isReadMethod(request)) {
    // Remote repositories are read-only caches.
    respondMethodNotAllowed(*exchange, "GET, HEAD",
                            "repository " + resolved->remote->name() +
                                " is a remote cache and does not accept " +
                                std::string(request.methodName()));
    return;
  }

  switch (parsed->kind) {
    case RegistryPath::Kind::kManifest:
      resolved->remote->serveManifest(exchange, std::move(resolved->name),
                                      std::string(parsed->reference));
      return;
    case RegistryPath::Kind::kBlob: {
      Expected<Digest> digest = Digest::parse(parsed->reference);
      if (!digest) {
        respondRegistryError(*exchange, 400, error_code::kDigestInvalid,
                             "invalid digest " + std::string(parsed->reference) + ": " +
                                 std::string(digest.status().message()));
        return;
      }
      resolved->remote->serveBlob(exchange, std::move(resolved->name), std::move(*digest));
      return;
    }
    case RegistryPath::Kind::kTagsList:
      if (request.method() != HttpMethod::kGet) {
        respondMethodNotAllowed(*exchange, "GET", "tags/list answers GET only");
        return;
      }
      resolved->remote->serveTagList(exchange, std::move(resolved->name),
                                     std::move(resolved->display_name));
      return;
    default:
      respondRegistryError(*exchange, 404, error_code::kUnsupported,
                           "this endpoint is not served for remote repositories");
      return;
  }
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
  return Resolved{remotes_[routed->remote_index].get(), std::move(routed->name),
                  std::string(name)};
}

}  // namespace outpost::proxy
