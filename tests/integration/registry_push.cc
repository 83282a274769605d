#include "tests/integration/registry_push.h"

#include "base/digest.h"
#include "tests/integration/http_client.h"

namespace outpost::integration {

Status pushBlob(const std::string& base_url, const std::string& name, const std::string& bytes) {
  HttpRequest start;
  start.method = "POST";
  start.url = base_url + "/v2/" + name + "/blobs/uploads/";
  OUTPOST_ASSIGN_OR_RETURN(HttpResult started, httpRequest(start));
  if (started.status != 202) {
    return internalError("upload start got " + std::to_string(started.status) + ": " +
                         started.body);
  }
  std::string location = started.header("Location").value_or("");
  if (location.starts_with("/")) {
    location = base_url + location;
  }
  HttpRequest put;
  put.method = "PUT";
  put.url = location + (location.find('?') == std::string::npos ? "?" : "&") +
            "digest=" + sha256Of(bytes).str();
  put.body = bytes;
  OUTPOST_ASSIGN_OR_RETURN(HttpResult finished, httpRequest(put));
  if (finished.status != 201) {
    return internalError("blob PUT got " + std::to_string(finished.status) + ": " + finished.body);
  }
  return Status::ok();
}

Status pushManifest(const std::string& base_url, const std::string& name,
                    const std::string& reference, const std::string& body,
                    std::string_view content_type) {
  HttpRequest put;
  put.method = "PUT";
  put.url = base_url + "/v2/" + name + "/manifests/" + reference;
  put.headers = {{"Content-Type", std::string(content_type)}};
  put.body = body;
  OUTPOST_ASSIGN_OR_RETURN(HttpResult pushed, httpRequest(put));
  if (pushed.status != 201) {
    return internalError("manifest PUT of " + name + ":" + reference + " got " +
                         std::to_string(pushed.status) + ": " + pushed.body);
  }
  return Status::ok();
}

std::string ociDescriptor(std::string_view media_type, const std::string& bytes) {
  return R"({"mediaType":")" + std::string(media_type) + R"(","digest":")" + sha256Of(bytes).str() +
         R"(","size":)" + std::to_string(bytes.size()) + "}";
}

std::string ociImageManifest(const std::string& config, const std::string& layer,
                             std::string_view extra) {
  return R"({"schemaVersion":2,"mediaType":")" + std::string(kOciImageManifestType) +
         R"(","config":)" + ociDescriptor("application/vnd.oci.image.config.v1+json", config) +
         R"(,"layers":[)" + ociDescriptor("application/vnd.oci.image.layer.v1.tar", layer) + "]" +
         std::string(extra) + "}";
}

}  // namespace outpost::integration
