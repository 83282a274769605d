// LocalRepository: a repository of images pushed to Outpost, served over the OCI distribution
// API (push, pull, content discovery and content management).
//
// Content is shared with the remote caches: blobs are the content-addressed files of the
// BlobStore and manifests the index's records by digest. What each image contains is recorded
// per repository and image name (Index local_blobs and local_manifests), so a blob pushed to
// one image is served through another only after a mount. Every blob a local image contains
// is held (DiskBudget::hold) and never evicted.
//
// A push runs in these steps, each durable before the next:
//   1. upload: the bytes go to an UploadStore session, chunk by chunk as the body arrives;
//   2. blob commit (PUT with ?digest=): hold the digest, verify and commit the bytes through
//      the BlobStore, then record the blob and the image's link to it in one synced batch;
//   3. manifest PUT: check the JSON and that every referenced blob and child manifest is in the
//      image, then write the manifest, the image's link to it and the tag in one synced batch.
// A crash between steps leaves at most a held blob that no image references, which garbage
// collection removes. Steps 2 and 3, and mounts, hold the collector's push lock from their
// checks to their writes, so that a sweep never removes what they have just referenced.
//
// One object serves every loop. Index writes run on the thread pool (runBlocking). Manifest
// writes of one repository are serialized, so that a tag's immutability check and its write
// are one step.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "cache/disk_budget.h"
#include "cache/memory_tier.h"
#include "proxy/config.h"
#include "proxy/content_response.h"
#include "proxy/http_server.h"
#include "proxy/metrics.h"
#include "storage/blob_store.h"
#include "storage/garbage_collector.h"
#include "storage/index.h"
#include "storage/upload_store.h"

namespace outpost::proxy {

// Process-wide services a local repository uses. Every one outlives the repository.
struct LocalContext {
  storage::BlobStore* store;
  storage::Index* index;
  storage::UploadStore* uploads;
  cache::DiskBudget* disk_budget;
  Metrics* metrics;
  const Clock* clock;
  storage::GarbageCollector* collector;
  cache::MemoryTier* memory = nullptr;  // never null once the repository serves
};

// An image as a request addresses it: `name` within the repository, and `path_name` as the
// client wrote it in the path, for Location headers.
struct ImageName {
  std::string name;
  std::string path_name;
};

// Whether the repository that a mount's "from" parameter names, as the client wrote it,
// contains `digest` and may be read by the request. Set by the RegistryService, which resolves
// names to repositories.
using MountSourceCheck = std::function<bool(std::string_view from, const Digest& digest)>;

// For a manifest pushed through a virtual repository: whether the virtual repository serves
// blob `digest` under the pushed image's name. Called on a worker thread.
using ServedBlobCheck = std::function<bool(const Digest& digest)>;

class LocalRepository {
 public:
  LocalRepository(LocalConfig config, LocalContext context);

  void setMountSourceCheck(MountSourceCheck check) { mount_source_check_ = std::move(check); }

  const LocalConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }

  // /v2/<name>/manifests/<reference>: GET, HEAD, PUT and DELETE. For a push through a virtual
  // repository, `served_blob` selects the blobs that the virtual repository serves. A client
  // that found one there with a HEAD may skip its upload, so a PUT links such a blob into the
  // image when the image lacks it.
  void handleManifest(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                      std::string reference, ServedBlobCheck served_blob = {});
  // /v2/<name>/blobs/<digest>: GET, HEAD and DELETE.
  void handleBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                  std::string_view reference);

  // GET and HEAD of a manifest by tag or digest. With `on_miss`, an unknown manifest goes to it
  // as kNotFound in place of a 404.
  void serveManifest(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                     const std::string& reference, const MissHandler& on_miss = {});
  // GET and HEAD of a blob of the image. With `on_miss`, a blob the image lacks goes to it as
  // kNotFound in place of a 404.
  void serveBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                 const Digest& digest, const MissHandler& on_miss = {});
  // /v2/<name>/blobs/uploads/[<id>]: POST without an id; PATCH, PUT, GET and DELETE with one.
  void handleUpload(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                    std::string id);
  // GET /v2/<name>/referrers/<digest>, with an optional artifactType filter. With `on_miss`, a
  // subject without referrers goes to it as kNotFound in place of an empty index.
  void serveReferrers(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                      std::string_view reference, const MissHandler& on_miss = {});
  // GET /v2/<name>/tags/list.
  void serveTagList(const std::shared_ptr<Exchange>& exchange, const ImageName& image);
  // The sorted tags of the image. Fails with kNotFound when the repository has no manifest of
  // that name, or with the index's failure.
  Expected<std::vector<std::string>> listTags(const ImageName& image) const;

  // Moves `tag` of image `name` to `digest` and records the rollback in the tag's history.
  // Fails with kPermissionDenied when tags are immutable here, and with kNotFound when the
  // image no longer contains the manifest. BLOCKING: a synced index write.
  Status rollbackTag(std::string_view name, std::string_view tag, const Digest& digest);
  // Whether the image contains the blob, for a mount from this repository.
  bool containsBlob(std::string_view image_name, const Digest& digest) const;
  // Names of this repository's images after `after`, at most `limit`, for the catalog.
  Expected<std::vector<std::string>> listImages(std::string_view after, size_t limit) const;

 private:
  // Manifests.
  void putManifest(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                   std::string reference, ServedBlobCheck served_blob);
  void storeManifest(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                     const std::string& reference, std::string body, ServedBlobCheck served_blob);
  void deleteManifest(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                      const std::string& reference);

  // Uploads.
  void startUpload(const std::shared_ptr<Exchange>& exchange, const ImageName& image);
  void mountBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                 const Digest& digest);
  void receiveChunk(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                    std::string id, bool is_final);
  void completeUpload(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                      std::string id, Digest digest);
  void respondUploadStatus(Exchange& exchange, const ImageName& image, const std::string& id,
                           uint64_t size, int status);
  // The session's repository text: "<repository key>/<image name>".
  std::string uploadOwner(const ImageName& image) const;

  // Holds the blobs that a manifest push through a virtual repository links into the image,
  // and checks that each is still stored (kNotFound when one is not). Runs on a worker thread.
  Status holdServedBlobs(const std::vector<Digest>& blobs) const;

  // Sends 405 UNSUPPORTED when deletes of `kind` are disabled and returns false.
  enum class DeleteKind { kManifest, kTag, kBlob };
  bool checkDeleteAllowed(Exchange& exchange, DeleteKind kind) const;

  LocalConfig config_;
  LocalContext context_;
  MountSourceCheck mount_source_check_;
  // Serializes manifest and tag writes of this repository (taken on worker threads).
  std::mutex manifest_write_mutex_;
};

}  // namespace outpost::proxy
