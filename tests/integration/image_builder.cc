#include "tests/integration/image_builder.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include "base/digest.h"
#include "base/unique_fd.h"
#include "tests/integration/process.h"

namespace outpost::integration {
namespace {

using nlohmann::json;

constexpr const char* kRefNameAnnotation = "org.opencontainers.image.ref.name";

Expected<json> parseJson(std::string_view text, std::string_view source_name) {
  json value = json::parse(text, nullptr, false);
  if (value.is_discarded() || !value.is_object()) {
    return corruption("invalid JSON in " + std::string(source_name));
  }
  return value;
}

// Returns the string at `key`, or "" when it is missing or not a string.
std::string stringField(const json& object, std::string_view key) {
  auto field = object.find(std::string(key));
  if (field == object.end() || !field->is_string()) {
    return "";
  }
  return field->get<std::string>();
}

std::string refNameOf(const json& descriptor) {
  auto annotations = descriptor.find("annotations");
  if (annotations == descriptor.end() || !annotations->is_object()) {
    return "";
  }
  return stringField(*annotations, kRefNameAnnotation);
}

// Reads a descriptor ({mediaType, digest, size}) and checks that its digest is well formed.
Expected<BlobDescriptor> parseDescriptor(const json& value, std::string_view where) {
  if (!value.is_object() || !value.contains("digest") || !value["digest"].is_string() ||
      !value.contains("size") || !value["size"].is_number_unsigned()) {
    return corruption("descriptor without digest or size in " + std::string(where));
  }
  BlobDescriptor descriptor;
  descriptor.media_type = stringField(value, "mediaType");
  descriptor.digest = value["digest"].get<std::string>();
  descriptor.size = value["size"].get<uint64_t>();
  OUTPOST_RETURN_IF_ERROR(Digest::parse(descriptor.digest).status());
  return descriptor;
}

// The OCI image specification (manifest.md, image-index.md) makes mediaType optional. Without
// it, a document with `manifests` is an index and one with `config` is an image manifest.
std::string mediaTypeOf(const json& manifest) {
  std::string declared = stringField(manifest, "mediaType");
  if (!declared.empty()) {
    return declared;
  }
  if (manifest.contains("manifests")) {
    return std::string(kOciIndexType);
  }
  return std::string(kOciManifestType);
}

std::string platformOf(const json& descriptor) {
  if (!descriptor.contains("platform") || !descriptor["platform"].is_object()) {
    return "";
  }
  const json& platform = descriptor["platform"];
  std::string name = stringField(platform, "os") + "/" + stringField(platform, "architecture");
  std::string variant = stringField(platform, "variant");
  return variant.empty() ? name : name + "/" + variant;
}

// Splits "repository:tag" at the last colon that follows the last slash.
Expected<std::pair<std::string, std::string>> splitRepositoryTag(std::string_view text) {
  size_t slash = text.rfind('/');
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || (slash != std::string_view::npos && colon < slash) ||
      colon == 0 || colon + 1 == text.size()) {
    return invalidArgument("expected \"repository:tag\", got \"" + std::string(text) + "\"");
  }
  return std::make_pair(std::string(text.substr(0, colon)), std::string(text.substr(colon + 1)));
}

std::string trimmed(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.pop_back();
  }
  return text;
}

std::string blobPath(const std::string& layout_dir, std::string_view digest) {
  return layout_dir + "/blobs/sha256/" + std::string(digest.substr(digest.find(':') + 1));
}

}  // namespace

std::string manifestAcceptHeader() {
  return std::string(kOciIndexType) + ", " + std::string(kOciManifestType) + ", " +
         std::string(kDockerManifestListType) + ", " + std::string(kDockerManifestType);
}

std::vector<BlobDescriptor> PushedImage::allBlobs() const {
  std::vector<BlobDescriptor> blobs;
  if (config.has_value()) {
    blobs.push_back(*config);
  }
  blobs.insert(blobs.end(), layers.begin(), layers.end());
  for (const PushedImage& image : platform_images) {
    std::vector<BlobDescriptor> child_blobs = image.allBlobs();
    blobs.insert(blobs.end(), child_blobs.begin(), child_blobs.end());
  }
  return blobs;
}

const PushedImage* PushedImage::findPlatform(std::string_view platform_name) const {
  for (const PushedImage& image : platform_images) {
    if (image.platform == platform_name) {
      return &image;
    }
  }
  return nullptr;
}

Expected<PushedImage> readPushedImage(const Skopeo& skopeo, const RegistryEndpoint& endpoint,
                                      std::string_view repository, std::string_view reference) {
  bool is_digest = reference.starts_with("sha256:");
  std::string repository_reference =
      std::string(repository) + (is_digest ? "@" : ":") + std::string(reference);
  OUTPOST_ASSIGN_OR_RETURN(std::string raw, skopeo.inspectRaw(endpoint, repository_reference));
  OUTPOST_ASSIGN_OR_RETURN(json manifest, parseJson(raw, repository_reference));

  PushedImage image;
  image.reference = endpoint.host_port + "/" + repository_reference;
  image.repository = std::string(repository);
  image.tag = is_digest ? "" : std::string(reference);
  image.media_type = mediaTypeOf(manifest);
  image.manifest_digest = sha256Of(raw).str();
  image.raw_manifest = std::move(raw);

  if (manifest.contains("manifests")) {
    if (!manifest["manifests"].is_array() || manifest["manifests"].empty()) {
      return corruption("index without manifests: " + repository_reference);
    }
    for (const json& entry : manifest["manifests"]) {
      OUTPOST_ASSIGN_OR_RETURN(BlobDescriptor descriptor,
                               parseDescriptor(entry, repository_reference));
      OUTPOST_ASSIGN_OR_RETURN(PushedImage child,
                               readPushedImage(skopeo, endpoint, repository, descriptor.digest));
      if (child.manifest_digest != descriptor.digest) {
        return corruption("manifest " + descriptor.digest + " listed in " + repository_reference +
                          " hashes to " + child.manifest_digest);
      }
      child.platform = platformOf(entry);
      image.platform_images.push_back(std::move(child));
    }
    return image;
  }

  if (!manifest.contains("config") || !manifest.contains("layers") ||
      !manifest["layers"].is_array()) {
    return corruption("manifest without config or layers: " + repository_reference);
  }
  OUTPOST_ASSIGN_OR_RETURN(image.config, parseDescriptor(manifest["config"], repository_reference));
  for (const json& entry : manifest["layers"]) {
    OUTPOST_ASSIGN_OR_RETURN(BlobDescriptor layer, parseDescriptor(entry, repository_reference));
    image.layers.push_back(std::move(layer));
  }
  return image;
}

Expected<std::unique_ptr<ImageBuilder>> ImageBuilder::create(const Skopeo& skopeo) {
  OUTPOST_ASSIGN_OR_RETURN(TempDir dir, TempDir::create("images"));
  OUTPOST_RETURN_IF_ERROR(dir.makeSubdir("staging").status());
  auto builder = std::make_unique<ImageBuilder>(PrivateTag{}, skopeo, std::move(dir));
  OUTPOST_RETURN_IF_ERROR(builder->runUmoci({"init", "--layout", builder->layoutDir()}));
  return builder;
}

ImageBuilder::ImageBuilder(PrivateTag, const Skopeo& skopeo, TempDir dir)
    : skopeo_(&skopeo), dir_(std::move(dir)) {}

std::vector<ImageSpec> ImageBuilder::defaultPlatforms() {
  ImageSpec amd64;
  ImageSpec arm64;
  arm64.architecture = "arm64";
  return {amd64, arm64};
}

Status ImageBuilder::runUmoci(std::vector<std::string> arguments) const {
  arguments.insert(arguments.begin(), "umoci");
  RunOptions options;
  options.timeout_ms = 60'000;
  OUTPOST_ASSIGN_OR_RETURN(CommandResult result, run(std::move(arguments), options));
  return result.toStatus();
}

Status ImageBuilder::writeRandomFile(const std::string& path, uint64_t size_bytes) const {
  UniqueFd fd(retryOnEintr(
      [&] { return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); }));
  if (!fd) {
    return errnoStatus("open " + path, errno);
  }

  std::mt19937_64 generator(std::random_device{}());
  std::vector<uint64_t> chunk(128 * 1024 / sizeof(uint64_t));
  uint64_t remaining = size_bytes;
  while (remaining > 0) {
    std::generate(chunk.begin(), chunk.end(), std::ref(generator));
    size_t count = static_cast<size_t>(std::min<uint64_t>(remaining, chunk.size() * 8));
    const char* bytes = reinterpret_cast<const char*>(chunk.data());
    size_t written = 0;
    while (written < count) {
      ssize_t result =
          retryOnEintr([&] { return ::write(fd.get(), bytes + written, count - written); });
      if (result < 0) {
        return errnoStatus("write " + path, errno);
      }
      written += static_cast<size_t>(result);
    }
    remaining -= count;
  }
  return Status::ok();
}

std::string ImageBuilder::nextLayoutTag(std::string_view kind) {
  return std::string(kind) + "-" + std::to_string(++layout_tag_count_);
}

Status ImageBuilder::buildImage(const std::string& layout_tag, const ImageSpec& spec) {
  std::string image = layoutDir() + ":" + layout_tag;
  OUTPOST_RETURN_IF_ERROR(runUmoci({"new", "--image", image}));

  for (size_t i = 0; i < spec.layers.size(); ++i) {
    std::string staged = dir_.file("staging/" + layout_tag + "-" + std::to_string(i));
    OUTPOST_RETURN_IF_ERROR(writeRandomFile(staged, spec.layers[i].size_bytes));
    OUTPOST_RETURN_IF_ERROR(runUmoci({"insert", "--image", image, staged, spec.layers[i].path}));
    ::unlink(staged.c_str());
  }

  return runUmoci(
      {"config", "--image", image, "--os", spec.os, "--architecture", spec.architecture});
}

Status ImageBuilder::buildIndex(const std::string& layout_tag,
                                const std::vector<std::string>& image_tags) {
  std::string layout_dir = layoutDir();
  OUTPOST_ASSIGN_OR_RETURN(std::string layout_index_text, readFile(layout_dir + "/index.json"));
  OUTPOST_ASSIGN_OR_RETURN(json layout_index, parseJson(layout_index_text, "index.json"));
  if (!layout_index.contains("manifests") || !layout_index["manifests"].is_array()) {
    return corruption("index.json without a manifests array in " + layout_dir);
  }
  json& tagged = layout_index["manifests"];

  json entries = json::array();
  for (const std::string& image_tag : image_tags) {
    auto found = std::find_if(tagged.begin(), tagged.end(), [&](const json& descriptor) {
      return refNameOf(descriptor) == image_tag;
    });
    if (found == tagged.end()) {
      return notFound("no image tagged " + image_tag + " in " + layout_dir);
    }
    OUTPOST_ASSIGN_OR_RETURN(BlobDescriptor image_descriptor,
                             parseDescriptor(*found, "index.json"));
    const std::string& manifest_digest = image_descriptor.digest;

    // The platform comes from the image config, where `umoci config` wrote it.
    OUTPOST_ASSIGN_OR_RETURN(std::string manifest_text,
                             readFile(blobPath(layout_dir, manifest_digest)));
    OUTPOST_ASSIGN_OR_RETURN(json manifest, parseJson(manifest_text, manifest_digest));
    if (!manifest.contains("config")) {
      return corruption("manifest " + manifest_digest + " has no config");
    }
    OUTPOST_ASSIGN_OR_RETURN(BlobDescriptor config_descriptor,
                             parseDescriptor(manifest["config"], manifest_digest));
    OUTPOST_ASSIGN_OR_RETURN(std::string config_text,
                             readFile(blobPath(layout_dir, config_descriptor.digest)));
    OUTPOST_ASSIGN_OR_RETURN(json config, parseJson(config_text, config_descriptor.digest));

    entries.push_back({{"mediaType", std::string(kOciManifestType)},
                       {"digest", manifest_digest},
                       {"size", image_descriptor.size},
                       {"platform",
                        {{"architecture", stringField(config, "architecture")},
                         {"os", stringField(config, "os")}}}});
  }

  json index = {
      {"schemaVersion", 2}, {"mediaType", std::string(kOciIndexType)}, {"manifests", entries}};
  std::string index_bytes = index.dump();
  Digest index_digest = sha256Of(index_bytes);
  OUTPOST_RETURN_IF_ERROR(writeFile(blobPath(layout_dir, index_digest.str()), index_bytes));

  // Tag the index in the layout, replacing an earlier descriptor of the same tag.
  tagged.erase(
      std::remove_if(tagged.begin(), tagged.end(),
                     [&](const json& descriptor) { return refNameOf(descriptor) == layout_tag; }),
      tagged.end());
  tagged.push_back({{"mediaType", std::string(kOciIndexType)},
                    {"digest", index_digest.str()},
                    {"size", index_bytes.size()},
                    {"annotations", {{kRefNameAnnotation, layout_tag}}}});
  return writeFile(layout_dir + "/index.json", layout_index.dump());
}

Expected<PushedImage> ImageBuilder::push(const std::string& layout_tag,
                                         const RegistryEndpoint& endpoint,
                                         std::string_view repository_tag, ManifestFormat format) {
  OUTPOST_ASSIGN_OR_RETURN(auto repository_and_tag, splitRepositoryTag(repository_tag));
  std::string digest_file = dir_.file("digest-" + nextLayoutTag("push"));

  std::vector<std::string> flags = Skopeo::destinationFlags(endpoint);
  flags.insert(flags.end(), {"--all", "--digestfile", digest_file});
  if (format == ManifestFormat::kDockerV2Schema2) {
    flags.insert(flags.end(), {"--format", "v2s2"});
  }
  OUTPOST_ASSIGN_OR_RETURN(CommandResult result,
                           skopeo_->copy("oci:" + layoutDir() + ":" + layout_tag,
                                         Skopeo::dockerReference(endpoint, repository_tag), flags));
  OUTPOST_RETURN_IF_ERROR(result.toStatus());

  OUTPOST_ASSIGN_OR_RETURN(std::string digest_file_text, readFile(digest_file));
  std::string pushed_digest = trimmed(std::move(digest_file_text));
  OUTPOST_ASSIGN_OR_RETURN(
      PushedImage image,
      readPushedImage(*skopeo_, endpoint, repository_and_tag.first, repository_and_tag.second));
  if (image.manifest_digest != pushed_digest) {
    return corruption("skopeo pushed " + pushed_digest + " to " + image.reference +
                      " but the manifest read back hashes to " + image.manifest_digest);
  }
  return image;
}

Expected<PushedImage> ImageBuilder::pushImage(const RegistryEndpoint& endpoint,
                                              std::string_view repository_tag,
                                              const ImageSpec& spec, ManifestFormat format) {
  std::string layout_tag = nextLayoutTag("image");
  OUTPOST_RETURN_IF_ERROR(buildImage(layout_tag, spec));
  return push(layout_tag, endpoint, repository_tag, format);
}

Expected<PushedImage> ImageBuilder::pushIndex(const RegistryEndpoint& endpoint,
                                              std::string_view repository_tag,
                                              const std::vector<ImageSpec>& platforms) {
  std::vector<std::string> image_tags;
  for (const ImageSpec& spec : platforms) {
    image_tags.push_back(nextLayoutTag("image"));
    OUTPOST_RETURN_IF_ERROR(buildImage(image_tags.back(), spec));
  }
  std::string index_tag = nextLayoutTag("index");
  OUTPOST_RETURN_IF_ERROR(buildIndex(index_tag, image_tags));
  return push(index_tag, endpoint, repository_tag);
}

}  // namespace outpost::integration
