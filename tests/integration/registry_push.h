// Pushes over plain HTTP to any registry on 127.0.0.1 (Outpost or distribution), for tests that
// need exact blobs and manifests rather than images built by umoci.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace outpost::integration {

inline constexpr std::string_view kOciImageManifestType =
    "application/vnd.oci.image.manifest.v1+json";

// Pushes `bytes` to repository `name` with POST then PUT, which every registry supports,
// following Location as the registry sends it (absolute or a path). Fails unless the PUT
// gets 201.
Status pushBlob(const std::string& base_url, const std::string& name, const std::string& bytes);

// Pushes a manifest by tag or digest. Fails unless the registry returns 201.
Status pushManifest(const std::string& base_url, const std::string& name,
                    const std::string& reference, const std::string& body,
                    std::string_view content_type = kOciImageManifestType);

// An OCI image manifest over `config` and one layer, with `extra` JSON members appended
// (",\"annotations\":{...}"). The blobs are not pushed.
std::string ociImageManifest(const std::string& config, const std::string& layer,
                             std::string_view extra = "");

// A descriptor JSON object for `bytes` of `media_type`.
std::string ociDescriptor(std::string_view media_type, const std::string& bytes);

}  // namespace outpost::integration
