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
#include "storage/blob_store.h"

namespace outpost::storage {

struct UploadInfo {
  std::string id;
  std::string repository;
  // Bytes received so far: the next append must start at this offset.
  uint64_t size = 0;
};

class UploadStore {
 public:
  // Creates <root>/uploads if missing and finds the sessions left by an earlier run. A folder
  // that is not a valid session (bad name, missing file) is removed and logged.
  static Expected<std::unique_ptr<UploadStore>> open(const std::filesystem::path& root);

  // Starts an empty session for `repository` and returns it.
  Expected<UploadInfo> create(std::string_view repository);
  // kNotFound for an unknown or malformed id.
  Expected<UploadInfo> find(std::string_view id) const;
  // Appends `bytes` at `offset`, which must equal the session's size (kOutOfRange otherwise,
  // with nothing written: chunks arrive in order). Returns the new size. kNoSpace when the disk
  // is full; the bytes already received stay.
  Expected<uint64_t> append(std::string_view id, uint64_t offset, std::span<const std::byte> bytes);
  Expected<uint64_t> append(std::string_view id, uint64_t offset, std::string_view bytes);
  // Removes the session. kNotFound for an unknown id.
  Status cancel(std::string_view id);
  // Hashes the session's bytes and commits them to `store` under `expected`, then removes the
  // session. kCorruption when the bytes have another digest (nothing is stored), kNotFound for
  // an unknown id.
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
