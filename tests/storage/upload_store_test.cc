#include "storage/upload_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "base/digest.h"
#include "storage/blob_store.h"
#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

using testing::TempFolder;

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class UploadStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<BlobStore>> store = BlobStore::open(folder_.path());
    ASSERT_TRUE(store) << store.status().toString();
    blobs_ = std::move(*store);
    reopen();
  }

  void reopen() {
    uploads_.reset();
    Expected<std::unique_ptr<UploadStore>> uploads = UploadStore::open(folder_.path());
    ASSERT_TRUE(uploads) << uploads.status().toString();
    uploads_ = std::move(*uploads);
  }

  std::string startUpload() {
    Expected<UploadInfo> info = uploads_->create("local/team/app");
    EXPECT_TRUE(info) << info.status().toString();
    return info ? info->id : std::string();
  }

  TempFolder folder_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<UploadStore> uploads_;
};

TEST_F(UploadStoreTest, ChunksCompleteIntoBlob) {
  std::string id = startUpload();
  ASSERT_EQ(id.size(), 32u);

  Expected<uint64_t> first = uploads_->append(id, 0, "hello ");
  ASSERT_TRUE(first) << first.status().toString();
  EXPECT_EQ(*first, 6u);
  Expected<uint64_t> second = uploads_->append(id, 6, "world");
  ASSERT_TRUE(second) << second.status().toString();
  EXPECT_EQ(*second, 11u);
  Expected<UploadInfo> info = uploads_->find(id);
  ASSERT_TRUE(info) << info.status().toString();
  EXPECT_EQ(info->size, 11u);
  EXPECT_EQ(info->repository, "local/team/app");

  Digest digest = sha256Of("hello world");
  Status completed = uploads_->complete(id, digest, *blobs_);

  EXPECT_TRUE(completed.isOk()) << completed.toString();
  EXPECT_TRUE(blobs_->contains(digest));
  EXPECT_EQ(uploads_->find(id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(uploads_->sessionCount(), 0u);
}

TEST_F(UploadStoreTest, OutOfOrderChunkRejected) {
  std::string id = startUpload();
  ASSERT_TRUE(uploads_->append(id, 0, "abc").hasValue());

  for (uint64_t offset : {0u, 2u, 4u}) {
    Expected<uint64_t> result = uploads_->append(id, offset, "def");
    ASSERT_FALSE(result) << "offset " << offset;
    EXPECT_EQ(result.status().code(), StatusCode::kOutOfRange) << "offset " << offset;
  }
  Expected<UploadInfo> info = uploads_->find(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, 3u);
}

TEST_F(UploadStoreTest, WrongDigestStoresNothing) {
  std::string id = startUpload();
  ASSERT_TRUE(uploads_->append(id, 0, "actual bytes").hasValue());
  Digest claimed = sha256Of("other bytes");

  Status completed = uploads_->complete(id, claimed, *blobs_);

  EXPECT_EQ(completed.code(), StatusCode::kCorruption) << completed.toString();
  EXPECT_FALSE(blobs_->contains(claimed));
  EXPECT_FALSE(blobs_->contains(sha256Of("actual bytes")));
  EXPECT_EQ(uploads_->sessionCount(), 0u);
}

TEST_F(UploadStoreTest, UnknownIdsAreNotFound) {
  std::string unknown(32, 'a');
  for (std::string id : {unknown, std::string("../uploads"), std::string("ABCDEF"),
                         std::string(""), std::string(64, '0')}) {
    EXPECT_EQ(uploads_->find(id).status().code(), StatusCode::kNotFound) << id;
    EXPECT_EQ(uploads_->append(id, 0, "x").status().code(), StatusCode::kNotFound) << id;
    EXPECT_EQ(uploads_->cancel(id).code(), StatusCode::kNotFound) << id;
    EXPECT_EQ(uploads_->complete(id, sha256Of("x"), *blobs_).code(), StatusCode::kNotFound)
        << id;
  }
}

TEST_F(UploadStoreTest, CancelRemovesSession) {
  std::string id = startUpload();
  ASSERT_TRUE(uploads_->append(id, 0, "abc").hasValue());

  EXPECT_TRUE(uploads_->cancel(id).isOk());

  EXPECT_EQ(uploads_->find(id).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(folder_.path() / "uploads" / id));
  EXPECT_EQ(uploads_->cancel(id).code(), StatusCode::kNotFound);
}

TEST_F(UploadStoreTest, SessionSurvivesRestart) {
  std::string id = startUpload();
  ASSERT_TRUE(uploads_->append(id, 0, "first half, ").hasValue());

  reopen();

  Expected<UploadInfo> info = uploads_->find(id);
  ASSERT_TRUE(info) << info.status().toString();
  EXPECT_EQ(info->size, 12u);
  EXPECT_EQ(info->repository, "local/team/app");
  ASSERT_TRUE(uploads_->append(id, 12, "second half").hasValue());
  Digest digest = sha256Of("first half, second half");
  EXPECT_TRUE(uploads_->complete(id, digest, *blobs_).isOk());
  EXPECT_TRUE(blobs_->contains(digest));
}

TEST_F(UploadStoreTest, InvalidFoldersRemovedAtOpen) {
  std::string id = startUpload();
  std::filesystem::create_directories(folder_.path() / "uploads" / "not-an-id");
  std::filesystem::create_directories(folder_.path() / "uploads" / std::string(32, 'b'));

  reopen();

  EXPECT_EQ(uploads_->sessionCount(), 1u);
  EXPECT_TRUE(uploads_->find(id).hasValue());
  EXPECT_FALSE(std::filesystem::exists(folder_.path() / "uploads" / "not-an-id"));
  EXPECT_FALSE(std::filesystem::exists(folder_.path() / "uploads" / std::string(32, 'b')));
}

TEST_F(UploadStoreTest, IdleSessionsExpire) {
  std::string idle = startUpload();
  std::string active = startUpload();
  std::filesystem::path idle_data = folder_.path() / "uploads" / idle / "data";
  std::filesystem::last_write_time(
      idle_data, std::filesystem::file_time_type::clock::now() - std::chrono::hours(2));

  size_t removed = uploads_->removeIdle(nowMs(), 60 * 60 * 1000);

  EXPECT_EQ(removed, 1u);
  EXPECT_EQ(uploads_->find(idle).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(uploads_->find(active).hasValue());
}

TEST_F(UploadStoreTest, ChunkWriterStreamsPieces) {
  std::string id = startUpload();
  Expected<std::unique_ptr<UploadStore::ChunkWriter>> chunk = uploads_->beginChunk(id, 0);
  ASSERT_TRUE(chunk) << chunk.status().toString();
  ASSERT_TRUE((*chunk)->write("first ").isOk());
  ASSERT_TRUE((*chunk)->write("second").isOk());
  EXPECT_EQ((*chunk)->chunkBytes(), 12u);

  Expected<uint64_t> size = (*chunk)->commit();
  ASSERT_TRUE(size) << size.status().toString();
  EXPECT_EQ(*size, 12u);
  chunk->reset();
  Expected<UploadInfo> info = uploads_->find(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, 12u);
}

TEST_F(UploadStoreTest, UncommittedChunkIsDropped) {
  std::string id = startUpload();
  ASSERT_TRUE(uploads_->append(id, 0, "kept").hasValue());
  {
    Expected<std::unique_ptr<UploadStore::ChunkWriter>> chunk = uploads_->beginChunk(id, 4);
    ASSERT_TRUE(chunk) << chunk.status().toString();
    ASSERT_TRUE((*chunk)->write("dropped").isOk());
  }
  Expected<UploadInfo> info = uploads_->find(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, 4u);
  // The next chunk starts where the dropped one did.
  Expected<uint64_t> size = uploads_->append(id, 4, "!");
  ASSERT_TRUE(size) << size.status().toString();
  EXPECT_EQ(*size, 5u);
  ASSERT_TRUE(uploads_->complete(id, sha256Of("kept!"), *blobs_).isOk());
  EXPECT_TRUE(blobs_->contains(sha256Of("kept!")));
}

TEST_F(UploadStoreTest, OneChunkAtATime) {
  std::string id = startUpload();
  Expected<std::unique_ptr<UploadStore::ChunkWriter>> first = uploads_->beginChunk(id, 0);
  ASSERT_TRUE(first) << first.status().toString();

  Expected<std::unique_ptr<UploadStore::ChunkWriter>> second = uploads_->beginChunk(id, 0);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(uploads_->complete(id, sha256Of(""), *blobs_).code(), StatusCode::kAlreadyExists);
  // A session with a chunk in progress is not idle, however old its file.
  EXPECT_EQ(uploads_->removeIdle(nowMs() + 3'600'000, 1000), 0u);

  ASSERT_TRUE((*first)->commit());
  EXPECT_TRUE(uploads_->beginChunk(id, 0));
}

TEST_F(UploadStoreTest, CancelDuringChunkFailsCommit) {
  std::string id = startUpload();
  Expected<std::unique_ptr<UploadStore::ChunkWriter>> chunk = uploads_->beginChunk(id, 0);
  ASSERT_TRUE(chunk) << chunk.status().toString();
  ASSERT_TRUE((*chunk)->write("bytes").isOk());

  ASSERT_TRUE(uploads_->cancel(id).isOk());

  Expected<uint64_t> size = (*chunk)->commit();
  ASSERT_FALSE(size);
  EXPECT_EQ(size.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(uploads_->sessionCount(), 0u);
}

TEST_F(UploadStoreTest, RepositoryMustBeOneLine) {
  EXPECT_EQ(uploads_->create("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(uploads_->create("a\nb").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(uploads_->sessionCount(), 0u);
}

}  // namespace
}  // namespace outpost::storage
