// Push: monolithic and chunked blob uploads, upload sessions (status, cancel, unknown ids),
// digest checks, cross-repository mounts, and manifest uploads with their rejections
// (spec.md, "Push").
#include <algorithm>
#include <charconv>
#include <optional>

#include "tests/conformance/checks.h"

namespace outpost::conformance {
namespace {

constexpr std::string_view kArea = "push";
constexpr size_t kBlobBytes = 3000;
constexpr size_t kChunkBytes = 1024;
// A registry may set a minimum chunk size with OCI-Chunk-Min-Length. The chunk size is capped
// here, so a registry whose minimum is larger gets smaller chunks and may reject them.
constexpr uint64_t kMaxChunkBytes = 64ull << 20;
constexpr std::string_view kArtifactType = "application/vnd.outpost.conformance.test.v1";

struct Upload {
  // The URL to send the next request of the session to: the last Location the registry gave.
  std::string url;
  // The bytes per chunk, at least the registry's OCI-Chunk-Min-Length.
  uint64_t chunk_bytes = kChunkBytes;
};

std::string describeLocationForm(std::string_view location) {
  if (location.starts_with("http://") || location.starts_with("https://")) {
    return "absolute URL";
  }
  return location.starts_with('/') ? "absolute path" : "relative reference";
}

// Starts an upload session with POST /v2/<name>/blobs/uploads/ (Content-Length: 0), expecting
// 202 with a Location.
std::optional<Upload> startUpload(Check& check, const Session& session, const std::string& name) {
  std::optional<Exchange> post = check.send("POST", session.client.uploadsUrl(name));
  if (!post || !check.expectStatus(*post, 202)) {
    return std::nullopt;
  }
  std::optional<std::string> location = check.requireHeader(*post, "Location");
  if (!location.has_value()) {
    return std::nullopt;
  }

  Upload upload{resolveReference(post->url, *location), kChunkBytes};
  std::optional<std::string> min_length = post->response.header("OCI-Chunk-Min-Length");
  if (min_length.has_value()) {
    uint64_t value = 0;
    auto [end, error] =
        std::from_chars(min_length->data(), min_length->data() + min_length->size(), value);
    if (!check.expect(
            error == std::errc() && end == min_length->data() + min_length->size(),
            post->describeRequest() + ": OCI-Chunk-Min-Length is not a number: " + *min_length)) {
      return std::nullopt;
    }
    upload.chunk_bytes = std::clamp<uint64_t>(value, kChunkBytes, kMaxChunkBytes);
  }
  return upload;
}

std::string rangeText(uint64_t first, uint64_t last) {
  return std::to_string(first) + "-" + std::to_string(last);
}

// Sends `chunk`, which starts at byte `offset` of the blob, as one PATCH. Expects 202 with a
// Location and "Range: 0-<last byte received>", and moves the session to that Location.
bool patchChunk(Check& check, Upload& upload, std::string_view chunk, uint64_t offset) {
  uint64_t last = offset + chunk.size() - 1;
  std::optional<Exchange> patch = check.send(
      "PATCH", upload.url,
      {{"Content-Type", std::string(kOctetStream)}, {"Content-Range", rangeText(offset, last)}},
      std::string(chunk));
  if (!patch || !check.expectStatus(*patch, 202)) {
    return false;
  }
  std::optional<std::string> location = check.requireHeader(*patch, "Location");
  if (!location.has_value() || !check.expectHeader(*patch, "Range", rangeText(0, last))) {
    return false;
  }
  upload.url = resolveReference(patch->url, *location);
  return true;
}

// Expects a 201 that closes an upload of `blob`: a Location that serves the blob, and a
// Docker-Content-Digest equal to its digest when the header is present.
void expectBlobCreated(Check& check, const Exchange& exchange, const Blob& blob) {
  if (!check.expectStatus(exchange, 201)) {
    return;
  }
  std::optional<std::string> digest = exchange.response.header("Docker-Content-Digest");
  if (digest.has_value()) {
    check.expectHeader(exchange, "Docker-Content-Digest", blob.digest);
  }
  std::optional<std::string> location = check.requireHeader(exchange, "Location");
  if (!location.has_value()) {
    return;
  }
  std::optional<Exchange> get = check.send("GET", resolveReference(exchange.url, *location));
  if (get && check.expectStatus(*get, 200)) {
    check.expectBody(*get, blob.bytes);
  }
}

// Expects a 201 response to a manifest upload: a Location that serves the manifest and a
// Docker-Content-Digest equal to its digest.
void expectManifestCreated(Check& check, const Exchange& exchange, const Manifest& manifest) {
  if (!check.expectStatus(exchange, 201)) {
    return;
  }
  check.expectHeader(exchange, "Docker-Content-Digest", manifest.digest);
  std::optional<std::string> location = check.requireHeader(exchange, "Location");
  if (!location.has_value()) {
    return;
  }
  std::optional<Exchange> get = check.send("GET", resolveReference(exchange.url, *location),
                                           {{"Accept", std::string(kManifestAccept)}});
  if (get && check.expectStatus(*get, 200)) {
    check.expectBody(*get, manifest.bytes);
  }
}

// Ends an upload session that a check no longer needs. Failures are ignored, because the
// session expires on the registry anyway.
void cancelUpload(const Session& session, const std::string& upload_url) {
  (void)session.client.send("DELETE", upload_url);
}

void checkMonolithicUploads(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  session.runner.run(kArea, "post-put-monolithic", [&](Check& check) {
    Blob blob = session.content.randomBlob(kBlobBytes);
    std::optional<Exchange> post = check.send("POST", client.uploadsUrl(name));
    if (!post || !check.expectStatus(*post, 202)) {
      return;
    }
    std::optional<std::string> location = check.requireHeader(*post, "Location");
    if (!location.has_value()) {
      return;
    }
    check.note("upload Location is an " + describeLocationForm(*location));

    std::optional<Exchange> put = check.send(
        "PUT", appendQuery(resolveReference(post->url, *location), "digest", blob.digest),
        {{"Content-Type", std::string(kOctetStream)}}, blob.bytes);
    if (put) {
      expectBlobCreated(check, *put, blob);
    }
  });

  // spec.md, "Single POST": a registry MAY take a whole blob in the POST. One that does not
  // SHOULD respond with 202 and a Location, and the client goes on with a PUT.
  session.runner.run(kArea, "post-single-monolithic", [&](Check& check) {
    Blob blob = session.content.randomBlob(kBlobBytes);
    std::optional<Exchange> post =
        check.send("POST", appendQuery(client.uploadsUrl(name), "digest", blob.digest),
                   {{"Content-Type", std::string(kOctetStream)}}, blob.bytes);
    if (!post) {
      return;
    }
    if (post->response.status == 201) {
      expectBlobCreated(check, *post, blob);
      return;
    }
    if (!check.expect(post->response.status == 202,
                      post->describeRequest() + ": expected 201, or 202 to go on with a PUT, got " +
                          post->describeResponse())) {
      return;
    }
    std::optional<std::string> location = check.requireHeader(*post, "Location");
    if (!location.has_value()) {
      return;
    }
    std::optional<Exchange> put = check.send(
        "PUT", appendQuery(resolveReference(post->url, *location), "digest", blob.digest),
        {{"Content-Type", std::string(kOctetStream)}}, blob.bytes);
    if (put) {
      expectBlobCreated(check, *put, blob);
    }
    check.skip("single-request uploads are not supported (202), and the PUT that followed worked");
  });
}

void checkChunkedUploads(Session& session) {
  const std::string& name = session.name;

  session.runner.run(kArea, "chunked-upload", [&](Check& check) {
    std::optional<Upload> upload = startUpload(check, session, name);
    if (!upload.has_value()) {
      return;
    }
    Blob blob = session.content.randomBlob(2 * upload->chunk_bytes + kBlobBytes / 3);
    for (uint64_t offset = 0; offset < blob.bytes.size(); offset += upload->chunk_bytes) {
      std::string_view chunk = std::string_view(blob.bytes).substr(offset, upload->chunk_bytes);
      if (!patchChunk(check, *upload, chunk, offset)) {
        return;
      }
    }
    std::optional<Exchange> put =
        check.send("PUT", appendQuery(upload->url, "digest", blob.digest));
    if (put) {
      expectBlobCreated(check, *put, blob);
    }
  });

  // spec.md, "Pushing a blob in chunks": the final chunk MAY come with the closing PUT, so a
  // registry must accept both ways.
  session.runner.run(kArea, "chunked-final-chunk-in-put", [&](Check& check) {
    std::optional<Upload> upload = startUpload(check, session, name);
    if (!upload.has_value()) {
      return;
    }
    Blob blob = session.content.randomBlob(upload->chunk_bytes + kBlobBytes / 3);
    std::string_view first = std::string_view(blob.bytes).substr(0, upload->chunk_bytes);
    std::string_view rest = std::string_view(blob.bytes).substr(upload->chunk_bytes);
    if (!patchChunk(check, *upload, first, 0)) {
      return;
    }
    std::optional<Exchange> put =
        check.send("PUT", appendQuery(upload->url, "digest", blob.digest),
                   {{"Content-Type", std::string(kOctetStream)},
                    {"Content-Range", rangeText(first.size(), blob.bytes.size() - 1)}},
                   std::string(rest));
    if (put) {
      expectBlobCreated(check, *put, blob);
    }
  });

  // spec.md: a chunk that does not start right after the last one MUST get 416, and a GET
  // then gives the valid offset to go on from.
  session.runner.run(kArea, "chunk-out-of-order", [&](Check& check) {
    std::optional<Upload> upload = startUpload(check, session, name);
    if (!upload.has_value()) {
      return;
    }
    Blob blob = session.content.randomBlob(2 * upload->chunk_bytes);
    std::string_view first = std::string_view(blob.bytes).substr(0, upload->chunk_bytes);
    std::string_view second = std::string_view(blob.bytes).substr(upload->chunk_bytes);
    if (!patchChunk(check, *upload, first, 0)) {
      return;
    }

    uint64_t gap_offset = first.size() + 100;
    std::optional<Exchange> skipped =
        check.send("PATCH", upload->url,
                   {{"Content-Type", std::string(kOctetStream)},
                    {"Content-Range", rangeText(gap_offset, gap_offset + second.size() - 1)}},
                   std::string(second));
    if (!skipped || !check.expectStatus(*skipped, 416)) {
      cancelUpload(session, upload->url);
      return;
    }

    std::optional<Exchange> status = check.send("GET", upload->url);
    if (!status || !check.expectStatus(*status, 204) ||
        !check.expectHeader(*status, "Range", rangeText(0, first.size() - 1))) {
      cancelUpload(session, upload->url);
      return;
    }
    std::optional<std::string> location = check.requireHeader(*status, "Location");
    if (!location.has_value()) {
      cancelUpload(session, upload->url);
      return;
    }
    upload->url = resolveReference(status->url, *location);
    if (!patchChunk(check, *upload, second, first.size())) {
      cancelUpload(session, upload->url);
      return;
    }
    std::optional<Exchange> put =
        check.send("PUT", appendQuery(upload->url, "digest", blob.digest));
    if (put) {
      expectBlobCreated(check, *put, blob);
    }
  });
}

void checkUploadSessions(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  std::optional<Exchange> status_exchange;
  session.runner.run(kArea, "upload-status", [&](Check& check) {
    std::optional<Upload> upload = startUpload(check, session, name);
    if (!upload.has_value()) {
      return;
    }
    Blob chunk = session.content.randomBlob(kChunkBytes);
    if (!patchChunk(check, *upload, chunk.bytes, 0)) {
      cancelUpload(session, upload->url);
      return;
    }
    std::optional<Exchange> status = check.send("GET", upload->url);
    if (status && check.expectStatus(*status, 204)) {
      check.requireHeader(*status, "Location");
      check.expectHeader(*status, "Range", rangeText(0, chunk.bytes.size() - 1));
      status_exchange = std::move(status);
    }
    cancelUpload(session, upload->url);
  });

  // Docker-Upload-UUID is a Docker header that the specification makes optional
  // ("Legacy Docker support HTTP headers").
  session.runner.run(kArea, "upload-status-uuid-header", [&](Check& check) {
    if (!status_exchange.has_value()) {
      check.skip("needs the upload status response of push/upload-status");
      return;
    }
    std::optional<std::string> uuid = status_exchange->response.header("Docker-Upload-UUID");
    if (!uuid.has_value()) {
      check.skip("no Docker-Upload-UUID header, which the specification allows");
      return;
    }
    check.expect(!uuid->empty(),
                 status_exchange->describeRequest() + ": expected a non-empty Docker-Upload-UUID");
  });

  session.runner.run(kArea, "upload-cancel", [&](Check& check) {
    std::optional<Upload> upload = startUpload(check, session, name);
    if (!upload.has_value()) {
      return;
    }
    Blob chunk = session.content.randomBlob(kChunkBytes);
    if (!patchChunk(check, *upload, chunk.bytes, 0)) {
      return;
    }
    std::optional<Exchange> cancel = check.send("DELETE", upload->url);
    if (!cancel || !check.expectStatus(*cancel, 204)) {
      return;
    }
    std::optional<Exchange> status = check.send("GET", upload->url);
    if (status) {
      check.expectError(*status, 404, "BLOB_UPLOAD_UNKNOWN");
    }
  });

  session.runner.run(kArea, "upload-unknown-id", [&](Check& check) {
    std::string url = client.uploadsUrl(name) + session.content.randomUuid();
    Blob chunk = session.content.randomBlob(kChunkBytes);
    std::optional<Exchange> status = check.send("GET", url);
    if (status) {
      check.expectError(*status, 404, "BLOB_UPLOAD_UNKNOWN");
    }
    std::optional<Exchange> patch =
        check.send("PATCH", url,
                   {{"Content-Type", std::string(kOctetStream)},
                    {"Content-Range", rangeText(0, chunk.bytes.size() - 1)}},
                   chunk.bytes);
    if (patch) {
      check.expectError(*patch, 404, "BLOB_UPLOAD_UNKNOWN");
    }
    std::optional<Exchange> put =
        check.send("PUT", appendQuery(url, "digest", chunk.digest),
                   {{"Content-Type", std::string(kOctetStream)}}, chunk.bytes);
    if (put) {
      check.expectError(*put, 404, "BLOB_UPLOAD_UNKNOWN");
    }
  });

  session.runner.run(kArea, "digest-mismatch", [&](Check& check) {
    std::optional<Upload> upload = startUpload(check, session, name);
    if (!upload.has_value()) {
      return;
    }
    Blob blob = session.content.randomBlob(kBlobBytes);
    std::string claimed_digest = session.content.unknownDigest();
    std::optional<Exchange> put =
        check.send("PUT", appendQuery(upload->url, "digest", claimed_digest),
                   {{"Content-Type", std::string(kOctetStream)}}, blob.bytes);
    if (!put || !check.expectError(*put, 400, "DIGEST_INVALID")) {
      return;
    }
    std::optional<Exchange> head = check.send("HEAD", client.blobUrl(name, claimed_digest));
    if (head) {
      check.expect(head->response.status == 404,
                   head->describeRequest() +
                       ": expected 404 for the digest the upload claimed, "
                       "got " +
                       head->describeResponse());
    }
  });
}

void checkMounts(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;
  const std::string& source = session.mount_source_name;

  auto mountUrl = [&](const std::string& digest) {
    return appendQuery(appendQuery(client.uploadsUrl(name), "mount", digest), "from", source);
  };

  session.runner.run(kArea, "mount-existing", [&](Check& check) {
    Blob blob = session.content.randomBlob(kBlobBytes);
    if (!check.expectOk(client.pushBlob(source, blob.bytes, blob.digest))) {
      return;
    }
    std::optional<Exchange> post = check.send("POST", mountUrl(blob.digest));
    if (!post) {
      return;
    }
    // spec.md, "Mounting a blob from another repository": a registry that cannot mount SHOULD
    // respond with 202 and start an ordinary upload session instead.
    if (post->response.status == 202) {
      std::optional<std::string> location = post->response.header("Location");
      if (location.has_value()) {
        cancelUpload(session, resolveReference(post->url, *location));
      }
      check.skip("the registry did not mount (202), which the specification allows");
      return;
    }
    if (!check.expectStatus(*post, 201)) {
      return;
    }
    check.expectHeader(*post, "Docker-Content-Digest", blob.digest);
    std::optional<std::string> location = check.requireHeader(*post, "Location");
    if (location.has_value()) {
      std::optional<Exchange> get = check.send("GET", resolveReference(post->url, *location));
      if (get && check.expectStatus(*get, 200)) {
        check.expectBody(*get, blob.bytes);
      }
    }
    std::optional<Exchange> head = check.send("HEAD", client.blobUrl(name, blob.digest));
    if (head) {
      check.expectStatus(*head, 200);
    }
  });

  session.runner.run(kArea, "mount-missing", [&](Check& check) {
    std::optional<Exchange> post = check.send("POST", mountUrl(session.content.unknownDigest()));
    if (!post || !check.expectStatus(*post, 202)) {
      return;
    }
    std::optional<std::string> location = check.requireHeader(*post, "Location");
    if (location.has_value()) {
      cancelUpload(session, resolveReference(post->url, *location));
    }
  });
}

// Pushes the blobs of a new image and returns its manifest, unpushed.
std::optional<PushedImage> pushImageBlobs(Check& check, Session& session) {
  PushedImage image;
  image.config = session.content.imageConfig();
  image.layers = {session.content.randomBlob(kBlobBytes)};
  ImageManifestFields fields;
  fields.config = describe(image.config, std::string(kOciConfigType));
  fields.layers = {describe(image.layers[0], std::string(kOciLayerType))};
  image.manifest = ContentFactory::imageManifest(fields);

  for (const Blob& blob : {image.config, image.layers[0]}) {
    if (!check.expectOk(session.client.pushBlob(session.name, blob.bytes, blob.digest))) {
      return std::nullopt;
    }
  }
  return image;
}

void checkManifestPushes(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;
  std::vector<Descriptor> pushed_manifests;

  session.runner.run(kArea, "manifest-put-by-tag", [&](Check& check) {
    std::optional<PushedImage> image = pushImageBlobs(check, session);
    if (!image.has_value()) {
      return;
    }
    const Manifest& manifest = image->manifest;
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, runTag(session, "push")),
                   {{"Content-Type", manifest.media_type}}, manifest.bytes);
    if (put) {
      expectManifestCreated(check, *put, manifest);
      pushed_manifests.push_back(manifest.descriptor());
    }
  });

  session.runner.run(kArea, "manifest-put-by-digest", [&](Check& check) {
    std::optional<PushedImage> image = pushImageBlobs(check, session);
    if (!image.has_value()) {
      return;
    }
    const Manifest& manifest = image->manifest;
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, manifest.digest),
                   {{"Content-Type", manifest.media_type}}, manifest.bytes);
    if (put) {
      expectManifestCreated(check, *put, manifest);
      pushed_manifests.push_back(manifest.descriptor());
    }
  });

  session.runner.run(kArea, "index-put", [&](Check& check) {
    if (pushed_manifests.empty()) {
      check.skip("needs a manifest from push/manifest-put-by-tag or push/manifest-put-by-digest");
      return;
    }
    Manifest index = ContentFactory::imageIndex(pushed_manifests);
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, runTag(session, "index")),
                   {{"Content-Type", index.media_type}}, index.bytes);
    if (put) {
      expectManifestCreated(check, *put, index);
    }
  });
}

void checkRejectedManifests(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  // spec.md, "Push": a registry MAY reject a manifest that names blobs it does not hold, and
  // then MUST return MANIFEST_BLOB_UNKNOWN.
  session.runner.run(kArea, "manifest-blob-unknown", [&](Check& check) {
    Blob config = session.content.imageConfig();
    if (!check.expectOk(client.pushBlob(name, config.bytes, config.digest))) {
      return;
    }
    ImageManifestFields fields;
    fields.config = describe(config, std::string(kOciConfigType));
    fields.layers = {Descriptor{
        std::string(kOciLayerType), session.content.unknownDigest(), kBlobBytes, {}, {}}};
    Manifest manifest = ContentFactory::imageManifest(fields);
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, runTag(session, "blob-unknown")),
                   {{"Content-Type", manifest.media_type}}, manifest.bytes);
    if (!put) {
      return;
    }
    if (put->response.status == 201) {
      (void)client.send("DELETE", client.manifestUrl(name, manifest.digest));
      check.skip(
          "the registry accepted a manifest naming an unknown blob, which the "
          "specification allows");
      return;
    }
    check.expectError(*put, 400, "MANIFEST_BLOB_UNKNOWN");
  });

  session.runner.run(kArea, "manifest-invalid", [&](Check& check) {
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, runTag(session, "invalid")),
                   {{"Content-Type", std::string(kOciManifestType)}},
                   "{\"schemaVersion\": 2, \"mediaType\": \"" + std::string(kOciManifestType) +
                       "\", \"config\": ");
    if (put) {
      check.expectError(*put, 400, "MANIFEST_INVALID");
    }
  });

  session.runner.run(kArea, "manifest-digest-mismatch", [&](Check& check) {
    std::optional<PushedImage> image = pushImageBlobs(check, session);
    if (!image.has_value()) {
      return;
    }
    const Manifest& manifest = image->manifest;
    std::string claimed_digest = session.content.unknownDigest();
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, claimed_digest),
                   {{"Content-Type", manifest.media_type}}, manifest.bytes);
    if (put) {
      check.expectError(*put, 400, "DIGEST_INVALID");
    }
  });
}

void checkSubject(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  // spec.md, "Push": a registry MUST accept a manifest whose subject names a manifest it does
  // not hold, so that referrers can be pushed before their subject.
  std::optional<Exchange> put_exchange;
  std::string subject_digest = session.content.unknownDigest();
  session.runner.run(kArea, "manifest-subject-unknown", [&](Check& check) {
    Blob empty = emptyJsonBlob();
    if (!check.expectOk(client.pushBlob(name, empty.bytes, empty.digest))) {
      return;
    }
    ImageManifestFields fields;
    fields.artifact_type = std::string(kArtifactType);
    fields.config = describe(empty, std::string(kOciEmptyType));
    fields.layers = {describe(empty, std::string(kOciEmptyType))};
    fields.subject = Descriptor{std::string(kOciManifestType), subject_digest, 1234, {}, {}};
    Manifest manifest = ContentFactory::imageManifest(fields);
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, manifest.digest),
                   {{"Content-Type", manifest.media_type}}, manifest.bytes);
    if (put) {
      expectManifestCreated(check, *put, manifest);
      put_exchange = std::move(put);
    }
  });

  // spec.md, "Pushing Manifests with Subject": a registry that supports the referrers API MUST
  // send OCI-Subject with the subject's digest. Without it, clients fall back to the
  // referrers tag schema.
  session.runner.run(kArea, "manifest-subject-header", [&](Check& check) {
    if (!put_exchange.has_value()) {
      check.skip("needs the manifest of push/manifest-subject-unknown");
      return;
    }
    check.expectHeader(*put_exchange, "OCI-Subject", subject_digest);
  });
}

}  // namespace

void runPushChecks(Session& session) {
  checkMonolithicUploads(session);
  checkChunkedUploads(session);
  checkUploadSessions(session);
  checkMounts(session);
  checkManifestPushes(session);
  checkRejectedManifests(session);
  checkSubject(session);
}

}  // namespace outpost::conformance
