#include "proxy/manifest_check.h"

#include <nlohmann/json.hpp>

#include "base/ascii.h"
#include "proxy/media_types.h"

namespace outpost::proxy {
namespace {

using Json = nlohmann::json;

bool isPushableMediaType(std::string_view media_type) {
  return media_type == kOciImageManifest || media_type == kOciImageIndex ||
         media_type == kDockerManifestV2 || media_type == kDockerManifestList;
}

bool isIndexMediaType(std::string_view media_type) {
  return media_type == kOciImageIndex || media_type == kDockerManifestList;
}

bool isExternalLayerType(std::string_view media_type) {
  return media_type.find(".foreign.") != std::string_view::npos ||
         media_type.find(".nondistributable.") != std::string_view::npos;
}

// The media type without parameters and surrounding spaces, lower-cased.
std::string bareMediaType(std::string_view content_type) {
  std::string_view bare = content_type.substr(0, content_type.find(';'));
  while (!bare.empty() && (bare.back() == ' ' || bare.back() == '\t')) {
    bare.remove_suffix(1);
  }
  while (!bare.empty() && (bare.front() == ' ' || bare.front() == '\t')) {
    bare.remove_prefix(1);
  }
  return toLowerAscii(bare);
}

struct Descriptor {
  std::string media_type;
  Digest digest;
  uint64_t size = 0;
};

Expected<Descriptor> readDescriptor(const Json& node, const std::string& where) {
  if (!node.is_object()) {
    return invalidArgument(where + " is not a descriptor object");
  }
  const auto media_type = node.find("mediaType");
  if (media_type == node.end() || !media_type->is_string()) {
    return invalidArgument(where + ".mediaType is missing or not a string");
  }
  const auto digest_text = node.find("digest");
  if (digest_text == node.end() || !digest_text->is_string()) {
    return invalidArgument(where + ".digest is missing or not a string");
  }
  Expected<Digest> digest = Digest::parse(digest_text->get_ref<const std::string&>());
  if (!digest) {
    return invalidArgument(where + ".digest is invalid: " + std::string(digest.status().message()));
  }
  const auto size = node.find("size");
  if (size == node.end() || !size->is_number_integer() ||
      (size->is_number_integer() && !size->is_number_unsigned() && size->get<int64_t>() < 0)) {
    return invalidArgument(where + ".size is missing or not a non-negative integer");
  }
  return Descriptor{media_type->get<std::string>(), std::move(*digest), size->get<uint64_t>()};
}

// The media type the manifest is stored and served with: the request's Content-Type when it
// names a manifest type, else the body's "mediaType", else the body's shape.
Expected<std::string> resolveMediaType(std::string_view content_type, const Json& document,
                                       std::string_view body) {
  std::string declared = bareMediaType(content_type);
  const auto field = document.find("mediaType");
  if (field != document.end() && !field->is_string()) {
    return invalidArgument("mediaType is not a string");
  }
  std::string in_body = field != document.end() ? field->get<std::string>() : std::string();

  if (isManifestMediaType(declared)) {
    if (!in_body.empty() && in_body != declared) {
      return invalidArgument("mediaType " + in_body + " differs from the Content-Type " + declared);
    }
    return declared;
  }
  if (!in_body.empty()) {
    return in_body;
  }
  std::string_view detected = detectManifestMediaType(body);
  if (detected.empty()) {
    return invalidArgument(
        "the manifest's media type is unknown: send a manifest media type "
        "as Content-Type or in the mediaType field");
  }
  return std::string(detected);
}

}  // namespace

Expected<ManifestReferences> checkPushedManifest(std::string_view content_type,
                                                 std::string_view body) {
  const Json document = Json::parse(body.begin(), body.end(), nullptr, false);
  if (document.is_discarded()) {
    return invalidArgument("the manifest is not valid JSON");
  }
  if (!document.is_object()) {
    return invalidArgument("the manifest is not a JSON object");
  }

  ManifestReferences references;
  Expected<std::string> media_type = resolveMediaType(content_type, document, body);
  if (!media_type) {
    return media_type.status();
  }
  references.media_type = std::move(*media_type);
  if (!isPushableMediaType(references.media_type)) {
    return invalidArgument("media type " + references.media_type +
                           " cannot be pushed; push an OCI image manifest or index, or a "
                           "Docker image manifest v2 schema 2 or manifest list");
  }

  const auto schema_version = document.find("schemaVersion");
  if (schema_version == document.end() || !schema_version->is_number_integer() ||
      *schema_version != 2) {
    return invalidArgument("schemaVersion must be 2");
  }

  if (isIndexMediaType(references.media_type)) {
    const auto manifests = document.find("manifests");
    if (manifests == document.end() || !manifests->is_array()) {
      return invalidArgument("an index needs a manifests array");
    }
    for (size_t i = 0; i < manifests->size(); ++i) {
      Expected<Descriptor> child =
          readDescriptor((*manifests)[i], "manifests[" + std::to_string(i) + "]");
      if (!child) {
        return child.status();
      }
      references.manifests.push_back(std::move(child->digest));
    }
  } else {
    const auto config = document.find("config");
    if (config == document.end()) {
      return invalidArgument("an image manifest needs a config descriptor");
    }
    Expected<Descriptor> config_descriptor = readDescriptor(*config, "config");
    if (!config_descriptor) {
      return config_descriptor.status();
    }
    references.artifact_type = config_descriptor->media_type;
    references.blobs.push_back(
        BlobReference{std::move(config_descriptor->digest), config_descriptor->size, false});

    const auto layers = document.find("layers");
    if (layers == document.end() || !layers->is_array()) {
      return invalidArgument("an image manifest needs a layers array");
    }
    for (size_t i = 0; i < layers->size(); ++i) {
      Expected<Descriptor> layer =
          readDescriptor((*layers)[i], "layers[" + std::to_string(i) + "]");
      if (!layer) {
        return layer.status();
      }
      bool is_external = isExternalLayerType(layer->media_type);
      references.blobs.push_back(BlobReference{std::move(layer->digest), layer->size, is_external});
    }
  }

  const auto artifact_type = document.find("artifactType");
  if (artifact_type != document.end()) {
    if (!artifact_type->is_string()) {
      return invalidArgument("artifactType is not a string");
    }
    references.artifact_type = artifact_type->get<std::string>();
  }

  const auto subject = document.find("subject");
  if (subject != document.end()) {
    Expected<Descriptor> subject_descriptor = readDescriptor(*subject, "subject");
    if (!subject_descriptor) {
      return subject_descriptor.status();
    }
    references.subject = std::move(subject_descriptor->digest);
  }
  return references;
}

}  // namespace outpost::proxy
