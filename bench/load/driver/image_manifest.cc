#include "bench/load/driver/image_manifest.h"

#include <nlohmann/json.hpp>

#include "base/ascii.h"

namespace outpost::load {
namespace {

using nlohmann::json;

enum class ManifestKind { kImage, kIndex };

// Returns the string member `name` of `object`, or an empty string when it is absent.
// Fails when the member is present but not a string.
Expected<std::string> optionalString(const json& object, const char* name) {
  auto member = object.find(name);
  if (member == object.end()) {
    return std::string();
  }
  if (!member->is_string()) {
    return invalidArgument(std::string("manifest field \"") + name + "\" is not a string");
  }
  return member->get<std::string>();
}

Expected<Descriptor> parseDescriptor(const json& object, std::string_view where) {
  if (!object.is_object()) {
    return invalidArgument("a descriptor in " + std::string(where) + " is not an object");
  }
  OUTPOST_ASSIGN_OR_RETURN(std::string media_type, optionalString(object, "mediaType"));
  OUTPOST_ASSIGN_OR_RETURN(std::string digest_text, optionalString(object, "digest"));
  Expected<Digest> digest = Digest::parse(digest_text);
  if (!digest) {
    return invalidArgument("a descriptor in " + std::string(where) + " has the invalid digest \"" +
                           digest_text + "\": " + std::string(digest.status().message()));
  }
  auto size = object.find("size");
  if (size == object.end() || !size->is_number_unsigned()) {
    return invalidArgument("descriptor " + digest->str() + " in " + std::string(where) +
                           " has no size or a size that is not a non-negative integer");
  }

  Descriptor descriptor{std::move(media_type), std::move(*digest), size->get<uint64_t>(), "", ""};
  auto platform = object.find("platform");
  if (platform != object.end() && platform->is_object()) {
    OUTPOST_ASSIGN_OR_RETURN(descriptor.os, optionalString(*platform, "os"));
    OUTPOST_ASSIGN_OR_RETURN(descriptor.architecture, optionalString(*platform, "architecture"));
  }
  return descriptor;
}

// Returns the media type without parameters ("; charset=utf-8") and surrounding white space.
std::string_view bareMediaType(std::string_view content_type) {
  return trimOws(content_type.substr(0, content_type.find(';')));
}

Expected<ManifestKind> manifestKind(const json& document, std::string_view content_type) {
  std::string_view type = bareMediaType(content_type);
  if (type != kOciManifestType && type != kOciIndexType && type != kDockerManifestType &&
      type != kDockerManifestListType) {
    auto media_type = document.find("mediaType");
    type = media_type != document.end() && media_type->is_string()
               ? std::string_view(media_type->get_ref<const std::string&>())
               : std::string_view();
  }
  if (type == kOciIndexType || type == kDockerManifestListType) {
    return ManifestKind::kIndex;
  }
  if (type == kOciManifestType || type == kDockerManifestType) {
    return ManifestKind::kImage;
  }
  if (!type.empty()) {
    return Status(StatusCode::kOutOfRange,
                  "unsupported manifest type \"" + std::string(type) + "\"");
  }
  if (document.contains("manifests")) {
    return ManifestKind::kIndex;
  }
  if (document.contains("layers")) {
    return ManifestKind::kImage;
  }
  return invalidArgument("the manifest has no media type and neither \"manifests\" nor \"layers\"");
}

Expected<std::vector<Descriptor>> parseDescriptorArray(const json& document, const char* name) {
  auto array = document.find(name);
  if (array == document.end() || !array->is_array()) {
    return invalidArgument(std::string("manifest field \"") + name +
                           "\" is missing or not an array");
  }
  std::vector<Descriptor> descriptors;
  descriptors.reserve(array->size());
  for (const json& element : *array) {
    OUTPOST_ASSIGN_OR_RETURN(Descriptor descriptor, parseDescriptor(element, name));
    descriptors.push_back(std::move(descriptor));
  }
  return descriptors;
}

}  // namespace

std::string manifestAcceptValue() {
  return std::string(kOciIndexType) + ", " + std::string(kDockerManifestListType) + ", " +
         std::string(kOciManifestType) + ", " + std::string(kDockerManifestType);
}

Expected<std::variant<ImageManifest, ImageIndex>> parseManifest(std::string_view body,
                                                                std::string_view content_type) {
  json document = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_object()) {
    return invalidArgument("the manifest is not a JSON object");
  }
  OUTPOST_ASSIGN_OR_RETURN(ManifestKind kind, manifestKind(document, content_type));

  if (kind == ManifestKind::kIndex) {
    OUTPOST_ASSIGN_OR_RETURN(std::vector<Descriptor> manifests,
                             parseDescriptorArray(document, "manifests"));
    if (manifests.empty()) {
      return invalidArgument("the index lists no manifests");
    }
    return std::variant<ImageManifest, ImageIndex>(ImageIndex{std::move(manifests)});
  }

  auto config = document.find("config");
  if (config == document.end()) {
    return invalidArgument("the image manifest has no \"config\"");
  }
  OUTPOST_ASSIGN_OR_RETURN(Descriptor config_descriptor, parseDescriptor(*config, "config"));
  OUTPOST_ASSIGN_OR_RETURN(std::vector<Descriptor> layers,
                           parseDescriptorArray(document, "layers"));
  ImageManifest image;
  image.blobs.reserve(layers.size() + 1);
  image.blobs.push_back(std::move(config_descriptor));
  for (Descriptor& layer : layers) {
    image.blobs.push_back(std::move(layer));
  }
  return std::variant<ImageManifest, ImageIndex>(std::move(image));
}

const Descriptor& selectPlatform(const ImageIndex& index, std::string_view os,
                                 std::string_view architecture) {
  for (const Descriptor& entry : index.manifests) {
    if (entry.os == os && entry.architecture == architecture) {
      return entry;
    }
  }
  return index.manifests.front();
}

}  // namespace outpost::load
