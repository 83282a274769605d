// UploadStore: the blob upload sessions of pushes, kept on disk so that they survive a restart.
//
// On-disk layout, under the data folder:
//   uploads/<id>/data         the bytes received so far, in order
//   uploads/<id>/repository   the repository the upload was started in, as text
// <id> is 32 lower-case hex characters from getrandom(2). A session's size is its data file's
// size and its last activity the file's modification time, so an append writes nothing else
// and a restart finds every session as it was.
//
// Completing a session reads its data once through a BlobWriter of the BlobStore, which hashes
// the bytes and commits them to their content address only when they match the expected digest.
// The session is removed either way, as the distribution specification has it.
//
// Threads: every method may be called from any thread. Appends to one session are serialized,
// appends to different sessions are not. Every method does file I/O: call it from a worker.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/digest.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "storage/blob_store.h"

namespace outpost::storage {

struct UploadInfo {
  std::string id;
  std::string repository;
  // Bytes received so far: the next append must start at this offset.
  uint64_t size = 0;
};

class UploadStore {
 private:
  struct Session;

 public:
  // A chunk being appended while its request body arrives, so that a chunk of any size passes
  // through a bounded buffer. One chunk per session is written at a time.
  class ChunkWriter {
   public:
    ChunkWriter(const ChunkWriter&) = delete;
    ChunkWriter& operator=(const ChunkWriter&) = delete;
    // Without commit(), truncates the session back to where the chunk began, so that the client
    // can send the chunk again at the same offset.
    ~ChunkWriter();

    // Writes `bytes` after the chunk's earlier bytes. kNoSpace on a full disk, kIOError on
    // another write failure; the writer then takes no more bytes.
    Status write(std::string_view bytes);
    // Keeps the chunk and returns the session's new size. kNotFound when the session was
    // cancelled or expired meanwhile, kIOError after a failed write.
    Expected<uint64_t> commit();
    uint64_t chunkBytes() const { return written_; }

   private:
    friend class UploadStore;
    ChunkWriter(std::shared_ptr<Session> session, std::string id, UniqueFd fd, uint64_t offset)
        : session_(std::move(session)), id_(std::move(id)), fd_(std::move(fd)), offset_(offset) {}

    std::shared_ptr<Session> session_;
    std::string id_;
    UniqueFd fd_;
    uint64_t offset_;
    uint64_t written_ = 0;
    Status failure_;
    bool is_committed_ = false;
  };

  // Creates <root>/uploads if missing and finds the sessions left by an earlier run. A folder
  // that is not a valid session (bad name, missing file) is removed and logged.
  static Expected<std::unique_ptr<UploadStore>> open(const std::filesystem::path& root);

  // Starts an empty session for `repository` and returns it.
  Expected<UploadInfo> create(std::string_view repository);
  // kNotFound for an unknown or malformed id.
  Expected<UploadInfo> find(std::string_view id) const;
  // Starts a chunk at `offset`, which must equal the session's size (kOutOfRange otherwise:
  // chunks arrive in order). kNotFound for an unknown id, kAlreadyExists while another chunk of
  // the session is being written.
  Expected<std::unique_ptr<ChunkWriter>> beginChunk(std::string_view id, uint64_t offset);
  // Appends `bytes` at `offset` as one chunk, with beginChunk's failures. Returns the new size.
  // kNoSpace when the disk is full; the bytes of earlier chunks stay.
  Expected<uint64_t> append(std::string_view id, uint64_t offset, std::span<const std::byte> bytes);
  Expected<uint64_t> append(std::string_view id, uint64_t offset, std::string_view bytes);
  // Removes the session. kNotFound for an unknown id. A chunk being written fails to commit.
  Status cancel(std::string_view id);
  // Hashes the session's bytes and commits them to `store` under `expected`, then removes the
  // session. kCorruption when the bytes have another digest (nothing is stored), kNotFound for
  // an unknown id, kAlreadyExists while a chunk is being written.
  Status complete(std::string_view id, const Digest& expected, BlobStore& store);
  // Removes the sessions whose last append (or creation) is older than `max_idle_ms` before
  // `now_ms`, and returns how many it removed.
  size_t removeIdle(int64_t now_ms, int64_t max_idle_ms);

  size_t sessionCount() const;

 private:
  struct Session {
    std::string repository;
    std::mutex mutex;  // serializes appends, completion and removal of this session
    bool removed = false;  // guarded by mutex
    bool is_writing = false;  // guarded by mutex; a ChunkWriter is open
  };

  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  UploadStore(PrivateTag, std::filesystem::path dir);

 private:
  // A session with its mutex held.
  struct LockedSession {
    std::shared_ptr<Session> session;
    std::unique_lock<std::mutex> lock;
  };
  // kNotFound for a malformed, unknown or removed id.
  Expected<LockedSession> lockSession(std::string_view id) const;
  std::filesystem::path dataPath(std::string_view id) const;
  // Removes the session's folder and its map entry. The caller holds the session's mutex.
  void forget(std::string_view id, Session& session);

  std::filesystem::path dir_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Session>> sessions_;  // guarded by mutex_
};

}  // namespace outpost::storage
