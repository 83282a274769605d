// ImageBuilder: test images built without Docker, pushed with skopeo, read back from the
// registry.
//
// Images are built with umoci in an OCI image layout: `umoci new`, one `umoci insert` per layer
// (a file of random bytes, so that layers are incompressible and unique per build), then
// `umoci config` for the platform. umoci cannot make an index, so buildIndex() writes the
// index blob itself and tags it in the layout's index.json. push() copies a layout tag to a
// registry with `skopeo copy --all` and returns what the registry then serves, read back with
// `skopeo inspect --raw`, with every digest checked against the bytes.
//
// Typical use:
//   OUTPOST_ASSERT_OK_AND_ASSIGN(auto skopeo, Skopeo::create());
//   OUTPOST_ASSERT_OK_AND_ASSIGN(auto builder, ImageBuilder::create(*skopeo));
//   OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
//                                builder->pushImage(registry->endpoint(), "library/app:v1"));
//   // image.manifest_digest, image.layers[i].digest and .size are what a pull must return.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "proxy/media_types.h"
#include "tests/integration/registry_endpoint.h"
#include "tests/integration/skopeo.h"
#include "tests/integration/temp_dir.h"

namespace outpost::integration {

inline constexpr std::string_view kOciManifestType = proxy::kOciImageManifest;
inline constexpr std::string_view kOciIndexType = proxy::kOciImageIndex;
inline constexpr std::string_view kDockerManifestType = proxy::kDockerManifestV2;
inline constexpr std::string_view kDockerManifestListType = proxy::kDockerManifestList;

// An Accept header value listing the four manifest types above, as a client that takes any
// image sends it.
std::string manifestAcceptHeader();

// One layer: a file of `size_bytes` random bytes at `path` inside the image.
struct LayerSpec {
  std::string path;
  uint64_t size_bytes = 0;
};

struct ImageSpec {
  std::string os = "linux";
  std::string architecture = "amd64";
  // Three layers of 3, 2 and 1 MiB.
  std::vector<LayerSpec> layers = {{"/data/layer-1.bin", 3u << 20},
                                   {"/data/layer-2.bin", 2u << 20},
                                   {"/data/layer-3.bin", 1u << 20}};
};

enum class ManifestFormat {
  // The layout's own OCI manifest or index, pushed byte for byte.
  kOci,
  // Converted by skopeo to Docker image manifest v2 schema 2 (`--format v2s2`).
  kDockerV2Schema2,
};

struct BlobDescriptor {
  std::string media_type;
  // "sha256:<hex>".
  std::string digest;
  uint64_t size = 0;
};

// An image or index as the registry serves it after a push.
struct PushedImage {
  // "127.0.0.1:PORT/repository:tag", or "...@sha256:..." for an image inside an index.
  std::string reference;
  std::string repository;
  // The tag pushed, or empty for an image inside an index.
  std::string tag;
  // The manifest's mediaType field, or the OCI type implied by its fields when it has none
  // (umoci writes OCI manifests without mediaType).
  std::string media_type;
  // sha256 over raw_manifest, which is also what skopeo reported for the push.
  std::string manifest_digest;
  std::string raw_manifest;
  // "os/architecture" for an image inside an index, else empty.
  std::string platform;
  // Absent for an index.
  std::optional<BlobDescriptor> config;
  std::vector<BlobDescriptor> layers;
  // The images of an index in index order, or empty for an image.
  std::vector<PushedImage> platform_images;

  bool isIndex() const { return !platform_images.empty(); }
  // The config and layers of this image and of every platform image.
  std::vector<BlobDescriptor> allBlobs() const;
  // The platform image for "os/architecture", or nullptr.
  const PushedImage* findPlatform(std::string_view platform_name) const;
};

// Reads `repository` at `reference` (a tag, or a digest "sha256:...") from `endpoint` with
// `skopeo inspect --raw`, and the images of an index by digest. Fails when a digest in a
// manifest is malformed or a child manifest does not hash to the digest its index names.
Expected<PushedImage> readPushedImage(const Skopeo& skopeo, const RegistryEndpoint& endpoint,
                                      std::string_view repository, std::string_view reference);

class ImageBuilder {
  // Restricts the public constructor to create(), because std::make_unique needs it public.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Creates an empty OCI layout in a new temporary folder. `skopeo` must outlive the builder.
  static Expected<std::unique_ptr<ImageBuilder>> create(const Skopeo& skopeo);

  ImageBuilder(PrivateTag, const Skopeo& skopeo, TempDir dir);

  // Builds an image as `layout_tag` in the layout, replacing any image of that tag.
  Status buildImage(const std::string& layout_tag, const ImageSpec& spec);

  // Writes an OCI index over images built before, taking each platform from its config, and
  // tags it `layout_tag`.
  Status buildIndex(const std::string& layout_tag, const std::vector<std::string>& image_tags);

  // Pushes `layout_tag` (an image or an index with all its images) to `endpoint` as
  // "repository:tag", then reads it back. Fails when the digest skopeo reports for the push
  // differs from the digest of the bytes read back.
  Expected<PushedImage> push(const std::string& layout_tag, const RegistryEndpoint& endpoint,
                             std::string_view repository_tag,
                             ManifestFormat format = ManifestFormat::kOci);

  // Builds a new image from `spec` and pushes it.
  Expected<PushedImage> pushImage(const RegistryEndpoint& endpoint, std::string_view repository_tag,
                                  const ImageSpec& spec = {},
                                  ManifestFormat format = ManifestFormat::kOci);

  // Builds one image per spec (by default linux/amd64 and linux/arm64), an OCI index over
  // them, and pushes it.
  Expected<PushedImage> pushIndex(const RegistryEndpoint& endpoint, std::string_view repository_tag,
                                  const std::vector<ImageSpec>& platforms = defaultPlatforms());

  // The OCI layout folder, for `oci:<layoutDir()>:<tag>` references.
  std::string layoutDir() const { return dir_.file("layout"); }

  static std::vector<ImageSpec> defaultPlatforms();

 private:
  Status runUmoci(std::vector<std::string> arguments) const;
  Status writeRandomFile(const std::string& path, uint64_t size_bytes) const;
  std::string nextLayoutTag(std::string_view kind);

  const Skopeo* skopeo_;
  TempDir dir_;
  int layout_tag_count_ = 0;
};

}  // namespace outpost::integration
