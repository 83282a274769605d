#include "storage/index.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <span>
#include <system_error>
#include <utility>

#include "base/log.h"

namespace outpost::storage {
namespace {

// Index records are small (a blob record is 25 bytes, a manifest typically a few KiB), so a
// modest block cache and write buffer suffice, and they bound the memory the index takes.
constexpr size_t kBlockCacheBytes = 8 << 20;
constexpr size_t kWriteBufferBytes = 4 << 20;
constexpr int kBloomFilterBitsPerKey = 10;

constexpr std::array<const char*, 10> kColumnFamilyNames = {
    "blobs",           "manifests",  "tags",        "links",       "local_blobs",
    "local_manifests", "held_blobs", "tag_history", "pinned_tags", "referrers"};

// Orders the tag changes recorded by this process within one millisecond.
std::atomic<uint32_t> tag_change_sequence{0};

void appendBigEndian(std::string& out, uint64_t value, int bytes) {
  for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

Status fromRocksStatus(std::string_view context, const rocksdb::Status& status) {
  if (status.ok()) {
    return Status::ok();
  }
  std::string message = std::string(context) + ": " + status.ToString();
  switch (status.code()) {
    case rocksdb::Status::kNotFound:
      return notFound(std::move(message));
    case rocksdb::Status::kCorruption:
      return corruption(std::move(message));
    case rocksdb::Status::kInvalidArgument:
    case rocksdb::Status::kNotSupported:
      return invalidArgument(std::move(message));
    case rocksdb::Status::kIOError:
      if (status.IsNoSpace()) {
        return Status(StatusCode::kNoSpace, std::move(message));
      }
      return ioError(std::move(message));
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kShutdownInProgress:
      return unavailable(std::move(message));
    default:
      return internalError(std::move(message));
  }
}

rocksdb::Slice toSlice(std::string_view bytes) {
  return rocksdb::Slice(bytes.data(), bytes.size());
}

Status checkKeyComponent(std::string_view what, std::string_view value) {
  if (value.empty()) {
    return invalidArgument(std::string(what) + " is empty");
  }
  if (value.find('\0') != std::string_view::npos) {
    return invalidArgument(std::string(what) + " contains a NUL byte");
  }
  return Status::ok();
}

Status checkRecordString(std::string_view what, std::string_view value) {
  if (value.size() > kMaxRecordStringBytes) {
    return invalidArgument(std::string(what) + " has " + std::to_string(value.size()) +
                           " bytes, more than the maximum of " +
                           std::to_string(kMaxRecordStringBytes));
  }
  return Status::ok();
}

Status checkTagKey(std::string_view repository, std::string_view name, std::string_view tag) {
  OUTPOST_RETURN_IF_ERROR(checkKeyComponent("repository key", repository));
  OUTPOST_RETURN_IF_ERROR(checkKeyComponent("image name", name));
  return checkKeyComponent("tag", tag);
}

// "<repository>\0<name>\0", the prefix of every tag key of one image.
std::string tagPrefix(std::string_view repository, std::string_view name) {
  std::string key;
  key.reserve(repository.size() + name.size() + 2);
  key.append(repository);
  key.push_back('\0');
  key.append(name);
  key.push_back('\0');
  return key;
}

std::string tagKey(std::string_view repository, std::string_view name, std::string_view tag) {
  return tagPrefix(repository, name).append(tag);
}

// "<repository>\0<name>\0<digest>", the key of a local content record.
std::string localContentKey(std::string_view repository, std::string_view name,
                            const Digest& digest) {
  return tagPrefix(repository, name).append(digest.str());
}

Status checkImageKey(std::string_view repository, std::string_view name) {
  OUTPOST_RETURN_IF_ERROR(checkKeyComponent("repository key", repository));
  return checkKeyComponent("image name", name);
}

// "<repository>\0<name>\0<subject>\0", the prefix of the referrers records of one subject.
std::string referrerPrefix(std::string_view repository, std::string_view name,
                           const Digest& subject) {
  std::string key = tagPrefix(repository, name).append(subject.str());
  key.push_back('\0');
  return key;
}

std::string linkKey(std::string_view repository, const Digest& digest) {
  std::string key(repository);
  key.push_back('\0');
  key.append(digest.str());
  return key;
}

// Splits `key` at its NUL separators into exactly parts.size() components. False when it has
// another number of them.
bool splitKey(std::string_view key, std::span<std::string_view> parts) {
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    size_t separator = key.find('\0');
    if (separator == std::string_view::npos) {
      return false;
    }
    parts[i] = key.substr(0, separator);
    key.remove_prefix(separator + 1);
  }
  if (key.find('\0') != std::string_view::npos) {
    return false;
  }
  parts.back() = key;
  return true;
}

std::string tagLogFields(std::string_view repository, std::string_view name, std::string_view tag) {
  return " repo=" + std::string(repository) + " name=" + std::string(name) +
         " tag=" + std::string(tag);
}

// Checks the key and the record of a tag or a pinned tag.
Status checkTagRecord(std::string_view repository, std::string_view name, std::string_view tag,
                      const TagRecord& record) {
  OUTPOST_RETURN_IF_ERROR(checkTagKey(repository, name, tag));
  OUTPOST_RETURN_IF_ERROR(checkRecordString("tag media type", record.media_type));
  if (!Digest::parse(record.digest)) {
    return invalidArgument("tag record digest is invalid digest=" + record.digest +
                           tagLogFields(repository, name, tag));
  }
  return Status::ok();
}

rocksdb::ColumnFamilyOptions columnFamilyOptions(const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = cache;
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomFilterBitsPerKey));

  rocksdb::ColumnFamilyOptions options;
  options.write_buffer_size = kWriteBufferBytes;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  return options;
}

}  // namespace

Expected<std::unique_ptr<Index>> Index::open(const std::filesystem::path& dir, OpenMode mode) {
  if (dir.empty()) {
    return invalidArgument("index folder is empty");
  }
  std::error_code error;
  if (mode == OpenMode::kReadOnly) {
    if (!std::filesystem::exists(dir / "CURRENT", error)) {
      return Status(StatusCode::kNotFound, "no index in " + dir.string());
    }
  } else {
    std::filesystem::create_directories(dir, error);
    if (error) {
      return errnoStatus("creating index folder " + dir.string() + " failed", error.value());
    }
  }

  if (mode == OpenMode::kReadOnly) {
    std::vector<std::string> existing;
    rocksdb::Status listed =
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.string(), &existing);
    if (!listed.ok()) {
      return fromRocksStatus("reading the column families of index " + dir.string() + " failed",
                             listed);
    }
    for (const char* name : kColumnFamilyNames) {
      if (std::find(existing.begin(), existing.end(), name) == existing.end()) {
        return Status(StatusCode::kNotFound,
                      "index " + dir.string() + " has no " + name +
                          " records yet; it was written by an older Outpost, which the "
                          "server upgrades when it next opens the index");
      }
    }
  }

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.keep_log_file_num = 5;
  db_options.max_log_file_size = 1 << 20;

  std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const char* name : kColumnFamilyNames) {
    descriptors.emplace_back(name, columnFamilyOptions(cache));
  }
  // RocksDB requires the default column family to be opened too. It stays empty.
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, columnFamilyOptions(cache));

  std::vector<rocksdb::ColumnFamilyHandle*> opened;
  rocksdb::DB* raw_db = nullptr;
  rocksdb::Status status =
      mode == OpenMode::kReadOnly
          ? rocksdb::DB::OpenForReadOnly(db_options, dir.string(), descriptors, &opened, &raw_db)
          : rocksdb::DB::Open(db_options, dir.string(), descriptors, &opened, &raw_db);
  if (!status.ok()) {
    return fromRocksStatus("opening index " + dir.string() + " failed", status);
  }
  std::unique_ptr<rocksdb::DB> db(raw_db);

  // Only the handles of the record kinds are kept. The default column family's is released.
  Handles handles{};
  std::copy_n(opened.begin(), handles.size(), handles.begin());
  db->DestroyColumnFamilyHandle(opened.back()).PermitUncheckedError();

  log::storage().info("index opened path={} read_only={}", dir.string(),
                      mode == OpenMode::kReadOnly);
  return std::make_unique<Index>(PrivateTag(), std::move(db), handles, dir);
}

Index::Index(PrivateTag, std::unique_ptr<rocksdb::DB> db, const Handles& handles,
             std::filesystem::path dir)
    : db_(std::move(db)), handles_(handles), dir_(std::move(dir)) {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), handles_[kPinnedTags]));
  it->SeekToFirst();
  may_have_pinned_tags_.store(it->Valid() || !it->status().ok(), std::memory_order_release);
}

Index::~Index() {
  Status flushed = flushAccessTimes();
  if (!flushed.isOk()) {
    log::storage().error("access times were lost at index close path={} error={}", dir_.string(),
                         flushed.toString());
  }

  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  rocksdb::Status closed = db_->Close();
  if (!closed.ok()) {
    log::storage().error("closing index failed path={} error={}", dir_.string(), closed.ToString());
  }
}

Expected<std::string> Index::readValue(ColumnFamily family, std::string_view key) const {
  std::string value;
  rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), handles_[family], toSlice(key), &value);
  if (status.IsNotFound()) {
    return notFound(std::string(kColumnFamilyNames[family]) + " record not found");
  }
  if (!status.ok()) {
    return fromRocksStatus(std::string("reading ") + kColumnFamilyNames[family] + " record failed",
                           status);
  }
  return value;
}

void Index::Batch::add(ColumnFamily family, std::string key, std::string value, bool is_delete) {
  ++put_count_;
  if (!first_failure_.isOk()) {
    // The batch is rejected already, so the record would never be written.
    return;
  }
  has_blob_ = has_blob_ || family == kBlobs;
  has_pinned_tag_ = has_pinned_tag_ || (family == kPinnedTags && !is_delete);
  entries_.push_back(Entry{family, std::move(key), std::move(value), is_delete});
}

void Index::Batch::addLocalContent(ColumnFamily family, std::string_view repository,
                                   std::string_view name, const Digest& digest, std::string value,
                                   bool is_delete) {
  if (Status checked = checkImageKey(repository, name); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(family, localContentKey(repository, name, digest), std::move(value), is_delete);
}

void Index::Batch::putLocalBlob(std::string_view repository, std::string_view name,
                                const Digest& digest, const ContentRecord& record) {
  addLocalContent(kLocalBlobs, repository, name, digest, encodeContentRecord(record), false);
}

void Index::Batch::putLocalManifest(std::string_view repository, std::string_view name,
                                    const Digest& digest, const ContentRecord& record) {
  addLocalContent(kLocalManifests, repository, name, digest, encodeContentRecord(record), false);
}

void Index::Batch::putHeldBlob(const Digest& digest) {
  add(kHeldBlobs, digest.str(), std::string(1, static_cast<char>(kIndexRecordVersion)));
}

void Index::Batch::deleteHeldBlob(const Digest& digest) { add(kHeldBlobs, digest.str(), {}, true); }

void Index::Batch::deleteBlob(const Digest& digest) { add(kBlobs, digest.str(), {}, true); }

void Index::Batch::deleteManifest(const Digest& digest) { add(kManifests, digest.str(), {}, true); }

void Index::Batch::putTagChange(std::string_view repository, std::string_view name,
                                std::string_view tag, const TagChangeRecord& record) {
  if (Status checked = checkTagKey(repository, name, tag); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  std::string key = tagKey(repository, name, tag);
  key.push_back('\0');
  appendBigEndian(key, static_cast<uint64_t>(record.time_ms), 8);
  appendBigEndian(key, tag_change_sequence.fetch_add(1, std::memory_order_relaxed), 4);
  add(kTagHistory, std::move(key), encodeTagChangeRecord(record));
}

void Index::Batch::putPinnedTag(std::string_view repository, std::string_view name,
                                std::string_view tag, const TagRecord& record) {
  if (Status checked = checkTagRecord(repository, name, tag, record); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kPinnedTags, tagKey(repository, name, tag), encodeTagRecord(record));
}

void Index::Batch::deletePinnedTag(std::string_view repository, std::string_view name,
                                   std::string_view tag) {
  if (Status checked = checkTagKey(repository, name, tag); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kPinnedTags, tagKey(repository, name, tag), {}, true);
}

void Index::Batch::putReferrer(std::string_view repository, std::string_view name,
                               const Digest& subject, const Digest& referrer) {
  if (Status checked = checkImageKey(repository, name); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kReferrers, referrerPrefix(repository, name, subject).append(referrer.str()),
      std::string(1, static_cast<char>(kIndexRecordVersion)));
}

void Index::Batch::deleteReferrer(std::string_view repository, std::string_view name,
                                  const Digest& subject, const Digest& referrer) {
  if (Status checked = checkImageKey(repository, name); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kReferrers, referrerPrefix(repository, name, subject).append(referrer.str()), {}, true);
}

void Index::Batch::deleteLocalBlob(std::string_view repository, std::string_view name,
                                   const Digest& digest) {
  addLocalContent(kLocalBlobs, repository, name, digest, {}, true);
}

void Index::Batch::deleteLocalManifest(std::string_view repository, std::string_view name,
                                       const Digest& digest) {
  addLocalContent(kLocalManifests, repository, name, digest, {}, true);
}

void Index::Batch::deleteTag(std::string_view repository, std::string_view name,
                             std::string_view tag) {
  if (Status checked = checkTagKey(repository, name, tag); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kTags, tagKey(repository, name, tag), {}, true);
}

void Index::Batch::reject(Status reason) {
  if (first_failure_.isOk()) {
    first_failure_ = std::move(reason);
    first_failure_position_ = put_count_;
    // The records collected so far will never be written, so their memory is freed now.
    entries_.clear();
    entries_.shrink_to_fit();
  }
  ++put_count_;
}

void Index::Batch::putBlob(const Digest& digest, const BlobRecord& record) {
  add(kBlobs, digest.str(), encodeBlobRecord(record));
}

void Index::Batch::putManifest(const Digest& digest, const ManifestRecord& record) {
  if (Status checked = checkRecordString("manifest media type", record.media_type);
      !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kManifests, digest.str(), encodeManifestRecord(record));
}

void Index::Batch::putTag(std::string_view repository, std::string_view name, std::string_view tag,
                          const TagRecord& record) {
  if (Status checked = checkTagRecord(repository, name, tag, record); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kTags, tagKey(repository, name, tag), encodeTagRecord(record));
}

void Index::Batch::putLink(std::string_view repository, const Digest& digest) {
  if (Status checked = checkKeyComponent("repository key", repository); !checked.isOk()) {
    reject(std::move(checked));
    return;
  }
  add(kLinks, linkKey(repository, digest), std::string(1, static_cast<char>(kIndexRecordVersion)));
}

Status Index::Batch::rejection() const {
  if (put_count_ == 1) {
    return first_failure_;
  }
  return invalidArgument(std::string(first_failure_.message()) +
                         " entry=" + std::to_string(first_failure_position_) +
                         " entries=" + std::to_string(put_count_));
}

Status Index::toWriteBatch(const Batch& batch, rocksdb::WriteBatch* out) const {
  for (const Batch::Entry& entry : batch.entries_) {
    rocksdb::Status added =
        entry.is_delete
            ? out->Delete(handles_[entry.family], toSlice(entry.key))
            : out->Put(handles_[entry.family], toSlice(entry.key), toSlice(entry.value));
    if (!added.ok()) {
      return fromRocksStatus(
          std::string("adding ") + kColumnFamilyNames[entry.family] + " record to batch failed",
          added);
    }
  }
  return Status::ok();
}

Status Index::write(Batch&& batch_to_take, WriteMode mode) {
  // Taken by exchange so that the caller's batch is empty afterwards, ready for reuse.
  Batch batch = std::exchange(batch_to_take, Batch());
  if (!batch.first_failure_.isOk()) {
    return batch.rejection();
  }
  if (batch.entries_.empty()) {
    return Status::ok();
  }
  rocksdb::WriteBatch rocks_batch;
  OUTPOST_RETURN_IF_ERROR(toWriteBatch(batch, &rocks_batch));

  rocksdb::WriteOptions options;
  options.sync = mode == WriteMode::kSynced;
  std::unique_lock blob_lock(blob_write_mutex_, std::defer_lock);
  if (batch.has_blob_) {
    blob_lock.lock();
  }
  if (batch.has_pinned_tag_) {
    // Set before the write, so that a reader never skips a pin that is already stored.
    may_have_pinned_tags_.store(true, std::memory_order_release);
  }
  rocksdb::Status status = db_->Write(options, &rocks_batch);
  if (batch.entries_.size() == 1) {
    return fromRocksStatus(
        std::string("writing ") + kColumnFamilyNames[batch.entries_[0].family] + " record failed",
        status);
  }
  return fromRocksStatus("writing batch failed entries=" + std::to_string(batch.entries_.size()),
                         status);
}

Status Index::flushMemtables() {
  std::vector<rocksdb::ColumnFamilyHandle*> handles(handles_.begin(), handles_.end());
  rocksdb::FlushOptions options;
  options.wait = true;
  return fromRocksStatus("flushing index memtables failed path=" + dir_.string(),
                         db_->Flush(options, handles));
}

Status Index::compactAll() {
  rocksdb::CompactRangeOptions options;
  // Rewrites the bottom level too, so that each column family ends as one sorted run.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  for (size_t family = 0; family < kColumnFamilyCount; ++family) {
    rocksdb::Status status = db_->CompactRange(options, handles_[family], nullptr, nullptr);
    if (!status.ok()) {
      return fromRocksStatus(
          std::string("compacting ") + kColumnFamilyNames[family] + " records failed", status);
    }
  }
  return Status::ok();
}

Status Index::putBlob(const Digest& digest, const BlobRecord& record) {
  Batch batch;
  batch.putBlob(digest, record);
  return write(std::move(batch), WriteMode::kSynced);
}

Expected<BlobRecord> Index::getBlob(const Digest& digest) const {
  Expected<std::string> value = readValue(kBlobs, digest.str());
  if (!value) {
    return std::move(value).takeStatus();
  }
  Expected<BlobRecord> record = decodeBlobRecord(*value);
  if (!record) {
    return corruption(std::string(record.status().message()) + " digest=" + digest.str());
  }
  return record;
}

Expected<BlobRecord> Index::setBlobTier(const Digest& digest, uint8_t tier) {
  std::lock_guard lock(blob_write_mutex_);
  OUTPOST_ASSIGN_OR_RETURN(BlobRecord record, getBlob(digest));
  record.tier = tier;
  rocksdb::WriteOptions options;
  options.sync = true;
  rocksdb::Status status =
      db_->Put(options, handles_[kBlobs], digest.str(), encodeBlobRecord(record));
  OUTPOST_RETURN_IF_ERROR(
      fromRocksStatus("writing blob tier failed digest=" + digest.str(), status));
  return record;
}

Status Index::deleteBlob(const Digest& digest) {
  std::lock_guard lock(blob_write_mutex_);
  rocksdb::WriteOptions options;
  options.sync = true;
  rocksdb::Status status = db_->Delete(options, handles_[kBlobs], digest.str());
  return fromRocksStatus("deleting blob record failed digest=" + digest.str(), status);
}

Status Index::forEachBlob(
    const std::function<bool(const Digest&, const BlobRecord&)>& fn,
    const std::function<void(std::string_view key, const Status&)>& on_damaged) const {
  auto report_damaged = [&on_damaged](std::string_view key, const Status& reason) {
    if (on_damaged) {
      on_damaged(key, reason);
      return;
    }
    log::storage().error("damaged blob record skipped key={} error={}", key, reason.toString());
  };

  // A RocksDB iterator reads from an implicit snapshot, so writes made by `fn` do not disturb it.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kBlobs]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    Expected<Digest> digest = Digest::parse(key);
    if (!digest) {
      report_damaged(key, corruption("blob record key is not a digest: " +
                                     std::string(digest.status().message())));
      continue;
    }
    Expected<BlobRecord> record = decodeBlobRecord(it->value().ToStringView());
    if (!record) {
      report_damaged(key, record.status());
      continue;
    }
    if (!fn(*digest, *record)) {
      return Status::ok();
    }
  }
  return fromRocksStatus("iterating blob records failed", it->status());
}

Status Index::putManifest(const Digest& digest, const ManifestRecord& record) {
  Batch batch;
  batch.putManifest(digest, record);
  return write(std::move(batch), WriteMode::kSynced);
}

Status Index::forEachManifest(
    const std::function<bool(const Digest&, const ManifestRecord&)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), handles_[kManifests]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    Expected<Digest> digest = Digest::parse(key);
    Expected<ManifestRecord> record = decodeManifestRecord(it->value().ToStringView());
    if (!digest || !record) {
      log::storage().error("damaged manifest record skipped key={} error={}", key,
                           (!digest ? digest.status() : record.status()).toString());
      continue;
    }
    if (!fn(*digest, *record)) {
      return Status::ok();
    }
  }
  return fromRocksStatus("iterating manifest records failed", it->status());
}

Status Index::forEachTag(
    const std::function<bool(std::string_view repository, std::string_view name,
                             std::string_view tag, const TagRecord& record)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kTags]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    size_t first = key.find('\0');
    size_t second = first == std::string_view::npos ? first : key.find('\0', first + 1);
    Expected<TagRecord> record = decodeTagRecord(it->value().ToStringView());
    if (second == std::string_view::npos || !record) {
      log::storage().error(
          "damaged tag record skipped key={} error={}", key,
          record ? "key has fewer than three components" : record.status().toString());
      continue;
    }
    if (!fn(key.substr(0, first), key.substr(first + 1, second - first - 1), key.substr(second + 1),
            *record)) {
      return Status::ok();
    }
  }
  return fromRocksStatus("iterating tag records failed", it->status());
}

Expected<ManifestRecord> Index::getManifest(const Digest& digest) const {
  Expected<std::string> value = readValue(kManifests, digest.str());
  if (!value) {
    return std::move(value).takeStatus();
  }
  Expected<ManifestRecord> record = decodeManifestRecord(*value);
  if (!record) {
    return corruption(std::string(record.status().message()) + " digest=" + digest.str());
  }
  return record;
}

Status Index::putTag(std::string_view repository, std::string_view name, std::string_view tag,
                     const TagRecord& record) {
  Batch batch;
  batch.putTag(repository, name, tag, record);
  return write(std::move(batch), WriteMode::kSynced);
}

Expected<TagRecord> Index::getTag(std::string_view repository, std::string_view name,
                                  std::string_view tag) const {
  OUTPOST_RETURN_IF_ERROR(checkTagKey(repository, name, tag));
  return readTagRecord(kTags, repository, name, tag);
}

Expected<TagRecord> Index::readTagRecord(ColumnFamily family, std::string_view repository,
                                         std::string_view name, std::string_view tag) const {
  Expected<std::string> value = readValue(family, tagKey(repository, name, tag));
  if (!value) {
    return std::move(value).takeStatus();
  }
  Expected<TagRecord> record = decodeTagRecord(*value);
  if (!record) {
    return corruption(std::string(record.status().message()) + tagLogFields(repository, name, tag));
  }
  return record;
}

Expected<std::vector<std::string>> Index::listTags(std::string_view repository,
                                                   std::string_view name) const {
  OUTPOST_RETURN_IF_ERROR(checkKeyComponent("repository key", repository));
  OUTPOST_RETURN_IF_ERROR(checkKeyComponent("image name", name));

  // Every tag key of the image sorts at or after "<repository>\0<name>\0" and before
  // "<repository>\0<name>\1", because a "\1" sorts after the "\0" separator.
  std::string prefix = tagPrefix(repository, name);
  std::string upper_bound = prefix;
  upper_bound.back() = '\1';
  rocksdb::Slice upper_bound_slice = toSlice(upper_bound);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper_bound_slice;

  std::vector<std::string> tags;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handles_[kTags]));
  for (it->Seek(toSlice(prefix)); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    if (!key.starts_with(prefix)) {
      break;
    }
    key.remove_prefix(prefix.size());
    tags.emplace_back(key);
  }
  if (!it->status().ok()) {
    return fromRocksStatus(
        "listing tags failed repo=" + std::string(repository) + " name=" + std::string(name),
        it->status());
  }
  return tags;
}

Status Index::putLink(std::string_view repository, const Digest& digest) {
  Batch batch;
  batch.putLink(repository, digest);
  return write(std::move(batch), WriteMode::kSynced);
}

bool Index::hasLink(std::string_view repository, const Digest& digest) const {
  Status checked = checkKeyComponent("repository key", repository);
  if (!checked.isOk()) {
    log::storage().error("link lookup rejected digest={} error={}", digest.str(),
                         checked.toString());
    return false;
  }
  Expected<std::string> value = readValue(kLinks, linkKey(repository, digest));
  if (!value && value.status().code() != StatusCode::kNotFound) {
    log::storage().error("link lookup failed repo={} digest={} error={}", repository, digest.str(),
                         value.status().toString());
  }
  return value.hasValue();
}

Expected<std::vector<TagChangeRecord>> Index::listTagChanges(std::string_view repository,
                                                             std::string_view name,
                                                             std::string_view tag,
                                                             size_t limit) const {
  OUTPOST_RETURN_IF_ERROR(checkTagKey(repository, name, tag));
  std::string prefix = tagKey(repository, name, tag);
  prefix.push_back('\0');
  std::string upper_bound = prefix;
  upper_bound.back() = '\1';
  rocksdb::Slice lower_bound_slice = toSlice(prefix);
  rocksdb::Slice upper_bound_slice = toSlice(upper_bound);
  rocksdb::ReadOptions options;
  options.iterate_lower_bound = &lower_bound_slice;
  options.iterate_upper_bound = &upper_bound_slice;

  std::vector<TagChangeRecord> changes;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handles_[kTagHistory]));
  for (it->SeekToLast(); it->Valid() && changes.size() < limit; it->Prev()) {
    Expected<TagChangeRecord> record = decodeTagChangeRecord(it->value().ToStringView());
    if (!record) {
      log::storage().error("damaged tag change record skipped{} error={}",
                           tagLogFields(repository, name, tag), record.status().toString());
      continue;
    }
    changes.push_back(std::move(*record));
  }
  if (!it->status().ok()) {
    return fromRocksStatus("listing tag changes failed" + tagLogFields(repository, name, tag),
                           it->status());
  }
  return changes;
}

Expected<std::vector<Digest>> Index::listReferrers(std::string_view repository,
                                                   std::string_view name,
                                                   const Digest& subject) const {
  OUTPOST_RETURN_IF_ERROR(checkImageKey(repository, name));
  std::string prefix = referrerPrefix(repository, name, subject);
  std::string upper_bound = prefix;
  upper_bound.back() = '\1';
  rocksdb::Slice upper_bound_slice = toSlice(upper_bound);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper_bound_slice;

  std::vector<Digest> referrers;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handles_[kReferrers]));
  for (it->Seek(toSlice(prefix)); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    key.remove_prefix(prefix.size());
    Expected<Digest> referrer = Digest::parse(key);
    if (!referrer) {
      log::storage().error("damaged referrers record skipped repo={} name={} subject={} key={}",
                           repository, name, subject.str(), key);
      continue;
    }
    referrers.push_back(std::move(*referrer));
  }
  if (!it->status().ok()) {
    return fromRocksStatus("listing referrers failed repo=" + std::string(repository) +
                               " name=" + std::string(name) + " subject=" + subject.str(),
                           it->status());
  }
  return referrers;
}

Expected<TagRecord> Index::getPinnedTag(std::string_view repository, std::string_view name,
                                        std::string_view tag) const {
  OUTPOST_RETURN_IF_ERROR(checkTagKey(repository, name, tag));
  // Every request by tag looks up a pin, and most indexes never contain one.
  if (!may_have_pinned_tags_.load(std::memory_order_acquire)) {
    return notFound("tag is not pinned");
  }
  return readTagRecord(kPinnedTags, repository, name, tag);
}

bool Index::isBlobHeld(const Digest& digest) const {
  Expected<std::string> value = readValue(kHeldBlobs, digest.str());
  if (!value && value.status().code() != StatusCode::kNotFound) {
    log::storage().error("held blob lookup failed digest={} error={}", digest.str(),
                         value.status().toString());
  }
  return value.hasValue();
}

Expected<ContentRecord> Index::getLocalContent(ColumnFamily family, std::string_view repository,
                                               std::string_view name, const Digest& digest) const {
  OUTPOST_RETURN_IF_ERROR(checkImageKey(repository, name));
  Expected<std::string> value = readValue(family, localContentKey(repository, name, digest));
  if (!value) {
    return std::move(value).takeStatus();
  }
  Expected<ContentRecord> record = decodeContentRecord(*value);
  if (!record) {
    return corruption(std::string(record.status().message()) + " repo=" + std::string(repository) +
                      " name=" + std::string(name) + " digest=" + digest.str());
  }
  return record;
}

Expected<ContentRecord> Index::getLocalBlob(std::string_view repository, std::string_view name,
                                            const Digest& digest) const {
  return getLocalContent(kLocalBlobs, repository, name, digest);
}

Expected<ContentRecord> Index::getLocalManifest(std::string_view repository, std::string_view name,
                                                const Digest& digest) const {
  return getLocalContent(kLocalManifests, repository, name, digest);
}

Expected<std::vector<std::string>> Index::listImages(std::string_view repository,
                                                     std::string_view after, size_t limit) const {
  OUTPOST_RETURN_IF_ERROR(checkKeyComponent("repository key", repository));
  std::string prefix(repository);
  prefix.push_back('\0');
  std::string upper_bound(repository);
  upper_bound.push_back('\1');
  rocksdb::Slice upper_bound_slice = toSlice(upper_bound);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper_bound_slice;

  std::vector<std::string> names;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handles_[kLocalManifests]));
  // "<repository>\0<name>\1" sorts after every manifest key of <name>, so seeking to it skips
  // the rest of that image's manifests.
  std::string position = prefix;
  if (!after.empty()) {
    position.append(after);
    position.push_back('\1');
  }
  for (it->Seek(toSlice(position)); it->Valid() && names.size() < limit;) {
    std::string_view key = it->key().ToStringView();
    key.remove_prefix(prefix.size());
    size_t separator = key.find('\0');
    if (separator == std::string_view::npos) {
      log::storage().error("damaged local manifest key skipped repo={} key={}", repository, key);
      it->Next();
      continue;
    }
    names.emplace_back(key.substr(0, separator));
    position = prefix + names.back();
    position.push_back('\1');
    it->Seek(toSlice(position));
  }
  if (!it->status().ok()) {
    return fromRocksStatus("listing images failed repo=" + std::string(repository), it->status());
  }
  return names;
}

Status Index::forEachLocalManifest(
    std::string_view repository, std::string_view name,
    const std::function<bool(const Digest&, const ContentRecord&)>& fn) const {
  OUTPOST_RETURN_IF_ERROR(checkImageKey(repository, name));
  std::string prefix = tagPrefix(repository, name);
  std::string upper_bound = prefix;
  upper_bound.back() = '\1';
  rocksdb::Slice upper_bound_slice = toSlice(upper_bound);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper_bound_slice;

  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handles_[kLocalManifests]));
  for (it->Seek(toSlice(prefix)); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    key.remove_prefix(prefix.size());
    Expected<Digest> digest = Digest::parse(key);
    Expected<ContentRecord> record = decodeContentRecord(it->value().ToStringView());
    if (!digest || !record) {
      log::storage().error("damaged local manifest record skipped repo={} name={} key={} error={}",
                           repository, name, key,
                           (!digest ? digest.status() : record.status()).toString());
      continue;
    }
    if (!fn(*digest, *record)) {
      return Status::ok();
    }
  }
  return fromRocksStatus("iterating local manifests failed repo=" + std::string(repository) +
                             " name=" + std::string(name),
                         it->status());
}

Status Index::forEachLocalContent(ColumnFamily family, const LocalContentFn& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[family]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    std::array<std::string_view, 3> parts;
    Expected<Digest> digest = splitKey(key, parts) ? Digest::parse(parts[2])
                                                   : Expected<Digest>(corruption("malformed key"));
    Expected<ContentRecord> record = decodeContentRecord(it->value().ToStringView());
    if (!digest || !record) {
      log::storage().error("damaged {} record skipped key={} error={}", kColumnFamilyNames[family],
                           key, (!digest ? digest.status() : record.status()).toString());
      continue;
    }
    if (!fn(parts[0], parts[1], *digest, *record)) {
      return Status::ok();
    }
  }
  return fromRocksStatus(std::string("iterating ") + kColumnFamilyNames[family] + " records failed",
                         it->status());
}

Status Index::forEachLocalBlob(const LocalContentFn& fn) const {
  return forEachLocalContent(kLocalBlobs, fn);
}

Status Index::forEachLocalManifest(const LocalContentFn& fn) const {
  return forEachLocalContent(kLocalManifests, fn);
}

Status Index::forEachHeldBlob(const std::function<bool(const Digest&)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), handles_[kHeldBlobs]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    Expected<Digest> digest = Digest::parse(key);
    if (!digest) {
      log::storage().error("damaged held blob record skipped key={} error={}", key,
                           digest.status().toString());
      continue;
    }
    if (!fn(*digest)) {
      return Status::ok();
    }
  }
  return fromRocksStatus("iterating held blob records failed", it->status());
}

Status Index::forEachLink(
    const std::function<bool(std::string_view repository, const Digest& digest)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kLinks]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    std::array<std::string_view, 2> parts;
    Expected<Digest> digest = splitKey(key, parts) ? Digest::parse(parts[1])
                                                   : Expected<Digest>(corruption("malformed key"));
    if (!digest) {
      log::storage().error("damaged link record skipped key={} error={}", key,
                           digest.status().toString());
      continue;
    }
    if (!fn(parts[0], *digest)) {
      return Status::ok();
    }
  }
  return fromRocksStatus("iterating link records failed", it->status());
}

Status Index::forEachReferrer(
    const std::function<bool(std::string_view repository, std::string_view name,
                             const Digest& subject, const Digest& referrer)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), handles_[kReferrers]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    std::array<std::string_view, 4> parts;
    if (!splitKey(key, parts)) {
      log::storage().error("damaged referrers record skipped key={}", key);
      continue;
    }
    Expected<Digest> subject = Digest::parse(parts[2]);
    Expected<Digest> referrer = Digest::parse(parts[3]);
    if (!subject || !referrer) {
      log::storage().error("damaged referrers record skipped key={} error={}", key,
                           (!subject ? subject.status() : referrer.status()).toString());
      continue;
    }
    if (!fn(parts[0], parts[1], *subject, *referrer)) {
      return Status::ok();
    }
  }
  return fromRocksStatus("iterating referrers records failed", it->status());
}

void Index::touchBlob(const Digest& digest, int64_t now_ms) {
  std::lock_guard lock(pending_mutex_);
  auto [it, inserted] = pending_access_ms_.try_emplace(digest.str(), now_ms);
  if (!inserted) {
    it->second = std::max(it->second, now_ms);
  }
}

Status Index::flushAccessTimes() {
  std::unordered_map<std::string, int64_t> access_ms;
  {
    std::lock_guard lock(pending_mutex_);
    access_ms.swap(pending_access_ms_);
  }
  if (access_ms.empty()) {
    return Status::ok();
  }

  Status written = writeAccessTimes(access_ms);
  if (!written.isOk()) {
    // Put the times back, keeping any later touch recorded during the failed write.
    std::lock_guard lock(pending_mutex_);
    for (const auto& [digest, time_ms] : access_ms) {
      auto [it, inserted] = pending_access_ms_.try_emplace(digest, time_ms);
      if (!inserted) {
        it->second = std::max(it->second, time_ms);
      }
    }
  }
  return written;
}

Status Index::writeAccessTimes(const std::unordered_map<std::string, int64_t>& access_ms) {
  std::lock_guard lock(blob_write_mutex_);
  rocksdb::WriteBatch batch;
  for (const auto& [digest, time_ms] : access_ms) {
    Expected<std::string> value = readValue(kBlobs, digest);
    if (!value) {
      if (value.status().code() == StatusCode::kNotFound) {
        continue;
      }
      return value.status();
    }

    Expected<BlobRecord> record = decodeBlobRecord(*value);
    if (!record) {
      // Failing the whole flush would keep this digest pending forever and stop every later
      // access time from being written, so the damaged record is skipped and reported.
      log::storage().error("access time not written for a damaged blob record digest={} error={}",
                           digest, record.status().toString());
      continue;
    }
    if (record->last_access_ms >= time_ms) {
      continue;
    }
    record->last_access_ms = time_ms;
    rocksdb::Status added = batch.Put(handles_[kBlobs], digest, encodeBlobRecord(*record));
    if (!added.ok()) {
      return fromRocksStatus("adding access time to batch failed digest=" + digest, added);
    }
  }

  if (batch.Count() == 0) {
    return Status::ok();
  }
  rocksdb::Status status = db_->Write(rocksdb::WriteOptions(), &batch);
  return fromRocksStatus("writing access times failed count=" + std::to_string(batch.Count()),
                         status);
}

}  // namespace outpost::storage
