// The records that Index stores, and their binary encoding.
//
// Every value starts with a format version byte (kIndexRecordVersion), so that a later layout can
// be recognized and migrated. Integers are fixed-width little-endian. Strings inside a record are
// a u32 length and the bytes, except the last field of a manifest, which runs to the end.
//
//   BlobRecord v1      u8 version, u64 size, i64 created_ms, i64 last_access_ms   (25 bytes)
//   ManifestRecord v1  u8 version, i64 created_ms, u32 n, media_type[n], body[rest]
//   TagRecord v1       u8 version, i64 confirmed_ms, u32 n, digest[n], u32 m, media_type[m]
//
// A binary layout rather than JSON keeps the manifest body byte for byte, whatever bytes it holds.
// Decoding checks every length and fails with kCorruption instead of reading past the value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace outpost::storage {

inline constexpr uint8_t kIndexRecordVersion = 1;
// Maximum length of a media type or a tag's digest. Index rejects longer ones with
// kInvalidArgument. The manifest body has no limit here.
inline constexpr size_t kMaxRecordStringBytes = 64 * 1024;

struct BlobRecord {
  uint64_t size = 0;
  int64_t created_ms = 0;
  int64_t last_access_ms = 0;

  friend bool operator==(const BlobRecord&, const BlobRecord&) = default;
};

struct ManifestRecord {
  std::string media_type;
  // The manifest exactly as received. Its digest is over these bytes, so it is never
  // re-serialized or trimmed.
  std::string body;
  int64_t created_ms = 0;

  friend bool operator==(const ManifestRecord&, const ManifestRecord&) = default;
};

struct TagRecord {
  std::string digest;  // "sha256:<hex>", the manifest the tag points to
  std::string media_type;
  int64_t confirmed_ms = 0;  // when the upstream last confirmed this mapping

  friend bool operator==(const TagRecord&, const TagRecord&) = default;
};

std::string encodeBlobRecord(const BlobRecord& record);
Expected<BlobRecord> decodeBlobRecord(std::string_view value);

std::string encodeManifestRecord(const ManifestRecord& record);
Expected<ManifestRecord> decodeManifestRecord(std::string_view value);

std::string encodeTagRecord(const TagRecord& record);
Expected<TagRecord> decodeTagRecord(std::string_view value);

}  // namespace outpost::storage
