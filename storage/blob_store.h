// BlobStore: content-addressed blob files under one root folder.
//
// On-disk layout:
//   <root>/blobs/<algorithm>/<first two hex chars>/<hex>   committed blobs, e.g.
//       blobs/sha256/9c/9c1e...   (the file name is the whole hex part of the digest)
//   <root>/tmp/<hex of 16 random bytes>.part                files being written
//
// A blob is written under tmp/, checked against its digest, fsynced and renamed to its content
// address, and then the two-char folder is fsynced. A file under blobs/ is therefore always
// complete. A crash leaves at most files under tmp/, and open() removes them. Both folders sit
// under one root so that the rename stays on one file system.
//
// Thread safety: every method may be called from any thread. One BlobStore per root folder,
// because open() deletes the temporary files of any other writer on the same root.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "base/digest.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "storage/blob_writer.h"

namespace outpost::storage {

// A committed blob opened for reading.
struct BlobFile {
  UniqueFd fd;  // O_RDONLY|O_CLOEXEC
  uint64_t size = 0;
};

class BlobStore {
 public:
  // Creates the folders if missing and removes every leftover entry in tmp/, logging how many it
  // removed. Never lists blobs/, so the cost does not grow with the number of blobs.
  static Expected<std::unique_ptr<BlobStore>> open(const std::filesystem::path& root);

  // Creates an empty temporary file with O_CREAT|O_EXCL. Its only system calls are getrandom(2)
  // and open(2), with no fsync. The writer hashes with `algorithm`, and commit re-reads the file
  // when its expected digest uses another one.
  Expected<std::unique_ptr<BlobWriter>> createWriter(
      DigestAlgorithm algorithm = DigestAlgorithm::kSha256);

  // Checks that the bytes written hash to `expected`, fsyncs the file, renames it to its content
  // address (creating the two-char folder) and fsyncs the folder. Then the writer is committed,
  // and fd() refers to the committed blob.
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

  // Opens a committed blob. kNotFound when it is absent.
  Expected<BlobFile> openBlob(const Digest& digest) const;
  bool contains(const Digest& digest) const;
  // Unlinks a committed blob. kNotFound when it is absent. A reader that opened the blob before
  // keeps reading it. The index record goes first (Index::deleteBlob), so that a crash between
  // the two steps leaves an unindexed file and never an index record without its file.
  // NOTE: the folder is not fsynced after the unlink, so a crash soon after can bring the file
  // back, without an index record, like a blob committed just before a crash.
  Status remove(const Digest& digest);

  // The content address of `digest`: <root>/blobs/<algorithm>/<hex[0:2]>/<hex>.
  std::filesystem::path pathFor(const Digest& digest) const;
  const std::filesystem::path& root() const { return root_; }
  const std::filesystem::path& tempDir() const { return temp_dir_; }

 private:
  // Lets open() call the public constructor through std::make_unique while other code cannot.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  BlobStore(PrivateTag, std::filesystem::path root);

 private:
  // Returns the digest of the writer's bytes under `algorithm`, re-reading the file when the
  // writer hashed with another algorithm.
  Expected<Digest> digestOfWriter(const BlobWriter& writer, DigestAlgorithm algorithm) const;
  // Drops the writer's file in favour of an existing blob of the same size at `path`. Returns
  // false when there is no such blob.
  bool adoptExistingBlob(BlobWriter& writer, const std::filesystem::path& path) const;
  // Creates the two-char folder of `digest` if missing and makes its entry durable.
  Status ensureShardFolder(const Digest& digest);
  // The fsync, folder, rename and folder fsync steps of commit.
  Status moveIntoPlace(BlobWriter& writer, const Digest& digest);

  std::filesystem::path root_;
  std::filesystem::path blobs_dir_;
  std::filesystem::path temp_dir_;
  // One flag per two-char folder (256 per algorithm, sha256 first): set once its entry in the
  // algorithm folder is known to be fsynced in this process.
  std::array<std::atomic<bool>, 512> durable_shards_{};
};

}  // namespace outpost::storage
