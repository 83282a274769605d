// BlobFill: one upstream download of one blob, shared by every request that wants it.
//
// The producer (the loop thread that runs the upstream call) appends bytes to a temporary
// file; readers on any loop send bytes from that same file as soon as they are written, each
// at its own pace, so nobody waits for the whole blob and a slow or departed reader never
// stalls the download.
//
// States:
//   kRunning    bytes are arriving; readers may send [0, releasable())
//   kVerified   every byte arrived and the digest matched; readers may send everything
//   kCommitted  the file is renamed to its content address and indexed
//   kFailed     the download failed or the digest did not match; readers close their
//               connections, and the temporary file is removed
//
// The last byte is held back from readers until the digest is verified, so a client of a
// corrupt download gets a short body that its own length check rejects, never a complete
// body with the wrong bytes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "storage/blob_store.h"

namespace outpost::cache {

class BlobFill {
 public:
  enum class State { kRunning, kVerified, kCommitted, kFailed };

  struct Snapshot {
    State state = State::kRunning;
    uint64_t written = 0;                  // bytes in the file
    std::optional<uint64_t> total_size;    // known once the upstream sent Content-Length
    Status failure;                        // set in kFailed
    // Bytes a reader may send now: everything once verified, else all but the last byte.
    uint64_t releasable() const;
  };

  BlobFill(Digest digest, std::unique_ptr<storage::BlobWriter> writer);
  ~BlobFill();

  const Digest& digest() const { return digest_; }
  // The temporary file, readable with an explicit offset from any thread while the fill
  // lives (pread, sendfile). After commit it refers to the committed file.
  int fd() const { return fd_; }

  // Producer side, on the thread that runs the download.
  void setTotalSize(uint64_t size);
  // Writes `bytes` at the end of the file and wakes readers. Fails with kNoSpace or kIOError
  // from the file system, or kOutOfRange when the bytes go past the announced total size.
  Status append(std::string_view bytes);
  // Checks the digest of everything written against digest(). On success the state becomes
  // kVerified; otherwise the fill fails with kCorruption, which is also returned.
  Status verify();
  // Hands the writer over for commit (rename and fsync happen on a worker thread); only after
  // verify() succeeded.
  storage::BlobWriter& writer() { return *writer_; }
  void markCommitted();
  // Fails the fill, wakes readers and removes the temporary file at once (readers keep their
  // descriptor). Producer side only.
  void fail(Status status);

  // Reader side, from any thread.
  Snapshot snapshot() const;
  // Registers `waker`, called after every state change and every append, on the producer's
  // thread and without the fill's lock held. The waker must be cheap and thread-safe; it
  // usually posts a task to the reader's loop. Returns an id for unsubscribe().
  uint64_t subscribe(std::function<void()> waker);
  void unsubscribe(uint64_t id);
  size_t subscriberCount() const;

 private:
  void wakeAll();

  const Digest digest_;
  std::unique_ptr<storage::BlobWriter> writer_;
  const int fd_;

  mutable std::mutex mutex_;
  State state_ = State::kRunning;                      // guarded by mutex_
  uint64_t written_ = 0;                               // guarded by mutex_
  std::optional<uint64_t> total_size_;                 // guarded by mutex_
  Status failure_;                                     // guarded by mutex_
  uint64_t next_subscriber_id_ = 1;                    // guarded by mutex_
  std::vector<std::pair<uint64_t, std::shared_ptr<std::function<void()>>>> subscribers_;
};

}  // namespace outpost::cache
