#include "storage/blob_store.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/random_id.h"

namespace outpost::storage {
namespace {

// Size of the buffer that re-reads a temporary file to hash it with a second algorithm.
constexpr size_t kRehashBufferBytes = 1 << 20;

Status createFolders(const std::filesystem::path& folder) {
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) {
    return errnoStatus("creating blob store folder " + folder.string() + " failed", error.value());
  }
  return Status::ok();
}

// Creates `folder` unless it exists.
Status makeFolder(const std::filesystem::path& folder) {
  if (::mkdir(folder.c_str(), 0755) == 0 || errno == EEXIST) {
    return Status::ok();
  }
  return errnoStatus("creating blob folder " + folder.string() + " failed", errno);
}

int hexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// The slot of the digest's two-char folder in BlobStore::durable_shards_.
size_t shardIndex(const Digest& digest) {
  size_t algorithm_offset = digest.algorithm() == DigestAlgorithm::kSha256 ? 0 : 256;
  std::string_view hex = digest.hex();
  return algorithm_offset + static_cast<size_t>(hexValue(hex[0]) * 16 + hexValue(hex[1]));
}

// Makes the entries of `folder` durable: a rename or a new subfolder in it survives a crash only
// after the folder itself is fsynced.
Status fsyncFolder(const std::filesystem::path& folder) {
  UniqueFd fd(
      retryOnEintr([&] { return ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
  if (!fd) {
    return errnoStatus("opening folder " + folder.string() + " for fsync failed", errno);
  }
  if (retryOnEintr([&] { return ::fsync(fd.get()); }) != 0) {
    return errnoStatus("fsync of folder " + folder.string() + " failed", errno);
  }
  return Status::ok();
}

// Removes every entry of `folder` and returns how many it removed. An entry that cannot be
// removed is logged and skipped, because it does not stop the store from working.
size_t removeFolderEntries(const std::filesystem::path& folder) {
  size_t removed = 0;
  std::error_code error;
  std::filesystem::directory_iterator it(folder, error);
  for (; !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    std::error_code remove_error;
    std::filesystem::remove_all(it->path(), remove_error);
    if (remove_error) {
      log::storage().error("leftover temporary blob file could not be removed path={} error={}",
                           it->path().string(), remove_error.message());
      continue;
    }
    ++removed;
  }
  if (error) {
    log::storage().error("listing temporary blob folder failed path={} error={}", folder.string(),
                         error.message());
  }
  return removed;
}

// Returns a fresh temporary file name: 16 random bytes in hex and the suffix ".part".
Expected<std::string> randomTempName() {
  OUTPOST_ASSIGN_OR_RETURN(std::string name, randomHexId());
  return name + ".part";
}

}  // namespace

BlobStore::BlobStore(PrivateTag, std::filesystem::path root)
    : root_(std::move(root)), blobs_dir_(root_ / "blobs"), temp_dir_(root_ / "tmp") {}

Expected<std::unique_ptr<BlobStore>> BlobStore::open(const std::filesystem::path& root) {
  if (root.empty()) {
    return invalidArgument("blob store root folder is empty");
  }
  auto store = std::make_unique<BlobStore>(PrivateTag(), root);

  for (std::string_view algorithm : {"sha256", "sha512"}) {
    OUTPOST_RETURN_IF_ERROR(createFolders(store->blobs_dir_ / algorithm));
  }
  OUTPOST_RETURN_IF_ERROR(createFolders(store->temp_dir_));
  // Makes the entries of folders created above durable before any blob is committed into them.
  OUTPOST_RETURN_IF_ERROR(fsyncFolder(store->blobs_dir_));
  OUTPOST_RETURN_IF_ERROR(fsyncFolder(store->root_));

  size_t removed = removeFolderEntries(store->temp_dir_);
  log::storage().info("blob store opened root={} removed_temp_files={}", root.string(), removed);
  return store;
}

Expected<std::unique_ptr<BlobWriter>> BlobStore::createWriter(DigestAlgorithm algorithm) {
  OUTPOST_ASSIGN_OR_RETURN(std::string name, randomTempName());
  std::filesystem::path path = temp_dir_ / name;

  UniqueFd fd(retryOnEintr(
      [&] { return ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644); }));
  if (!fd) {
    return errnoStatus("creating temporary blob file " + path.string() + " failed", errno);
  }
  return std::make_unique<BlobWriter>(std::move(fd), std::move(path), algorithm);
}

Status BlobStore::commit(BlobWriter& writer, const Digest& expected) {
  if (!writer.isWriting()) {
    return invalidArgument("blob writer is already committed or discarded path=" +
                           writer.tempPath().string());
  }
  if (writer.tempPath().parent_path() != temp_dir_) {
    return invalidArgument("blob writer file " + writer.tempPath().string() +
                           " is not in this store's temporary folder " + temp_dir_.string());
  }

  Expected<Digest> actual = digestOfWriter(writer, expected.algorithm());
  if (!actual) {
    writer.discard();
    return actual.status();
  }
  if (*actual != expected) {
    writer.discard();
    return corruption("blob content does not match its digest expected=" + expected.str() +
                      " actual=" + actual->str() + " size=" + std::to_string(writer.size()));
  }

  if (adoptExistingBlob(writer, pathFor(expected))) {
    return Status::ok();
  }
  Status moved = moveIntoPlace(writer, expected);
  if (!moved.isOk()) {
    writer.discard();
    return moved;
  }
  writer.markCommitted();
  return Status::ok();
}

Expected<Digest> BlobStore::digestOfWriter(const BlobWriter& writer,
                                           DigestAlgorithm algorithm) const {
  if (algorithm == writer.algorithm()) {
    return writer.digestSoFar();
  }

  DigestHasher hasher(algorithm);
  std::vector<std::byte> buffer(kRehashBufferBytes);
  uint64_t size = writer.size();
  uint64_t offset = 0;
  while (offset < size) {
    size_t chunk_bytes = static_cast<size_t>(std::min<uint64_t>(buffer.size(), size - offset));
    ssize_t count = retryOnEintr([&] {
      return ::pread(writer.fd(), buffer.data(), chunk_bytes, static_cast<off_t>(offset));
    });
    if (count < 0) {
      return errnoStatus("reading temporary blob file " + writer.tempPath().string() + " failed",
                         errno);
    }
    if (count == 0) {
      return corruption("temporary blob file " + writer.tempPath().string() + " ends at byte " +
                        std::to_string(offset) + " but " + std::to_string(size) +
                        " bytes were written");
    }
    hasher.update(std::span(buffer.data(), static_cast<size_t>(count)));
    offset += static_cast<uint64_t>(count);
  }
  return hasher.finish();
}

bool BlobStore::adoptExistingBlob(BlobWriter& writer, const std::filesystem::path& path) const {
  UniqueFd existing(retryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!existing) {
    return false;
  }
  struct stat info {};
  if (::fstat(existing.get(), &info) != 0) {
    return false;
  }
  if (static_cast<uint64_t>(info.st_size) != writer.size()) {
    log::storage().warn("replacing damaged blob of the wrong size path={} size={} expected_size={}",
                        path.string(), info.st_size, writer.size());
    return false;
  }

  if (::unlink(writer.tempPath().c_str()) != 0) {
    log::storage().error("temporary blob file could not be removed path={} error={}",
                         writer.tempPath().string(), std::strerror(errno));
  }
  writer.replaceFd(std::move(existing));
  writer.markCommitted();
  return true;
}

Status BlobStore::ensureShardFolder(const Digest& digest) {
  std::atomic<bool>& is_durable = durable_shards_[shardIndex(digest)];
  if (is_durable.load(std::memory_order_acquire)) {
    return Status::ok();
  }

  // The algorithm folder is fsynced even when the two-char folder already exists, because
  // another thread may have just created it and not yet made its entry durable.
  std::filesystem::path shard = pathFor(digest).parent_path();
  OUTPOST_RETURN_IF_ERROR(makeFolder(shard));
  OUTPOST_RETURN_IF_ERROR(fsyncFolder(shard.parent_path()));
  is_durable.store(true, std::memory_order_release);
  return Status::ok();
}

Status BlobStore::moveIntoPlace(BlobWriter& writer, const Digest& digest) {
  if (retryOnEintr([&] { return ::fsync(writer.fd()); }) != 0) {
    return errnoStatus("fsync of temporary blob file " + writer.tempPath().string() + " failed",
                       errno);
  }

  OUTPOST_RETURN_IF_ERROR(ensureShardFolder(digest));
  std::filesystem::path path = pathFor(digest);
  if (::rename(writer.tempPath().c_str(), path.c_str()) != 0) {
    return errnoStatus(
        "renaming " + writer.tempPath().string() + " to " + path.string() + " failed", errno);
  }
  return fsyncFolder(path.parent_path());
}

Expected<BlobFile> BlobStore::openBlob(const Digest& digest) const {
  std::filesystem::path path = pathFor(digest);
  UniqueFd fd(retryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd) {
    if (errno == ENOENT) {
      return notFound("blob not found digest=" + digest.str());
    }
    return errnoStatus("opening blob " + path.string() + " failed", errno);
  }

  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return errnoStatus("fstat of blob " + path.string() + " failed", errno);
  }
  return BlobFile{std::move(fd), static_cast<uint64_t>(info.st_size)};
}

bool BlobStore::contains(const Digest& digest) const {
  struct stat info {};
  return ::stat(pathFor(digest).c_str(), &info) == 0;
}

Status BlobStore::remove(const Digest& digest) {
  std::filesystem::path path = pathFor(digest);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) {
      return notFound("blob not found digest=" + digest.str());
    }
    return errnoStatus("removing blob " + path.string() + " failed", errno);
  }
  return Status::ok();
}

std::filesystem::path BlobStore::pathFor(const Digest& digest) const {
  std::string_view hex = digest.hex();
  return blobs_dir_ / digest.algorithmName() / hex.substr(0, 2) / hex;
}

}  // namespace outpost::storage
