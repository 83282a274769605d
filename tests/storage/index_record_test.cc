#include "storage/index_record.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace outpost::storage {
namespace {

using namespace std::string_literals;

TEST(IndexRecordTest, BlobRecordLayout) {
  BlobRecord record{.size = 0x0102, .created_ms = 3, .last_access_ms = -1};
  std::string encoded = encodeBlobRecord(record);

  const std::string expected =
      "\x01"s                               // version
      "\x02\x01\x00\x00\x00\x00\x00\x00"s   // size
      "\x03\x00\x00\x00\x00\x00\x00\x00"s   // created_ms
      "\xff\xff\xff\xff\xff\xff\xff\xff"s;  // last_access_ms
  EXPECT_EQ(encoded, expected);
}

TEST(IndexRecordTest, BlobRecordRoundTrip) {
  const std::vector<BlobRecord> records = {
      {},
      {.size = 1234, .created_ms = 1'700'000'000'000, .last_access_ms = 1'700'000'000'500},
      {.size = std::numeric_limits<uint64_t>::max(),
       .created_ms = std::numeric_limits<int64_t>::min(),
       .last_access_ms = std::numeric_limits<int64_t>::max()},
  };
  for (const BlobRecord& record : records) {
    SCOPED_TRACE(record.size);
    Expected<BlobRecord> decoded = decodeBlobRecord(encodeBlobRecord(record));
    ASSERT_TRUE(decoded) << decoded.status().toString();
    EXPECT_EQ(*decoded, record);
  }
}

TEST(IndexRecordTest, BlobRecordOfLowerTierRoundTrips) {
  BlobRecord first_tier{4096, 10, 20};
  BlobRecord lower_tier{4096, 10, 20, 3};

  std::string first_value = encodeBlobRecord(first_tier);
  std::string lower_value = encodeBlobRecord(lower_tier);

  // A record of the first tier keeps the layout that servers without tiers read.
  EXPECT_EQ(first_value.size(), 25u);
  ASSERT_EQ(lower_value.size(), 26u);
  EXPECT_EQ(lower_value.back(), '\x03');
  Expected<BlobRecord> decoded = decodeBlobRecord(lower_value);
  ASSERT_TRUE(decoded) << decoded.status().toString();
  EXPECT_EQ(*decoded, lower_tier);
  Expected<BlobRecord> decoded_first = decodeBlobRecord(first_value);
  ASSERT_TRUE(decoded_first) << decoded_first.status().toString();
  EXPECT_EQ(decoded_first->tier, 0);
}

TEST(IndexRecordTest, ManifestRecordRoundTrip) {
  const std::vector<ManifestRecord> records = {
      {},
      {.media_type = "application/vnd.oci.image.manifest.v1+json",
       .body = "{\"schemaVersion\": 2}\n",
       .created_ms = 42},
      // Bytes that are not UTF-8 and contain NUL survive unchanged.
      {.media_type = "", .body = "\x00\xff\xfe\x00 \n\n"s, .created_ms = -7},
  };
  for (const ManifestRecord& record : records) {
    SCOPED_TRACE(record.media_type);
    Expected<ManifestRecord> decoded = decodeManifestRecord(encodeManifestRecord(record));
    ASSERT_TRUE(decoded) << decoded.status().toString();
    EXPECT_EQ(*decoded, record);
  }
}

TEST(IndexRecordTest, TagRecordRoundTrip) {
  const std::vector<TagRecord> records = {
      {},
      {.digest = "sha256:" + std::string(64, 'a'),
       .media_type = "application/vnd.docker.distribution.manifest.list.v2+json",
       .confirmed_ms = 1'700'000'000'000},
  };
  for (const TagRecord& record : records) {
    SCOPED_TRACE(record.digest);
    Expected<TagRecord> decoded = decodeTagRecord(encodeTagRecord(record));
    ASSERT_TRUE(decoded) << decoded.status().toString();
    EXPECT_EQ(*decoded, record);
  }
}

TEST(IndexRecordTest, ContentRecordRoundTrip) {
  std::string encoded = encodeContentRecord({.added_ms = 0x0102});
  EXPECT_EQ(encoded, "\x01\x02\x01\x00\x00\x00\x00\x00\x00"s);
  Expected<ContentRecord> decoded = decodeContentRecord(encoded);
  ASSERT_TRUE(decoded) << decoded.status().toString();
  EXPECT_EQ(decoded->added_ms, 0x0102);

  for (const std::string& damaged :
       {""s, "\x02\x00\x00\x00\x00\x00\x00\x00\x00"s, "\x01\x00"s, encoded + "x"}) {
    EXPECT_EQ(decodeContentRecord(damaged).status().code(), StatusCode::kCorruption)
        << testing::PrintToString(damaged);
  }
}

TEST(IndexRecordTest, TagChangeRecordRoundTrip) {
  const std::vector<TagChangeRecord> records = {
      {},
      {.time_ms = 1'700'000'000'000,
       .old_digest = "sha256:" + std::string(64, 'a'),
       .new_digest = "",
       .cause = "delete"},
  };
  for (const TagChangeRecord& record : records) {
    std::string encoded = encodeTagChangeRecord(record);
    Expected<TagChangeRecord> decoded = decodeTagChangeRecord(encoded);
    ASSERT_TRUE(decoded) << decoded.status().toString();
    EXPECT_EQ(*decoded, record);
    EXPECT_EQ(decodeTagChangeRecord(encoded.substr(0, encoded.size() - 1)).status().code(),
              StatusCode::kCorruption);
    EXPECT_EQ(decodeTagChangeRecord(encoded + "x").status().code(), StatusCode::kCorruption);
  }
}

TEST(IndexRecordTest, DecodeRejectsDamagedValues) {
  const std::string blob = encodeBlobRecord({.size = 5, .created_ms = 6, .last_access_ms = 7});
  const std::string manifest =
      encodeManifestRecord({.media_type = "type", .body = "body", .created_ms = 1});
  const std::string tag =
      encodeTagRecord({.digest = "sha256:x", .media_type = "type", .confirmed_ms = 1});
  std::string version_two = blob;
  version_two[0] = '\x02';
  // A media type length of 0xffffffff, far past the end of the value.
  std::string huge_length = manifest.substr(0, 9) + "\xff\xff\xff\xff"s + "type";

  struct Case {
    const char* name;
    std::string value;
    char kind;  // 'b' blob, 'm' manifest, 't' tag
  };
  const std::vector<Case> cases = {
      {"empty blob", "", 'b'},
      {"empty manifest", "", 'm'},
      {"empty tag", "", 't'},
      {"unknown version", version_two, 'b'},
      {"short blob", blob.substr(0, blob.size() - 1), 'b'},
      {"long blob", blob + "xy", 'b'},
      {"blob naming tier 0 in its tier byte", blob + std::string(1, '\0'), 'b'},
      {"version byte only", "\x01", 'm'},
      {"manifest cut in created_ms", manifest.substr(0, 5), 'm'},
      {"manifest cut in media type", manifest.substr(0, 15), 'm'},
      {"manifest length past end", huge_length, 'm'},
      {"tag cut in digest", tag.substr(0, 14), 't'},
      {"tag cut in media type", tag.substr(0, tag.size() - 1), 't'},
      {"tag with trailing bytes", tag + "zz", 't'},
      {"garbage", "not a record at all", 't'},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Status status;
    switch (test_case.kind) {
      case 'b':
        status = decodeBlobRecord(test_case.value).status();
        break;
      case 'm':
        status = decodeManifestRecord(test_case.value).status();
        break;
      default:
        status = decodeTagRecord(test_case.value).status();
        break;
    }
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.toString();
  }
}

}  // namespace
}  // namespace outpost::storage
