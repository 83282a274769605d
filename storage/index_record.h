// The records that Index stores, and their binary encoding.
//
// Every value starts with a format version byte (kIndexRecordVersion), so that a later layout can
// be recognized and migrated. Integers are fixed-width little-endian. Strings inside a record are
// a u32 length and the bytes, except the last field of a manifest, which runs to the end.
//
//   BlobRecord v1      u8 version, u64 size, i64 created_ms, i64 last_access_ms   (25 bytes)
//                      [, u8 tier]   present only for tier 1 and below                (26 bytes)
//   ManifestRecord v1  u8 version, i64 created_ms, u32 n, media_type[n], body[rest]
//   TagRecord v1       u8 version, i64 confirmed_ms, u32 n, digest[n], u32 m, media_type[m]
//   ContentRecord v1   u8 version, i64 added_ms                                    (9 bytes)
//   TagChangeRecord v1 u8 version, i64 time_ms, u32 n, old_digest[n], u32 m, new_digest[m],
//                      u32 k, cause[k]
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
  // The disk tier that contains the file: 0 for the data folder, 1 and on for the lower tiers
  // in configuration order.
  uint8_t tier = 0;

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

// That an image of a local repository contains a blob or a manifest, since when.
struct ContentRecord {
  int64_t added_ms = 0;

  friend bool operator==(const ContentRecord&, const ContentRecord&) = default;
};

// One change of a tag: what it pointed to before and after, and why. An empty digest means
// the tag did not exist (before a first push) or no longer exists (after a delete).
struct TagChangeRecord {
  int64_t time_ms = 0;
  std::string old_digest;
  std::string new_digest;
  // "push", "delete", "upstream", "rollback", "pin" or "unpin".
  std::string cause;

  friend bool operator==(const TagChangeRecord&, const TagChangeRecord&) = default;
};

std::string encodeBlobRecord(const BlobRecord& record);
Expected<BlobRecord> decodeBlobRecord(std::string_view value);

std::string encodeManifestRecord(const ManifestRecord& record);
Expected<ManifestRecord> decodeManifestRecord(std::string_view value);

std::string encodeTagRecord(const TagRecord& record);
Expected<TagRecord> decodeTagRecord(std::string_view value);

std::string encodeTagChangeRecord(const TagChangeRecord& record);
Expected<TagChangeRecord> decodeTagChangeRecord(std::string_view value);

std::string encodeContentRecord(const ContentRecord& record);
Expected<ContentRecord> decodeContentRecord(std::string_view value);

}  // namespace outpost::storage
