// Content management: deleting tags, manifests and blobs (spec.md, "Content Management").
// A registry MAY disable each kind of deletion, and then MUST respond with 400 or 405, which these
// checks report as SKIP.
#include <optional>

#include "tests/conformance/checks.h"

namespace outpost::conformance {
namespace {

constexpr std::string_view kArea = "management";

// Returns true when `exchange` is the response of a registry with this deletion disabled,
// after marking the check skipped.
bool skipWhenDisabled(Check& check, const Exchange& exchange, std::string_view operation) {
  int status = exchange.response.status;
  if (status != 400 && status != 405) {
    return false;
  }
  check.skip(std::string(operation) + " is disabled (" + exchange.describeResponse() +
             "), which the specification allows");
  return true;
}

void expectGone(Check& check, const std::string& url, const std::vector<HttpHeader>& headers) {
  for (std::string method : {"GET", "HEAD"}) {
    std::optional<Exchange> exchange = check.send(method, url, headers);
    if (exchange) {
      check.expect(exchange->response.status == 404, exchange->describeRequest() +
                                                         ": expected 404 after the deletion, got " +
                                                         exchange->describeResponse());
    }
  }
}

}  // namespace

void runManagementChecks(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;
  const std::vector<HttpHeader> accept = {{"Accept", std::string(kManifestAccept)}};

  std::string deleted_tag = runTag(session, "delete-tag");
  std::string kept_tag = runTag(session, "keep-tag");
  PushedImage image;
  Blob loose_blob = session.content.randomBlob(2048);
  bool is_set_up = session.runner.run(kArea, "setup", [&](Check& check) {
    Expected<PushedImage> pushed = pushImage(session, name, deleted_tag);
    if (!check.expectOk(pushed.status())) {
      return;
    }
    image = std::move(*pushed);
    check.expectOk(
        client.pushManifest(name, kept_tag, image.manifest.bytes, image.manifest.media_type));
    check.expectOk(client.pushBlob(name, loose_blob.bytes, loose_blob.digest));
  });
  if (!is_set_up) {
    session.runner.blockArea(kArea, "management/setup could not push the content to delete");
  }

  session.runner.run(kArea, "delete-tag", [&](Check& check) {
    std::optional<Exchange> deletion = check.send("DELETE", client.manifestUrl(name, deleted_tag));
    if (!deletion || skipWhenDisabled(check, *deletion, "tag deletion") ||
        !check.expectStatus(*deletion, 202)) {
      return;
    }
    expectGone(check, client.manifestUrl(name, deleted_tag), accept);
    // Only the tag goes: the manifest and its other tags stay.
    for (const std::string& reference : {kept_tag, image.manifest.digest}) {
      std::optional<Exchange> get = check.send("GET", client.manifestUrl(name, reference), accept);
      if (get) {
        check.expectStatus(*get, 200);
      }
    }
  });

  session.runner.run(kArea, "delete-manifest", [&](Check& check) {
    std::optional<Exchange> deletion =
        check.send("DELETE", client.manifestUrl(name, image.manifest.digest));
    if (!deletion || skipWhenDisabled(check, *deletion, "manifest deletion") ||
        !check.expectStatus(*deletion, 202)) {
      return;
    }
    // spec.md, "Deleting Manifests": the digest and every tag that pointed to it return 404.
    expectGone(check, client.manifestUrl(name, image.manifest.digest), accept);
    expectGone(check, client.manifestUrl(name, kept_tag), accept);
  });

  session.runner.run(kArea, "delete-manifest-unknown", [&](Check& check) {
    std::string digest = session.content.unknownDigest();
    for (const std::string& repository : {name, name + "/" + runTag(session, "never-pushed")}) {
      std::optional<Exchange> deletion =
          check.send("DELETE", client.manifestUrl(repository, digest));
      if (deletion && !skipWhenDisabled(check, *deletion, "manifest deletion")) {
        check.expectStatus(*deletion, 404);
      }
    }
  });

  session.runner.run(kArea, "delete-blob", [&](Check& check) {
    std::optional<Exchange> deletion =
        check.send("DELETE", client.blobUrl(name, loose_blob.digest));
    if (!deletion || skipWhenDisabled(check, *deletion, "blob deletion") ||
        !check.expectStatus(*deletion, 202)) {
      return;
    }
    expectGone(check, client.blobUrl(name, loose_blob.digest), {});
  });

  session.runner.run(kArea, "delete-blob-unknown", [&](Check& check) {
    std::optional<Exchange> deletion =
        check.send("DELETE", client.blobUrl(name, session.content.unknownDigest()));
    if (deletion && !skipWhenDisabled(check, *deletion, "blob deletion")) {
      check.expectError(*deletion, 404, "BLOB_UNKNOWN");
    }
  });
}

}  // namespace outpost::conformance
