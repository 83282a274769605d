// BlobWriter: one temporary blob file being written, hashed as it grows.
//
// States:
//   kWriting    the temporary file exists and takes appends and one commit.
//   kCommitted  BlobStore::commit renamed the file to its content address or found the blob
//               already there.
//   kDiscarded  a write, the digest check or a commit step failed, and the temporary file was
//               unlinked.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>

#include "base/digest.h"
#include "base/status.h"
#include "base/unique_fd.h"

namespace outpost::storage {

class BlobStore;

// Move-only. One thread appends and commits. Any thread may call size() and fd() and read the
// prefix [0, size()) through fd() with pread(2) or sendfile(2) at an explicit offset while
// appends go on.
class BlobWriter {
 public:
  // BlobStore::createWriter makes writers. `fd` is the temporary file opened O_RDWR at
  // `temp_path`, and the writer unlinks that file on destruction unless it was committed.
  BlobWriter(UniqueFd fd, std::filesystem::path temp_path,
             DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
  ~BlobWriter();

  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;
  BlobWriter(BlobWriter&& other) noexcept;
  BlobWriter& operator=(BlobWriter&& other) noexcept;

  // Writes `bytes` at the end of the file, retrying on EINTR and short writes, and feeds them to
  // the hasher. A failed write returns kNoSpace for ENOSPC and EDQUOT, kIOError otherwise, and
  // unlinks the temporary file at once so that a full disk gets the space back. The writer is
  // then discarded and accepts no more appends. Fails with kInvalidArgument unless writing.
  Status append(std::span<const std::byte> bytes);
  Status append(std::string_view bytes);

  // Bytes appended so far. Every byte below this offset is in the file.
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  // The file descriptor, opened O_RDWR|O_CLOEXEC. After a commit it refers to the committed
  // blob, and after a failure to the unlinked temporary file. It stays open until destruction.
  int fd() const { return fd_.get(); }
  // Where the temporary file was created. Nothing is at this path after a commit or a failure.
  const std::filesystem::path& tempPath() const { return temp_path_; }
  DigestAlgorithm algorithm() const { return algorithm_; }
  // Digest of everything appended so far, from a copy of the hasher state.
  Digest digestSoFar() const { return hasher_.digestSoFar(); }

  bool isWriting() const { return state_ == State::kWriting; }
  // Unlinks the temporary file now and accepts no more appends, for a download that failed.
  // The fd stays open, so readers of the bytes written so far are not disturbed. Does nothing
  // after a commit.
  void discard();
  bool isCommitted() const { return state_ == State::kCommitted; }

  // Makes every write(2) from now on fail with `error_number` once the file would grow past
  // `fail_after_bytes`. The write that crosses the limit stores the bytes below it first, as a
  // short write on a full disk does.
  void setWriteFaultForTest(uint64_t fail_after_bytes, int error_number);

 private:
  friend class BlobStore;
  enum class State { kWriting, kCommitted, kDiscarded };

  // One write(2) of `bytes` at file offset `offset`, with the test fault applied.
  ssize_t writeOnce(uint64_t offset, std::span<const std::byte> bytes);
  // Used by BlobStore::commit.
  void markCommitted() { state_ = State::kCommitted; }
  void replaceFd(UniqueFd fd);

  UniqueFd fd_;
  std::filesystem::path temp_path_;
  DigestAlgorithm algorithm_;
  DigestHasher hasher_;
  std::atomic<uint64_t> size_{0};
  State state_ = State::kWriting;
  uint64_t fault_after_bytes_ = UINT64_MAX;
  int fault_error_number_ = 0;
};

}  // namespace outpost::storage
