// Blobs and manifests that the checks push: random bytes, OCI image manifests, artifact
// manifests with a subject, and image indexes, each with its sha256 digest.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::conformance {

inline constexpr std::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndexType = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfigType = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayerType = "application/vnd.oci.image.layer.v1.tar+gzip";
// The empty descriptor of the OCI image specification 1.1: the two bytes "{}".
inline constexpr std::string_view kOciEmptyType = "application/vnd.oci.empty.v1+json";
// Sent as Accept on manifest requests: the OCI and Docker manifest and index types.
inline constexpr std::string_view kManifestAccept =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

struct Blob {
  std::string bytes;
  std::string digest;
};

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  // Set in index entries only.
  std::string artifact_type;
  std::map<std::string, std::string> annotations;
};

struct Manifest {
  std::string bytes;
  std::string digest;
  std::string media_type;

  // The descriptor that names this manifest in an index or a subject field.
  Descriptor descriptor() const { return {media_type, digest, bytes.size(), {}, {}}; }
};

struct ImageManifestFields {
  Descriptor config;
  std::vector<Descriptor> layers;
  std::optional<Descriptor> subject;
  // Left out of the JSON when empty.
  std::string artifact_type;
  std::map<std::string, std::string> annotations;
};

// Makes the content of one run. The random source is seeded from std::random_device, so two
// runs against one registry push different blobs and manifests.
class ContentFactory {
 public:
  ContentFactory();

  // Eight lower-case hex characters that tags and annotations of this run carry.
  const std::string& runId() const { return run_id_; }

  // Returns a blob of `size` random bytes.
  Blob randomBlob(size_t size);
  // Returns a small OCI image configuration, different on each call.
  Blob imageConfig();
  // Returns the digest of 64 random bytes, which no registry has content for.
  std::string unknownDigest();
  // Returns a random UUID in its text form, for upload ids that no registry issued.
  std::string randomUuid();

  // Returns an OCI image manifest. The JSON is indented, so a registry that re-serializes
  // manifests changes their bytes and digest, which the pull checks detect.
  static Manifest imageManifest(const ImageManifestFields& fields);
  // Returns an OCI image index that lists `manifests`.
  static Manifest imageIndex(const std::vector<Descriptor>& manifests);

 private:
  std::mt19937_64 random_;
  std::string run_id_;
};

// Returns the descriptor of `blob` with `media_type`.
Descriptor describe(const Blob& blob, std::string media_type);

// Returns the empty blob "{}" of the OCI image specification 1.1.
Blob emptyJsonBlob();

}  // namespace outpost::conformance
