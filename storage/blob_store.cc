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

// The content address of `digest` under a tier's blobs/ folder.
std::filesystem::path contentPath(const std::filesystem::path& blobs_dir, const Digest& digest) {
  std::string_view hex = digest.hex();
  return blobs_dir / digest.algorithmName() / hex.substr(0, 2) / hex;
}

// Returns a fresh temporary file name: 16 random bytes in hex and the suffix ".part".
Expected<std::string> randomTempName() {
  OUTPOST_ASSIGN_OR_RETURN(std::string name, randomHexId());
  return name + ".part";
}

}  // namespace

BlobStore::Tier::Tier(std::filesystem::path root_folder)
    : root(std::move(root_folder)), blobs_dir(root / "blobs"), temp_dir(root / "tmp") {}

Expected<std::unique_ptr<BlobStore>> BlobStore::open(const std::filesystem::path& root) {
  return open(std::vector<std::filesystem::path>{root});
}

Expected<std::unique_ptr<BlobStore>> BlobStore::open(
    const std::vector<std::filesystem::path>& tier_roots) {
  if (tier_roots.empty() || tier_roots.size() > kMaxTiers) {
    return invalidArgument("a blob store needs 1 to " + std::to_string(kMaxTiers) +
                           " tier folders, got " + std::to_string(tier_roots.size()));
  }
  auto store = std::make_unique<BlobStore>(PrivateTag());
  for (const std::filesystem::path& root : tier_roots) {
    if (root.empty()) {
      return invalidArgument("blob store root folder is empty");
    }
    std::filesystem::path normal = root.lexically_normal();
    for (const std::unique_ptr<Tier>& tier : store->tiers_) {
      if (tier->root.lexically_normal() == normal) {
        return invalidArgument("blob store tier folder " + root.string() + " is listed twice");
      }
    }
    if (!store->tiers_.empty()) {
      // A lower tier is usually another disk. Creating its folder when the disk is not mounted
      // would fill the disk under the mount point instead.
      std::error_code error;
      if (!std::filesystem::is_directory(root, error)) {
        return notFound("lower tier folder " + root.string() +
                        " does not exist or is not a folder; create it, or mount its disk");
      }
    }
    store->tiers_.push_back(std::make_unique<Tier>(root));
    OUTPOST_RETURN_IF_ERROR(openTier(*store->tiers_.back()));
  }
  return store;
}

Status BlobStore::openTier(Tier& tier) {
  for (std::string_view algorithm : {"sha256", "sha512"}) {
    OUTPOST_RETURN_IF_ERROR(createFolders(tier.blobs_dir / algorithm));
  }
  OUTPOST_RETURN_IF_ERROR(createFolders(tier.temp_dir));
  // Makes the entries of folders created above durable before any blob is committed into them.
  OUTPOST_RETURN_IF_ERROR(fsyncFolder(tier.blobs_dir));
  OUTPOST_RETURN_IF_ERROR(fsyncFolder(tier.root));

  size_t removed = removeFolderEntries(tier.temp_dir);
  log::storage().info("blob store opened root={} removed_temp_files={}", tier.root.string(),
                      removed);
  return Status::ok();
}

Expected<std::unique_ptr<BlobWriter>> BlobStore::createWriter(DigestAlgorithm algorithm) {
  return createWriterIn(*tiers_.front(), algorithm);
}

Expected<std::unique_ptr<BlobWriter>> BlobStore::createWriterIn(Tier& tier,
                                                                DigestAlgorithm algorithm) {
  OUTPOST_ASSIGN_OR_RETURN(std::string name, randomTempName());
  std::filesystem::path path = tier.temp_dir / name;

  UniqueFd fd(retryOnEintr(
      [&] { return ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644); }));
  if (!fd) {
    return errnoStatus("creating temporary blob file " + path.string() + " failed", errno);
  }
  return std::make_unique<BlobWriter>(std::move(fd), std::move(path), algorithm);
}

Status BlobStore::commit(BlobWriter& writer, const Digest& expected) {
  OUTPOST_RETURN_IF_ERROR(commitInto(*tiers_.front(), writer, expected));
  for (uint32_t tier = 1; tier < tiers_.size(); ++tier) {
    if (Status removed = removeFromTier(expected, tier);
        !removed.isOk() && removed.code() != StatusCode::kNotFound) {
      // The blob is served from the first tier; fsck reports the copy left here.
      log::storage().error("lower tier copy of a committed blob not removed digest={} error={}",
                           expected.str(), removed.toString());
    }
  }
  return Status::ok();
}

Status BlobStore::commitInto(Tier& tier, BlobWriter& writer, const Digest& expected) {
  if (!writer.isWriting()) {
    return invalidArgument("blob writer is already committed or discarded path=" +
                           writer.tempPath().string());
  }
  if (writer.tempPath().parent_path() != tier.temp_dir) {
    return invalidArgument("blob writer file " + writer.tempPath().string() +
                           " is not in this store's temporary folder " + tier.temp_dir.string());
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

  if (adoptExistingBlob(writer, contentPath(tier.blobs_dir, expected))) {
    return Status::ok();
  }
  Status moved = moveIntoPlace(tier, writer, expected);
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

Status BlobStore::ensureShardFolder(Tier& tier, const Digest& digest) {
  std::atomic<bool>& is_durable = tier.durable_shards[shardIndex(digest)];
  if (is_durable.load(std::memory_order_acquire)) {
    return Status::ok();
  }

  // The algorithm folder is fsynced even when the two-char folder already exists, because
  // another thread may have just created it and not yet made its entry durable.
  std::filesystem::path shard = contentPath(tier.blobs_dir, digest).parent_path();
  OUTPOST_RETURN_IF_ERROR(makeFolder(shard));
  OUTPOST_RETURN_IF_ERROR(fsyncFolder(shard.parent_path()));
  is_durable.store(true, std::memory_order_release);
  return Status::ok();
}

Status BlobStore::moveIntoPlace(Tier& tier, BlobWriter& writer, const Digest& digest) {
  if (retryOnEintr([&] { return ::fsync(writer.fd()); }) != 0) {
    return errnoStatus("fsync of temporary blob file " + writer.tempPath().string() + " failed",
                       errno);
  }

  OUTPOST_RETURN_IF_ERROR(ensureShardFolder(tier, digest));
  std::filesystem::path path = contentPath(tier.blobs_dir, digest);
  if (::rename(writer.tempPath().c_str(), path.c_str()) != 0) {
    return errnoStatus(
        "renaming " + writer.tempPath().string() + " to " + path.string() + " failed", errno);
  }
  return fsyncFolder(path.parent_path());
}

Expected<BlobFile> BlobStore::openBlobIn(const Digest& digest, uint32_t tier) const {
  std::filesystem::path path = pathFor(digest, tier);
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
  return BlobFile{std::move(fd), static_cast<uint64_t>(info.st_size), tier};
}

Expected<BlobFile> BlobStore::openBlob(const Digest& digest) const {
  // A move to a higher tier renames into it before it unlinks the source, so a reader that
  // misses the higher tier and then the lower one raced such a move, and finds the blob in
  // the second pass. One tier needs one pass.
  const int passes = tiers_.size() > 1 ? 2 : 1;
  for (int pass = 0; pass < passes; ++pass) {
    for (uint32_t tier = 0; tier < tiers_.size(); ++tier) {
      Expected<BlobFile> file = openBlobIn(digest, tier);
      if (file || file.status().code() != StatusCode::kNotFound) {
        return file;
      }
    }
  }
  return notFound("blob not found digest=" + digest.str());
}

bool BlobStore::contains(const Digest& digest) const {
  for (uint32_t tier = 0; tier < tiers_.size(); ++tier) {
    struct stat info {};
    if (::stat(pathFor(digest, tier).c_str(), &info) == 0) {
      return true;
    }
  }
  return false;
}

Status BlobStore::remove(const Digest& digest) {
  bool removed_any = false;
  Status first_failure;
  for (uint32_t tier = 0; tier < tiers_.size(); ++tier) {
    Status removed = removeFromTier(digest, tier);
    if (removed.isOk()) {
      removed_any = true;
    } else if (removed.code() != StatusCode::kNotFound && first_failure.isOk()) {
      first_failure = removed;
    }
  }
  if (!first_failure.isOk()) {
    return first_failure;
  }
  return removed_any ? Status::ok() : notFound("blob not found digest=" + digest.str());
}

Status BlobStore::removeFromTier(const Digest& digest, uint32_t tier) {
  if (tier >= tiers_.size()) {
    return invalidArgument("blob store has no tier " + std::to_string(tier));
  }
  std::filesystem::path path = pathFor(digest, tier);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) {
      return notFound("blob not found digest=" + digest.str() + " tier=" + std::to_string(tier));
    }
    return errnoStatus("removing blob " + path.string() + " failed", errno);
  }
  return Status::ok();
}

Status BlobStore::copyToTier(const Digest& digest, uint32_t from, uint32_t to) {
  if (from >= tiers_.size() || to >= tiers_.size() || from == to) {
    return invalidArgument("cannot copy a blob from tier " + std::to_string(from) + " to tier " +
                           std::to_string(to) + " of " + std::to_string(tiers_.size()));
  }
  OUTPOST_ASSIGN_OR_RETURN(BlobFile source, openBlobIn(digest, from));
  OUTPOST_ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer,
                           createWriterIn(*tiers_[to], digest.algorithm()));
  std::vector<std::byte> buffer(kRehashBufferBytes);
  uint64_t offset = 0;
  while (offset < source.size) {
    size_t chunk_bytes =
        static_cast<size_t>(std::min<uint64_t>(buffer.size(), source.size - offset));
    ssize_t count = retryOnEintr([&] {
      return ::pread(source.fd.get(), buffer.data(), chunk_bytes, static_cast<off_t>(offset));
    });
    if (count < 0) {
      writer->discard();
      return errnoStatus("reading blob " + pathFor(digest, from).string() + " failed", errno);
    }
    if (count == 0) {
      break;  // shorter than at open: the digest check below fails
    }
    if (Status appended = writer->append(std::span(buffer.data(), static_cast<size_t>(count)));
        !appended.isOk()) {
      writer->discard();
      return appended;
    }
    offset += static_cast<uint64_t>(count);
  }
  return commitInto(*tiers_[to], *writer, digest);
}

std::filesystem::path BlobStore::pathFor(const Digest& digest, uint32_t tier) const {
  return contentPath(tiers_[tier]->blobs_dir, digest);
}

}  // namespace outpost::storage
