// RemoteRepository: a cache in front of one upstream registry.
//
// Manifests are kept in the index by digest with their media type, byte for byte. A tag maps
// to a digest with the time it was last confirmed upstream; while its time-to-live holds it
// is answered from the index, afterwards it is revalidated with a HEAD upstream and served
// stale when the upstream cannot be reached. Blobs are content-addressed files shared by every
// repository; a missing blob is downloaded once (BlobFill) however many clients ask, and each
// client is sent bytes as they arrive.
//
// One object serves every loop. Upstream clients are per loop: client(loop) is only touched on
// that loop's thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "cache/disk_budget.h"
#include "cache/fill_registry.h"
#include "cache/single_flight.h"
#include "proxy/config.h"
#include "proxy/event_loop.h"
#include "proxy/http_server.h"
#include "proxy/metrics.h"
#include "proxy/upstream/upstream_client.h"
#include "proxy/upstream_fetch.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::proxy {

// How one class of client sees a tag: the index record that stores it, and the Accept that
// asks the upstream for it. See tagViewFor in remote_repository.cc.
struct TagView {
  std::string record_key;
  std::string accept;
};

// Process-wide services a remote uses: store, index, fill registry, metrics and clock. Every
// one outlives the remote.
struct RemoteContext {
  storage::BlobStore* store;
  storage::Index* index;
  cache::FillRegistry* fills;
  cache::DiskBudget* disk_budget;
  Metrics* metrics;
  const Clock* clock;
  UpstreamConfig upstream;
  size_t loop_count;
};

class RemoteRepository {
 public:
  RemoteRepository(RemoteConfig config, RemoteContext context);
  ~RemoteRepository();

  const RemoteConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }

  // Creates this loop's upstream client; called on the loop thread before it serves.
  void startLoop(EventLoop& loop);
  // Closes this loop's upstream client; `on_closed` runs on the loop thread afterwards.
  void stopLoop(EventLoop& loop, std::function<void()> on_closed);

  // GET and HEAD of /v2/<name>/manifests/<reference>. `name` is the upstream name (with
  // "library/" already added where configured).
  void serveManifest(const std::shared_ptr<Exchange>& exchange, std::string name,
                     std::string reference);
  // GET and HEAD of /v2/<name>/blobs/<digest>.
  void serveBlob(const std::shared_ptr<Exchange>& exchange, std::string name, Digest digest);
  // GET and HEAD of /v2/<name>/referrers/<digest>: asked upstream, and answered from the
  // referrers of cached manifests when the upstream fails or has no referrers API (404).
  void serveReferrers(const std::shared_ptr<Exchange>& exchange, std::string name,
                      std::string reference);
  // GET of /v2/<name>/tags/list; `display_name` is the name as the client wrote it.
  void serveTagList(const std::shared_ptr<Exchange>& exchange, std::string name,
                    std::string display_name);

 private:
  struct ManifestResult;
  struct TagPages {
    std::vector<std::string> tags;
    int count = 0;
  };
  struct TagListCacheEntry {
    int64_t fetched_ms = 0;
    std::vector<std::string> tags;
  };

  UpstreamClient& client(EventLoop& loop);
  // Builds an upstream request and counts it; `request_id` is the client request it serves.
  UpstreamRequest makeRequest(std::string method, std::string path,
                              std::string_view request_id) const;

  // Manifests.
  void serveManifestByDigest(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                             const Digest& digest);
  void serveManifestByTag(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                          const std::string& tag);
  void revalidateTag(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                     const std::string& tag, const TagView& view,
                     const storage::TagRecord& cached);
  void fetchManifest(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                     const std::string& reference, const std::string& tag_record_key);
  void completeManifestFetch(const std::string& key, const std::string& name,
                             const std::string& reference, const std::string& tag_record_key,
                             EventLoop& loop, FetchResult result);
  void respondManifestResult(const std::shared_ptr<Exchange>& exchange,
                             const ManifestResult& result);

  // Fetches an upstream tag list, following its rel="next" pages, into `pages`; `done` gets
  // OK, or the failure of the first page that failed.
  void fetchTagPages(EventLoop& loop, std::string path, std::string request_id,
                     std::shared_ptr<TagPages> pages, std::function<void(Status)> done);

  // Blobs.
  void serveBlobFile(const std::shared_ptr<Exchange>& exchange, const Digest& digest,
                     storage::BlobFile file);
  void serveBlobHeadFromUpstream(const std::shared_ptr<Exchange>& exchange,
                                 const std::string& name, const Digest& digest);
  void startBlobDownload(EventLoop& loop, const std::string& name,
                         const std::shared_ptr<cache::BlobFill>& fill,
                         std::string_view request_id);

  // Upstream health and failures.
  bool isMarkedDown() const;
  // The failure for a request that needs a remote marked down, with the time left.
  Status markedDownStatus() const;
  void recordUpstreamOutcome(const Status& transport);
  // Sends the error response for a request that needed the upstream and failed.
  void respondUpstreamFailure(Exchange& exchange, const Status& failure,
                              std::string_view unknown_code);
  Status statusFromUpstream(const FetchResult& result) const;

  friend class BlobDownload;
  friend class FillReader;

  RemoteConfig config_;
  RemoteContext context_;
  RemoteCounters& counters_;
  std::vector<std::unique_ptr<UpstreamClient>> clients_;  // by loop index

  cache::SingleFlight<std::string, std::shared_ptr<const ManifestResult>> manifest_flights_;

  std::atomic<int> consecutive_failures_{0};
  std::atomic<int64_t> down_until_ms_{0};
  std::atomic<int64_t> retry_after_seconds_{0};

  std::mutex tag_lists_mutex_;
  std::unordered_map<std::string, TagListCacheEntry> tag_lists_;  // guarded by tag_lists_mutex_
};

}  // namespace outpost::proxy
