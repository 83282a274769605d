// RegistryService: the request handler behind the HTTP server. It routes /v2/ requests to a
// repository (RepositoryRouter) and answers the operational endpoints (/healthz, /metrics).
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "cache/disk_budget.h"
#include "cache/fill_registry.h"
#include "proxy/config.h"
#include "proxy/event_loop.h"
#include "proxy/http_server.h"
#include "proxy/metrics.h"
#include "proxy/remote_repository.h"
#include "proxy/repository_router.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::proxy {

class RegistryService {
 public:
  RegistryService(const Config& config, storage::BlobStore& store, storage::Index& index,
                  const Clock& clock, size_t loop_count);
  ~RegistryService();

  // Per-loop setup and teardown; called on the loop's thread.
  void startLoop(EventLoop& loop);
  void stopLoop(EventLoop& loop, std::function<void()> on_closed);

  // The HttpServer's RequestHandler.
  void handle(const std::shared_ptr<Exchange>& exchange);
  // Counts a finished exchange for /metrics.
  void onExchangeComplete(const Exchange& exchange);

  void setServerCounters(const ServerCounters* counters) { server_counters_ = counters; }
  Metrics& metrics() { return metrics_; }
  // Keeps the data folder within storage.disk_budget_bytes. The caller starts and stops it.
  cache::DiskBudget& diskBudget() { return disk_budget_; }

 private:
  struct Resolved {
    RemoteRepository* remote = nullptr;
    std::string name;          // the name upstream
    std::string display_name;  // the name as the client wrote it
  };

  void handleRegistry(const std::shared_ptr<Exchange>& exchange, std::string_view path);
  // Finds the repository for `name` (the name from the path). When no repository matches, it
  // sends a 404 and returns nothing.
  std::optional<Resolved> resolve(Exchange& exchange, std::string_view name);

  const Config& config_;
  storage::BlobStore& store_;
  storage::Index& index_;
  const Clock& clock_;
  Metrics metrics_;
  cache::FillRegistry fills_;
  cache::DiskBudget disk_budget_;
  RepositoryRouter router_;
  std::vector<std::unique_ptr<RemoteRepository>> remotes_;  // in the order of Config::remotes
  const ServerCounters* server_counters_ = nullptr;
  // On the first loop: writes the blobs' access times to the index in batches.
  uv_timer_t access_flush_timer_{};
  bool is_flush_timer_running_ = false;
};

}  // namespace outpost::proxy
