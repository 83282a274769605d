// Manifest media types, content negotiation on the Accept header, and media type detection for
// manifest bodies that arrive without a Content-Type.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::proxy {

inline constexpr std::string_view kOciImageManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciImageIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifestV2 =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
// Docker image manifest schema 1, signed and unsigned. Deprecated, but still served by old
// registries.
inline constexpr std::string_view kDockerManifestV1Signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr std::string_view kDockerManifestV1 =
    "application/vnd.docker.distribution.manifest.v1+json";

inline constexpr std::array<std::string_view, 6> kManifestMediaTypes = {
    kOciImageManifest,   kOciImageIndex,          kDockerManifestV2,
    kDockerManifestList, kDockerManifestV1Signed, kDockerManifestV1,
};

// Returns whether `media_type` is one of kManifestMediaTypes. Parameters and case are not
// ignored, so pass the bare lower-case type.
bool isManifestMediaType(std::string_view media_type);

// The media ranges of a request's Accept header lines (RFC 9110 section 12.5.1).
//
// Clients split Accept differently. podman and skopeo (containers/image 5.23) send one line per
// media type, and containerd 1.6 sends one comma-joined line, so add every line. Parameters are
// ignored except a weight of zero ("q=0"), which excludes the range. When several ranges match a
// type, the most specific one decides, so "*/*, application/vnd.oci.image.index.v1+json;q=0"
// accepts everything but OCI indexes.
class AcceptList {
 public:
  AcceptList() = default;

  // Builds the list from all Accept lines of a request, in order.
  static AcceptList fromHeaderLines(const std::vector<std::string_view>& lines);

  // Adds the media ranges of one Accept line. Elements that are not a media range are skipped.
  void addHeaderLine(std::string_view line);

  // Returns whether the request had no media range at all.
  bool empty() const { return ranges_.empty(); }

  // Returns whether a response of `media_type` is acceptable under HTTP rules, in which an
  // empty list accepts anything and wildcards match.
  bool accepts(std::string_view media_type) const;

  // Returns whether `media_type` is named exactly, without wildcards, and not excluded.
  //
  // Registries negotiate manifests this way, not by HTTP rules. CNCF distribution 3 (in
  // registry/handlers/manifests.go) counts only manifest types named exactly in Accept, and
  // ignores weights and wildcards. It responds with 404 MANIFEST_UNKNOWN for an OCI manifest or
  // index the client did not name. For a tag that points to a Docker manifest list the client
  // did not name, it serves the linux/amd64 image manifest in its place. A client that sends no Accept,
  // such as an old Docker, thus never gets an OCI type, nor a manifest list by tag. So a tag
  // cached as one of those types may be served from the cache only when this returns true for
  // its type. Otherwise the request goes upstream with the client's Accept.
  bool acceptsExplicitly(std::string_view media_type) const;

  // Returns the media ranges comma-joined, each as the client wrote it, for forwarding upstream.
  std::string joined() const;

 private:
  struct MediaRange {
    std::string type;     // Lower-cased, or "*" for a wildcard.
    std::string subtype;  // Lower-cased, or "*" for a wildcard.
    bool is_excluded = false;
    std::string text;  // As the client wrote it, without surrounding whitespace.
  };

  std::vector<MediaRange> ranges_;
};

// Returns the media type of a manifest body that arrived without a Content-Type. The JSON
// "mediaType" field decides when present. Without one, the shape decides: "schemaVersion" 1 is
// Docker schema 1 (the signed type when "signatures" is present), a "manifests" array is an OCI
// index, and "config" with "layers" is an OCI manifest. Returns an empty view when the body is
// not a JSON object, has a "mediaType" that is not a manifest type, or has no known shape.
std::string_view detectManifestMediaType(std::string_view body);

}  // namespace outpost::proxy
