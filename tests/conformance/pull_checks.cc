// Pull: the API version check, manifests and blobs by GET and HEAD, ranges, unknown content,
// invalid repository names and the length limit of tags (spec.md, "Pull" and "Pushing
// Manifests").
#include <algorithm>
#include <optional>

#include "tests/conformance/checks.h"

namespace outpost::conformance {
namespace {

constexpr std::string_view kArea = "pull";
// spec.md, "Pulling manifests": a tag is at most 128 characters.
constexpr size_t kMaxTagLength = 128;

std::vector<HttpHeader> acceptManifests() { return {{"Accept", std::string(kManifestAccept)}}; }

// Expects a 200 response for `manifest` with the headers a puller relies on: Content-Type as
// pushed, Docker-Content-Digest, Content-Length, and for GET the exact bytes pushed.
void expectManifestResponse(Check& check, const Exchange& exchange, const Manifest& manifest) {
  if (!check.expectStatus(exchange, 200)) {
    return;
  }
  check.expectHeader(exchange, "Content-Type", manifest.media_type);
  check.expectHeader(exchange, "Docker-Content-Digest", manifest.digest);
  check.expectHeader(exchange, "Content-Length", std::to_string(manifest.bytes.size()));
  if (exchange.method == "GET") {
    check.expectBody(exchange, manifest.bytes);
  }
}

void expectBlobResponse(Check& check, const Exchange& exchange, const Blob& blob) {
  if (!check.expectStatus(exchange, 200)) {
    return;
  }
  check.expectHeader(exchange, "Docker-Content-Digest", blob.digest);
  check.expectHeader(exchange, "Content-Length", std::to_string(blob.bytes.size()));
  if (exchange.method == "GET") {
    check.expectBody(exchange, blob.bytes);
  }
}

// Expects the response to a request naming an invalid repository: 400 NAME_INVALID or
// 404 NAME_UNKNOWN. The specification lists both codes without saying which a registry uses.
void expectNameRejected(Check& check, const Exchange& exchange) {
  std::vector<std::string> codes = errorCodes(exchange.response.body);
  auto has_code = [&](std::string_view code) {
    return std::find(codes.begin(), codes.end(), code) != codes.end();
  };
  if (exchange.response.status == 400 && has_code("NAME_INVALID")) {
    check.note("400 NAME_INVALID");
    return;
  }
  if (exchange.response.status == 404 && has_code("NAME_UNKNOWN")) {
    check.note("404 NAME_UNKNOWN");
    return;
  }
  check.fail(exchange.describeRequest() + ": expected 400 NAME_INVALID or 404 NAME_UNKNOWN, got " +
             exchange.describeResponse());
}

void checkManifests(Session& session, const PushedImage& image, const std::string& tag) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;
  const Manifest& manifest = image.manifest;

  for (std::string method : {"GET", "HEAD"}) {
    std::string lower_method = method == "GET" ? "get" : "head";
    session.runner.run(kArea, "manifest-" + lower_method + "-by-tag", [&](Check& check) {
      std::optional<Exchange> exchange =
          check.send(method, client.manifestUrl(name, tag), acceptManifests());
      if (exchange) {
        expectManifestResponse(check, *exchange, manifest);
      }
    });
    session.runner.run(kArea, "manifest-" + lower_method + "-by-digest", [&](Check& check) {
      std::optional<Exchange> exchange =
          check.send(method, client.manifestUrl(name, manifest.digest), acceptManifests());
      if (exchange) {
        expectManifestResponse(check, *exchange, manifest);
      }
    });
  }
}

void checkBlobs(Session& session, const PushedImage& image) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  session.runner.run(kArea, "blob-get", [&](Check& check) {
    for (const Blob& blob : {image.config, image.layers[0], image.layers[1]}) {
      std::optional<Exchange> exchange = check.send("GET", client.blobUrl(name, blob.digest));
      if (exchange) {
        expectBlobResponse(check, *exchange, blob);
      }
    }
  });

  session.runner.run(kArea, "blob-head", [&](Check& check) {
    const Blob& blob = image.layers[0];
    std::optional<Exchange> exchange = check.send("HEAD", client.blobUrl(name, blob.digest));
    if (exchange) {
      expectBlobResponse(check, *exchange, blob);
    }
  });

  // spec.md, "Pulling blobs": a registry SHOULD support Range requests (RFC 9110, section 14).
  session.runner.run(kArea, "blob-range", [&](Check& check) {
    const Blob& blob = image.layers[0];
    constexpr size_t kFirst = 100;
    constexpr size_t kLast = 1099;
    std::optional<Exchange> exchange =
        check.send("GET", client.blobUrl(name, blob.digest),
                   {{"Range", "bytes=" + std::to_string(kFirst) + "-" + std::to_string(kLast)}});
    if (!exchange || !check.expectStatus(*exchange, 206)) {
      return;
    }
    check.expectHeader(*exchange, "Content-Range",
                       "bytes " + std::to_string(kFirst) + "-" + std::to_string(kLast) + "/" +
                           std::to_string(blob.bytes.size()));
    check.expectBody(*exchange, std::string_view(blob.bytes).substr(kFirst, kLast - kFirst + 1));
  });
}

void checkUnknownContent(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  session.runner.run(kArea, "manifest-unknown", [&](Check& check) {
    for (const std::string& reference :
         {runTag(session, "unknown"), session.content.unknownDigest()}) {
      std::optional<Exchange> get =
          check.send("GET", client.manifestUrl(name, reference), acceptManifests());
      if (get) {
        check.expectError(*get, 404, "MANIFEST_UNKNOWN");
      }
      std::optional<Exchange> head =
          check.send("HEAD", client.manifestUrl(name, reference), acceptManifests());
      if (head) {
        check.expectStatus(*head, 404);
      }
    }
  });

  session.runner.run(kArea, "blob-unknown", [&](Check& check) {
    std::string digest = session.content.unknownDigest();
    std::optional<Exchange> get = check.send("GET", client.blobUrl(name, digest));
    if (get) {
      check.expectError(*get, 404, "BLOB_UNKNOWN");
    }
    std::optional<Exchange> head = check.send("HEAD", client.blobUrl(name, digest));
    if (head) {
      check.expectStatus(*head, 404);
    }
  });

  // A path component may not hold upper-case letters, nor two separators in a row
  // (spec.md, "Pulling manifests", the <name> regular expression).
  session.runner.run(kArea, "name-invalid-uppercase", [&](Check& check) {
    std::optional<Exchange> get =
        check.send("GET", client.manifestUrl(name + "/Upper", "latest"), acceptManifests());
    if (get) {
      expectNameRejected(check, *get);
    }
  });
  session.runner.run(kArea, "name-invalid-double-dot", [&](Check& check) {
    std::optional<Exchange> get =
        check.send("GET", client.manifestUrl(name + "/double..dot", "latest"), acceptManifests());
    if (get) {
      expectNameRejected(check, *get);
    }
  });
}

void checkTagLength(Session& session, const PushedImage& image) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;
  const Manifest& manifest = image.manifest;
  auto tagOfLength = [&](size_t length) {
    std::string tag = runTag(session, "long");
    tag.resize(length, 'x');
    return tag;
  };

  session.runner.run(kArea, "tag-max-length", [&](Check& check) {
    std::string tag = tagOfLength(kMaxTagLength);
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, tag), {{"Content-Type", manifest.media_type}},
                   manifest.bytes);
    if (!put || !check.expectStatus(*put, 201)) {
      return;
    }
    std::optional<Exchange> get =
        check.send("GET", client.manifestUrl(name, tag), acceptManifests());
    if (get) {
      expectManifestResponse(check, *get, manifest);
    }
  });

  session.runner.run(kArea, "tag-too-long", [&](Check& check) {
    std::string tag = tagOfLength(kMaxTagLength + 1);
    std::optional<Exchange> put =
        check.send("PUT", client.manifestUrl(name, tag), {{"Content-Type", manifest.media_type}},
                   manifest.bytes);
    if (!put) {
      return;
    }
    int status = put->response.status;
    if (!check.expect(status >= 400 && status < 500,
                      put->describeRequest() + ": expected a 4xx rejection of a " +
                          std::to_string(tag.size()) + "-character tag, got " +
                          put->describeResponse())) {
      return;
    }
    check.note(put->describeResponse());
    std::optional<Exchange> get =
        check.send("GET", client.manifestUrl(name, tag), acceptManifests());
    if (get) {
      check.expect(get->response.status != 200,
                   get->describeRequest() + ": the rejected tag was stored anyway (200)");
    }
  });
}

}  // namespace

void runPullChecks(Session& session) {
  const RegistryClient& client = session.client;

  session.runner.run(kArea, "api-version", [&](Check& check) {
    std::optional<Exchange> get = check.send("GET", client.baseUrl() + "/v2/");
    if (get) {
      check.expectStatus(*get, 200);
    }
  });

  // When the setup fails the area is blocked, and the checks below print SKIP without running
  // their bodies, so they never read the empty image.
  std::string tag = runTag(session, "pull");
  PushedImage image;
  bool is_set_up = session.runner.run(kArea, "setup", [&](Check& check) {
    Expected<PushedImage> pushed = pushImage(session, session.name, tag);
    if (check.expectOk(pushed.status())) {
      image = std::move(*pushed);
    }
  });
  if (!is_set_up) {
    session.runner.blockArea(kArea, "pull/setup could not push the test image");
  }

  checkManifests(session, image, tag);
  checkBlobs(session, image);
  checkUnknownContent(session);
  checkTagLength(session, image);
}

}  // namespace outpost::conformance
