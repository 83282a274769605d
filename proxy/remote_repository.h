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
//
// The read methods take an optional MissHandler for virtual repositories: with one, a failure
// that would be sent as an error response goes to the handler instead, while successes and
// invalid requests (400) are still sent. Tag lists for virtual repositories come from
// collectTags.
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
#include "cache/memory_tier.h"
#include "cache/single_flight.h"
#include "proxy/config.h"
#include "proxy/content_response.h"
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
  cache::MemoryTier* memory = nullptr;  // never null once the remote serves
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
                     std::string reference, MissHandler on_miss = {});
  // GET and HEAD of /v2/<name>/blobs/<digest>. A failure after the response head went out
  // closes the connection and never reaches `on_miss`.
  void serveBlob(const std::shared_ptr<Exchange>& exchange, std::string name, Digest digest,
                 MissHandler on_miss = {});
  // GET and HEAD of /v2/<name>/referrers/<digest>. The request goes upstream. The referrers of
  // cached manifests are sent when the upstream fails or has no referrers API (404). With
  // `on_miss`, a subject without referrers goes to it as kNotFound in place of an empty index.
  void serveReferrers(const std::shared_ptr<Exchange>& exchange, std::string name,
                      std::string reference, MissHandler on_miss = {});
  // GET of /v2/<name>/tags/list; `display_name` is the name as the client wrote it.
  void serveTagList(const std::shared_ptr<Exchange>& exchange, std::string name,
                    std::string display_name);

  // Collects every tag of `name`, sorted and without duplicates, as serveTagList would send
  // them: from the upstream, or from the index when the upstream fails. `done` gets the tags,
  // or kNotFound when the upstream does not know the name, or the upstream failure when the
  // index has no tags either. It runs on the exchange's loop thread, possibly before this
  // returns, and never once the exchange has closed.
  void collectTags(const std::shared_ptr<Exchange>& exchange, std::string name,
                   std::function<void(Expected<std::vector<std::string>> tags)> done);

  // Sends the error response for a request that needed the upstream and failed with
  // `failure`; `unknown_code` is the registry error code of a 404.
  void respondUpstreamFailure(Exchange& exchange, const Status& failure,
                              std::string_view unknown_code);

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
  struct StoredManifest {
    Digest digest;
    cache::MemoryItemRef item;
  };
  // Returns the manifest named by `digest_text` from the memory tier or the index.
  Expected<StoredManifest> loadManifest(std::string_view digest_text) const;
  void serveManifestByDigest(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                             const Digest& digest, const MissHandler& on_miss);
  void serveManifestByTag(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                          const std::string& tag, const MissHandler& on_miss);
  void revalidateTag(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                     const std::string& tag, const TagView& view, const storage::TagRecord& cached,
                     const MissHandler& on_miss);
  void fetchManifest(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                     const std::string& reference, const std::string& tag_record_key,
                     const MissHandler& on_miss);
  void completeManifestFetch(const std::string& key, const std::string& name,
                             const std::string& reference, const std::string& tag_record_key,
                             EventLoop& loop, FetchResult result);
  void respondManifestResult(const std::shared_ptr<Exchange>& exchange,
                             const ManifestResult& result, const MissHandler& on_miss);

  // Fetches an upstream tag list, following its rel="next" pages, into `pages`; `done` gets
  // OK, or the failure of the first page that failed.
  void fetchTagPages(EventLoop& loop, std::string path, std::string request_id,
                     std::shared_ptr<TagPages> pages, std::function<void(Status)> done);

  // Blobs.
  void serveBlobFile(const std::shared_ptr<Exchange>& exchange, const Digest& digest,
                     storage::BlobFile file);
  // Records a memory hit of a blob as an access of its disk copy, so that the disk budget
  // does not see a blob as unused while the memory tier serves it.
  void touchDiskCopy(const Digest& digest, uint64_t size);
  void serveBlobHeadFromUpstream(const std::shared_ptr<Exchange>& exchange, const std::string& name,
                                 const Digest& digest, const MissHandler& on_miss);
  void startBlobDownload(EventLoop& loop, const std::string& name,
                         const std::shared_ptr<cache::BlobFill>& fill,
                         std::string_view request_id);

  // Upstream health and failures.
  bool isMarkedDown() const;
  // The failure for a request that needs a remote marked down, with the time left.
  Status markedDownStatus() const;
  void recordUpstreamOutcome(const Status& transport);
  // Hands a failed read to `on_miss` when one is set, else sends respondUpstreamFailure.
  void failRead(Exchange& exchange, const MissHandler& on_miss, const Status& failure,
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
