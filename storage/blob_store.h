// BlobStore: content-addressed blob files under one or more tier folders.
//
// On-disk layout of each tier root (the data folder is the first tier):
//   <root>/blobs/<algorithm>/<first two hex chars>/<hex>   committed blobs, e.g.
//       blobs/sha256/9c/9c1e...   (the file name is the whole hex part of the digest)
//   <root>/tmp/<hex of 16 random bytes>.part                files being written
//
// A blob is written under tmp/, checked against its digest, fsynced and renamed to its content
// address, and then the two-char folder is fsynced. A file under blobs/ is therefore always
// complete. A crash leaves at most files under tmp/, and open() removes them. Both folders sit
// under one root so that the rename stays on one file system.
//
// Tiers. New blobs land in the first tier. copyToTier() writes a blob's bytes to another tier
// (copy into that tier's tmp/, verify the digest, fsync, rename). The caller then updates the
// index and removes the source with removeFromTier(). So a blob can exist in two tiers for a
// moment, but never in none. openBlob() searches the tiers in order, twice, so that a reader
// racing a move from a lower tier to a higher one still finds the blob.
//
// Thread safety: every method may be called from any thread. One BlobStore per root folder,
// because open() deletes the temporary files of any other writer on the same root.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "storage/blob_writer.h"

namespace outpost::storage {

// A committed blob opened for reading.
struct BlobFile {
  UniqueFd fd;  // O_RDONLY|O_CLOEXEC
  uint64_t size = 0;
  uint32_t tier = 0;  // the tier the file was found in
};

class BlobStore {
 public:
  // Creates the folders if missing and removes every leftover entry in tmp/, logging how many it
  // removed. Never lists blobs/, so the cost does not grow with the number of blobs.
  static Expected<std::unique_ptr<BlobStore>> open(const std::filesystem::path& root);
  // The same with one root per tier, fastest first. The first root is created if missing; the
  // others must exist (kNotFound), since a lower tier is usually a mounted disk.
  // kInvalidArgument when the list is empty, longer than kMaxTiers, or names one folder twice.
  static Expected<std::unique_ptr<BlobStore>> open(
      const std::vector<std::filesystem::path>& tier_roots);

  static constexpr size_t kMaxTiers = 8;

  // Creates an empty temporary file with O_CREAT|O_EXCL in the first tier. Its only system calls
  // are getrandom(2) and open(2), with no fsync. The writer hashes with `algorithm`, and commit
  // re-reads the file when its expected digest uses another one.
  Expected<std::unique_ptr<BlobWriter>> createWriter(
      DigestAlgorithm algorithm = DigestAlgorithm::kSha256);

  // Checks that the bytes written hash to `expected`, fsyncs the file, renames it to its content
  // address in the first tier (creating the two-char folder) and fsyncs the folder. Then the
  // writer is committed, and fd() refers to the committed blob. Copies of the blob in lower
  // tiers are removed afterwards, so that the new record, which names the first tier, matches
  // the files.
  //
  // Errors:
  //   kCorruption       the bytes hash to another digest. The message contains both digests.
  //   kInvalidArgument  the writer is not writing, or its file is not in this store's tmp/.
  //   errnoStatus codes a system call failed.
  // Every failure except kInvalidArgument unlinks the temporary file and discards the writer.
  //
  // When a blob of the same size already exists at the address, the temporary file is dropped
  // without an fsync and OK is returned. A file of another size there is a damaged blob, and the
  // new file replaces it.
  //
  // BLOCKING: fsync(2) can wait on the disk for a long time. Call it on a worker thread, never on
  // an event loop.
  Status commit(BlobWriter& writer, const Digest& expected);

  // Opens a committed blob from the first tier that has it. kNotFound when no tier has it.
  Expected<BlobFile> openBlob(const Digest& digest) const;
  bool contains(const Digest& digest) const;
  // Unlinks a committed blob from every tier. kNotFound when no tier had it. A reader that opened
  // the blob before keeps reading it. The index record goes first (Index::deleteBlob), so that a
  // crash between the two steps leaves an unindexed file and never an index record without its
  // file.
  // NOTE: the folder is not fsynced after the unlink, so a crash soon after can bring the file
  // back, without an index record, like a blob committed just before a crash.
  Status remove(const Digest& digest);
  // Unlinks the blob's file in one tier only. kNotFound when that tier has no file.
  Status removeFromTier(const Digest& digest, uint32_t tier);

  // Writes the bytes of the blob in tier `from` to tier `to`: copied into the tmp/ folder of
  // `to`, hashed while copied, fsynced and renamed to its content address there. The source
  // stays. Errors:
  //   kNotFound         tier `from` has no file for the blob.
  //   kCorruption       the source bytes do not hash to the digest; nothing is written.
  //   kInvalidArgument  a tier out of range, or from == to.
  //   errnoStatus codes a read, a write (ENOSPC on a full tier) or an fsync failed.
  // When `to` already has a file of the same size, it is kept and OK is returned.
  // BLOCKING: reads and writes the whole blob and fsyncs.
  Status copyToTier(const Digest& digest, uint32_t from, uint32_t to);

  // The content address of `digest` in `tier`: <root>/blobs/<algorithm>/<hex[0:2]>/<hex>.
  std::filesystem::path pathFor(const Digest& digest, uint32_t tier = 0) const;
  size_t tierCount() const { return tiers_.size(); }
  const std::filesystem::path& root(uint32_t tier = 0) const { return tiers_[tier]->root; }
  const std::filesystem::path& tempDir(uint32_t tier = 0) const { return tiers_[tier]->temp_dir; }

 private:
  // Lets open() call the public constructor through std::make_unique while other code cannot.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  explicit BlobStore(PrivateTag) {}

 private:
  struct Tier {
    explicit Tier(std::filesystem::path root_folder);

    std::filesystem::path root;
    std::filesystem::path blobs_dir;
    std::filesystem::path temp_dir;
    // One flag per two-char folder (256 per algorithm, sha256 first): set once its entry in the
    // algorithm folder is known to be fsynced in this process.
    std::array<std::atomic<bool>, 512> durable_shards{};
  };

  // Creates the folders of one tier and removes the leftovers in its tmp/.
  static Status openTier(Tier& tier);
  Expected<std::unique_ptr<BlobWriter>> createWriterIn(Tier& tier, DigestAlgorithm algorithm);
  // commit() into `tier`, without touching other tiers.
  Status commitInto(Tier& tier, BlobWriter& writer, const Digest& expected);
  Expected<BlobFile> openBlobIn(const Digest& digest, uint32_t tier) const;

  // Returns the digest of the writer's bytes under `algorithm`, re-reading the file when the
  // writer hashed with another algorithm.
  Expected<Digest> digestOfWriter(const BlobWriter& writer, DigestAlgorithm algorithm) const;
  // Drops the writer's file in favour of an existing blob of the same size at `path`. Returns
  // false when there is no such blob.
  bool adoptExistingBlob(BlobWriter& writer, const std::filesystem::path& path) const;
  // Creates the two-char folder of `digest` in `tier` if missing and makes its entry durable.
  Status ensureShardFolder(Tier& tier, const Digest& digest);
  // The fsync, folder, rename and folder fsync steps of commit.
  Status moveIntoPlace(Tier& tier, BlobWriter& writer, const Digest& digest);

  std::vector<std::unique_ptr<Tier>> tiers_;
};

}  // namespace outpost::storage
