#include "tests/conformance/checks.h"

namespace outpost::conformance {
namespace {

constexpr size_t kLayerBytes = 4096;

}  // namespace

Expected<PushedImage> pushImage(Session& session, const std::string& name,
                                const std::string& reference) {
  PushedImage image;
  image.config = session.content.imageConfig();
  image.layers = {session.content.randomBlob(kLayerBytes),
                  session.content.randomBlob(kLayerBytes / 2)};

  ImageManifestFields fields;
  fields.config = describe(image.config, std::string(kOciConfigType));
  for (const Blob& layer : image.layers) {
    fields.layers.push_back(describe(layer, std::string(kOciLayerType)));
  }
  image.manifest = ContentFactory::imageManifest(fields);

  OUTPOST_RETURN_IF_ERROR(session.client.pushBlob(name, image.config.bytes, image.config.digest));
  for (const Blob& layer : image.layers) {
    OUTPOST_RETURN_IF_ERROR(session.client.pushBlob(name, layer.bytes, layer.digest));
  }
  OUTPOST_RETURN_IF_ERROR(
      session.client.pushManifest(name, reference.empty() ? image.manifest.digest : reference,
                                  image.manifest.bytes, image.manifest.media_type));
  return image;
}

std::string runTag(const Session& session, std::string_view prefix) {
  return std::string(prefix) + "-" + session.content.runId();
}

}  // namespace outpost::conformance
