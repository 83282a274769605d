// Checks of a pushed manifest: its JSON shape, its media type, and the content it references.
//
// The rules follow the OCI image specification v1.1 (image manifest and image index) and the
// Docker image manifest v2 schema 2, which has the same shape under other media types:
//   - the body is a JSON object with "schemaVersion" 2;
//   - an image manifest has a "config" descriptor and a "layers" array of descriptors, an index
//     a "manifests" array of descriptors;
//   - a descriptor is an object with a string "mediaType", a valid "digest" and a non-negative
//     integer "size";
//   - "subject" is an optional descriptor of the manifest that this one refers to, and
//     "artifactType" an optional string;
//   - a "mediaType" field, when present, must equal the media type the request declared.
// Schema 1 manifests are not accepted for push: they are deprecated and carry no descriptors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"

namespace outpost::proxy {

struct BlobReference {
  Digest digest;
  uint64_t size = 0;
  // A layer that registries need not hold (Docker foreign layers, OCI non-distributable
  // layers): clients fetch it from its "urls", so its existence is not checked.
  bool is_external = false;
};

struct ManifestReferences {
  // The manifest's media type, one of the pushable types of media_types.h.
  std::string media_type;
  // Config and layers of an image manifest.
  std::vector<BlobReference> blobs;
  // Children of an index.
  std::vector<Digest> manifests;
  std::optional<Digest> subject;
  // "artifactType", or for an image manifest without one the config's media type, as the
  // referrers API reports it.
  std::string artifact_type;
};

// Parses a manifest pushed with Content-Type `content_type` (parameters allowed; empty when the
// request had none). Fails with kInvalidArgument and a message for the client when the body is
// not valid JSON, has an unknown or mismatching media type, or breaks the rules above.
Expected<ManifestReferences> checkPushedManifest(std::string_view content_type,
                                                 std::string_view body);

}  // namespace outpost::proxy
