// BlobStore with more than one tier folder: where blobs land, how they move, and how readers
// find them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "storage/blob_store.h"
#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

using testing::countEntries;
using testing::readFile;
using testing::TempFolder;
using testing::writeFile;

class BlobStoreTiersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(folder_.path() / "slow");
    Expected<std::unique_ptr<BlobStore>> store =
        BlobStore::open({folder_.path() / "fast", folder_.path() / "slow"});
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(*store);
  }

  Digest commit(std::string_view content) {
    Digest digest = sha256Of(content);
    Expected<std::unique_ptr<BlobWriter>> writer = store_->createWriter();
    EXPECT_TRUE(writer) << writer.status().toString();
    EXPECT_TRUE((*writer)->append(content).isOk());
    Status committed = store_->commit(**writer, digest);
    EXPECT_TRUE(committed.isOk()) << committed.toString();
    return digest;
  }

  bool isInTier(const Digest& digest, uint32_t tier) const {
    return std::filesystem::exists(store_->pathFor(digest, tier));
  }

  TempFolder folder_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTiersTest, NewBlobsLandInFirstTier) {
  Digest digest = commit("fresh bytes");

  EXPECT_EQ(store_->tierCount(), 2u);
  EXPECT_TRUE(isInTier(digest, 0));
  EXPECT_FALSE(isInTier(digest, 1));
  EXPECT_EQ(store_->pathFor(digest, 1).string().rfind((folder_.path() / "slow").string(), 0), 0u);
}

TEST_F(BlobStoreTiersTest, CopyKeepsSource) {
  Digest digest = commit("bytes to demote");

  ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());

  EXPECT_TRUE(isInTier(digest, 0));
  EXPECT_EQ(readFile(store_->pathFor(digest, 1)), "bytes to demote");
  EXPECT_EQ(countEntries(store_->tempDir(1)), 0);
  Expected<BlobFile> file = store_->openBlob(digest);
  ASSERT_TRUE(file) << file.status().toString();
  EXPECT_EQ(file->tier, 0u);
}

TEST_F(BlobStoreTiersTest, OpenFindsBlobInLowerTier) {
  Digest digest = commit("lower tier bytes");
  ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());
  ASSERT_TRUE(store_->removeFromTier(digest, 0).isOk());

  Expected<BlobFile> file = store_->openBlob(digest);

  ASSERT_TRUE(file) << file.status().toString();
  EXPECT_EQ(file->tier, 1u);
  EXPECT_EQ(file->size, 16u);
  EXPECT_TRUE(store_->contains(digest));
}

TEST_F(BlobStoreTiersTest, CorruptSourceIsNotCopied) {
  Digest digest = commit("original content");
  writeFile(store_->pathFor(digest, 0), "ORIGINAL content");

  Status copied = store_->copyToTier(digest, 0, 1);

  EXPECT_EQ(copied.code(), StatusCode::kCorruption) << copied.toString();
  EXPECT_FALSE(isInTier(digest, 1));
  EXPECT_EQ(countEntries(store_->tempDir(1)), 0);
}

TEST_F(BlobStoreTiersTest, CopyOfMissingBlobIsNotFound) {
  Digest digest = sha256Of("never stored");

  EXPECT_EQ(store_->copyToTier(digest, 0, 1).code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->copyToTier(digest, 1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->copyToTier(digest, 0, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->removeFromTier(digest, 2).code(), StatusCode::kInvalidArgument);
}

TEST_F(BlobStoreTiersTest, RemoveDeletesEveryCopy) {
  Digest digest = commit("two copies");
  ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());

  ASSERT_TRUE(store_->remove(digest).isOk());

  EXPECT_FALSE(isInTier(digest, 0));
  EXPECT_FALSE(isInTier(digest, 1));
  EXPECT_EQ(store_->remove(digest).code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->openBlob(digest).status().code(), StatusCode::kNotFound);
}

TEST_F(BlobStoreTiersTest, CommitRemovesLowerTierCopy) {
  // A blob demoted earlier and written again (a push of the same content) lives in the first
  // tier only, the tier its new index record names.
  Digest digest = commit("pushed again");
  ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());
  ASSERT_TRUE(store_->removeFromTier(digest, 0).isOk());

  commit("pushed again");

  EXPECT_TRUE(isInTier(digest, 0));
  EXPECT_FALSE(isInTier(digest, 1));
}

TEST_F(BlobStoreTiersTest, ReaderKeepsBytesWhileBlobMoves) {
  std::string content(300'000, 'q');
  Digest digest = commit(content);
  Expected<BlobFile> reader = store_->openBlob(digest);
  ASSERT_TRUE(reader);

  ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());
  ASSERT_TRUE(store_->removeFromTier(digest, 0).isOk());

  std::string bytes(content.size(), '\0');
  ASSERT_EQ(::pread(reader->fd.get(), bytes.data(), bytes.size(), 0),
            static_cast<ssize_t>(bytes.size()));
  EXPECT_TRUE(bytes == content);
}

TEST_F(BlobStoreTiersTest, OpenRemovesTemporaryFilesOfEveryTier) {
  writeFile(store_->tempDir(1) / "left.part", "half");
  store_.reset();

  Expected<std::unique_ptr<BlobStore>> reopened =
      BlobStore::open({folder_.path() / "fast", folder_.path() / "slow"});

  ASSERT_TRUE(reopened) << reopened.status().toString();
  EXPECT_EQ(countEntries((*reopened)->tempDir(1)), 0);
}

TEST(BlobStoreTiersOpenTest, LowerTierFolderMustExist) {
  TempFolder folder;

  Expected<std::unique_ptr<BlobStore>> store =
      BlobStore::open({folder.path() / "data", folder.path() / "unmounted"});

  ASSERT_FALSE(store);
  EXPECT_EQ(store.status().code(), StatusCode::kNotFound);
  EXPECT_NE(store.status().message().find("mount its disk"), std::string_view::npos);
  EXPECT_FALSE(std::filesystem::exists(folder.path() / "unmounted"));
}

TEST(BlobStoreTiersOpenTest, RejectsBadTierLists) {
  TempFolder folder;
  std::filesystem::create_directories(folder.path() / "a");
  EXPECT_EQ(BlobStore::open(std::vector<std::filesystem::path>{}).status().code(),
            StatusCode::kInvalidArgument);
  Expected<std::unique_ptr<BlobStore>> twice =
      BlobStore::open({folder.path() / "a", folder.path() / "b" / ".." / "a"});
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(twice.status().message().find("listed twice"), std::string_view::npos);
  std::vector<std::filesystem::path> many(BlobStore::kMaxTiers + 1);
  for (size_t i = 0; i < many.size(); ++i) {
    many[i] = folder.path() / std::to_string(i);
    std::filesystem::create_directories(many[i]);
  }
  EXPECT_EQ(BlobStore::open(many).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace outpost::storage
