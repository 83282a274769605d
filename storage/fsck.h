// fsck: reconciles the blob index with the blob files of one data folder, and optionally
// repairs what it finds.
//
// The data folder (storage.data_dir) contains the layout of storage/blob_store.h and the index of
// storage/index.h:
//   <data_dir>/blobs/<algorithm>/<hex[0:2]>/<hex>   blob files, <algorithm> is sha256 or sha512
//   <data_dir>/index/                               the RocksDB index (blob records)
//   <data_dir>/quarantine/                          files that fsck moved aside (created on use)
//
// A blob is committed to its file first and indexed afterwards, so a crash leaves at most an
// unindexed file. A bug, a damaged disk or an operator can still break that order, and fsck
// finds what remains:
//   missing_file     an index record without its file         repair: delete the record
//   unindexed_file   a valid file without an index record      repair: index it (adopt) when its
//                                                              bytes hash to its name, otherwise
//                                                              quarantine it
//   size_mismatch    the record's size differs from the file   repair: delete the record, then
//                                                              quarantine the file
//   digest_mismatch  (verify_digests only) the file's bytes do  repair: delete the record, then
//                    not hash to its name                      quarantine the file
//   stray_file       anything under blobs/ that is not a       repair: quarantine
//                    content address (wrong folder, bad name,
//                    a symbolic link, a nested folder's files)
//   damaged_record   a blob record whose key is not a digest   repair: delete the record
//                    or whose value does not decode
//   wrong_tier       the record names a tier without the file, repair: record the tier that has
//                    and another tier has it                  the file
//   duplicate_file   a file in a tier other than the one its   repair: remove the file once the
//                    record names, which has the file too      named copy hashes to its digest
//
// Lower disk tiers (FsckOptions::lower_tier_roots) have the layout of the data folder's blobs/
// and are checked the same way. A move between tiers copies, indexes, then removes the source,
// so an interrupted move leaves a duplicate_file or, if the index write was lost, a wrong_tier
// finding, and never loses the blob (DiskTiersCrashTest stops a move after each step).
//
// Quarantine never deletes bytes: it renames the file to
// <tier root>/quarantine/<path relative to the tier root>.<unix time in seconds>, adding ".<n>"
// when that name is taken. Repairs delete an index record before they move its file, so an
// interrupted repair leaves an unindexed file, never a record without a file. Files under tmp/ are
// left to BlobStore::open, which removes them.
//
// fsck must not run next to a server on the same data folder. Opening the index takes RocksDB's
// lock on the folder, so runFsck(data_dir, ...) fails while a server holds it.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "storage/index.h"

namespace outpost::storage {

enum class FsckKind {
  kMissingFile,
  kUnindexedFile,
  kSizeMismatch,
  kDigestMismatch,
  kStrayFile,
  kDamagedRecord,
  kDuplicateFile,
  kWrongTier,
};
inline constexpr size_t kFsckKindCount = 8;

enum class FsckAction {
  kNone,
  kRemovedIndexEntry,
  kAdopted,
  kQuarantined,
  kRemovedFile,
  kUpdatedIndexEntry,
};

// The names used in the report lines: "missing_file", "removed_index_entry", ...
std::string_view fsckKindName(FsckKind kind);
std::string_view fsckActionName(FsckAction action);

struct FsckOptions {
  // Repair each finding as the table in the file header describes. Without it, fsck only reads.
  bool repair = false;
  // Hash every indexed blob file and compare it with its name. Reads every byte of the store.
  bool verify_digests = false;
  // The lower disk tiers (storage.lower_tiers), in order; the data folder is the first tier.
  std::vector<std::filesystem::path> lower_tier_roots;
};

struct FsckFinding {
  FsckKind kind = FsckKind::kMissingFile;
  // Empty for a stray file, and for a damaged record whose key is not a digest.
  std::optional<Digest> digest;
  // The blob file (absolute, under data_dir). For a damaged record, the path its key maps to,
  // or empty when the key is not a digest.
  std::filesystem::path path;
  FsckAction action = FsckAction::kNone;
  // Destination of the file when action is kQuarantined.
  std::filesystem::path quarantine_path;
  // Size of the file in bytes, 0 when there is no file.
  uint64_t file_bytes = 0;
  // Reason a requested repair failed, or the problem with a damaged record. Empty otherwise.
  std::string detail;

  bool isRepaired() const { return action != FsckAction::kNone; }
};

struct FsckReport {
  uint64_t indexed_blobs = 0;  // blob records read from the index
  uint64_t blob_files = 0;     // regular files under blobs/ with a valid content address
  uint64_t blob_bytes = 0;     // total size of those files
  std::array<uint64_t, kFsckKindCount> findings_by_kind{};
  uint64_t repaired = 0;
  uint64_t quarantined_bytes = 0;
  uint64_t adopted_bytes = 0;
  // Files that could not be examined (stat or read failures other than "not found"). Each is
  // logged to the storage logger. fsck goes on with the next file.
  uint64_t errors = 0;

  uint64_t findingCount() const;
  // Findings that no repair fixed.
  uint64_t remainingCount() const { return findingCount() - repaired; }
  // True when nothing is left to fix and every file could be examined.
  bool isClean() const { return remainingCount() == 0 && errors == 0; }
};

using FsckFindingCallback = std::function<void(const FsckFinding&)>;

// Checks `data_dir` against `index`, calling `on_finding` once per finding, after its repair,
// on the calling thread. The index must belong to `data_dir`, and no server may use either.
// Fails only when the check cannot go on: the blobs/ folder or a folder inside it cannot be
// listed, or the index cannot be read. Per-file failures count in FsckReport::errors.
//
// BLOCKING: reads the whole index, lists every blob folder, and with verify_digests (or repair
// of an unindexed file) reads whole files. Repairs make synced index writes.
Expected<FsckReport> runFsck(const std::filesystem::path& data_dir, Index& index,
                             const FsckOptions& options, const FsckFindingCallback& on_finding,
                             const Clock& clock = SystemClock::instance());

// Opens <data_dir>/index and runs the check above. Fails with kNotFound when `data_dir` does not
// exist (fsck never creates a data folder), and with the index's error and a hint to stop the
// server when the index cannot be opened, which is what a running server causes.
Expected<FsckReport> runFsck(const std::filesystem::path& data_dir, const FsckOptions& options,
                             const FsckFindingCallback& on_finding,
                             const Clock& clock = SystemClock::instance());

// One report line: "kind=... digest=... path=... action=..." and, when set, " quarantine=..."
// and " detail=...". An absent digest prints as "-". A value with a space, a quote, a backslash
// or a control character is written in double quotes with C-style escapes, so a line never
// breaks and stays splittable on spaces.
std::string formatFsckFinding(const FsckFinding& finding);
// The summary line: "summary findings=N repaired=N remaining=N <kind>=N ... bytes...".
std::string formatFsckSummary(const FsckReport& report);

}  // namespace outpost::storage
