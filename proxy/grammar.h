// Grammar of the registry API paths: repository names, tags and the routes under /v2/.
//
// The rules follow the OCI distribution specification v1.1 ("Pulling manifests"):
//   name      ::= component ("/" component)*
//   component ::= [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
//   tag       ::= [a-zA-Z0-9_] [a-zA-Z0-9._-]{0,127}
// Routes, relative to "/v2/":
//   ""                                 base (API version check)
//   <name>/manifests/<reference>       manifest by tag or digest
//   <name>/blobs/<digest>              blob
//   <name>/blobs/uploads/[<id>]        upload session (start, or one that exists)
//   <name>/tags/list                   tag list
//   <name>/referrers/<digest>          referrers of a manifest (v1.1)
// The checks are hand-written rather than std::regex because every request runs them.
#pragma once

#include <cstddef>
#include <string_view>

#include "base/status.h"

namespace outpost::proxy {

// Maximum length of a repository name in characters. The OCI specification sets no limit, but
// CNCF distribution rejects longer names (NameTotalLengthMax in its reference package), so
// clients and upstreams cannot use them anyway.
inline constexpr std::size_t kMaxRepositoryNameLength = 255;

// Maximum length of a tag in characters, from the tag grammar above.
inline constexpr std::size_t kMaxTagLength = 128;

// Checks `name` against the repository name grammar and length limit. Allocates nothing.
bool isValidRepositoryName(std::string_view name);

// Checks `name` like isValidRepositoryName. The failure is kInvalidArgument with a message that
// starts "NAME_INVALID:" and names the rule that `name` breaks.
Status validateRepositoryName(std::string_view name);

// Checks `tag` against the tag grammar. Allocates nothing.
bool isValidTag(std::string_view tag);

// One request path under /v2/, split into route, repository name and reference.
// `name` and `reference` point into the string given to parseRegistryPath and live as long as
// that string does.
struct RegistryPath {
  enum class Kind {
    kBase,
    kManifest,
    kBlob,
    kTagsList,
    // POST <name>/blobs/uploads/ (reference empty) or <name>/blobs/uploads/<id> (reference is
    // the upload session id).
    kBlobUploads,
    kReferrers,
  };

  Kind kind = Kind::kBase;
  // Repository name, validated. Empty for kBase.
  std::string_view name;
  // Tag or digest for kManifest, digest for kBlob and kReferrers, upload session id for
  // kBlobUploads, empty otherwise. Not validated.
  std::string_view reference;
};

// Parses the request path after the "/v2/" prefix, without query string or fragment.
// NOTE: Nothing is percent-decoded. Names and tags need no encoding, but a client that sends a
// digest as "sha256%3A…" gets a reference that fails classifyReference.
//
// A route keyword is recognised at the end of the path only, so a name may itself contain
// "manifests" or "blobs" as components: "foo/blobs/bar/manifests/latest" is the manifest
// "latest" of "foo/blobs/bar". References never contain "/", so the last component before the
// reference decides the route.
//
// Fails with kNotFound when the path matches no route or has no name, and with kInvalidArgument
// (message "NAME_INVALID: …") when the name breaks the name grammar. The reference is left to
// the handler, which checks it with classifyReference or Digest::parse.
Expected<RegistryPath> parseRegistryPath(std::string_view path_after_v2);

enum class ReferenceKind { kTag, kDigest };

// Classifies a manifest reference: one that contains ':' is a digest, anything else a tag.
// Fails with kInvalidArgument when the reference breaks the grammar of its kind. The message
// starts "DIGEST_INVALID:" for a digest and names the tag rule for a tag. A well-formed digest
// of an algorithm Outpost does not compute fails with kOutOfRange, as in Digest::parse.
Expected<ReferenceKind> classifyReference(std::string_view reference);

}  // namespace outpost::proxy
