#include "tests/conformance/test_content.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/digest.h"

namespace outpost::conformance {
namespace {

using nlohmann::ordered_json;

constexpr int kManifestIndent = 3;

ordered_json descriptorJson(const Descriptor& descriptor) {
  ordered_json json;
  json["mediaType"] = descriptor.media_type;
  json["digest"] = descriptor.digest;
  json["size"] = descriptor.size;
  if (!descriptor.artifact_type.empty()) {
    json["artifactType"] = descriptor.artifact_type;
  }
  if (!descriptor.annotations.empty()) {
    json["annotations"] = descriptor.annotations;
  }
  return json;
}

Manifest finish(const ordered_json& json, std::string_view media_type) {
  Manifest manifest;
  manifest.bytes = json.dump(kManifestIndent) + "\n";
  manifest.digest = sha256Of(manifest.bytes).str();
  manifest.media_type = std::string(media_type);
  return manifest;
}

}  // namespace

ContentFactory::ContentFactory() : random_(std::random_device{}()) {
  char id[9];
  std::snprintf(id, sizeof(id), "%08x", static_cast<unsigned>(random_() & 0xffffffffu));
  run_id_ = id;
}

Blob ContentFactory::randomBlob(size_t size) {
  Blob blob;
  blob.bytes.resize(size);
  for (size_t i = 0; i < size; i += 8) {
    uint64_t word = random_();
    for (size_t j = 0; j < 8 && i + j < size; ++j) {
      blob.bytes[i + j] = static_cast<char>(word >> (8 * j));
    }
  }
  blob.digest = sha256Of(blob.bytes).str();
  return blob;
}

Blob ContentFactory::imageConfig() {
  ordered_json config;
  config["architecture"] = "amd64";
  config["os"] = "linux";
  config["config"]["Labels"]["org.opencontainers.conformance.nonce"] = std::to_string(random_());
  config["rootfs"]["type"] = "layers";
  config["rootfs"]["diff_ids"] = ordered_json::array();
  Blob blob;
  blob.bytes = config.dump();
  blob.digest = sha256Of(blob.bytes).str();
  return blob;
}

std::string ContentFactory::unknownDigest() { return randomBlob(64).digest; }

std::string ContentFactory::randomUuid() {
  uint64_t high = random_();
  uint64_t low = random_();
  char text[37];
  std::snprintf(text, sizeof(text), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(high >> 32), static_cast<unsigned>((high >> 16) & 0xffff),
                static_cast<unsigned>(high & 0xffff), static_cast<unsigned>(low >> 48),
                static_cast<unsigned long long>(low & 0xffffffffffffULL));
  return text;
}

Manifest ContentFactory::imageManifest(const ImageManifestFields& fields) {
  ordered_json json;
  json["schemaVersion"] = 2;
  json["mediaType"] = kOciManifestType;
  if (!fields.artifact_type.empty()) {
    json["artifactType"] = fields.artifact_type;
  }
  json["config"] = descriptorJson(fields.config);
  json["layers"] = ordered_json::array();
  for (const Descriptor& layer : fields.layers) {
    json["layers"].push_back(descriptorJson(layer));
  }
  if (fields.subject.has_value()) {
    json["subject"] = descriptorJson(*fields.subject);
  }
  if (!fields.annotations.empty()) {
    json["annotations"] = fields.annotations;
  }
  return finish(json, kOciManifestType);
}

Manifest ContentFactory::imageIndex(const std::vector<Descriptor>& manifests) {
  ordered_json json;
  json["schemaVersion"] = 2;
  json["mediaType"] = kOciIndexType;
  json["manifests"] = ordered_json::array();
  for (const Descriptor& manifest : manifests) {
    json["manifests"].push_back(descriptorJson(manifest));
  }
  return finish(json, kOciIndexType);
}

Descriptor describe(const Blob& blob, std::string media_type) {
  return Descriptor{std::move(media_type), blob.digest, blob.bytes.size(), {}, {}};
}

Blob emptyJsonBlob() { return Blob{"{}", sha256Of("{}").str()}; }

}  // namespace outpost::conformance
