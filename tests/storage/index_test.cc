#include "storage/index.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

using namespace std::string_literals;
using testing::TempFolder;
using testing::writeFile;

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override { openIndex(); }

  void openIndex() {
    Expected<std::unique_ptr<Index>> opened = Index::open(folder_.path() / "index");
    ASSERT_TRUE(opened) << opened.status().toString();
    index_ = std::move(opened).value();
  }

  void reopen() {
    index_.reset();
    openIndex();
  }

  // Writes `value` under `key` in `family` with RocksDB itself, bypassing the Index encoders.
  // The index must be closed, because RocksDB allows one open handle per database.
  void putRaw(const std::string& family, const std::string& key, const std::string& value) {
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const char* name :
         {"default", "blobs", "manifests", "tags", "links", "local_blobs", "local_manifests",
          "held_blobs", "tag_history", "pinned_tags", "referrers"}) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw_db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(
        rocksdb::DBOptions(), (folder_.path() / "index").string(), descriptors, &handles, &raw_db);
    ASSERT_TRUE(status.ok()) << status.ToString();
    std::unique_ptr<rocksdb::DB> db(raw_db);

    rocksdb::ColumnFamilyHandle* target = nullptr;
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      if (handle->GetName() == family) {
        target = handle;
      }
    }
    ASSERT_NE(target, nullptr) << family;
    rocksdb::Status put = db->Put(rocksdb::WriteOptions(), target, key, value);
    EXPECT_TRUE(put.ok()) << put.ToString();
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      EXPECT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
    }
    EXPECT_TRUE(db->Close().ok());
  }

  TempFolder folder_;
  std::unique_ptr<Index> index_;
};

const Digest kAlpineManifest = sha256Of("alpine manifest");
const Digest kLayer = sha256Of("layer bytes");

TEST_F(IndexTest, BlobRoundTrip) {
  const BlobRecord record{.size = 3 << 20, .created_ms = 1000, .last_access_ms = 2000};
  ASSERT_TRUE(index_->putBlob(kLayer, record).isOk());

  Expected<BlobRecord> read = index_->getBlob(kLayer);
  ASSERT_TRUE(read) << read.status().toString();
  EXPECT_EQ(read->size, record.size);
  EXPECT_EQ(read->created_ms, record.created_ms);
  EXPECT_EQ(read->last_access_ms, record.last_access_ms);
}

TEST_F(IndexTest, ManifestBodyKeptByteForByte) {
  // umoci writes manifests without a mediaType field and with a trailing newline, and the digest
  // covers those exact bytes.
  const ManifestRecord record{
      .media_type = "application/vnd.oci.image.manifest.v1+json",
      .body = "{\"schemaVersion\":2,  \"layers\":[]}\n\x00\xff"s,
      .created_ms = 1234,
  };
  ASSERT_TRUE(index_->putManifest(kAlpineManifest, record).isOk());

  Expected<ManifestRecord> read = index_->getManifest(kAlpineManifest);
  ASSERT_TRUE(read) << read.status().toString();
  EXPECT_EQ(read->body, record.body);
  EXPECT_EQ(read->media_type, record.media_type);
  EXPECT_EQ(read->created_ms, record.created_ms);
}

TEST_F(IndexTest, TagRoundTrip) {
  const TagRecord record{.digest = kAlpineManifest.str(),
                         .media_type = "application/vnd.oci.image.index.v1+json",
                         .confirmed_ms = 5555};
  ASSERT_TRUE(index_->putTag("dockerhub", "library/alpine", "3.19", record).isOk());

  Expected<TagRecord> read = index_->getTag("dockerhub", "library/alpine", "3.19");
  ASSERT_TRUE(read) << read.status().toString();
  EXPECT_EQ(read->digest, record.digest);
  EXPECT_EQ(read->media_type, record.media_type);
  EXPECT_EQ(read->confirmed_ms, record.confirmed_ms);
}

TEST_F(IndexTest, PutTagOverwrites) {
  TagRecord first{.digest = sha256Of("old").str(), .media_type = "a", .confirmed_ms = 1};
  TagRecord second{.digest = sha256Of("new").str(), .media_type = "b", .confirmed_ms = 2};
  ASSERT_TRUE(index_->putTag("dockerhub", "library/redis", "7", first).isOk());
  ASSERT_TRUE(index_->putTag("dockerhub", "library/redis", "7", second).isOk());

  Expected<TagRecord> read = index_->getTag("dockerhub", "library/redis", "7");
  ASSERT_TRUE(read) << read.status().toString();
  EXPECT_EQ(read->digest, second.digest);
}

TEST_F(IndexTest, MissingRecordsAreNotFound) {
  ASSERT_TRUE(
      index_->putTag("dockerhub", "library/alpine", "latest", {.digest = kAlpineManifest.str()})
          .isOk());
  struct Case {
    const char* name;
    Status status;
  };
  const std::vector<Case> cases = {
      {"blob", index_->getBlob(kLayer).status()},
      {"manifest", index_->getManifest(kAlpineManifest).status()},
      {"tag", index_->getTag("dockerhub", "library/alpine", "edge").status()},
      {"tag of other repository", index_->getTag("ghcr", "library/alpine", "latest").status()},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    EXPECT_EQ(test_case.status.code(), StatusCode::kNotFound) << test_case.status.toString();
  }
}

TEST_F(IndexTest, DeleteBlob) {
  ASSERT_TRUE(index_->putBlob(kLayer, {.size = 1}).isOk());

  ASSERT_TRUE(index_->deleteBlob(kLayer).isOk());

  EXPECT_EQ(index_->getBlob(kLayer).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(index_->deleteBlob(kLayer).isOk());
}

TEST_F(IndexTest, ReopenKeepsData) {
  ASSERT_TRUE(index_->putBlob(kLayer, {.size = 77, .created_ms = 1}).isOk());
  ASSERT_TRUE(
      index_->putManifest(kAlpineManifest, {.media_type = "m", .body = "{}", .created_ms = 2})
          .isOk());
  ASSERT_TRUE(index_
                  ->putTag("dockerhub", "library/alpine", "latest",
                           {.digest = kAlpineManifest.str(), .media_type = "m"})
                  .isOk());
  ASSERT_TRUE(index_->putLink("dockerhub", kLayer).isOk());
  index_->touchBlob(kLayer, 9000);

  reopen();

  Expected<BlobRecord> blob = index_->getBlob(kLayer);
  ASSERT_TRUE(blob) << blob.status().toString();
  EXPECT_EQ(blob->size, 77u);
  EXPECT_EQ(blob->last_access_ms, 9000) << "pending access times are flushed at close";
  Expected<ManifestRecord> manifest = index_->getManifest(kAlpineManifest);
  ASSERT_TRUE(manifest) << manifest.status().toString();
  EXPECT_EQ(manifest->body, "{}");
  Expected<TagRecord> tag = index_->getTag("dockerhub", "library/alpine", "latest");
  ASSERT_TRUE(tag) << tag.status().toString();
  EXPECT_EQ(tag->digest, kAlpineManifest.str());
  EXPECT_TRUE(index_->hasLink("dockerhub", kLayer));
}

TEST_F(IndexTest, ListTagsSortedAndScoped) {
  const TagRecord record{.digest = kAlpineManifest.str()};
  struct Entry {
    const char* repository;
    const char* name;
    const char* tag;
  };
  const std::vector<Entry> entries = {
      {"dockerhub", "library/alpine", "latest"},
      {"dockerhub", "library/alpine", "3.19"},
      {"dockerhub", "library/alpine", "3.2"},
      {"dockerhub", "library/alpine", "edge"},
      // Names that extend "library/alpine", and the same name under other repository keys.
      {"dockerhub", "library/alpine2", "only-in-alpine2"},
      {"dockerhub", "library/alpine/sub", "only-in-sub"},
      {"dockerhub2", "library/alpine", "only-in-dockerhub2"},
      {"ghcr", "library/alpine", "only-in-ghcr"},
      {"dockerhub", "library/alpin", "only-in-alpin"},
  };
  for (const Entry& entry : entries) {
    ASSERT_TRUE(index_->putTag(entry.repository, entry.name, entry.tag, record).isOk())
        << entry.repository << " " << entry.name << " " << entry.tag;
  }

  struct Case {
    const char* repository;
    const char* name;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"dockerhub", "library/alpine", {"3.19", "3.2", "edge", "latest"}},
      {"dockerhub", "library/alpine2", {"only-in-alpine2"}},
      {"dockerhub", "library/alpine/sub", {"only-in-sub"}},
      {"dockerhub", "library/alpin", {"only-in-alpin"}},
      {"dockerhub2", "library/alpine", {"only-in-dockerhub2"}},
      {"ghcr", "library/alpine", {"only-in-ghcr"}},
      {"docker", "library/alpine", {}},
      {"dockerhub", "library/redis", {}},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(std::string(test_case.repository) + " " + test_case.name);
    Expected<std::vector<std::string>> tags =
        index_->listTags(test_case.repository, test_case.name);
    ASSERT_TRUE(tags) << tags.status().toString();
    EXPECT_EQ(*tags, test_case.expected);
  }
}

TEST_F(IndexTest, LinksScopedByRepository) {
  ASSERT_TRUE(index_->putLink("dockerhub", kLayer).isOk());

  EXPECT_TRUE(index_->hasLink("dockerhub", kLayer));
  EXPECT_FALSE(index_->hasLink("ghcr", kLayer));
  EXPECT_FALSE(index_->hasLink("dockerhu", kLayer));
  EXPECT_FALSE(index_->hasLink("dockerhub2", kLayer));
  EXPECT_FALSE(index_->hasLink("dockerhub", kAlpineManifest));
}

TEST_F(IndexTest, RejectsInvalidKeyComponents) {
  const TagRecord record{.digest = kAlpineManifest.str()};
  struct Case {
    const char* name;
    std::string repository;
    std::string image;
    std::string tag;
  };
  const std::vector<Case> cases = {
      {"empty repository", "", "library/alpine", "latest"},
      {"empty name", "dockerhub", "", "latest"},
      {"empty tag", "dockerhub", "library/alpine", ""},
      {"NUL in repository", "docker\0hub"s, "library/alpine", "latest"},
      {"NUL in name", "dockerhub", "library\0alpine"s, "latest"},
      {"NUL in tag", "dockerhub", "library/alpine", "la\0test"s},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Status put = index_->putTag(test_case.repository, test_case.image, test_case.tag, record);
    EXPECT_EQ(put.code(), StatusCode::kInvalidArgument) << put.toString();
    Status get = index_->getTag(test_case.repository, test_case.image, test_case.tag).status();
    EXPECT_EQ(get.code(), StatusCode::kInvalidArgument) << get.toString();
    if (!test_case.tag.empty() && test_case.tag.find('\0') == std::string::npos) {
      Status list = index_->listTags(test_case.repository, test_case.image).status();
      EXPECT_EQ(list.code(), StatusCode::kInvalidArgument) << list.toString();
    }
  }
  EXPECT_EQ(index_->putLink("docker\0hub"s, kLayer).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index_->putLink("", kLayer).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(index_->hasLink("", kLayer));
}

TEST_F(IndexTest, PutTagRejectsInvalidDigest) {
  for (const char* digest : {"", "latest", "sha256:abc", "md5:0123"}) {
    SCOPED_TRACE(digest);
    Status put = index_->putTag("dockerhub", "library/alpine", "latest", {.digest = digest});
    EXPECT_EQ(put.code(), StatusCode::kInvalidArgument) << put.toString();
  }
  EXPECT_EQ(index_->getTag("dockerhub", "library/alpine", "latest").status().code(),
            StatusCode::kNotFound);
}

TEST_F(IndexTest, RejectsOversizedMediaType) {
  const std::string media_type(kMaxRecordStringBytes + 1, 'a');

  Status manifest = index_->putManifest(kAlpineManifest, {.media_type = media_type});
  Status tag = index_->putTag("dockerhub", "library/alpine", "latest",
                              {.digest = kAlpineManifest.str(), .media_type = media_type});

  EXPECT_EQ(manifest.code(), StatusCode::kInvalidArgument) << manifest.toString();
  EXPECT_EQ(tag.code(), StatusCode::kInvalidArgument) << tag.toString();
}

TEST_F(IndexTest, AccessTimesFlushInBatch) {
  const Digest other = sha256Of("other layer");
  ASSERT_TRUE(index_->putBlob(kLayer, {.size = 1, .created_ms = 10, .last_access_ms = 10}).isOk());
  ASSERT_TRUE(index_->putBlob(other, {.size = 2, .created_ms = 10, .last_access_ms = 500}).isOk());

  index_->touchBlob(kLayer, 300);
  index_->touchBlob(kLayer, 200);
  index_->touchBlob(other, 400);
  Expected<BlobRecord> before = index_->getBlob(kLayer);
  ASSERT_TRUE(before) << before.status().toString();
  EXPECT_EQ(before->last_access_ms, 10) << "touches stay in memory until a flush";

  Status flushed = index_->flushAccessTimes();
  ASSERT_TRUE(flushed.isOk()) << flushed.toString();

  Expected<BlobRecord> touched = index_->getBlob(kLayer);
  ASSERT_TRUE(touched) << touched.status().toString();
  EXPECT_EQ(touched->last_access_ms, 300) << "the latest touch wins";
  EXPECT_EQ(touched->size, 1u);
  EXPECT_EQ(touched->created_ms, 10);
  Expected<BlobRecord> untouched = index_->getBlob(other);
  ASSERT_TRUE(untouched) << untouched.status().toString();
  EXPECT_EQ(untouched->last_access_ms, 500) << "an older touch never moves the time back";
}

TEST_F(IndexTest, FlushSkipsDeletedBlob) {
  ASSERT_TRUE(index_->putBlob(kLayer, {.size = 1}).isOk());
  index_->touchBlob(kLayer, 100);
  index_->touchBlob(sha256Of("never indexed"), 100);
  ASSERT_TRUE(index_->deleteBlob(kLayer).isOk());

  Status flushed = index_->flushAccessTimes();

  ASSERT_TRUE(flushed.isOk()) << flushed.toString();
  EXPECT_EQ(index_->getBlob(kLayer).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(index_->getBlob(sha256Of("never indexed")).status().code(), StatusCode::kNotFound);
}

TEST_F(IndexTest, ConcurrentTouchesKeepLatest) {
  ASSERT_TRUE(index_->putBlob(kLayer, {.size = 1}).isOk());
  constexpr int kThreads = 4;
  constexpr int kTouchesPerThread = 2000;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 1; i <= kTouchesPerThread; ++i) {
        index_->touchBlob(kLayer, int64_t{i} * kThreads + t);
        if (i % 500 == 0) {
          EXPECT_TRUE(index_->flushAccessTimes().isOk());
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  ASSERT_TRUE(index_->flushAccessTimes().isOk());

  Expected<BlobRecord> read = index_->getBlob(kLayer);
  ASSERT_TRUE(read) << read.status().toString();
  EXPECT_EQ(read->last_access_ms, int64_t{kTouchesPerThread} * kThreads + kThreads - 1);
}

TEST_F(IndexTest, CorruptValuesReturnCorruption) {
  const Digest manifest = sha256Of("damaged manifest");
  index_.reset();
  putRaw("blobs", kLayer.str(), "\x01garbage");
  putRaw("blobs", sha256Of("wrong version").str(), "\x09" + std::string(24, 'x'));
  putRaw("manifests", manifest.str(), "\x01\x00\x00"s);
  putRaw("tags", "dockerhub\0library/alpine\0latest"s, "\x01\xff\xff\xff\xff"s);
  putRaw("tags", "dockerhub\0library/alpine\0empty"s, "");
  openIndex();

  struct Case {
    const char* name;
    Status status;
  };
  const std::vector<Case> cases = {
      {"short blob", index_->getBlob(kLayer).status()},
      {"unknown version", index_->getBlob(sha256Of("wrong version")).status()},
      {"short manifest", index_->getManifest(manifest).status()},
      {"short tag", index_->getTag("dockerhub", "library/alpine", "latest").status()},
      {"empty tag value", index_->getTag("dockerhub", "library/alpine", "empty").status()},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    EXPECT_EQ(test_case.status.code(), StatusCode::kCorruption) << test_case.status.toString();
  }

  // A flush skips the damaged blob record instead of failing for every later touch.
  index_->touchBlob(kLayer, 100);
  EXPECT_TRUE(index_->flushAccessTimes().isOk());
}

// Puts one record of each kind for image `i`: a blob, a manifest, a link and a tag.
void putImage(Index::Batch& batch, int i) {
  const std::string suffix = std::to_string(i);
  const Digest manifest = sha256Of("manifest " + suffix);
  batch.putBlob(sha256Of("layer " + suffix), {.size = 100u + i, .created_ms = i});
  batch.putManifest(manifest, {.media_type = "m", .body = "{\"n\":" + suffix + "}"});
  batch.putLink("dockerhub", manifest);
  batch.putTag("dockerhub", "library/app", "v" + suffix,
               {.digest = manifest.str(), .media_type = "m", .confirmed_ms = i});
}

TEST_F(IndexTest, BatchVisibleAfterWrite) {
  constexpr int kImages = 3;
  for (Index::WriteMode mode : {Index::WriteMode::kSynced, Index::WriteMode::kUnsynced}) {
    SCOPED_TRACE(mode == Index::WriteMode::kSynced ? "synced" : "unsynced");
    reopen();
    Index::Batch batch;
    for (int i = 0; i < kImages; ++i) {
      putImage(batch, i);
    }
    EXPECT_EQ(batch.size(), 4u * kImages);

    Status written = index_->write(std::move(batch), mode);

    ASSERT_TRUE(written.isOk()) << written.toString();
    for (int i = 0; i < kImages; ++i) {
      const std::string suffix = std::to_string(i);
      const Digest manifest = sha256Of("manifest " + suffix);
      Expected<BlobRecord> blob = index_->getBlob(sha256Of("layer " + suffix));
      ASSERT_TRUE(blob) << blob.status().toString();
      EXPECT_EQ(blob->size, 100u + i);
      Expected<ManifestRecord> read = index_->getManifest(manifest);
      ASSERT_TRUE(read) << read.status().toString();
      EXPECT_EQ(read->body, "{\"n\":" + suffix + "}");
      EXPECT_TRUE(index_->hasLink("dockerhub", manifest)) << suffix;
      Expected<TagRecord> tag = index_->getTag("dockerhub", "library/app", "v" + suffix);
      ASSERT_TRUE(tag) << tag.status().toString();
      EXPECT_EQ(tag->digest, manifest.str());
    }
  }
}

TEST_F(IndexTest, BatchLaterPutWins) {
  Index::Batch batch;
  batch.putBlob(kLayer, {.size = 1});
  batch.putBlob(kLayer, {.size = 2});

  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  Expected<BlobRecord> read = index_->getBlob(kLayer);
  ASSERT_TRUE(read) << read.status().toString();
  EXPECT_EQ(read->size, 2u);
}

TEST_F(IndexTest, EmptyBatchWritesNothing) {
  Index::Batch batch;
  EXPECT_TRUE(batch.empty());

  Status written = index_->write(std::move(batch), Index::WriteMode::kSynced);

  EXPECT_TRUE(written.isOk()) << written.toString();
}

TEST_F(IndexTest, InvalidPutRejectsWholeBatch) {
  const std::string long_media_type(kMaxRecordStringBytes + 1, 'a');
  const TagRecord valid_tag{.digest = kAlpineManifest.str()};
  struct Case {
    const char* name;
    std::function<void(Index::Batch&)> put;
  };
  const std::vector<Case> cases = {
      {"empty tag", [&](Index::Batch& b) { b.putTag("dockerhub", "library/x", "", valid_tag); }},
      {"NUL in image name",
       [&](Index::Batch& b) { b.putTag("dockerhub", "library\0x"s, "latest", valid_tag); }},
      {"invalid tag digest",
       [](Index::Batch& b) { b.putTag("dockerhub", "library/x", "latest", {.digest = "md5:0"}); }},
      {"oversized tag media type",
       [&](Index::Batch& b) {
         b.putTag("dockerhub", "library/x", "latest",
                  {.digest = kAlpineManifest.str(), .media_type = long_media_type});
       }},
      {"oversized manifest media type",
       [&](Index::Batch& b) { b.putManifest(kAlpineManifest, {.media_type = long_media_type}); }},
      {"empty link repository", [](Index::Batch& b) { b.putLink("", kLayer); }},
      {"NUL in link repository", [](Index::Batch& b) { b.putLink("docker\0hub"s, kLayer); }},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Index::Batch batch;
    putImage(batch, 0);
    test_case.put(batch);
    putImage(batch, 1);
    EXPECT_EQ(batch.status().code(), StatusCode::kInvalidArgument) << batch.status().toString();

    Status written = index_->write(std::move(batch), Index::WriteMode::kSynced);

    EXPECT_EQ(written.code(), StatusCode::kInvalidArgument) << written.toString();
    EXPECT_NE(written.message().find("entry=4 entries=9"), std::string_view::npos)
        << written.toString();
    for (int i : {0, 1}) {
      const std::string suffix = std::to_string(i);
      Status blob = index_->getBlob(sha256Of("layer " + suffix)).status();
      EXPECT_EQ(blob.code(), StatusCode::kNotFound) << suffix << " " << blob.toString();
      Status manifest = index_->getManifest(sha256Of("manifest " + suffix)).status();
      EXPECT_EQ(manifest.code(), StatusCode::kNotFound) << suffix << " " << manifest.toString();
      EXPECT_FALSE(index_->hasLink("dockerhub", sha256Of("manifest " + suffix))) << suffix;
      Status tag = index_->getTag("dockerhub", "library/app", "v" + suffix).status();
      EXPECT_EQ(tag.code(), StatusCode::kNotFound) << suffix << " " << tag.toString();
    }
    EXPECT_EQ(index_->getManifest(kAlpineManifest).status().code(), StatusCode::kNotFound);
  }
}

TEST_F(IndexTest, BatchKeepsFirstRejection) {
  Index::Batch batch;
  batch.putLink("", kLayer);
  batch.putTag("dockerhub", "library/x", "latest", {.digest = "latest"});

  EXPECT_EQ(batch.size(), 2u);
  EXPECT_NE(batch.status().message().find("repository key is empty"), std::string_view::npos)
      << batch.status().toString();
}

TEST_F(IndexTest, SingleRejectedPutKeepsItsMessage) {
  Status put = index_->putLink("", kLayer);

  EXPECT_EQ(put.code(), StatusCode::kInvalidArgument) << put.toString();
  EXPECT_EQ(put.message(), "repository key is empty");
}

// Returns how many table files (*.sst) the index folder `folder` contains.
int countTableFiles(const std::filesystem::path& folder) {
  int count = 0;
  for (const std::filesystem::directory_entry& entry :
       std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() == ".sst") {
      ++count;
    }
  }
  return count;
}

TEST_F(IndexTest, UnsyncedBatchesSurviveReopen) {
  constexpr int kBatches = 5;
  constexpr int kImagesPerBatch = 400;
  for (int b = 0; b < kBatches; ++b) {
    Index::Batch batch;
    for (int i = 0; i < kImagesPerBatch; ++i) {
      putImage(batch, b * kImagesPerBatch + i);
    }
    Status written = index_->write(std::move(batch), Index::WriteMode::kUnsynced);
    ASSERT_TRUE(written.isOk()) << written.toString();
  }

  reopen();

  for (int i : {0, kImagesPerBatch, kBatches * kImagesPerBatch - 1}) {
    const std::string suffix = std::to_string(i);
    EXPECT_TRUE(index_->getBlob(sha256Of("layer " + suffix))) << suffix;
    EXPECT_TRUE(index_->getManifest(sha256Of("manifest " + suffix))) << suffix;
    EXPECT_TRUE(index_->hasLink("dockerhub", sha256Of("manifest " + suffix))) << suffix;
  }
  Expected<std::vector<std::string>> tags = index_->listTags("dockerhub", "library/app");
  ASSERT_TRUE(tags) << tags.status().toString();
  EXPECT_EQ(tags->size(), size_t{kBatches * kImagesPerBatch});
}

TEST_F(IndexTest, FlushMemtablesWritesTableFiles) {
  Index::Batch batch;
  putImage(batch, 0);
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kUnsynced).isOk());
  const std::filesystem::path folder = folder_.path() / "index";
  ASSERT_EQ(countTableFiles(folder), 0) << "a few records stay in the memtables";

  Status flushed = index_->flushMemtables();

  ASSERT_TRUE(flushed.isOk()) << flushed.toString();
  // One table file for each of the four column families, since each contains a record.
  EXPECT_EQ(countTableFiles(folder), 4);
  EXPECT_TRUE(index_->getBlob(sha256Of("layer 0"))) << "records stay readable after a flush";
}

TEST_F(IndexTest, CompactAllLeavesOneTableFilePerFamily) {
  for (int round = 0; round < 2; ++round) {
    Index::Batch batch;
    putImage(batch, round);
    ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kUnsynced).isOk());
    ASSERT_TRUE(index_->flushMemtables().isOk());
  }
  const std::filesystem::path folder = folder_.path() / "index";
  ASSERT_EQ(countTableFiles(folder), 8) << "each flush writes a table file per column family";

  Status compacted = index_->compactAll();

  ASSERT_TRUE(compacted.isOk()) << compacted.toString();
  EXPECT_EQ(countTableFiles(folder), 4);
  for (int round = 0; round < 2; ++round) {
    const std::string suffix = std::to_string(round);
    EXPECT_TRUE(index_->getBlob(sha256Of("layer " + suffix))) << suffix;
    EXPECT_TRUE(index_->getManifest(sha256Of("manifest " + suffix))) << suffix;
    EXPECT_TRUE(index_->hasLink("dockerhub", sha256Of("manifest " + suffix))) << suffix;
    EXPECT_TRUE(index_->getTag("dockerhub", "library/app", "v" + suffix)) << suffix;
  }
}

TEST_F(IndexTest, WriteLeavesBatchEmpty) {
  Index::Batch batch;
  batch.putBlob(kLayer, {.size = 1});

  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  EXPECT_TRUE(batch.empty());  // NOLINT(bugprone-use-after-move): write() documents the state
  EXPECT_TRUE(batch.status().isOk());
  batch.putBlob(kAlpineManifest, {.size = 2});
  EXPECT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());
  EXPECT_TRUE(index_->getBlob(kAlpineManifest));
}

TEST_F(IndexTest, RejectedBatchLeavesBatchEmpty) {
  Index::Batch batch;
  batch.putLink("", kLayer);

  EXPECT_FALSE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  EXPECT_TRUE(batch.empty());  // NOLINT(bugprone-use-after-move): write() documents the state
  EXPECT_TRUE(batch.status().isOk()) << batch.status().toString();
}

TEST_F(IndexTest, FlushOfEmptyIndexSucceeds) {
  Status flushed = index_->flushMemtables();

  EXPECT_TRUE(flushed.isOk()) << flushed.toString();
  EXPECT_EQ(countTableFiles(folder_.path() / "index"), 0);
}

TEST_F(IndexTest, LocalContentScopedByImage) {
  Index::Batch batch;
  batch.putLocalBlob("builds", "team/app", kLayer, {.added_ms = 7});
  batch.putLocalManifest("builds", "team/app", kAlpineManifest, {.added_ms = 8});
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  Expected<ContentRecord> blob = index_->getLocalBlob("builds", "team/app", kLayer);
  ASSERT_TRUE(blob) << blob.status().toString();
  EXPECT_EQ(blob->added_ms, 7);
  Expected<ContentRecord> manifest =
      index_->getLocalManifest("builds", "team/app", kAlpineManifest);
  ASSERT_TRUE(manifest) << manifest.status().toString();
  EXPECT_EQ(manifest->added_ms, 8);

  // Another image, a longer name, another repository and the other kind do not see them.
  EXPECT_EQ(index_->getLocalBlob("builds", "team/app2", kLayer).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(index_->getLocalBlob("builds", "team", kLayer).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(index_->getLocalBlob("other", "team/app", kLayer).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(index_->getLocalManifest("builds", "team/app", kLayer).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(index_->getLocalBlob("", "team/app", kLayer).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(IndexTest, DeletesInBatch) {
  Index::Batch setup;
  setup.putLocalBlob("builds", "app", kLayer, {.added_ms = 1});
  setup.putLocalManifest("builds", "app", kAlpineManifest, {.added_ms = 1});
  setup.putTag("builds", "app", "v1", {.digest = kAlpineManifest.str()});
  setup.putTag("builds", "app", "v2", {.digest = kAlpineManifest.str()});
  ASSERT_TRUE(index_->write(std::move(setup), Index::WriteMode::kSynced).isOk());

  Index::Batch batch;
  batch.deleteTag("builds", "app", "v1");
  batch.deleteLocalBlob("builds", "app", kLayer);
  batch.deleteLocalManifest("builds", "app", kAlpineManifest);
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  EXPECT_FALSE(index_->getLocalBlob("builds", "app", kLayer));
  EXPECT_FALSE(index_->getLocalManifest("builds", "app", kAlpineManifest));
  Expected<std::vector<std::string>> tags = index_->listTags("builds", "app");
  ASSERT_TRUE(tags);
  EXPECT_EQ(*tags, std::vector<std::string>{"v2"});
}

TEST_F(IndexTest, DeleteWithInvalidKeyRejectsBatch) {
  Index::Batch batch;
  batch.putLocalBlob("builds", "app", kLayer, {.added_ms = 1});
  batch.deleteTag("builds", "app", std::string("bad\0tag", 7));

  Status written = index_->write(std::move(batch), Index::WriteMode::kSynced);
  EXPECT_EQ(written.code(), StatusCode::kInvalidArgument) << written.toString();
  EXPECT_FALSE(index_->getLocalBlob("builds", "app", kLayer));
}

TEST_F(IndexTest, ListImagesPagesDistinctNames) {
  Index::Batch batch;
  // Two manifests for one image, a name that extends another, and another repository.
  for (const char* name : {"team/app", "team/app2", "team/app-x", "base", "zeta"}) {
    batch.putLocalManifest("builds", name, kAlpineManifest, {.added_ms = 1});
  }
  batch.putLocalManifest("builds", "team/app", kLayer, {.added_ms = 1});
  batch.putLocalManifest("builds2", "other", kAlpineManifest, {.added_ms = 1});
  // A blob alone does not make an image.
  batch.putLocalBlob("builds", "blob-only", kLayer, {.added_ms = 1});
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  Expected<std::vector<std::string>> all = index_->listImages("builds", "", 100);
  ASSERT_TRUE(all) << all.status().toString();
  EXPECT_EQ(*all,
            (std::vector<std::string>{"base", "team/app", "team/app-x", "team/app2", "zeta"}));

  Expected<std::vector<std::string>> first = index_->listImages("builds", "", 2);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, (std::vector<std::string>{"base", "team/app"}));
  Expected<std::vector<std::string>> next = index_->listImages("builds", "team/app", 2);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, (std::vector<std::string>{"team/app-x", "team/app2"}));
  Expected<std::vector<std::string>> last = index_->listImages("builds", "team/app2", 2);
  ASSERT_TRUE(last);
  EXPECT_EQ(*last, std::vector<std::string>{"zeta"});
  Expected<std::vector<std::string>> none = index_->listImages("builds3", "", 2);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST_F(IndexTest, ForEachLocalManifestOfOneImage) {
  Index::Batch batch;
  batch.putLocalManifest("builds", "app", kLayer, {.added_ms = 1});
  batch.putLocalManifest("builds", "app", kAlpineManifest, {.added_ms = 2});
  batch.putLocalManifest("builds", "app2", kAlpineManifest, {.added_ms = 3});
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  std::vector<Digest> seen;
  Status status = index_->forEachLocalManifest("builds", "app",
                                               [&](const Digest& digest, const ContentRecord&) {
                                                 seen.push_back(digest);
                                                 return true;
                                               });
  ASSERT_TRUE(status.isOk()) << status.toString();
  std::vector<Digest> expected = {kAlpineManifest, kLayer};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(seen, expected);
}

TEST_F(IndexTest, TagChangesNewestFirst) {
  for (int64_t time_ms : {5, 7, 7}) {
    Index::Batch batch;
    batch.putTagChange("builds", "app", "v1",
                       {.time_ms = time_ms,
                        .old_digest = "",
                        .new_digest = kLayer.str(),
                        .cause = "push" + std::to_string(time_ms)});
    ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());
  }
  Index::Batch other;
  other.putTagChange("builds", "app", "v10", {.time_ms = 9, .cause = "other tag"});
  other.putTagChange("builds", "app2", "v1", {.time_ms = 9, .cause = "other image"});
  ASSERT_TRUE(index_->write(std::move(other), Index::WriteMode::kSynced).isOk());
  reopen();

  Expected<std::vector<TagChangeRecord>> changes =
      index_->listTagChanges("builds", "app", "v1", 10);
  ASSERT_TRUE(changes) << changes.status().toString();
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[0].time_ms, 7);
  EXPECT_EQ((*changes)[1].time_ms, 7);
  EXPECT_EQ((*changes)[2].time_ms, 5);
  EXPECT_EQ((*changes)[2].cause, "push5");
  EXPECT_EQ((*changes)[2].new_digest, kLayer.str());

  Expected<std::vector<TagChangeRecord>> newest = index_->listTagChanges("builds", "app", "v1", 1);
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->size(), 1u);
}

TEST_F(IndexTest, PinnedTagRoundTrip) {
  EXPECT_EQ(index_->getPinnedTag("hub", "library/alpine", "latest").status().code(),
            StatusCode::kNotFound);
  Index::Batch pin;
  pin.putPinnedTag("hub", "library/alpine", "latest", {.digest = kAlpineManifest.str()});
  ASSERT_TRUE(index_->write(std::move(pin), Index::WriteMode::kSynced).isOk());
  // Found again after a restart too, when the pin was already stored at open.
  reopen();
  Expected<TagRecord> pinned = index_->getPinnedTag("hub", "library/alpine", "latest");
  ASSERT_TRUE(pinned) << pinned.status().toString();
  EXPECT_EQ(pinned->digest, kAlpineManifest.str());

  Index::Batch invalid;
  invalid.putPinnedTag("hub", "library/alpine", "latest", {.digest = "not a digest"});
  EXPECT_EQ(index_->write(std::move(invalid), Index::WriteMode::kSynced).code(),
            StatusCode::kInvalidArgument);

  Index::Batch unpin;
  unpin.deletePinnedTag("hub", "library/alpine", "latest");
  ASSERT_TRUE(index_->write(std::move(unpin), Index::WriteMode::kSynced).isOk());
  EXPECT_FALSE(index_->getPinnedTag("hub", "library/alpine", "latest"));
}

TEST_F(IndexTest, ReferrersScopedBySubject) {
  const Digest subject = sha256Of("subject");
  Index::Batch batch;
  batch.putReferrer("builds", "app", subject, kLayer);
  batch.putReferrer("builds", "app", subject, kAlpineManifest);
  batch.putReferrer("builds", "app", kLayer, kAlpineManifest);
  batch.putReferrer("builds", "app2", subject, kLayer);
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  Expected<std::vector<Digest>> referrers = index_->listReferrers("builds", "app", subject);
  ASSERT_TRUE(referrers) << referrers.status().toString();
  std::vector<Digest> expected = {kLayer, kAlpineManifest};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(*referrers, expected);

  Index::Batch removal;
  removal.deleteReferrer("builds", "app", subject, kLayer);
  ASSERT_TRUE(index_->write(std::move(removal), Index::WriteMode::kSynced).isOk());
  Expected<std::vector<Digest>> remaining = index_->listReferrers("builds", "app", subject);
  ASSERT_TRUE(remaining);
  EXPECT_EQ(*remaining, std::vector<Digest>{kAlpineManifest});
}

TEST_F(IndexTest, HeldBlobsSurviveReopen) {
  EXPECT_FALSE(index_->isBlobHeld(kLayer));
  Index::Batch batch;
  batch.putHeldBlob(kLayer);
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());
  reopen();

  EXPECT_TRUE(index_->isBlobHeld(kLayer));
  EXPECT_FALSE(index_->isBlobHeld(kAlpineManifest));
}

TEST_F(IndexTest, LocalContentScansCoverEveryImage) {
  Index::Batch batch;
  batch.putLocalBlob("builds", "app", kLayer, {.added_ms = 1});
  batch.putLocalBlob("builds", "team/app", kLayer, {.added_ms = 2});
  batch.putLocalBlob("other", "app", kAlpineManifest, {.added_ms = 3});
  batch.putLocalManifest("builds", "app", kAlpineManifest, {.added_ms = 4});
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  std::vector<std::string> blobs;
  Status scanned = index_->forEachLocalBlob([&](std::string_view repository, std::string_view name,
                                                const Digest& digest, const ContentRecord& record) {
    blobs.push_back(std::string(repository) + " " + std::string(name) + " " + digest.str() + " " +
                    std::to_string(record.added_ms));
    return true;
  });
  ASSERT_TRUE(scanned.isOk()) << scanned.toString();
  EXPECT_EQ(blobs, (std::vector<std::string>{"builds app " + kLayer.str() + " 1",
                                             "builds team/app " + kLayer.str() + " 2",
                                             "other app " + kAlpineManifest.str() + " 3"}));

  std::vector<std::string> manifests;
  scanned = index_->forEachLocalManifest([&](std::string_view repository, std::string_view name,
                                             const Digest& digest, const ContentRecord&) {
    manifests.push_back(std::string(repository) + " " + std::string(name) + " " + digest.str());
    return true;
  });
  ASSERT_TRUE(scanned.isOk()) << scanned.toString();
  EXPECT_EQ(manifests, std::vector<std::string>{"builds app " + kAlpineManifest.str()});
}

TEST_F(IndexTest, LocalContentScanSkipsDamagedKey) {
  index_.reset();
  putRaw("local_blobs", "builds\0no-digest"s, encodeContentRecord({.added_ms = 4}));
  putRaw("local_blobs", "builds\0app\0"s + kLayer.str(), encodeContentRecord({.added_ms = 5}));
  openIndex();

  std::vector<Digest> seen;
  Status scanned = index_->forEachLocalBlob(
      [&](std::string_view, std::string_view, const Digest& digest, const ContentRecord&) {
        seen.push_back(digest);
        return true;
      });
  ASSERT_TRUE(scanned.isOk()) << scanned.toString();
  EXPECT_EQ(seen, std::vector<Digest>{kLayer});
}

TEST_F(IndexTest, HeldLinkAndReferrerScans) {
  const Digest subject = sha256Of("subject");
  Index::Batch batch;
  batch.putHeldBlob(kLayer);
  batch.putLink("dockerhub", kAlpineManifest);
  batch.putLink("quay", kLayer);
  batch.putReferrer("builds", "team/app", subject, kAlpineManifest);
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  std::vector<Digest> held;
  ASSERT_TRUE(index_
                  ->forEachHeldBlob([&](const Digest& digest) {
                    held.push_back(digest);
                    return true;
                  })
                  .isOk());
  EXPECT_EQ(held, std::vector<Digest>{kLayer});

  std::vector<std::string> links;
  ASSERT_TRUE(index_
                  ->forEachLink([&](std::string_view repository, const Digest& digest) {
                    links.push_back(std::string(repository) + " " + digest.str());
                    return true;
                  })
                  .isOk());
  EXPECT_EQ(links, (std::vector<std::string>{"dockerhub " + kAlpineManifest.str(),
                                             "quay " + kLayer.str()}));

  std::vector<std::string> referrers;
  ASSERT_TRUE(index_
                  ->forEachReferrer([&](std::string_view repository, std::string_view name,
                                        const Digest& referred, const Digest& referrer) {
                    referrers.push_back(std::string(repository) + " " + std::string(name) + " " +
                                        referred.str() + " " + referrer.str());
                    return true;
                  })
                  .isOk());
  EXPECT_EQ(referrers, std::vector<std::string>{"builds team/app " + subject.str() + " " +
                                                kAlpineManifest.str()});
}

TEST_F(IndexTest, BatchDeletesBlobManifestAndHold) {
  ASSERT_TRUE(index_->putBlob(kLayer, {.size = 3, .created_ms = 1, .last_access_ms = 1}).isOk());
  ASSERT_TRUE(index_->putManifest(kAlpineManifest, {.media_type = "m", .body = "{}"}).isOk());
  Index::Batch hold;
  hold.putHeldBlob(kLayer);
  ASSERT_TRUE(index_->write(std::move(hold), Index::WriteMode::kSynced).isOk());

  Index::Batch batch;
  batch.deleteBlob(kLayer);
  batch.deleteHeldBlob(kLayer);
  batch.deleteManifest(kAlpineManifest);
  ASSERT_TRUE(index_->write(std::move(batch), Index::WriteMode::kSynced).isOk());

  EXPECT_EQ(index_->getBlob(kLayer).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(index_->isBlobHeld(kLayer));
  EXPECT_EQ(index_->getManifest(kAlpineManifest).status().code(), StatusCode::kNotFound);
}

TEST_F(IndexTest, SecondOpenOfSameFolderFails) {
  Expected<std::unique_ptr<Index>> second = Index::open(folder_.path() / "index");

  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), StatusCode::kIOError) << second.status().toString();
}

TEST_F(IndexTest, OpenFailsWhenFolderIsAFile) {
  std::filesystem::path file = folder_.path() / "plain-file";
  writeFile(file, "x");

  Expected<std::unique_ptr<Index>> opened = Index::open(file);

  ASSERT_FALSE(opened);
  EXPECT_NE(opened.status().code(), StatusCode::kOk);
}

}  // namespace
}  // namespace outpost::storage
