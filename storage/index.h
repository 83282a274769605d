// Index: the RocksDB database that records blobs, manifests, tags and links.
//
// Key schema, one column family per record kind. Keys are raw bytes compared bytewise, and
// "\0" separates components. Repository keys, image names and tags cannot contain a NUL byte
// (the put and get calls reject one), so no key is ambiguous.
//
//   column family  key                                   value (storage/index_record.h)
//   blobs          "<digest>"                            BlobRecord, 25 bytes
//   manifests      "<digest>"                            ManifestRecord, body byte for byte
//   tags           "<repository>\0<name>\0<tag>"         TagRecord
//   links          "<repository>\0<digest>"              one version byte
//   local_blobs     "<repository>\0<name>\0<digest>"     ContentRecord
//   local_manifests "<repository>\0<name>\0<digest>"     ContentRecord
//   held_blobs      "<digest>"                            one version byte
//   tag_history     "<repository>\0<name>\0<tag>\0<seq>"  TagChangeRecord
//   pinned_tags     "<repository>\0<name>\0<tag>"         TagRecord
//   referrers       "<repository>\0<name>\0<subject>\0<digest>"  one version byte
//
// Links are for remote repositories, whose cached content is shared by every image name. The
// local_ families record what each image of a local repository contains, as a registry that
// takes pushes must: a blob pushed to one image is not served through another unless mounted.
// Tags of local repositories use the tags family, with confirmed_ms the time of the push. A
// held blob is one that a local repository contains, which the disk budget never evicts.
//
// <seq> in tag_history is 12 bytes: the change's time_ms and a process-wide counter, both
// big-endian, so that a tag's changes sort oldest first and two in one millisecond stay apart.
// A pinned tag of a remote repository is served at its pinned digest and not revalidated.
// A referrers record states that manifest <digest> of the image names <subject> as its subject;
// the descriptor the referrers API returns is built from the manifest record itself.
//
// <digest> is the full text, "sha256:<hex>". <repository> is a configured repository key such as
// "dockerhub", and <name> an image name such as "library/alpine". The tags of one image are the
// keys that start with "<repository>\0<name>\0", so listing them is one prefix scan, and
// "library/alpine" never picks up the tags of "library/alpine2".
//
// Values are the versioned binary records of storage/index_record.h.
//
// Startup opens the database and reads no blob files and no full column family.
#pragma once

#include <rocksdb/db.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "storage/index_record.h"

namespace outpost::storage {

// Thread-safe: any thread may call any method, because RocksDB is thread-safe and the pending
// access times are guarded by a mutex.
//
// BLOCKING: putBlob, deleteBlob, putManifest, putTag and putLink are synced writes
// (WriteOptions::sync), because the rest of the system depends on them after a crash. Each can
// wait on the disk for milliseconds, so they belong on a worker thread, never on an event loop.
// write(), flushMemtables() and compactAll() block on the disk too. Reads wait for no sync but
// may read from the disk on a block cache miss. touchBlob never touches the disk.
class Index {
 private:
  enum ColumnFamily : size_t {
    kBlobs = 0,
    kManifests,
    kTags,
    kLinks,
    kLocalBlobs,
    kLocalManifests,
    kHeldBlobs,
    kTagHistory,
    kPinnedTags,
    kReferrers,
    kColumnFamilyCount
  };

 public:
  enum class WriteMode {
    // Returns after the write-ahead log is fsynced, so the records survive a power loss.
    kSynced,
    // Returns once the records are in the write-ahead log in the page cache: they survive a
    // crash of the process but not of the machine, until a later synced write or
    // flushMemtables().
    kUnsynced,
  };

  // Puts of blob, manifest, tag and link records, collected to be applied together by
  // Index::write. Each put checks its input and encodes its record as the single-record call of
  // the same name does. A put that fails those checks rejects the whole batch: write() then
  // returns that failure and writes nothing. Not thread-safe. One thread fills a batch and hands
  // it to write().
  class Batch {
   public:
    void putBlob(const Digest& digest, const BlobRecord& record);
    void putManifest(const Digest& digest, const ManifestRecord& record);
    void putTag(std::string_view repository, std::string_view name, std::string_view tag,
                const TagRecord& record);
    void putLink(std::string_view repository, const Digest& digest);
    void putLocalBlob(std::string_view repository, std::string_view name, const Digest& digest,
                      const ContentRecord& record);
    void putLocalManifest(std::string_view repository, std::string_view name, const Digest& digest,
                          const ContentRecord& record);
    void putHeldBlob(const Digest& digest);
    void deleteHeldBlob(const Digest& digest);
    void putTagChange(std::string_view repository, std::string_view name, std::string_view tag,
                      const TagChangeRecord& record);
    void putPinnedTag(std::string_view repository, std::string_view name, std::string_view tag,
                      const TagRecord& record);
    void deletePinnedTag(std::string_view repository, std::string_view name, std::string_view tag);
    void putReferrer(std::string_view repository, std::string_view name, const Digest& subject,
                     const Digest& referrer);
    void deleteReferrer(std::string_view repository, std::string_view name, const Digest& subject,
                        const Digest& referrer);
    // Deletions count as puts here: they are checked the same way and applied in order.
    void deleteTag(std::string_view repository, std::string_view name, std::string_view tag);
    void deleteLocalBlob(std::string_view repository, std::string_view name, const Digest& digest);
    void deleteLocalManifest(std::string_view repository, std::string_view name,
                             const Digest& digest);
    // Blob and manifest records, for garbage collection. A blob record goes before its file
    // (BlobStore::remove), as Index::deleteBlob requires.
    void deleteBlob(const Digest& digest);
    void deleteManifest(const Digest& digest);

    // Puts made so far, a rejected one included.
    size_t size() const { return put_count_; }
    bool empty() const { return put_count_ == 0; }
    // OK, or why the first rejected put was rejected (kInvalidArgument).
    const Status& status() const { return first_failure_; }

   private:
    friend class Index;

    struct Entry {
      ColumnFamily family;
      std::string key;
      std::string value;
      bool is_delete = false;
    };

    void add(ColumnFamily family, std::string key, std::string value, bool is_delete = false);
    // Checks the key components of a local content record and adds the put or delete.
    void addLocalContent(ColumnFamily family, std::string_view repository, std::string_view name,
                         const Digest& digest, std::string value, bool is_delete);
    void reject(Status reason);
    // The status write() returns for a rejected batch: first_failure_, with its position when
    // the batch contains more than one put.
    Status rejection() const;

    std::vector<Entry> entries_;
    size_t put_count_ = 0;
    // Position among the puts of the first rejected one, valid when first_failure_ is set.
    size_t first_failure_position_ = 0;
    Status first_failure_;
    bool has_blob_ = false;
    bool has_pinned_tag_ = false;
  };

  enum class OpenMode {
    // Creates the folder and missing column families; takes RocksDB's lock on the folder.
    kReadWrite,
    // Reads an existing index without its lock, so a report can run beside the server. Reads
    // return the records as they were at open. Every write fails.
    kReadOnly,
  };

  // Opens the database in `dir`, or creates it in kReadWrite mode. kNotFound in kReadOnly mode
  // when `dir` contains no index.
  static Expected<std::unique_ptr<Index>> open(const std::filesystem::path& dir,
                                               OpenMode mode = OpenMode::kReadWrite);

  // Flushes pending access times (logging a failure) and closes the database. Blocks on the
  // disk like the synced writes.
  ~Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  // Blob records. Write the record only after BlobStore::commit, and delete it before
  // BlobStore::remove, so that a record never outlives its file.
  Status putBlob(const Digest& digest, const BlobRecord& record);
  Expected<BlobRecord> getBlob(const Digest& digest) const;  // kNotFound
  // Deleting an absent record is OK.
  Status deleteBlob(const Digest& digest);
  // Records that the file of `digest` now lives in disk tier `tier`, keeping the other fields,
  // and returns the record written. kNotFound when the record is gone, for instance deleted
  // by an eviction or the scrub. BLOCKING: a synced write.
  Expected<BlobRecord> setBlobTier(const Digest& digest, uint8_t tier);
  // Calls `fn` for each blob record in key order until it returns false, reading from a snapshot
  // taken at the call, so `fn` may put and delete blob records. A record whose key is not a
  // digest or whose value does not decode goes to `on_damaged` with the raw key and the reason,
  // or is logged and skipped when `on_damaged` is empty. Fails when the iteration itself fails.
  // BLOCKING: reads the whole column family from the disk.
  Status forEachBlob(
      const std::function<bool(const Digest&, const BlobRecord&)>& fn,
      const std::function<void(std::string_view key, const Status&)>& on_damaged = {}) const;

  Status putManifest(const Digest& digest, const ManifestRecord& record);
  // Calls `fn` for each manifest record in key order until it returns false. A damaged record is
  // logged and skipped. BLOCKING: reads the whole column family from the disk.
  Status forEachManifest(const std::function<bool(const Digest&, const ManifestRecord&)>& fn) const;
  Expected<ManifestRecord> getManifest(const Digest& digest) const;  // kNotFound

  // Tags are per repository key and image name. kInvalidArgument for an empty component, a
  // component with a NUL byte, or a record whose digest does not parse.
  Status putTag(std::string_view repository, std::string_view name, std::string_view tag,
                const TagRecord& record);
  Expected<TagRecord> getTag(std::string_view repository, std::string_view name,
                             std::string_view tag) const;  // kNotFound
  // Calls `fn` for each tag record of every repository and image, in key order, until it returns
  // false. A damaged record is logged and skipped. BLOCKING: reads the whole column family.
  Status forEachTag(
      const std::function<bool(std::string_view repository, std::string_view name,
                               std::string_view tag, const TagRecord& record)>& fn) const;
  // The tags of one image in bytewise order, empty when it has none.
  Expected<std::vector<std::string>> listTags(std::string_view repository,
                                              std::string_view name) const;

  // Links record that a repository key contains a digest (blob or manifest), so that content
  // cached for one remote is not served through another.
  Status putLink(std::string_view repository, const Digest& digest);
  // False when absent, and also when the read fails (the failure is logged).
  bool hasLink(std::string_view repository, const Digest& digest) const;

  // The changes of one tag, newest first, at most `limit` of them.
  Expected<std::vector<TagChangeRecord>> listTagChanges(std::string_view repository,
                                                        std::string_view name, std::string_view tag,
                                                        size_t limit) const;
  // The manifests of one image whose subject is `subject`, in digest order.
  Expected<std::vector<Digest>> listReferrers(std::string_view repository, std::string_view name,
                                              const Digest& subject) const;
  Expected<TagRecord> getPinnedTag(std::string_view repository, std::string_view name,
                                   std::string_view tag) const;  // kNotFound

  // Whether a hold record exists for the blob. False when the read fails (the failure is
  // logged), since a hold must then be taken again.
  bool isBlobHeld(const Digest& digest) const;

  // Local repository content. kNotFound when the image does not contain the digest.
  Expected<ContentRecord> getLocalBlob(std::string_view repository, std::string_view name,
                                       const Digest& digest) const;
  Expected<ContentRecord> getLocalManifest(std::string_view repository, std::string_view name,
                                           const Digest& digest) const;
  // The names of the images of `repository` that contain at least one manifest, in bytewise
  // order, starting after `after` (from the first when empty), at most `limit` of them.
  Expected<std::vector<std::string>> listImages(std::string_view repository, std::string_view after,
                                                size_t limit) const;
  // Calls `fn` for each manifest of one image of a local repository, in digest order, until it
  // returns false.
  Status forEachLocalManifest(
      std::string_view repository, std::string_view name,
      const std::function<bool(const Digest&, const ContentRecord&)>& fn) const;

  // Full scans for garbage collection. Each calls `fn` for every record of its column family in
  // key order until `fn` returns false, reading from a snapshot taken at the call. A damaged
  // record is logged and skipped. BLOCKING: each reads the whole column family from the disk.
  using LocalContentFn = std::function<bool(std::string_view repository, std::string_view name,
                                            const Digest& digest, const ContentRecord& record)>;
  // The blobs of every image of every local repository.
  Status forEachLocalBlob(const LocalContentFn& fn) const;
  // The manifests of every image of every local repository.
  Status forEachLocalManifest(const LocalContentFn& fn) const;
  Status forEachHeldBlob(const std::function<bool(const Digest&)>& fn) const;
  Status forEachLink(
      const std::function<bool(std::string_view repository, const Digest& digest)>& fn) const;
  Status forEachReferrer(
      const std::function<bool(std::string_view repository, std::string_view name,
                               const Digest& subject, const Digest& referrer)>& fn) const;

  // Applies every put of `batch` atomically, as one RocksDB WriteBatch: after a crash either
  // all of them are in the index or none is. A later put of the same key wins over an earlier
  // one. kInvalidArgument, with nothing written, when the batch rejected a put. The message
  // then names the put's position, counted from 0, when the batch contains more than one. An
  // empty batch writes nothing and returns OK. Leaves `batch` empty, ready for more puts.
  Status write(Batch&& batch, WriteMode mode);

  // Writes the memtables of every column family into table files and waits until they are on
  // the disk, so that unsynced writes made before it are durable and the next open replays no
  // write-ahead log. Meant for the end of a bulk load, since it costs a table file per column
  // family that contains records.
  Status flushMemtables();

  // Compacts every column family into one sorted run at its bottom level and waits until done.
  // After a bulk load, it leaves no compaction pending that would run once the server starts.
  // Meant for the end of a bulk load, since it rewrites the whole index.
  Status compactAll();

  // Records in memory that the blob was read at `now_ms`. Cheap enough for an event loop: it
  // takes a mutex and touches a hash map, and keeps the latest time per digest.
  void touchBlob(const Digest& digest, int64_t now_ms);
  // Writes the recorded access times into their blob records in one unsynced WriteBatch. A time
  // never moves a record's last_access_ms backwards, and a digest without a blob record is
  // skipped, so a blob deleted in the meantime is not brought back. On failure the times are
  // kept for the next flush. The caller decides how often to flush, and the destructor flushes
  // once more.
  Status flushAccessTimes();

 private:
  using Handles = std::array<rocksdb::ColumnFamilyHandle*, kColumnFamilyCount>;

  // Lets open() call the public constructor through std::make_unique while other code cannot.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Takes ownership of `db` and of the column family handles.
  Index(PrivateTag, std::unique_ptr<rocksdb::DB> db, const Handles& handles,
        std::filesystem::path dir);

 private:
  // Reads and decodes the tag record of `family` (tags or pinned_tags). kNotFound when absent.
  Expected<TagRecord> readTagRecord(ColumnFamily family, std::string_view repository,
                                    std::string_view name, std::string_view tag) const;
  Expected<ContentRecord> getLocalContent(ColumnFamily family, std::string_view repository,
                                          std::string_view name, const Digest& digest) const;
  Status forEachLocalContent(ColumnFamily family, const LocalContentFn& fn) const;
  // Reads `key` from `family`. kNotFound when absent.
  Expected<std::string> readValue(ColumnFamily family, std::string_view key) const;
  // Adds the puts of `batch` to `out`.
  Status toWriteBatch(const Batch& batch, rocksdb::WriteBatch* out) const;
  // Writes `access_ms` (digest text to time) into the blob records in one batch.
  Status writeAccessTimes(const std::unordered_map<std::string, int64_t>& access_ms);

  std::unique_ptr<rocksdb::DB> db_;
  Handles handles_{};
  std::filesystem::path dir_;

  // Serializes the read-modify-write of blob records in flushAccessTimes with deleteBlob and
  // with writes of batches that put a blob, so that a flush never overwrites a newer record or
  // recreates a deleted one.
  std::mutex blob_write_mutex_;

  // False while the index contains no pinned tag, so that getPinnedTag returns without a read.
  // Set at open when pins exist and before any write of a pin.
  std::atomic<bool> may_have_pinned_tags_{false};

  std::mutex pending_mutex_;
  // Latest access time per digest text since the last flush. Guarded by pending_mutex_.
  std::unordered_map<std::string, int64_t> pending_access_ms_;
};

}  // namespace outpost::storage
