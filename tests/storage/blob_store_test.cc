#include "storage/blob_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

using testing::countEntries;
using testing::readFile;
using testing::TempFolder;
using testing::writeFile;

// Reads `size` bytes from `fd` at offset 0 with pread(2). Returns fewer on a read error.
std::string preadAll(int fd, uint64_t size) {
  std::string bytes(size, '\0');
  uint64_t offset = 0;
  while (offset < size) {
    ssize_t count = ::pread(fd, bytes.data() + offset, size - offset, static_cast<off_t>(offset));
    if (count <= 0) {
      bytes.resize(offset);
      break;
    }
    offset += static_cast<uint64_t>(count);
  }
  return bytes;
}

ino_t inodeOfFd(int fd) {
  struct stat info {};
  return ::fstat(fd, &info) == 0 ? info.st_ino : 0;
}

ino_t inodeOfPath(const std::filesystem::path& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? info.st_ino : 0;
}

Digest sha512Of(std::string_view bytes) {
  DigestHasher hasher(DigestAlgorithm::kSha512);
  hasher.update(bytes);
  return hasher.finish();
}

// Bytes that differ at every position, so that a misplaced chunk changes the digest.
std::string patternBytes(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    bytes[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
  }
  return bytes;
}

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<BlobStore>> opened = BlobStore::open(folder_.path());
    ASSERT_TRUE(opened) << opened.status().toString();
    store_ = std::move(opened).value();
  }

  std::unique_ptr<BlobWriter> newWriter(DigestAlgorithm algorithm = DigestAlgorithm::kSha256) {
    Expected<std::unique_ptr<BlobWriter>> writer = store_->createWriter(algorithm);
    EXPECT_TRUE(writer) << writer.status().toString();
    return writer ? std::move(writer).value() : nullptr;
  }

  // Writes and commits `bytes`, returning the commit's status.
  Status putBlob(std::string_view bytes) {
    std::unique_ptr<BlobWriter> writer = newWriter();
    if (!writer) {
      return internalError("createWriter failed");
    }
    OUTPOST_RETURN_IF_ERROR(writer->append(bytes));
    return store_->commit(*writer, sha256Of(bytes));
  }

  void reopen() {
    store_.reset();
    Expected<std::unique_ptr<BlobStore>> opened = BlobStore::open(folder_.path());
    ASSERT_TRUE(opened) << opened.status().toString();
    store_ = std::move(opened).value();
  }

  TempFolder folder_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, OpenCreatesFolders) {
  for (const char* folder : {"blobs/sha256", "blobs/sha512", "tmp"}) {
    SCOPED_TRACE(folder);
    EXPECT_TRUE(std::filesystem::is_directory(folder_.path() / folder));
  }
}

TEST_F(BlobStoreTest, OpenRejectsEmptyRoot) {
  Expected<std::unique_ptr<BlobStore>> opened = BlobStore::open("");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(BlobStoreTest, OpenFailsWhenRootIsAFile) {
  std::filesystem::path file = folder_.path() / "plain-file";
  writeFile(file, "x");
  Expected<std::unique_ptr<BlobStore>> opened = BlobStore::open(file);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.status().code(), StatusCode::kIOError) << opened.status().toString();
}

TEST_F(BlobStoreTest, CommitRoundTrip) {
  const std::string first = "hello, ";
  const std::string second = "blob store";
  const std::string content = first + second;
  const Digest digest = sha256Of(content);

  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append(first).isOk());
  ASSERT_TRUE(writer->append(second).isOk());
  EXPECT_EQ(writer->size(), content.size());
  EXPECT_EQ(writer->digestSoFar(), digest);

  Status committed = store_->commit(*writer, digest);
  ASSERT_TRUE(committed.isOk()) << committed.toString();
  EXPECT_TRUE(writer->isCommitted());
  EXPECT_TRUE(store_->contains(digest));
  EXPECT_FALSE(std::filesystem::exists(writer->tempPath()));
  EXPECT_EQ(countEntries(store_->tempDir()), 0);

  Expected<BlobFile> blob = store_->openBlob(digest);
  ASSERT_TRUE(blob) << blob.status().toString();
  EXPECT_EQ(blob->size, content.size());
  EXPECT_EQ(preadAll(blob->fd.get(), blob->size), content);
}

TEST_F(BlobStoreTest, WriterFdRefersToCommittedFile) {
  const std::string content = "bytes read through the writer after commit";
  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append(content).isOk());
  ASSERT_TRUE(store_->commit(*writer, sha256Of(content)).isOk());

  EXPECT_EQ(inodeOfFd(writer->fd()), inodeOfPath(store_->pathFor(sha256Of(content))));
  EXPECT_EQ(preadAll(writer->fd(), writer->size()), content);
}

TEST_F(BlobStoreTest, CommitEmptyBlob) {
  Status committed = putBlob("");
  ASSERT_TRUE(committed.isOk()) << committed.toString();

  Expected<BlobFile> blob = store_->openBlob(sha256Of(""));
  ASSERT_TRUE(blob) << blob.status().toString();
  EXPECT_EQ(blob->size, 0u);
}

TEST_F(BlobStoreTest, CommitRoundTripManyAppends) {
  const std::string content = patternBytes((3 << 20) + 17);
  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  for (size_t offset = 0; offset < content.size(); offset += 65521) {
    ASSERT_TRUE(writer->append(std::string_view(content).substr(offset, 65521)).isOk());
  }
  ASSERT_TRUE(store_->commit(*writer, sha256Of(content)).isOk());

  EXPECT_EQ(readFile(store_->pathFor(sha256Of(content))), content);
}

TEST_F(BlobStoreTest, CommitRejectsDigestMismatch) {
  const std::string content = "the bytes that arrived";
  const Digest actual = sha256Of(content);
  const Digest expected = sha256Of("the bytes that were announced");

  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append(content).isOk());
  Status committed = store_->commit(*writer, expected);

  EXPECT_EQ(committed.code(), StatusCode::kCorruption) << committed.toString();
  EXPECT_NE(committed.message().find(expected.str()), std::string_view::npos)
      << committed.toString();
  EXPECT_NE(committed.message().find(actual.str()), std::string_view::npos) << committed.toString();
  EXPECT_FALSE(store_->contains(expected));
  EXPECT_FALSE(store_->contains(actual));
  EXPECT_FALSE(std::filesystem::exists(writer->tempPath()));
  EXPECT_EQ(countEntries(store_->tempDir()), 0);
  EXPECT_FALSE(writer->isWriting());
  EXPECT_EQ(writer->append("more").code(), StatusCode::kInvalidArgument);
}

TEST_F(BlobStoreTest, CommitTwiceIsRejected) {
  const std::string content = "committed once";
  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append(content).isOk());
  ASSERT_TRUE(store_->commit(*writer, sha256Of(content)).isOk());

  EXPECT_EQ(store_->commit(*writer, sha256Of(content)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer->append("late").code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->contains(sha256Of(content)));
}

TEST_F(BlobStoreTest, CommitOfExistingBlobIsIdempotent) {
  const std::string content = "stored by two fills";
  const Digest digest = sha256Of(content);
  ASSERT_TRUE(putBlob(content).isOk());
  ino_t first_inode = inodeOfPath(store_->pathFor(digest));

  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append(content).isOk());
  Status committed = store_->commit(*writer, digest);

  ASSERT_TRUE(committed.isOk()) << committed.toString();
  EXPECT_TRUE(writer->isCommitted());
  EXPECT_EQ(inodeOfPath(store_->pathFor(digest)), first_inode);
  EXPECT_EQ(inodeOfFd(writer->fd()), first_inode);
  EXPECT_EQ(readFile(store_->pathFor(digest)), content);
  EXPECT_EQ(countEntries(store_->tempDir()), 0);
}

TEST_F(BlobStoreTest, CommitReplacesBlobOfWrongSize) {
  const std::string content = "the complete blob";
  const Digest digest = sha256Of(content);
  writeFile(store_->pathFor(digest), "the comp");

  ASSERT_TRUE(putBlob(content).isOk());

  EXPECT_EQ(readFile(store_->pathFor(digest)), content);
  EXPECT_EQ(countEntries(store_->tempDir()), 0);
}

TEST_F(BlobStoreTest, CommitsShareTwoCharFolder) {
  const std::string first = "shard 0";
  const std::string prefix(sha256Of(first).hex().substr(0, 2));
  std::string second;
  for (int i = 1; i < 100000 && second.empty(); ++i) {
    std::string candidate = "shard " + std::to_string(i);
    if (sha256Of(candidate).hex().starts_with(prefix)) {
      second = candidate;
    }
  }
  ASSERT_FALSE(second.empty()) << "no content found whose digest starts with " << prefix;

  ASSERT_TRUE(putBlob(first).isOk());
  reopen();
  Status committed = putBlob(second);

  ASSERT_TRUE(committed.isOk()) << committed.toString();
  EXPECT_EQ(store_->pathFor(sha256Of(first)).parent_path(),
            store_->pathFor(sha256Of(second)).parent_path());
  EXPECT_EQ(countEntries(store_->pathFor(sha256Of(first)).parent_path()), 2);
}

TEST_F(BlobStoreTest, ConcurrentCommitsOfOneDigest) {
  const std::string content = patternBytes(256 << 10);
  const Digest digest = sha256Of(content);
  constexpr int kWriters = 6;

  std::vector<std::unique_ptr<BlobWriter>> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.push_back(newWriter());
    ASSERT_NE(writers.back(), nullptr);
    ASSERT_TRUE(writers.back()->append(content).isOk());
  }
  std::vector<Status> results(kWriters);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&, i] { results[i] = store_->commit(*writers[i], digest); });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }

  for (int i = 0; i < kWriters; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(results[i].isOk()) << results[i].toString();
  }
  EXPECT_EQ(readFile(store_->pathFor(digest)), content);
  EXPECT_EQ(countEntries(store_->tempDir()), 0);
  EXPECT_EQ(countEntries(store_->pathFor(digest).parent_path()), 1);
}

TEST_F(BlobStoreTest, CommitWithOtherAlgorithmRehashes) {
  const std::string content = patternBytes((1 << 20) + 3);
  const Digest digest = sha512Of(content);
  std::unique_ptr<BlobWriter> writer = newWriter(DigestAlgorithm::kSha256);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append(content).isOk());

  Status committed = store_->commit(*writer, digest);

  ASSERT_TRUE(committed.isOk()) << committed.toString();
  EXPECT_EQ(store_->pathFor(digest).parent_path().parent_path().filename(), "sha512");
  EXPECT_EQ(readFile(store_->pathFor(digest)), content);
}

TEST_F(BlobStoreTest, CommitWithOtherAlgorithmRejectsMismatch) {
  std::unique_ptr<BlobWriter> writer = newWriter(DigestAlgorithm::kSha256);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append("actual bytes").isOk());

  Status committed = store_->commit(*writer, sha512Of("other bytes"));

  EXPECT_EQ(committed.code(), StatusCode::kCorruption) << committed.toString();
  EXPECT_EQ(countEntries(store_->tempDir()), 0);
  EXPECT_EQ(countEntries(folder_.path() / "blobs" / "sha512"), 0);
}

TEST_F(BlobStoreTest, CommitRejectsWriterOfAnotherStore) {
  TempFolder other_folder;
  Expected<std::unique_ptr<BlobStore>> other = BlobStore::open(other_folder.path());
  ASSERT_TRUE(other) << other.status().toString();
  Expected<std::unique_ptr<BlobWriter>> writer = (*other)->createWriter();
  ASSERT_TRUE(writer) << writer.status().toString();
  ASSERT_TRUE((*writer)->append("x").isOk());

  Status committed = store_->commit(**writer, sha256Of("x"));

  EXPECT_EQ(committed.code(), StatusCode::kInvalidArgument) << committed.toString();
  EXPECT_TRUE((*writer)->isWriting());
  EXPECT_FALSE(store_->contains(sha256Of("x")));
}

TEST_F(BlobStoreTest, DestroyedWriterRemovesTempFile) {
  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append("abandoned fill").isOk());
  std::filesystem::path temp_path = writer->tempPath();
  ASSERT_TRUE(std::filesystem::exists(temp_path));

  writer.reset();

  EXPECT_FALSE(std::filesystem::exists(temp_path));
  EXPECT_EQ(countEntries(store_->tempDir()), 0);
}

TEST_F(BlobStoreTest, TempFileNameIsRandomHex) {
  std::unique_ptr<BlobWriter> first = newWriter();
  std::unique_ptr<BlobWriter> second = newWriter();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);

  std::string name = first->tempPath().filename().string();
  EXPECT_EQ(first->tempPath().parent_path(), store_->tempDir());
  EXPECT_EQ(name.size(), 32u + 5u) << name;
  EXPECT_TRUE(name.ends_with(".part")) << name;
  EXPECT_EQ(name.find_first_not_of("0123456789abcdef"), 32u) << name;
  EXPECT_NE(first->tempPath(), second->tempPath());
}

TEST_F(BlobStoreTest, MovedWriterKeepsOneOwner) {
  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append("moved ").isOk());
  std::filesystem::path temp_path = writer->tempPath();

  BlobWriter moved(std::move(*writer));
  writer.reset();
  EXPECT_TRUE(std::filesystem::exists(temp_path));

  ASSERT_TRUE(moved.append("bytes").isOk());
  Status committed = store_->commit(moved, sha256Of("moved bytes"));
  ASSERT_TRUE(committed.isOk()) << committed.toString();
  EXPECT_EQ(readFile(store_->pathFor(sha256Of("moved bytes"))), "moved bytes");
}

TEST_F(BlobStoreTest, OpenRemovesLeftoverTempFiles) {
  std::unique_ptr<BlobWriter> writer = newWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->append("fill cut short by a crash").isOk());
  writeFile(store_->tempDir() / "0123456789abcdef0123456789abcdef.part", "leftover");
  writeFile(store_->tempDir() / "stray-folder" / "inner", "leftover");
  ASSERT_EQ(countEntries(store_->tempDir()), 3);

  // Opening the root again models a restart after a crash, because the live writer's file is
  // then a leftover like any other.
  Expected<std::unique_ptr<BlobStore>> reopened = BlobStore::open(folder_.path());
  ASSERT_TRUE(reopened) << reopened.status().toString();

  EXPECT_EQ(countEntries(store_->tempDir()), 0);
}

TEST_F(BlobStoreTest, OpenLeavesBlobsFolderAlone) {
  const std::string content = "a committed blob";
  ASSERT_TRUE(putBlob(content).isOk());
  std::filesystem::path stray = folder_.path() / "blobs" / "sha256" / "zz" / "not-a-digest";
  writeFile(stray, "unknown file");

  reopen();

  EXPECT_TRUE(std::filesystem::exists(stray));
  EXPECT_EQ(readFile(stray), "unknown file");
  EXPECT_EQ(readFile(store_->pathFor(sha256Of(content))), content);
}

TEST_F(BlobStoreTest, RemoveAndContains) {
  const std::string content = "to be evicted";
  const Digest digest = sha256Of(content);
  EXPECT_FALSE(store_->contains(digest));
  ASSERT_TRUE(putBlob(content).isOk());
  EXPECT_TRUE(store_->contains(digest));

  Expected<BlobFile> reader = store_->openBlob(digest);
  ASSERT_TRUE(reader) << reader.status().toString();
  Status removed = store_->remove(digest);

  ASSERT_TRUE(removed.isOk()) << removed.toString();
  EXPECT_FALSE(store_->contains(digest));
  EXPECT_EQ(store_->remove(digest).code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->openBlob(digest).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(preadAll(reader->fd.get(), reader->size), content);
}

TEST_F(BlobStoreTest, OpenBlobOfMissingDigestIsNotFound) {
  Expected<BlobFile> blob = store_->openBlob(sha256Of("never stored"));
  ASSERT_FALSE(blob);
  EXPECT_EQ(blob.status().code(), StatusCode::kNotFound);
}

TEST_F(BlobStoreTest, PathForLayout) {
  const std::string sha256_hex = std::string(sha256Of("layout").hex());
  const std::string sha512_hex = std::string(sha512Of("layout").hex());
  struct Case {
    const char* name;
    Digest digest;
    std::filesystem::path expected;
  };
  const std::vector<Case> cases = {
      {"sha256", sha256Of("layout"),
       folder_.path() / "blobs" / "sha256" / sha256_hex.substr(0, 2) / sha256_hex},
      {"sha512", sha512Of("layout"),
       folder_.path() / "blobs" / "sha512" / sha512_hex.substr(0, 2) / sha512_hex},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    EXPECT_EQ(store_->pathFor(test_case.digest), test_case.expected);
  }
  EXPECT_EQ(store_->root(), folder_.path());
}

}  // namespace
}  // namespace outpost::storage
