#include "storage/upload_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <system_error>
#include <vector>

#include "base/log.h"
#include "base/random_id.h"
#include "base/unique_fd.h"

namespace outpost::storage {
namespace {

constexpr size_t kIdBytes = 16;
constexpr size_t kCompleteBufferBytes = 1 << 20;

bool isValidId(std::string_view id) {
  if (id.size() != kIdBytes * 2) {
    return false;
  }
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

Status unknownUpload(std::string_view id) {
  return Status(StatusCode::kNotFound, "unknown upload " + std::string(id.substr(0, 64)));
}

Expected<uint64_t> fileSize(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return errnoStatus("stat of " + path.string() + " failed", errno);
  }
  return static_cast<uint64_t>(info.st_size);
}

int64_t modifiedMs(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return 0;
  }
  return static_cast<int64_t>(info.st_mtim.tv_sec) * 1000 + info.st_mtim.tv_nsec / 1'000'000;
}

}  // namespace

UploadStore::UploadStore(PrivateTag, std::filesystem::path dir) : dir_(std::move(dir)) {}

Expected<std::unique_ptr<UploadStore>> UploadStore::open(const std::filesystem::path& root) {
  std::filesystem::path dir = root / "uploads";
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return errnoStatus("creating upload folder " + dir.string() + " failed", error.value());
  }
  auto store = std::make_unique<UploadStore>(PrivateTag(), dir);

  size_t removed = 0;
  for (std::filesystem::directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    std::string id = it->path().filename().string();
    std::ifstream repository_file(it->path() / "repository");
    std::string repository;
    std::getline(repository_file, repository);
    if (!isValidId(id) || repository.empty() || !std::filesystem::exists(it->path() / "data")) {
      log::storage().warn("invalid upload folder removed path={}", it->path().string());
      std::error_code remove_error;
      std::filesystem::remove_all(it->path(), remove_error);
      ++removed;
      continue;
    }
    auto session = std::make_shared<Session>();
    session->repository = std::move(repository);
    store->sessions_.emplace(std::move(id), std::move(session));
  }
  if (error) {
    return errnoStatus("listing upload folder " + dir.string() + " failed", error.value());
  }
  log::storage().info("upload sessions found path={} sessions={} invalid_removed={}",
                      dir.string(), store->sessions_.size(), removed);
  return store;
}

std::filesystem::path UploadStore::dataPath(std::string_view id) const {
  return dir_ / std::string(id) / "data";
}

Expected<UploadStore::LockedSession> UploadStore::lockSession(std::string_view id) const {
  if (!isValidId(id)) {
    return unknownUpload(id);
  }
  std::shared_ptr<Session> found;
  {
    std::lock_guard lock(mutex_);
    auto entry = sessions_.find(std::string(id));
    if (entry == sessions_.end()) {
      return unknownUpload(id);
    }
    found = entry->second;
  }
  std::unique_lock session_lock(found->mutex);
  if (found->removed) {
    return unknownUpload(id);  // cancelled or completed while this call waited
  }
  return LockedSession{std::move(found), std::move(session_lock)};
}

Expected<UploadInfo> UploadStore::create(std::string_view repository) {
  if (repository.empty() || repository.find('\n') != std::string_view::npos) {
    return invalidArgument("upload repository must be one non-empty line");
  }
  OUTPOST_ASSIGN_OR_RETURN(std::string id, randomHexId(kIdBytes));
  std::filesystem::path folder = dir_ / id;
  if (::mkdir(folder.c_str(), 0755) != 0) {
    return errnoStatus("creating upload folder " + folder.string() + " failed", errno);
  }
  {
    std::ofstream repository_file(folder / "repository", std::ios::trunc);
    repository_file << repository << '\n';
    UniqueFd data(retryOnEintr([&] {
      return ::open(dataPath(id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }));
    if (!repository_file || !data) {
      int error_number = errno;
      std::error_code ignored;
      std::filesystem::remove_all(folder, ignored);
      return errnoStatus("creating upload " + id + " failed", error_number);
    }
  }
  auto session = std::make_shared<Session>();
  session->repository = std::string(repository);
  {
    std::lock_guard lock(mutex_);
    sessions_.emplace(id, std::move(session));
  }
  return UploadInfo{id, std::string(repository), 0};
}

Expected<UploadInfo> UploadStore::find(std::string_view id) const {
  OUTPOST_ASSIGN_OR_RETURN(LockedSession locked, lockSession(id));
  Session& found = *locked.session;
  OUTPOST_ASSIGN_OR_RETURN(uint64_t size, fileSize(dataPath(id)));
  return UploadInfo{std::string(id), found.repository, size};
}

Expected<uint64_t> UploadStore::append(std::string_view id, uint64_t offset,
                                       std::string_view bytes) {
  return append(id, offset, std::as_bytes(std::span(bytes.data(), bytes.size())));
}

Expected<uint64_t> UploadStore::append(std::string_view id, uint64_t offset,
                                       std::span<const std::byte> bytes) {
  OUTPOST_ASSIGN_OR_RETURN(std::unique_ptr<ChunkWriter> chunk, beginChunk(id, offset));
  OUTPOST_RETURN_IF_ERROR(
      chunk->write(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
  return chunk->commit();
}

Expected<std::unique_ptr<UploadStore::ChunkWriter>> UploadStore::beginChunk(std::string_view id,
                                                                            uint64_t offset) {
  OUTPOST_ASSIGN_OR_RETURN(LockedSession locked, lockSession(id));
  Session& found = *locked.session;
  if (found.is_writing) {
    return Status(StatusCode::kAlreadyExists,
                  "another chunk of upload " + std::string(id) + " is being written");
  }
  UniqueFd fd(retryOnEintr([&] { return ::open(dataPath(id).c_str(), O_WRONLY | O_CLOEXEC); }));
  if (!fd) {
    return errnoStatus("opening upload " + std::string(id) + " failed", errno);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return errnoStatus("stat of upload " + std::string(id) + " failed", errno);
  }
  auto size = static_cast<uint64_t>(info.st_size);
  if (offset != size) {
    return Status(StatusCode::kOutOfRange, "chunk starts at " + std::to_string(offset) +
                                               " but the upload has " + std::to_string(size) +
                                               " bytes");
  }
  found.is_writing = true;
  return std::unique_ptr<ChunkWriter>(
      new ChunkWriter(locked.session, std::string(id), std::move(fd), size));
}

Status UploadStore::ChunkWriter::write(std::string_view bytes) {
  OUTPOST_RETURN_IF_ERROR(failure_);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t count = retryOnEintr([&] {
      return ::pwrite(fd_.get(), bytes.data() + done, bytes.size() - done,
                      static_cast<off_t>(offset_ + written_ + done));
    });
    if (count < 0) {
      int error_number = errno;
      failure_ = error_number == ENOSPC || error_number == EDQUOT
                     ? Status(StatusCode::kNoSpace, "no space left for upload " + id_)
                     : errnoStatus("writing upload " + id_ + " failed", error_number);
      return failure_;
    }
    done += static_cast<size_t>(count);
  }
  written_ += done;
  return Status::ok();
}

Expected<uint64_t> UploadStore::ChunkWriter::commit() {
  OUTPOST_RETURN_IF_ERROR(failure_);
  std::lock_guard lock(session_->mutex);
  if (session_->removed) {
    return unknownUpload(id_);
  }
  is_committed_ = true;
  session_->is_writing = false;
  return offset_ + written_;
}

UploadStore::ChunkWriter::~ChunkWriter() {
  std::lock_guard lock(session_->mutex);
  if (is_committed_) {
    return;
  }
  session_->is_writing = false;
  if (!session_->removed && ::ftruncate(fd_.get(), static_cast<off_t>(offset_)) != 0) {
    log::storage().error("unfinished chunk not truncated upload={} offset={} error=\"{}\"", id_,
                         offset_, std::strerror(errno));
  }
}

void UploadStore::forget(std::string_view id, Session& found) {
  found.removed = true;
  std::error_code error;
  std::filesystem::remove_all(dir_ / std::string(id), error);
  if (error) {
    log::storage().error("upload folder not removed id={} error=\"{}\"", id, error.message());
  }
  std::lock_guard lock(mutex_);
  sessions_.erase(std::string(id));
}

Status UploadStore::cancel(std::string_view id) {
  OUTPOST_ASSIGN_OR_RETURN(LockedSession locked, lockSession(id));
  Session& found = *locked.session;
  forget(id, found);
  return Status::ok();
}

Status UploadStore::complete(std::string_view id, const Digest& expected, BlobStore& store) {
  OUTPOST_ASSIGN_OR_RETURN(LockedSession locked, lockSession(id));
  Session& found = *locked.session;
  if (found.is_writing) {
    return Status(StatusCode::kAlreadyExists,
                  "a chunk of upload " + std::string(id) + " is still being written");
  }
  Status result = [&]() -> Status {
    UniqueFd data(retryOnEintr([&] { return ::open(dataPath(id).c_str(), O_RDONLY | O_CLOEXEC); }));
    if (!data) {
      return errnoStatus("opening upload " + std::string(id) + " failed", errno);
    }
    OUTPOST_ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer,
                             store.createWriter(expected.algorithm()));
    // NOTE: the bytes are copied into the blob store's temporary file, so completing a large
    // upload reads and writes it once more. A rename would need the hash state of the appends.
    std::vector<char> buffer(kCompleteBufferBytes);
    while (true) {
      ssize_t count =
          retryOnEintr([&] { return ::read(data.get(), buffer.data(), buffer.size()); });
      if (count < 0) {
        return errnoStatus("reading upload " + std::string(id) + " failed", errno);
      }
      if (count == 0) {
        break;
      }
      OUTPOST_RETURN_IF_ERROR(
          writer->append(std::string_view(buffer.data(), static_cast<size_t>(count))));
    }
    return store.commit(*writer, expected);
  }();
  forget(id, found);
  return result;
}

size_t UploadStore::removeIdle(int64_t now_ms, int64_t max_idle_ms) {
  std::vector<std::pair<std::string, std::shared_ptr<Session>>> all;
  {
    std::lock_guard lock(mutex_);
    all.assign(sessions_.begin(), sessions_.end());
  }
  size_t removed = 0;
  for (auto& [id, found] : all) {
    std::lock_guard lock(found->mutex);
    if (found->removed || found->is_writing || now_ms - modifiedMs(dataPath(id)) <= max_idle_ms) {
      continue;
    }
    log::storage().info("idle upload removed id={} repository={}", id, found->repository);
    forget(id, *found);
    ++removed;
  }
  return removed;
}

size_t UploadStore::sessionCount() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

}  // namespace outpost::storage
