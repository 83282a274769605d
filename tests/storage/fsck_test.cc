#include "storage/fsck.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "storage/blob_store.h"
#include "tests/storage/indexed_blob.h"
#include "tests/storage/temp_folder.h"

namespace outpost::storage {
namespace {

namespace fs = std::filesystem;
using testing::readFile;
using testing::TempFolder;
using testing::writeFile;

constexpr int64_t kNowMs = 1'700'000'123'456;
constexpr int64_t kNowSeconds = kNowMs / 1000;

class FsckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<std::unique_ptr<BlobStore>> store = BlobStore::open(dataDir());
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(store).value();
    openIndex();
  }

  void openIndex() {
    Expected<std::unique_ptr<Index>> index = Index::open(dataDir() / "index");
    ASSERT_TRUE(index) << index.status().toString();
    index_ = std::move(index).value();
  }

  fs::path dataDir() const { return folder_.path() / "data"; }

  // Commits `content` through BlobStore and indexes it, as the server does.
  Digest addBlob(std::string_view content) {
    return testing::addIndexedBlob(*store_, *index_, content);
  }

  // Runs fsck and returns its findings. The report goes to last_report_.
  std::vector<FsckFinding> runChecked(const FsckOptions& options) {
    std::vector<FsckFinding> findings;
    Expected<FsckReport> report = runFsck(
        dataDir(), *index_, options,
        [&findings](const FsckFinding& finding) { findings.push_back(finding); }, clock_);
    EXPECT_TRUE(report) << report.status().toString();
    if (report) {
      last_report_ = *report;
    }
    return findings;
  }

  std::vector<FsckFinding> check() { return runChecked(FsckOptions{}); }
  std::vector<FsckFinding> repair() { return runChecked(FsckOptions{.repair = true}); }

  // The quarantine path fsck picks for `path` (absolute, under the data folder) at kNowMs.
  fs::path quarantinePathFor(const fs::path& path) const {
    fs::path target = dataDir() / "quarantine" / path.lexically_relative(dataDir());
    target += "." + std::to_string(kNowSeconds);
    return target;
  }

  TempFolder folder_;
  ManualClock clock_{kNowMs};
  std::unique_ptr<BlobStore> store_;
  std::unique_ptr<Index> index_;
  FsckReport last_report_;
};

TEST_F(FsckTest, CleanStoreReportsNothing) {
  addBlob("first blob");
  addBlob("second blob");

  std::vector<FsckFinding> findings = runChecked(FsckOptions{.verify_digests = true});

  EXPECT_TRUE(findings.empty()) << formatFsckFinding(findings.front());
  EXPECT_EQ(last_report_.indexed_blobs, 2u);
  EXPECT_EQ(last_report_.blob_files, 2u);
  EXPECT_EQ(last_report_.blob_bytes, 21u);
  EXPECT_TRUE(last_report_.isClean());
}

TEST_F(FsckTest, EmptyDataFolderReportsNothing) {
  fs::remove_all(dataDir() / "blobs");

  std::vector<FsckFinding> findings = check();

  EXPECT_TRUE(findings.empty());
  EXPECT_TRUE(last_report_.isClean());
}

TEST_F(FsckTest, MissingFileRemovesIndexEntry) {
  Digest digest = addBlob("gone");
  fs::remove(store_->pathFor(digest));

  std::vector<FsckFinding> findings = check();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kMissingFile);
  EXPECT_EQ(findings[0].digest, digest);
  EXPECT_EQ(findings[0].path, store_->pathFor(digest));
  EXPECT_EQ(findings[0].action, FsckAction::kNone);
  EXPECT_TRUE(index_->getBlob(digest)) << "a check without repair changed the index";
  EXPECT_FALSE(last_report_.isClean());

  findings = repair();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].action, FsckAction::kRemovedIndexEntry);
  EXPECT_EQ(index_->getBlob(digest).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(last_report_.isClean());

  EXPECT_TRUE(check().empty());
}

TEST_F(FsckTest, UnindexedValidFileIsAdopted) {
  const std::string content = "committed, never indexed";
  Digest digest = sha256Of(content);
  fs::path path = store_->pathFor(digest);
  writeFile(path, content);
  struct timespec times[2] = {{1'600'000'000, 250'000'000}, {1'600'000'000, 250'000'000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);

  std::vector<FsckFinding> findings = check();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kUnindexedFile);
  EXPECT_EQ(findings[0].digest, digest);
  EXPECT_EQ(findings[0].action, FsckAction::kNone);

  findings = repair();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].action, FsckAction::kAdopted);
  Expected<BlobRecord> record = index_->getBlob(digest);
  ASSERT_TRUE(record) << record.status().toString();
  EXPECT_EQ(record->size, content.size());
  EXPECT_EQ(record->created_ms, 1'600'000'000'250);
  EXPECT_EQ(record->last_access_ms, 1'600'000'000'250);
  EXPECT_EQ(readFile(path), content);
  EXPECT_EQ(last_report_.adopted_bytes, content.size());

  EXPECT_TRUE(runChecked(FsckOptions{.verify_digests = true}).empty());
}

TEST_F(FsckTest, UnindexedWrongContentIsQuarantined) {
  Digest digest = sha256Of("the expected content");
  fs::path path = store_->pathFor(digest);
  writeFile(path, "other bytes");

  std::vector<FsckFinding> findings = repair();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kUnindexedFile);
  EXPECT_EQ(findings[0].action, FsckAction::kQuarantined);
  EXPECT_EQ(findings[0].quarantine_path, quarantinePathFor(path));
  EXPECT_EQ(readFile(quarantinePathFor(path)), "other bytes");
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(index_->getBlob(digest).status().code(), StatusCode::kNotFound);

  EXPECT_TRUE(check().empty());
}

TEST_F(FsckTest, SizeMismatchIsQuarantined) {
  const std::string content = "twelve bytes";
  Digest digest = addBlob(content);
  ASSERT_TRUE(index_->putBlob(digest, BlobRecord{content.size() + 1, 1000, 2000}).isOk());
  fs::path path = store_->pathFor(digest);

  std::vector<FsckFinding> findings = check();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kSizeMismatch);
  EXPECT_EQ(findings[0].file_bytes, content.size());
  EXPECT_EQ(findings[0].action, FsckAction::kNone);
  EXPECT_TRUE(fs::exists(path));

  findings = repair();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].action, FsckAction::kQuarantined);
  EXPECT_EQ(index_->getBlob(digest).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(readFile(quarantinePathFor(path)), content);
  EXPECT_EQ(last_report_.quarantined_bytes, content.size());

  EXPECT_TRUE(check().empty());
}

TEST_F(FsckTest, FlippedByteNeedsVerifyDigests) {
  const std::string content = "bytes that will rot";
  Digest digest = addBlob(content);
  fs::path path = store_->pathFor(digest);
  std::string rotten = content;
  rotten[3] ^= 0x01;
  fs::permissions(path, fs::perms::owner_write, fs::perm_options::add);
  writeFile(path, rotten);

  EXPECT_TRUE(check().empty()) << "a check without verify_digests read the content";

  std::vector<FsckFinding> findings = runChecked(FsckOptions{.verify_digests = true});
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kDigestMismatch);
  EXPECT_EQ(findings[0].digest, digest);
  EXPECT_EQ(findings[0].detail, "content hashes to " + sha256Of(rotten).str());
  EXPECT_EQ(findings[0].action, FsckAction::kNone);

  findings = runChecked(FsckOptions{.repair = true, .verify_digests = true});
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].action, FsckAction::kQuarantined);
  EXPECT_EQ(index_->getBlob(digest).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(readFile(quarantinePathFor(path)), rotten);

  EXPECT_TRUE(runChecked(FsckOptions{.verify_digests = true}).empty());
}

TEST_F(FsckTest, StrayFilesAreQuarantined) {
  std::string hex = std::string(sha256Of("misplaced").hex());
  std::string wrong_shard = hex[0] == 'a' ? "bb" : "aa";
  struct Case {
    const char* name;
    std::string relative_path;
  };
  const std::vector<Case> cases = {
      {"unknown shard folder", "blobs/sha256/zz/notes.txt"},
      {"file in blobs", "blobs/README"},
      {"unknown algorithm", "blobs/md5/ab/abcdef"},
      {"file in algorithm folder", "blobs/sha256/stray"},
      {"short name", "blobs/sha256/ab/ab12"},
      {"upper-case hex", "blobs/sha256/ab/AB" + std::string(62, 'C')},
      {"valid digest in wrong shard", "blobs/sha256/" + wrong_shard + "/" + hex},
      {"nested folder", "blobs/sha256/ab/sub/file"},
      {"name with a space", "blobs/sha256/ab/two words"},
  };

  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    fs::path path = dataDir() / test_case.relative_path;
    writeFile(path, test_case.name);

    std::vector<FsckFinding> findings = check();
    ASSERT_EQ(findings.size(), 1u);
    EXPECT_EQ(findings[0].kind, FsckKind::kStrayFile);
    EXPECT_FALSE(findings[0].digest.has_value());
    EXPECT_EQ(findings[0].path, path);
    EXPECT_EQ(findings[0].action, FsckAction::kNone);

    findings = repair();
    ASSERT_EQ(findings.size(), 1u);
    EXPECT_EQ(findings[0].action, FsckAction::kQuarantined);
    EXPECT_FALSE(fs::exists(path));
    EXPECT_EQ(readFile(quarantinePathFor(path)), test_case.name);

    EXPECT_TRUE(check().empty());
  }
}

TEST_F(FsckTest, StrayFolderIsRemovedWhenEmptied) {
  writeFile(dataDir() / "blobs/sha256/zz/a", "a");
  writeFile(dataDir() / "blobs/sha256/zz/deeper/b", "b");

  std::vector<FsckFinding> findings = repair();

  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].path, dataDir() / "blobs/sha256/zz/a");
  EXPECT_EQ(findings[1].path, dataDir() / "blobs/sha256/zz/deeper/b");
  EXPECT_FALSE(fs::exists(dataDir() / "blobs/sha256/zz"));
  EXPECT_EQ(readFile(quarantinePathFor(dataDir() / "blobs/sha256/zz/deeper/b")), "b");
}

TEST_F(FsckTest, SymlinkAtAddressIsStray) {
  const std::string content = "linked";
  Digest digest = addBlob(content);
  fs::path path = store_->pathFor(digest);
  fs::path moved = folder_.path() / "elsewhere";
  fs::rename(path, moved);
  fs::create_symlink(moved, path);

  std::vector<FsckFinding> findings = check();

  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].kind, FsckKind::kMissingFile);
  EXPECT_EQ(findings[1].kind, FsckKind::kStrayFile);
  EXPECT_EQ(findings[1].path, path);
}

TEST_F(FsckTest, QuarantineKeepsEarlierCopy) {
  fs::path path = dataDir() / "blobs/sha256/zz/notes.txt";
  writeFile(path, "first");
  ASSERT_EQ(repair().size(), 1u);
  writeFile(path, "second");

  std::vector<FsckFinding> findings = repair();

  ASSERT_EQ(findings.size(), 1u);
  fs::path second_target = quarantinePathFor(path);
  second_target += ".1";
  EXPECT_EQ(findings[0].quarantine_path, second_target);
  EXPECT_EQ(readFile(quarantinePathFor(path)), "first");
  EXPECT_EQ(readFile(second_target), "second");
}

TEST_F(FsckTest, DamagedRecordIsRemoved) {
  const std::string content = "record rots, file is fine";
  Digest digest = addBlob(content);
  // Overwrite the record with a value that does not decode, through RocksDB itself.
  index_.reset();
  {
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const char* name :
         {"default", "blobs", "manifests", "tags", "links", "local_blobs", "local_manifests",
          "held_blobs", "tag_history", "pinned_tags", "referrers"}) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status opened = rocksdb::DB::Open(rocksdb::DBOptions(), (dataDir() / "index").string(),
                                               descriptors, &handles, &raw);
    ASSERT_TRUE(opened.ok()) << opened.ToString();
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], digest.str(), "\x01short").ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], "not-a-digest", "x").ok());
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
    }
  }
  openIndex();

  std::vector<FsckFinding> findings = check();
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].kind, FsckKind::kDamagedRecord);
  EXPECT_FALSE(findings[0].digest.has_value());
  EXPECT_EQ(findings[1].kind, FsckKind::kDamagedRecord);
  EXPECT_EQ(findings[1].digest, digest);

  // The record goes, and the walk that follows adopts the intact file again.
  findings = repair();
  ASSERT_EQ(findings.size(), 3u);
  EXPECT_EQ(findings[0].action, FsckAction::kNone);
  EXPECT_EQ(findings[1].action, FsckAction::kRemovedIndexEntry);
  EXPECT_EQ(findings[2].kind, FsckKind::kUnindexedFile);
  EXPECT_EQ(findings[2].action, FsckAction::kAdopted);
  Expected<BlobRecord> record = index_->getBlob(digest);
  ASSERT_TRUE(record) << record.status().toString();
  EXPECT_EQ(record->size, content.size());
}

TEST_F(FsckTest, UnreadableFileCountsAsError) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root reads a file without read permission";
  }
  Digest digest = addBlob("unreadable");
  fs::path path = store_->pathFor(digest);
  fs::permissions(path, fs::perms::none);

  std::vector<FsckFinding> findings = runChecked(FsckOptions{.verify_digests = true});
  fs::permissions(path, fs::perms::owner_read);

  EXPECT_TRUE(findings.empty());
  EXPECT_EQ(last_report_.errors, 1u);
  EXPECT_FALSE(last_report_.isClean());
}

// Index::forEachBlob is the index pass of fsck. Its early stop is not used by fsck itself.
TEST_F(FsckTest, IndexForEachBlobStopsEarly) {
  addBlob("one");
  addBlob("two");
  addBlob("three");

  int visited = 0;
  Status iterated = index_->forEachBlob([&visited](const Digest&, const BlobRecord&) {
    ++visited;
    return visited < 2;
  });

  EXPECT_TRUE(iterated.isOk()) << iterated.toString();
  EXPECT_EQ(visited, 2);
}

TEST_F(FsckTest, LockedIndexFailsClearly) {
  // index_ keeps the index open and locked, as a running server does.
  Expected<FsckReport> report = runFsck(dataDir(), FsckOptions{.repair = true}, nullptr, clock_);

  ASSERT_FALSE(report);
  EXPECT_NE(report.status().message().find("stop it and run fsck again"), std::string_view::npos)
      << report.status().toString();
}

TEST_F(FsckTest, OpensIndexItselfWhenUnlocked) {
  Digest digest = addBlob("present");
  fs::remove(store_->pathFor(digest));
  index_.reset();

  int finding_count = 0;
  Expected<FsckReport> report = runFsck(
      dataDir(), FsckOptions{}, [&finding_count](const FsckFinding&) { ++finding_count; }, clock_);

  ASSERT_TRUE(report) << report.status().toString();
  EXPECT_EQ(finding_count, 1);
  EXPECT_EQ(report->findings_by_kind[static_cast<size_t>(FsckKind::kMissingFile)], 1u);
}

TEST_F(FsckTest, MissingDataFolderIsNotCreated) {
  fs::path absent = folder_.path() / "absent";

  Expected<FsckReport> report = runFsck(absent, FsckOptions{}, nullptr, clock_);

  ASSERT_FALSE(report);
  EXPECT_EQ(report.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(absent));
}

TEST(FsckFormatTest, FindingLine) {
  FsckFinding finding;
  finding.kind = FsckKind::kSizeMismatch;
  finding.digest = sha256Of("x");
  finding.path = "/data/blobs/sha256/2d/" + std::string(sha256Of("x").hex());
  finding.action = FsckAction::kQuarantined;
  finding.quarantine_path = "/data/quarantine/q";

  EXPECT_EQ(formatFsckFinding(finding), "kind=size_mismatch digest=" + sha256Of("x").str() +
                                            " path=" + finding.path.string() +
                                            " action=quarantined quarantine=/data/quarantine/q");
}

TEST(FsckFormatTest, QuotesUnusualPaths) {
  struct Case {
    const char* name;
    std::string path;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"space", "/d/a b", "path=\"/d/a b\""},
      {"newline", "/d/a\nb", "path=\"/d/a\\nb\""},
      {"quote", "/d/a\"b", "path=\"/d/a\\\"b\""},
      {"control byte", std::string("/d/a\x01", 5), "path=\"/d/a\\x01\""},
      {"plain", "/d/ab", "path=/d/ab"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    FsckFinding finding;
    finding.kind = FsckKind::kStrayFile;
    finding.path = test_case.path;

    std::string line = formatFsckFinding(finding);

    EXPECT_EQ(line, "kind=stray_file digest=- " + test_case.expected + " action=none");
  }
}

TEST(FsckFormatTest, SummaryCountsEachKind) {
  FsckReport report;
  report.findings_by_kind[static_cast<size_t>(FsckKind::kMissingFile)] = 2;
  report.findings_by_kind[static_cast<size_t>(FsckKind::kStrayFile)] = 1;
  report.repaired = 1;

  std::string line = formatFsckSummary(report);

  EXPECT_TRUE(line.starts_with("summary findings=3 repaired=1 remaining=2 ")) << line;
  EXPECT_NE(line.find(" missing_file=2 "), std::string::npos) << line;
  EXPECT_NE(line.find(" stray_file=1 "), std::string::npos) << line;
  EXPECT_NE(line.find(" digest_mismatch=0 "), std::string::npos) << line;
}

// A data folder with a second disk tier, as storage.lower_tiers configures it.
class FsckTiersTest : public FsckTest {
 protected:
  void SetUp() override {
    fs::create_directories(slowDir());
    Expected<std::unique_ptr<BlobStore>> store = BlobStore::open({dataDir(), slowDir()});
    ASSERT_TRUE(store) << store.status().toString();
    store_ = std::move(store).value();
    openIndex();
  }

  fs::path slowDir() const { return folder_.path() / "slow"; }

  std::vector<FsckFinding> runTiers(bool with_repair) {
    return runChecked(FsckOptions{.repair = with_repair, .lower_tier_roots = {slowDir()}});
  }

  // Moves a committed blob to the second tier, as a finished demotion leaves it.
  void demote(const Digest& digest) {
    ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());
    ASSERT_TRUE(index_->setBlobTier(digest, 1).hasValue());
    ASSERT_TRUE(store_->removeFromTier(digest, 0).isOk());
  }
};

TEST_F(FsckTiersTest, DemotedBlobIsClean) {
  Digest digest = addBlob("demoted blob");
  demote(digest);

  std::vector<FsckFinding> findings = runTiers(false);

  EXPECT_TRUE(findings.empty()) << formatFsckFinding(findings.front());
  EXPECT_EQ(last_report_.blob_files, 1u);
}

TEST_F(FsckTiersTest, RecordOfWrongTierIsUpdated) {
  Digest digest = addBlob("moved by hand");
  ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());
  ASSERT_TRUE(store_->removeFromTier(digest, 0).isOk());

  std::vector<FsckFinding> findings = runTiers(true);

  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kWrongTier);
  EXPECT_EQ(findings[0].action, FsckAction::kUpdatedIndexEntry);
  EXPECT_EQ(findings[0].path, store_->pathFor(digest, 1));
  EXPECT_EQ(index_->getBlob(digest)->tier, 1);
  EXPECT_TRUE(runTiers(false).empty());
}

TEST_F(FsckTiersTest, DuplicateInOtherTierIsRemoved) {
  Digest digest = addBlob("copied, not yet removed");
  ASSERT_TRUE(store_->copyToTier(digest, 0, 1).isOk());

  std::vector<FsckFinding> findings = runTiers(true);

  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kDuplicateFile);
  EXPECT_EQ(findings[0].action, FsckAction::kRemovedFile);
  EXPECT_EQ(findings[0].path, store_->pathFor(digest, 1));
  EXPECT_TRUE(fs::exists(store_->pathFor(digest, 0)));
  EXPECT_FALSE(fs::exists(store_->pathFor(digest, 1)));
  EXPECT_THAT(formatFsckFinding(findings[0]), ::testing::HasSubstr("kind=duplicate_file"));
}

TEST_F(FsckTiersTest, UnindexedFileOfLowerTierIsAdoptedThere) {
  Digest digest = addBlob("lost its record");
  demote(digest);
  ASSERT_TRUE(index_->deleteBlob(digest).isOk());

  std::vector<FsckFinding> findings = runTiers(true);

  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kUnindexedFile);
  EXPECT_EQ(findings[0].action, FsckAction::kAdopted);
  EXPECT_EQ(index_->getBlob(digest)->tier, 1);
}

TEST_F(FsckTiersTest, DamagedLowerTierFileQuarantined) {
  Digest digest = addBlob("will be damaged");
  demote(digest);
  writeFile(store_->pathFor(digest, 1), "short");

  std::vector<FsckFinding> findings = runTiers(true);

  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kSizeMismatch);
  EXPECT_EQ(findings[0].action, FsckAction::kQuarantined);
  EXPECT_EQ(findings[0].quarantine_path.string().rfind((slowDir() / "quarantine").string(), 0), 0u)
      << findings[0].quarantine_path;
  EXPECT_FALSE(index_->getBlob(digest));
}

TEST_F(FsckTiersTest, RecordOfUnconfiguredTierIsMissing) {
  Digest digest = addBlob("tier removed from the configuration");
  demote(digest);

  // Checked without the second tier, as after removing it from the configuration.
  std::vector<FsckFinding> findings = runChecked(FsckOptions{});

  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, FsckKind::kMissingFile);
  EXPECT_THAT(findings[0].detail, ::testing::HasSubstr("tier 1, which is not configured"));
}

}  // namespace
}  // namespace outpost::storage
