#include "storage/fsck.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"

namespace outpost::storage {
namespace {

namespace fs = std::filesystem;

// Size of the buffer that reads a blob file to hash it.
constexpr size_t kReadBufferBytes = 1 << 20;
// How many ".<n>" suffixes quarantine tries when its target name is taken.
constexpr int kMaxQuarantineSuffix = 1000;

constexpr std::array<std::string_view, kFsckKindCount> kKindNames = {
    "missing_file", "unindexed_file", "size_mismatch",  "digest_mismatch",
    "stray_file",   "damaged_record", "duplicate_file", "wrong_tier"};

// The algorithm folders that may appear under blobs/, as BlobStore::pathFor names them.
constexpr std::array<std::string_view, 2> kAlgorithmFolders = {"sha256", "sha512"};

// The content address of `digest`, the same path as BlobStore::pathFor.
fs::path blobPath(const fs::path& data_dir, const Digest& digest) {
  std::string_view hex = digest.hex();
  return data_dir / "blobs" / std::string(digest.algorithmName()) / std::string(hex.substr(0, 2)) /
         std::string(hex);
}

bool isLowerHexPair(std::string_view name) {
  auto is_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  return name.size() == 2 && is_hex(name[0]) && is_hex(name[1]);
}

int64_t mtimeMs(const struct stat& info) {
  return static_cast<int64_t>(info.st_mtim.tv_sec) * 1000 + info.st_mtim.tv_nsec / 1000000;
}

// Reads the whole file at `path` and returns its digest under `algorithm`. Symbolic links are
// not followed.
Expected<Digest> hashFile(const fs::path& path, DigestAlgorithm algorithm) {
  UniqueFd fd(
      retryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW); }));
  if (!fd) {
    return errnoStatus("opening " + path.string() + " failed", errno);
  }

  DigestHasher hasher(algorithm);
  std::vector<std::byte> buffer(kReadBufferBytes);
  while (true) {
    ssize_t count = retryOnEintr([&] { return ::read(fd.get(), buffer.data(), buffer.size()); });
    if (count < 0) {
      return errnoStatus("reading " + path.string() + " failed", errno);
    }
    if (count == 0) {
      break;
    }
    hasher.update(std::span<const std::byte>(buffer.data(), static_cast<size_t>(count)));
  }
  return hasher.finish();
}

// Lists the entries of `folder`, sorted by name so that reports come out in a stable order.
Expected<std::vector<fs::path>> listFolder(const fs::path& folder) {
  std::vector<fs::path> entries;
  std::error_code error;
  fs::directory_iterator it(folder, error);
  for (; !error && it != fs::directory_iterator(); it.increment(error)) {
    entries.push_back(it->path());
  }
  if (error) {
    return errnoStatus("listing " + folder.string() + " failed", error.value());
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

bool isDirectoryNoFollow(const fs::path& path) {
  std::error_code error;
  return fs::symlink_status(path, error).type() == fs::file_type::directory;
}

// Writes `value` as one space-free token: as is when it is plain, otherwise in double quotes
// with \", \\, \n, \t and \xNN escapes.
std::string quoteIfNeeded(std::string_view value) {
  if (value.empty()) {
    return "-";
  }
  auto is_plain = [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return byte > 0x20 && byte != 0x7f && c != '"' && c != '\\';
  };
  if (std::all_of(value.begin(), value.end(), is_plain)) {
    return std::string(value);
  }

  std::string quoted = "\"";
  for (char c : value) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      quoted.push_back('\\');
      quoted.push_back(c);
    } else if (c == '\n') {
      quoted.append("\\n");
    } else if (c == '\t') {
      quoted.append("\\t");
    } else if (byte < 0x20 || byte == 0x7f) {
      char escaped[5];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      quoted.append(escaped);
    } else {
      quoted.push_back(c);
    }
  }
  quoted.push_back('"');
  return quoted;
}

// One fsck pass over one data folder. The index pass runs first and the file walk second, so
// a file that the index pass quarantined is no longer listed, and a file whose damaged record
// was deleted is seen as unindexed.
class FsckRun {
 public:
  FsckRun(std::vector<fs::path> tier_roots, Index& index, const FsckOptions& options,
          const FsckFindingCallback& on_finding, const Clock& clock)
      : tier_roots_(std::move(tier_roots)),
        index_(index),
        options_(options),
        on_finding_(on_finding),
        clock_(clock) {}

  Expected<FsckReport> run() {
    OUTPOST_RETURN_IF_ERROR(checkIndex());
    for (uint32_t tier = 0; tier < tier_roots_.size(); ++tier) {
      OUTPOST_RETURN_IF_ERROR(walkBlobs(tier));
    }
    return report_;
  }

 private:
  // Index pass: every blob record must have a regular file of its size, and with
  // verify_digests, a file whose bytes hash to its digest.
  Status checkIndex() {
    return index_.forEachBlob(
        [this](const Digest& digest, const BlobRecord& record) {
          checkRecord(digest, record);
          return true;
        },
        [this](std::string_view key, const Status& reason) { checkDamagedRecord(key, reason); });
  }

  // Whether `path` is a regular file, with its stat in `info`. Counts an error and returns
  // nullopt when it cannot tell.
  std::optional<bool> isRegularFile(const fs::path& path, struct stat& info) {
    bool exists = ::lstat(path.c_str(), &info) == 0;
    if (!exists && errno != ENOENT) {
      countError("stat of blob file failed", path, errnoStatus("lstat", errno));
      return std::nullopt;
    }
    // A folder or a symbolic link at the address is not a blob file. The walk reports it as stray.
    return exists && S_ISREG(info.st_mode);
  }

  void checkRecord(const Digest& digest, const BlobRecord& record) {
    ++report_.indexed_blobs;
    FsckFinding finding;
    finding.digest = digest;
    bool is_known_tier = record.tier < tier_roots_.size();
    finding.path = blobPath(tier_roots_[is_known_tier ? record.tier : 0], digest);

    struct stat info {};
    std::optional<bool> is_file =
        is_known_tier ? isRegularFile(finding.path, info) : std::optional<bool>(false);
    if (!is_file) {
      return;
    }
    if (!*is_file) {
      std::optional<uint32_t> found = findInOtherTier(digest, record.tier, info);
      if (!found) {
        finding.kind = FsckKind::kMissingFile;
        if (!is_known_tier) {
          finding.detail =
              "the record names tier " + std::to_string(record.tier) + ", which is not configured";
        }
        if (options_.repair) {
          removeRecord(finding);
        }
        emit(std::move(finding));
        return;
      }
      // An interrupted move, or a tier that changed places in the configuration.
      FsckFinding moved;
      moved.kind = FsckKind::kWrongTier;
      moved.digest = digest;
      moved.path = blobPath(tier_roots_[*found], digest);
      moved.file_bytes = static_cast<uint64_t>(info.st_size);
      moved.detail = "the record names tier " + std::to_string(record.tier) +
                     ", the file is in tier " + std::to_string(*found);
      if (options_.repair) {
        Expected<BlobRecord> updated = index_.setBlobTier(digest, static_cast<uint8_t>(*found));
        if (updated) {
          moved.action = FsckAction::kUpdatedIndexEntry;
        } else {
          moved.detail += "; not repaired: " + updated.status().toString();
        }
      }
      finding.path = moved.path;
      emit(std::move(moved));
    }

    finding.file_bytes = static_cast<uint64_t>(info.st_size);
    if (finding.file_bytes != record.size) {
      finding.kind = FsckKind::kSizeMismatch;
      finding.detail = "index size " + std::to_string(record.size) + ", file size " +
                       std::to_string(finding.file_bytes);
      repairDamagedFile(finding);
      emit(std::move(finding));
      return;
    }

    if (!options_.verify_digests) {
      return;
    }
    Expected<Digest> actual = hashFile(finding.path, digest.algorithm());
    if (!actual) {
      countError("hashing blob file failed", finding.path, actual.status());
      return;
    }
    if (*actual != digest) {
      finding.kind = FsckKind::kDigestMismatch;
      finding.detail = "content hashes to " + actual->str();
      repairDamagedFile(finding);
      emit(std::move(finding));
    }
  }

  void checkDamagedRecord(std::string_view key, const Status& reason) {
    ++report_.indexed_blobs;
    FsckFinding finding;
    finding.kind = FsckKind::kDamagedRecord;
    finding.detail = std::string(reason.message());

    Expected<Digest> digest = Digest::parse(key);
    if (!digest) {
      // NOTE: Index deletes blob records by digest only, so a record whose key is not a digest
      // is reported and never repaired. Its key goes into the detail field.
      finding.detail = "key " + quoteIfNeeded(key) + ": " + finding.detail;
      emit(std::move(finding));
      return;
    }
    finding.digest = *digest;
    finding.path = blobPath(tier_roots_[0], *digest);
    if (options_.repair) {
      removeRecord(finding);
    }
    emit(std::move(finding));
  }

  // The first tier other than `skip` with a regular file for `digest`, with its stat in `info`.
  std::optional<uint32_t> findInOtherTier(const Digest& digest, uint32_t skip, struct stat& info) {
    for (uint32_t tier = 0; tier < tier_roots_.size(); ++tier) {
      if (tier == skip) {
        continue;
      }
      std::optional<bool> is_file = isRegularFile(blobPath(tier_roots_[tier], digest), info);
      if (is_file && *is_file) {
        return tier;
      }
    }
    return std::nullopt;
  }

  // File walk of one tier: everything under blobs/ must be <algorithm>/<hex pair>/<hex> with an
  // index record that names this tier.
  Status walkBlobs(uint32_t tier) {
    walk_tier_ = tier;
    fs::path blobs = tier_roots_[tier] / "blobs";
    std::error_code error;
    if (!fs::exists(fs::symlink_status(blobs, error))) {
      return Status::ok();  // an empty store has no blobs/ folder yet
    }
    OUTPOST_ASSIGN_OR_RETURN(std::vector<fs::path> entries, listFolder(blobs));
    for (const fs::path& entry : entries) {
      std::string name = entry.filename().string();
      bool is_algorithm = std::find(kAlgorithmFolders.begin(), kAlgorithmFolders.end(), name) !=
                          kAlgorithmFolders.end();
      if (is_algorithm && isDirectoryNoFollow(entry)) {
        OUTPOST_RETURN_IF_ERROR(walkAlgorithmFolder(entry, name));
      } else {
        OUTPOST_RETURN_IF_ERROR(reportStray(entry));
      }
    }
    return Status::ok();
  }

  Status walkAlgorithmFolder(const fs::path& folder, const std::string& algorithm) {
    OUTPOST_ASSIGN_OR_RETURN(std::vector<fs::path> entries, listFolder(folder));
    for (const fs::path& entry : entries) {
      std::string name = entry.filename().string();
      if (isLowerHexPair(name) && isDirectoryNoFollow(entry)) {
        OUTPOST_RETURN_IF_ERROR(walkShardFolder(entry, algorithm, name));
      } else {
        OUTPOST_RETURN_IF_ERROR(reportStray(entry));
      }
    }
    return Status::ok();
  }

  Status walkShardFolder(const fs::path& folder, const std::string& algorithm,
                         const std::string& shard) {
    OUTPOST_ASSIGN_OR_RETURN(std::vector<fs::path> entries, listFolder(folder));
    for (const fs::path& entry : entries) {
      std::string name = entry.filename().string();
      Expected<Digest> digest = Digest::parse(algorithm + ":" + name);
      bool is_address = digest && digest->hex() == name && name.starts_with(shard);
      if (!is_address) {
        OUTPOST_RETURN_IF_ERROR(reportStray(entry));
        continue;
      }

      struct stat info {};
      if (::lstat(entry.c_str(), &info) != 0) {
        countError("stat of blob file failed", entry, errnoStatus("lstat", errno));
        continue;
      }
      if (!S_ISREG(info.st_mode)) {
        OUTPOST_RETURN_IF_ERROR(reportStray(entry));
        continue;
      }
      checkBlobFile(entry, *digest, info);
    }
    return Status::ok();
  }

  void checkBlobFile(const fs::path& path, const Digest& digest, const struct stat& info) {
    ++report_.blob_files;
    report_.blob_bytes += static_cast<uint64_t>(info.st_size);

    Expected<BlobRecord> record = index_.getBlob(digest);
    if (record) {
      if (record->tier != walk_tier_) {
        checkDuplicate(path, digest, *record, info);
      }
      return;  // the index pass checked it
    }
    if (record.status().code() == StatusCode::kCorruption) {
      return;  // the index pass reported the damaged record
    }
    if (record.status().code() != StatusCode::kNotFound) {
      countError("reading blob record failed", path, record.status());
      return;
    }

    FsckFinding finding;
    finding.kind = FsckKind::kUnindexedFile;
    finding.digest = digest;
    finding.path = path;
    finding.file_bytes = static_cast<uint64_t>(info.st_size);
    if (options_.repair) {
      adoptOrQuarantine(finding, mtimeMs(info));
    }
    emit(std::move(finding));
  }

  // A file in a tier other than the one its record names. When the named tier has the file too,
  // this copy is what an interrupted move left behind, and repair removes it once the named
  // copy hashes to its digest.
  void checkDuplicate(const fs::path& path, const Digest& digest, const BlobRecord& record,
                      const struct stat& info) {
    if (record.tier >= tier_roots_.size()) {
      return;  // the index pass reported the record
    }
    struct stat named_info {};
    std::optional<bool> named_exists =
        isRegularFile(blobPath(tier_roots_[record.tier], digest), named_info);
    if (!named_exists || !*named_exists) {
      return;  // the index pass reported the record as being in the wrong tier
    }
    FsckFinding finding;
    finding.kind = FsckKind::kDuplicateFile;
    finding.digest = digest;
    finding.path = path;
    finding.file_bytes = static_cast<uint64_t>(info.st_size);
    finding.detail = "the record names tier " + std::to_string(record.tier);
    if (options_.repair) {
      // The copy the record names must be good before the other goes.
      Expected<Digest> named =
          hashFile(blobPath(tier_roots_[record.tier], digest), digest.algorithm());
      if (!named || *named != digest) {
        finding.detail += "; not repaired: the copy in tier " + std::to_string(record.tier) +
                          (named ? " hashes to " + named->str() : " cannot be read") +
                          ", so this copy stays";
      } else if (::unlink(path.c_str()) == 0) {
        finding.action = FsckAction::kRemovedFile;
      } else {
        finding.detail +=
            "; not repaired: " + errnoStatus("unlink of " + path.string(), errno).toString();
      }
    }
    emit(std::move(finding));
  }

  // Indexes an unindexed file whose bytes hash to its name, and quarantines it otherwise.
  void adoptOrQuarantine(FsckFinding& finding, int64_t mtime_ms) {
    Expected<Digest> actual = hashFile(finding.path, finding.digest->algorithm());
    if (!actual) {
      finding.detail = "not repaired: " + actual.status().toString();
      return;
    }
    if (*actual != *finding.digest) {
      finding.detail = "content hashes to " + actual->str();
      quarantine(finding);
      return;
    }

    // The file's mtime is the best known creation and access time, so eviction treats an
    // adopted blob as last used when it was written.
    BlobRecord record{finding.file_bytes, mtime_ms, mtime_ms, static_cast<uint8_t>(walk_tier_)};
    Status put = index_.putBlob(*finding.digest, record);
    if (!put.isOk()) {
      finding.detail = "not repaired: " + put.toString();
      return;
    }
    finding.action = FsckAction::kAdopted;
    report_.adopted_bytes += finding.file_bytes;
  }

  // Repairs a size or digest mismatch: the record goes first, so that a failure in between
  // leaves an unindexed file, never a record for a quarantined file.
  void repairDamagedFile(FsckFinding& finding) {
    if (!options_.repair) {
      return;
    }
    removeRecord(finding);
    if (!finding.isRepaired()) {
      return;
    }
    quarantine(finding);
  }

  void removeRecord(FsckFinding& finding) {
    Status deleted = index_.deleteBlob(*finding.digest);
    if (!deleted.isOk()) {
      finding.detail = "not repaired: " + deleted.toString();
      return;
    }
    finding.action = FsckAction::kRemovedIndexEntry;
  }

  // Moves finding.path to <data_dir>/quarantine/<relative path>.<unix seconds>[.<n>]. On failure
  // the action stays as it was and the reason goes to finding.detail.
  void quarantine(FsckFinding& finding) {
    Expected<fs::path> target = quarantineTarget(finding.path);
    if (!target) {
      finding.detail = "not quarantined: " + target.status().toString();
      return;
    }
    // NOTE: neither folder is fsynced after the rename, so a crash soon after can put the file
    // back at its old path, where the next fsck finds it again. No bytes are lost either way.
    if (::rename(finding.path.c_str(), target->c_str()) != 0) {
      finding.detail = "not quarantined: " +
                       errnoStatus("renaming to " + target->string() + " failed", errno).toString();
      return;
    }
    finding.action = FsckAction::kQuarantined;
    finding.quarantine_path = *target;
    report_.quarantined_bytes += finding.file_bytes;
  }

  // The quarantine folder is in the tier of the file, so that the rename stays on its file
  // system.
  Expected<fs::path> quarantineTarget(const fs::path& path) const {
    const fs::path* root = nullptr;
    fs::path relative;
    for (const fs::path& tier_root : tier_roots_) {
      fs::path candidate = path.lexically_relative(tier_root);
      if (!candidate.empty() && *candidate.begin() != "..") {
        root = &tier_root;
        relative = candidate;
        break;
      }
    }
    if (root == nullptr) {
      return invalidArgument(path.string() + " is outside the data folder and the tiers");
    }
    fs::path base = *root / "quarantine" / relative;
    base += "." + std::to_string(clock_.nowMs() / 1000);

    std::error_code error;
    fs::create_directories(base.parent_path(), error);
    if (error) {
      return errnoStatus("creating " + base.parent_path().string() + " failed", error.value());
    }
    for (int suffix = 0; suffix <= kMaxQuarantineSuffix; ++suffix) {
      fs::path candidate = base;
      if (suffix > 0) {
        candidate += "." + std::to_string(suffix);
      }
      if (!fs::exists(fs::symlink_status(candidate, error))) {
        return candidate;
      }
    }
    return Status(StatusCode::kAlreadyExists,
                  "every quarantine name for " + base.string() + " is taken");
  }

  // Reports `entry` as a stray file, or every non-folder entry under it when it is a folder. With
  // repair, a stray folder that is empty afterwards is removed, because it contains no bytes.
  Status reportStray(const fs::path& entry) {
    if (!isDirectoryNoFollow(entry)) {
      reportStrayFile(entry);
      return Status::ok();
    }

    OUTPOST_ASSIGN_OR_RETURN(std::vector<fs::path> entries, listFolder(entry));
    for (const fs::path& child : entries) {
      OUTPOST_RETURN_IF_ERROR(reportStray(child));
    }
    if (options_.repair) {
      std::error_code ignored;
      fs::remove(entry, ignored);  // fails, harmlessly, when something is left inside
    }
    return Status::ok();
  }

  void reportStrayFile(const fs::path& path) {
    FsckFinding finding;
    finding.kind = FsckKind::kStrayFile;
    finding.path = path;
    struct stat info {};
    if (::lstat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode)) {
      finding.file_bytes = static_cast<uint64_t>(info.st_size);
    }
    if (options_.repair) {
      quarantine(finding);
    }
    emit(std::move(finding));
  }

  void countError(std::string_view context, const fs::path& path, const Status& status) {
    ++report_.errors;
    log::storage().error("fsck: {} path={} error=\"{}\"", context, path.string(),
                         status.toString());
  }

  void emit(FsckFinding&& finding) {
    ++report_.findings_by_kind[static_cast<size_t>(finding.kind)];
    if (finding.isRepaired()) {
      ++report_.repaired;
    }
    if (on_finding_) {
      on_finding_(finding);
    }
  }

  // The data folder first, then the lower tiers.
  const std::vector<fs::path> tier_roots_;
  // The tier the file walk is in.
  uint32_t walk_tier_ = 0;
  Index& index_;
  const FsckOptions& options_;
  const FsckFindingCallback& on_finding_;
  const Clock& clock_;
  FsckReport report_;
};

}  // namespace

std::string_view fsckKindName(FsckKind kind) { return kKindNames[static_cast<size_t>(kind)]; }

std::string_view fsckActionName(FsckAction action) {
  switch (action) {
    case FsckAction::kNone:
      return "none";
    case FsckAction::kRemovedIndexEntry:
      return "removed_index_entry";
    case FsckAction::kAdopted:
      return "adopted";
    case FsckAction::kQuarantined:
      return "quarantined";
    case FsckAction::kRemovedFile:
      return "removed_file";
    case FsckAction::kUpdatedIndexEntry:
      return "updated_index_entry";
  }
  return "none";
}

uint64_t FsckReport::findingCount() const {
  uint64_t total = 0;
  for (uint64_t count : findings_by_kind) {
    total += count;
  }
  return total;
}

Expected<FsckReport> runFsck(const fs::path& data_dir, Index& index, const FsckOptions& options,
                             const FsckFindingCallback& on_finding, const Clock& clock) {
  std::vector<fs::path> tier_roots{data_dir};
  tier_roots.insert(tier_roots.end(), options.lower_tier_roots.begin(),
                    options.lower_tier_roots.end());
  for (fs::path& root : tier_roots) {
    std::error_code error;
    fs::path absolute = fs::absolute(root, error);
    if (error) {
      return errnoStatus("resolving blob folder " + root.string() + " failed", error.value());
    }
    root = absolute.lexically_normal();
  }
  FsckRun run(std::move(tier_roots), index, options, on_finding, clock);
  return run.run();
}

Expected<FsckReport> runFsck(const fs::path& data_dir, const FsckOptions& options,
                             const FsckFindingCallback& on_finding, const Clock& clock) {
  std::error_code error;
  if (!fs::is_directory(data_dir, error)) {
    return notFound("data folder " + data_dir.string() +
                    " not found; check storage.data_dir in the configuration");
  }

  Expected<std::unique_ptr<Index>> index = Index::open(data_dir / "index");
  if (!index) {
    return Status(index.status().code(),
                  std::string(index.status().message()) +
                      ". If an outpost server uses this data folder, stop it and run fsck again");
  }
  return runFsck(data_dir, **index, options, on_finding, clock);
}

std::string formatFsckFinding(const FsckFinding& finding) {
  std::string line = "kind=" + std::string(fsckKindName(finding.kind));
  line += " digest=" + (finding.digest ? finding.digest->str() : std::string("-"));
  line += " path=" + quoteIfNeeded(finding.path.string());
  line += " action=" + std::string(fsckActionName(finding.action));
  if (!finding.quarantine_path.empty()) {
    line += " quarantine=" + quoteIfNeeded(finding.quarantine_path.string());
  }
  if (!finding.detail.empty()) {
    line += " detail=" + quoteIfNeeded(finding.detail);
  }
  return line;
}

std::string formatFsckSummary(const FsckReport& report) {
  std::string line = "summary findings=" + std::to_string(report.findingCount());
  line += " repaired=" + std::to_string(report.repaired);
  line += " remaining=" + std::to_string(report.remainingCount());
  for (size_t i = 0; i < kFsckKindCount; ++i) {
    line += " " + std::string(kKindNames[i]) + "=" + std::to_string(report.findings_by_kind[i]);
  }
  line += " errors=" + std::to_string(report.errors);
  line += " indexed_blobs=" + std::to_string(report.indexed_blobs);
  line += " blob_files=" + std::to_string(report.blob_files);
  line += " blob_bytes=" + std::to_string(report.blob_bytes);
  line += " quarantined_bytes=" + std::to_string(report.quarantined_bytes);
  line += " adopted_bytes=" + std::to_string(report.adopted_bytes);
  return line;
}

}  // namespace outpost::storage
