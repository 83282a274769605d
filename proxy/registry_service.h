// RegistryService: the request handler behind the HTTP server. It routes /v2/ requests to a
// remote, local or virtual repository (RepositoryRouter), sends writes made through a virtual
// repository to its deployment repository, serves the catalog of the local repositories, the
// admin API (/api/v1/, TagAdmin) and the operational endpoints (/healthz, /metrics).
#pragma once

#include <uv.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "cache/disk_budget.h"
#include "cache/fill_registry.h"
#include "cache/memory_tier.h"
#include "proxy/config.h"
#include "proxy/event_loop.h"
#include "proxy/garbage_collection_service.h"
#include "proxy/grammar.h"
#include "proxy/http_server.h"
#include "proxy/local_repository.h"
#include "proxy/metrics.h"
#include "proxy/remote_repository.h"
#include "proxy/repository_router.h"
#include "proxy/tag_admin.h"
#include "proxy/virtual_repository.h"
#include "storage/blob_store.h"
#include "storage/index.h"
#include "storage/upload_store.h"

namespace outpost::proxy {

// The disk budget's options and the blob store's tier folders, from storage.*.
cache::DiskBudgetOptions diskBudgetOptions(const StorageConfig& storage);
std::vector<std::filesystem::path> blobTierRoots(const StorageConfig& storage);

class RegistryService {
 public:
  RegistryService(const Config& config, storage::BlobStore& store, storage::Index& index,
                  storage::UploadStore& uploads, const Clock& clock, size_t loop_count);
  ~RegistryService();

  // Per-loop setup and teardown; called on the loop's thread.
  void startLoop(EventLoop& loop);
  void stopLoop(EventLoop& loop, std::function<void()> on_closed);

  // The HttpServer's RequestHandler.
  void handle(const std::shared_ptr<Exchange>& exchange);
  // The HttpServer's ServerOptions::streams_body: whether a request's body is read as it
  // arrives (pushes) instead of being buffered whole.
  static bool streamsBody(const HttpRequest& request);
  // Counts a finished exchange for /metrics.
  void onExchangeComplete(const Exchange& exchange);

  void setServerCounters(const ServerCounters* counters) { server_counters_ = counters; }
  Metrics& metrics() { return metrics_; }
  // Keeps the data folder within storage.disk_budget_bytes. The caller starts and stops it.
  cache::DiskBudget& diskBudget() { return disk_budget_; }
  // Manifests and small blobs kept in memory (storage.memory_cache_bytes).
  cache::MemoryTier& memoryTier() { return memory_tier_; }
  // Garbage collection of local repository content. The caller starts and stops it.
  GarbageCollectionService& garbageCollection() { return garbage_collection_; }

 private:
  struct Resolved {
    // Exactly one of remote, local and virtual_repository is set.
    RemoteRepository* remote = nullptr;
    LocalRepository* local = nullptr;
    VirtualRepository* virtual_repository = nullptr;
    std::string name;          // the name in the repository (upstream, for a remote)
    std::string display_name;  // the name as the client wrote it
  };

  void handleRegistry(const std::shared_ptr<Exchange>& exchange, std::string_view path);
  void handleRemote(const std::shared_ptr<Exchange>& exchange, const RegistryPath& path,
                    Resolved& resolved);
  // `served_blob` is set for a push through a virtual repository (LocalRepository::handleManifest).
  void handleLocal(const std::shared_ptr<Exchange>& exchange, const RegistryPath& path,
                   Resolved& resolved, ServedBlobCheck served_blob = {});
  void handleVirtual(const std::shared_ptr<Exchange>& exchange, const RegistryPath& path,
                     Resolved& resolved);
  // Sends a write made through a virtual repository to its deployment repository.
  void writeThroughVirtual(const std::shared_ptr<Exchange>& exchange, const RegistryPath& path,
                           Resolved& resolved);
  void serveCatalog(const std::shared_ptr<Exchange>& exchange);
  // Whether the repository `from` names (as a client writes it) contains `digest`, for a mount.
  bool mountSourceContains(std::string_view from, const Digest& digest) const;
  void startUploadExpiry(EventLoop& loop);
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
  cache::MemoryTier memory_tier_;
  GarbageCollectionService garbage_collection_;
  RepositoryRouter router_;
  storage::UploadStore& uploads_;
  std::vector<std::unique_ptr<RemoteRepository>> remotes_;  // in the order of Config::remotes
  std::vector<std::unique_ptr<LocalRepository>> locals_;    // in the order of Config::locals
  std::vector<std::unique_ptr<VirtualRepository>> virtuals_;  // in the order of Config::virtuals
  TagAdmin tag_admin_;
  const ServerCounters* server_counters_ = nullptr;
  // On the first loop: writes the blobs' access times to the index in batches.
  uv_timer_t access_flush_timer_{};
  bool is_flush_timer_running_ = false;
  // On the first loop: removes upload sessions idle for longer than upload_idle_timeout.
  uv_timer_t upload_expiry_timer_{};
  bool is_expiry_timer_running_ = false;
};

}  // namespace outpost::proxy
