#include "storage/blob_writer.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "storage/blob_store.h"
#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

using testing::countEntries;
using testing::TempFolder;

std::string patternBytes(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    bytes[i] = static_cast<char>((i * 7 + i / 509) & 0xff);
  }
  return bytes;
}

class BlobWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<BlobStore>> opened = BlobStore::open(folder_.path());
    ASSERT_TRUE(opened) << opened.status().toString();
    store_ = std::move(opened).value();
    Expected<std::unique_ptr<BlobWriter>> writer = store_->createWriter();
    ASSERT_TRUE(writer) << writer.status().toString();
    writer_ = std::move(writer).value();
  }

  TempFolder folder_;
  std::unique_ptr<BlobStore> store_;
  std::unique_ptr<BlobWriter> writer_;
};

TEST_F(BlobWriterTest, DigestSoFarFollowsAppends) {
  EXPECT_EQ(writer_->digestSoFar(), sha256Of(""));
  ASSERT_TRUE(writer_->append("abc").isOk());
  EXPECT_EQ(writer_->digestSoFar(), sha256Of("abc"));
  ASSERT_TRUE(writer_->append("def").isOk());
  EXPECT_EQ(writer_->digestSoFar(), sha256Of("abcdef"));
  EXPECT_EQ(writer_->size(), 6u);
}

TEST_F(BlobWriterTest, AppendTakesByteSpans) {
  const std::byte bytes[] = {std::byte{0x00}, std::byte{0xff}, std::byte{0x10}};
  ASSERT_TRUE(writer_->append(std::span<const std::byte>(bytes)).isOk());

  EXPECT_EQ(writer_->size(), 3u);
  EXPECT_EQ(writer_->digestSoFar(), sha256Of(std::string_view("\x00\xff\x10", 3)));
}

TEST_F(BlobWriterTest, ReadPrefixWhileAppending) {
  const std::string content = patternBytes(4 << 20);
  constexpr size_t kChunkBytes = 32 << 10;
  std::atomic<bool> done = false;
  std::atomic<int> mismatches = 0;
  std::atomic<int> reads = 0;
  int fd = writer_->fd();

  std::thread reader([&] {
    std::string buffer;
    while (true) {
      bool finished = done.load();
      uint64_t size = writer_->size();
      buffer.resize(size);
      ssize_t count = ::pread(fd, buffer.data(), size, 0);
      if (count != static_cast<ssize_t>(size) ||
          std::string_view(buffer) != std::string_view(content).substr(0, size)) {
        ++mismatches;
      }
      ++reads;
      if (finished) {
        break;
      }
    }
  });
  Status appended;
  for (size_t offset = 0; offset < content.size() && appended.isOk(); offset += kChunkBytes) {
    appended = writer_->append(std::string_view(content).substr(offset, kChunkBytes));
  }
  done = true;
  reader.join();

  ASSERT_TRUE(appended.isOk()) << appended.toString();

  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(writer_->size(), content.size());
}

TEST_F(BlobWriterTest, WriteFaultMapsErrno) {
  struct Case {
    const char* name;
    int error_number;
    StatusCode expected;
  };
  const std::vector<Case> cases = {
      {"ENOSPC", ENOSPC, StatusCode::kNoSpace},
      {"EDQUOT", EDQUOT, StatusCode::kNoSpace},
      {"EIO", EIO, StatusCode::kIOError},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Expected<std::unique_ptr<BlobWriter>> opened = store_->createWriter();
    ASSERT_TRUE(opened) << opened.status().toString();
    BlobWriter& writer = **opened;
    writer.setWriteFaultForTest(10, test_case.error_number);

    ASSERT_TRUE(writer.append("123456").isOk());
    Status failed = writer.append("789012");

    EXPECT_EQ(failed.code(), test_case.expected) << failed.toString();
    EXPECT_NE(failed.message().find(std::strerror(test_case.error_number)), std::string::npos)
        << failed.toString();
  }
}

TEST_F(BlobWriterTest, SimulatedNoSpaceLeavesNothing) {
  writer_->setWriteFaultForTest(10, ENOSPC);
  ASSERT_TRUE(writer_->append("123456").isOk());
  std::filesystem::path temp_path = writer_->tempPath();

  Status failed = writer_->append("789012");

  EXPECT_EQ(failed.code(), StatusCode::kNoSpace) << failed.toString();
  EXPECT_FALSE(writer_->isWriting());
  EXPECT_FALSE(std::filesystem::exists(temp_path));
  EXPECT_EQ(writer_->append("x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->commit(*writer_, sha256Of("123456")).code(), StatusCode::kInvalidArgument);

  writer_.reset();
  EXPECT_EQ(countEntries(store_->tempDir()), 0);
  EXPECT_EQ(countEntries(folder_.path() / "blobs" / "sha256"), 0);
}

TEST_F(BlobWriterTest, FaultAtExactBoundaryFailsNextAppend) {
  writer_->setWriteFaultForTest(6, ENOSPC);
  ASSERT_TRUE(writer_->append("123456").isOk());
  EXPECT_EQ(writer_->size(), 6u);

  EXPECT_EQ(writer_->append("7").code(), StatusCode::kNoSpace);
}

// A real full disk: a 1 MiB tmpfs mounted for this test. Needs root and mount(2), and skips
// without them.
class BlobWriterTmpfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_point_ = folder_.path() / "tmpfs";
    std::filesystem::create_directories(mount_point_);
    if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=1m") != 0) {
      GTEST_SKIP() << "mounting a 1 MiB tmpfs failed, so a real full disk cannot be tested: "
                   << std::strerror(errno);
    }
    is_mounted_ = true;
  }

  void TearDown() override {
    if (is_mounted_ && ::umount(mount_point_.c_str()) != 0) {
      ADD_FAILURE() << "umount " << mount_point_ << " failed: " << std::strerror(errno);
    }
  }

  TempFolder folder_;
  std::filesystem::path mount_point_;
  bool is_mounted_ = false;
};

TEST_F(BlobWriterTmpfsTest, FullDiskReturnsNoSpace) {
  Expected<std::unique_ptr<BlobStore>> store = BlobStore::open(mount_point_);
  ASSERT_TRUE(store) << store.status().toString();
  Expected<std::unique_ptr<BlobWriter>> writer = (*store)->createWriter();
  ASSERT_TRUE(writer) << writer.status().toString();

  const std::string chunk = patternBytes(64 << 10);
  Status failed;
  // 64 chunks are 4 MiB, four times the file system's size.
  for (int i = 0; i < 64 && failed.isOk(); ++i) {
    failed = (*writer)->append(chunk);
  }

  EXPECT_EQ(failed.code(), StatusCode::kNoSpace) << failed.toString();
  EXPECT_LE((*writer)->size(), uint64_t{1} << 20);
  writer->reset();
  EXPECT_EQ(countEntries((*store)->tempDir()), 0);

  // Space is back once the partial file is gone, so a small blob fits again.
  Expected<std::unique_ptr<BlobWriter>> next = (*store)->createWriter();
  ASSERT_TRUE(next) << next.status().toString();
  ASSERT_TRUE((*next)->append(chunk).isOk());
  EXPECT_TRUE((*store)->commit(**next, sha256Of(chunk)).isOk());
}

}  // namespace
}  // namespace outpost::storage
