// Registry errors: the OCI distribution error codes and the JSON body every client-visible
// error carries, per the OCI distribution specification v1.1, "Error Codes":
//   {"errors":[{"code":"<CODE>","message":"<text>","detail":...}]}
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/status.h"
#include "proxy/http_server.h"

namespace outpost::proxy {

namespace error_code {
inline constexpr std::string_view kBlobUnknown = "BLOB_UNKNOWN";
inline constexpr std::string_view kDigestInvalid = "DIGEST_INVALID";
inline constexpr std::string_view kManifestUnknown = "MANIFEST_UNKNOWN";
inline constexpr std::string_view kManifestInvalid = "MANIFEST_INVALID";
inline constexpr std::string_view kManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN";
inline constexpr std::string_view kBlobUploadUnknown = "BLOB_UPLOAD_UNKNOWN";
inline constexpr std::string_view kBlobUploadInvalid = "BLOB_UPLOAD_INVALID";
inline constexpr std::string_view kSizeInvalid = "SIZE_INVALID";
inline constexpr std::string_view kNameInvalid = "NAME_INVALID";
inline constexpr std::string_view kNameUnknown = "NAME_UNKNOWN";
inline constexpr std::string_view kTagInvalid = "TAG_INVALID";
inline constexpr std::string_view kUnsupported = "UNSUPPORTED";
inline constexpr std::string_view kDenied = "DENIED";
inline constexpr std::string_view kTooManyRequests = "TOOMANYREQUESTS";
inline constexpr std::string_view kPaginationNumberInvalid = "PAGINATION_NUMBER_INVALID";
// Not in the OCI list; CNCF distribution sends it for failures of its own, such as storage.
inline constexpr std::string_view kUnknown = "UNKNOWN";
// Not in the OCI list; CNCF distribution sends it with 503 when a dependency is down.
inline constexpr std::string_view kUnavailable = "UNAVAILABLE";
}  // namespace error_code

// Returns the JSON error body for one error. `message` is escaped.
std::string registryErrorBody(std::string_view code, std::string_view message);

// Sends an error response with the OCI body. `head` may carry extra headers (Allow,
// Retry-After); its status is replaced by `status`.
void respondRegistryError(Exchange& exchange, int status, std::string_view code,
                          std::string_view message, ResponseHead head = ResponseHead());

// Parses `text` as a digest. For an invalid one, sends 400 DIGEST_INVALID naming it and the
// reason, and returns nothing.
std::optional<Digest> parseDigestOrRespond(Exchange& exchange, std::string_view text);

// Appends `text` to `out` as the inside of a JSON string.
void appendJsonEscaped(std::string& out, std::string_view text);

}  // namespace outpost::proxy
