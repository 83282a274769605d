// Parsing of image manifests and indexes as a pulling client reads them: which blobs an image
// has, and which image of an index fits a platform.
//
// Formats, from the OCI image specification (manifest.md, image-index.md, descriptor.md) and
// Docker's image manifest v2 schema 2, whose manifest list has the same shape as an OCI index:
//   image  {"config": descriptor, "layers": [descriptor, ...]}
//   index  {"manifests": [descriptor with optional "platform": {"os", "architecture"}, ...]}
//   descriptor {"mediaType", "digest", "size", ...}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "proxy/media_types.h"

namespace outpost::load {

inline constexpr std::string_view kOciManifestType = proxy::kOciImageManifest;
inline constexpr std::string_view kOciIndexType = proxy::kOciImageIndex;
inline constexpr std::string_view kDockerManifestType = proxy::kDockerManifestV2;
inline constexpr std::string_view kDockerManifestListType = proxy::kDockerManifestList;

// The Accept value that lists the four types above, indexes first, as container runtimes send.
std::string manifestAcceptValue();

struct Descriptor {
  std::string media_type;
  Digest digest;
  uint64_t size = 0;
  // The platform of an index entry; empty when the entry has none.
  std::string os;
  std::string architecture;
};

struct ImageManifest {
  // The config first, then the layers in manifest order.
  std::vector<Descriptor> blobs;
};

struct ImageIndex {
  std::vector<Descriptor> manifests;
};

// Parses a manifest body. The kind comes from `content_type` when it names one of the four
// types, else from the body's mediaType field, else from which of "manifests" and "layers" the
// body has (umoci writes OCI manifests without mediaType). Fails with kInvalidArgument for
// malformed JSON, a missing or ill-typed field or an invalid digest, and with kOutOfRange for
// another manifest type, such as Docker schema 1.
Expected<std::variant<ImageManifest, ImageIndex>> parseManifest(std::string_view body,
                                                                std::string_view content_type);

// Returns the entry of `index` for `os`/`architecture`, else the first entry. Precondition:
// the index has at least one entry, which parseManifest guarantees.
const Descriptor& selectPlatform(const ImageIndex& index, std::string_view os,
                                 std::string_view architecture);

}  // namespace outpost::load
