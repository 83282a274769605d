#include "storage/index_record.h"

#include <cassert>
#include <utility>

namespace outpost::storage {
namespace {

constexpr size_t kBlobRecordBytes = 1 + 8 + 8 + 8;
// A blob record of a lower disk tier carries one more byte, its tier.
constexpr size_t kTieredBlobRecordBytes = kBlobRecordBytes + 1;
constexpr size_t kContentRecordBytes = 1 + 8;

void appendU32(std::string& out, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

void appendU64(std::string& out, uint64_t value) {
  for (int shift = 0; shift < 64; shift += 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

void appendI64(std::string& out, int64_t value) { appendU64(out, static_cast<uint64_t>(value)); }

void appendString(std::string& out, std::string_view text) {
  assert(text.size() <= kMaxRecordStringBytes);
  appendU32(out, static_cast<uint32_t>(text.size()));
  out.append(text);
}

// Reads fields from the front of a value. Each read fails once the value is too short, and
// every later read fails too, so a decoder may check ok() once at the end.
class FieldReader {
 public:
  explicit FieldReader(std::string_view value) : rest_(value) {}

  uint8_t readU8() {
    std::string_view bytes = take(1);
    return bytes.empty() ? 0 : static_cast<uint8_t>(bytes[0]);
  }

  uint32_t readU32() { return static_cast<uint32_t>(readLittleEndian(4)); }
  uint64_t readU64() { return readLittleEndian(8); }
  int64_t readI64() { return static_cast<int64_t>(readLittleEndian(8)); }

  std::string readString() {
    uint32_t length = readU32();
    return std::string(take(length));
  }

  std::string readRest() { return std::string(std::exchange(rest_, std::string_view())); }

  bool ok() const { return ok_; }
  size_t remaining() const { return rest_.size(); }

 private:
  uint64_t readLittleEndian(size_t byte_count) {
    std::string_view bytes = take(byte_count);
    uint64_t value = 0;
    for (size_t i = 0; i < bytes.size(); ++i) {
      value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
    }
    return value;
  }

  std::string_view take(size_t byte_count) {
    if (!ok_ || rest_.size() < byte_count) {
      ok_ = false;
      return {};
    }
    std::string_view bytes = rest_.substr(0, byte_count);
    rest_.remove_prefix(byte_count);
    return bytes;
  }

  std::string_view rest_;
  bool ok_ = true;
};

Status checkVersion(std::string_view kind, std::string_view value) {
  if (value.empty()) {
    return corruption(std::string(kind) + " record is empty");
  }
  auto version = static_cast<uint8_t>(value[0]);
  if (version != kIndexRecordVersion) {
    return corruption(std::string(kind) + " record has unknown format version " +
                      std::to_string(version));
  }
  return Status::ok();
}

Status truncated(std::string_view kind, std::string_view value) {
  return corruption(std::string(kind) + " record is truncated at " + std::to_string(value.size()) +
                    " bytes");
}

// Checks that `reader` found every field of `value` and nothing after the last one.
Status checkFullyRead(std::string_view kind, const FieldReader& reader, std::string_view value) {
  if (!reader.ok()) {
    return truncated(kind, value);
  }
  if (reader.remaining() != 0) {
    return corruption(std::string(kind) + " record has " + std::to_string(reader.remaining()) +
                      " unexpected bytes after its last field");
  }
  return Status::ok();
}

}  // namespace

std::string encodeBlobRecord(const BlobRecord& record) {
  std::string out;
  out.reserve(kBlobRecordBytes);
  out.push_back(static_cast<char>(kIndexRecordVersion));
  appendU64(out, record.size);
  appendI64(out, record.created_ms);
  appendI64(out, record.last_access_ms);
  if (record.tier != 0) {
    out.push_back(static_cast<char>(record.tier));
  }
  return out;
}

Expected<BlobRecord> decodeBlobRecord(std::string_view value) {
  OUTPOST_RETURN_IF_ERROR(checkVersion("blob", value));
  if (value.size() != kBlobRecordBytes && value.size() != kTieredBlobRecordBytes) {
    return corruption("blob record has " + std::to_string(value.size()) + " bytes, expected " +
                      std::to_string(kBlobRecordBytes) + " or " +
                      std::to_string(kTieredBlobRecordBytes));
  }

  FieldReader reader(value);
  reader.readU8();
  BlobRecord record;
  record.size = reader.readU64();
  record.created_ms = reader.readI64();
  record.last_access_ms = reader.readI64();
  if (reader.remaining() > 0) {
    record.tier = reader.readU8();
    if (record.tier == 0) {
      return corruption("blob record names tier 0 in its optional tier byte");
    }
  }
  return record;
}

std::string encodeManifestRecord(const ManifestRecord& record) {
  std::string out;
  out.reserve(1 + 8 + 4 + record.media_type.size() + record.body.size());
  out.push_back(static_cast<char>(kIndexRecordVersion));
  appendI64(out, record.created_ms);
  appendString(out, record.media_type);
  out.append(record.body);
  return out;
}

Expected<ManifestRecord> decodeManifestRecord(std::string_view value) {
  OUTPOST_RETURN_IF_ERROR(checkVersion("manifest", value));

  FieldReader reader(value);
  reader.readU8();
  ManifestRecord record;
  record.created_ms = reader.readI64();
  record.media_type = reader.readString();
  if (!reader.ok()) {
    return truncated("manifest", value);
  }
  record.body = reader.readRest();
  return record;
}

std::string encodeTagRecord(const TagRecord& record) {
  std::string out;
  out.reserve(1 + 8 + 4 + record.digest.size() + 4 + record.media_type.size());
  out.push_back(static_cast<char>(kIndexRecordVersion));
  appendI64(out, record.confirmed_ms);
  appendString(out, record.digest);
  appendString(out, record.media_type);
  return out;
}

Expected<TagRecord> decodeTagRecord(std::string_view value) {
  OUTPOST_RETURN_IF_ERROR(checkVersion("tag", value));

  FieldReader reader(value);
  reader.readU8();
  TagRecord record;
  record.confirmed_ms = reader.readI64();
  record.digest = reader.readString();
  record.media_type = reader.readString();
  OUTPOST_RETURN_IF_ERROR(checkFullyRead("tag", reader, value));
  return record;
}

std::string encodeTagChangeRecord(const TagChangeRecord& record) {
  std::string out;
  out.reserve(1 + 8 + 12 + record.old_digest.size() + record.new_digest.size() +
              record.cause.size());
  out.push_back(static_cast<char>(kIndexRecordVersion));
  appendI64(out, record.time_ms);
  appendString(out, record.old_digest);
  appendString(out, record.new_digest);
  appendString(out, record.cause);
  return out;
}

Expected<TagChangeRecord> decodeTagChangeRecord(std::string_view value) {
  OUTPOST_RETURN_IF_ERROR(checkVersion("tag change", value));
  FieldReader reader(value);
  reader.readU8();
  TagChangeRecord record;
  record.time_ms = reader.readI64();
  record.old_digest = reader.readString();
  record.new_digest = reader.readString();
  record.cause = reader.readString();
  OUTPOST_RETURN_IF_ERROR(checkFullyRead("tag change", reader, value));
  return record;
}

std::string encodeContentRecord(const ContentRecord& record) {
  std::string out;
  out.reserve(kContentRecordBytes);
  out.push_back(static_cast<char>(kIndexRecordVersion));
  appendI64(out, record.added_ms);
  return out;
}

Expected<ContentRecord> decodeContentRecord(std::string_view value) {
  OUTPOST_RETURN_IF_ERROR(checkVersion("content", value));
  if (value.size() != kContentRecordBytes) {
    return corruption("content record has " + std::to_string(value.size()) + " bytes, expected " +
                      std::to_string(kContentRecordBytes));
  }
  FieldReader reader(value);
  reader.readU8();
  return ContentRecord{.added_ms = reader.readI64()};
}

}  // namespace outpost::storage
