// The manifest, blob and tag half of LocalRepository. Uploads are in local_uploads.cc.
#include "proxy/local_repository.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "proxy/blocking_work.h"
#include "proxy/content_response.h"
#include "proxy/grammar.h"
#include "proxy/manifest_check.h"
#include "proxy/memory_content.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

// The outcome of a step that ran on a worker thread, sent back on the loop thread.
struct WorkOutcome {
  int status = 0;  // 0 for success
  std::string_view code;
  std::string message;

  void fail(int failure_status, std::string_view failure_code, std::string failure_message) {
    status = failure_status;
    code = failure_code;
    message = std::move(failure_message);
  }
};

// Sends the error for a failed read or write of the index or the blob store.
void failStorage(WorkOutcome& outcome, std::string_view operation, const Status& failure) {
  if (failure.code() == StatusCode::kNoSpace) {
    outcome.fail(507, error_code::kUnknown,
                 std::string(operation) + " failed: no space left on disk");
    return;
  }
  outcome.fail(500, error_code::kUnknown, std::string(operation) + " failed");
}

void respondReferenceError(Exchange& exchange, std::string_view reference, const Status& failure) {
  bool is_digest = reference.find(':') != std::string_view::npos;
  respondRegistryError(exchange, 400,
                       is_digest ? error_code::kDigestInvalid : error_code::kTagInvalid,
                       std::string(failure.message()));
}

void respondEmpty(Exchange& exchange, int status, ResponseHead head = ResponseHead()) {
  head.setStatus(status);
  head.add("Docker-Distribution-API-Version", "registry/2.0");
  exchange.respond(std::move(head), "");
}

}  // namespace

LocalRepository::LocalRepository(LocalConfig config, LocalContext context)
    : config_(std::move(config)), context_(context) {}

bool LocalRepository::checkDeleteAllowed(Exchange& exchange, DeleteKind kind) const {
  bool is_allowed = false;
  std::string_view kind_name;
  std::string_view allow;
  switch (kind) {
    case DeleteKind::kManifest:
      is_allowed = config_.allow_manifest_delete;
      kind_name = "manifests";
      allow = "GET, HEAD, PUT";
      break;
    case DeleteKind::kTag:
      is_allowed = config_.allow_tag_delete;
      kind_name = "tags";
      allow = "GET, HEAD, PUT";
      break;
    case DeleteKind::kBlob:
      is_allowed = config_.allow_blob_delete;
      kind_name = "blobs";
      allow = "GET, HEAD";
      break;
  }
  if (is_allowed) {
    return true;
  }
  ResponseHead head;
  head.add("Allow", allow);
  respondRegistryError(
      exchange, 405, error_code::kUnsupported,
      "deletes of " + std::string(kind_name) + " are disabled in repository " + config_.name,
      std::move(head));
  return false;
}

bool LocalRepository::containsBlob(std::string_view image_name, const Digest& digest) const {
  return context_.index->getLocalBlob(config_.name, image_name, digest).hasValue();
}

Expected<std::vector<std::string>> LocalRepository::listImages(std::string_view after,
                                                               size_t limit) const {
  return context_.index->listImages(config_.name, after, limit);
}

// ----- Manifests --------------------------------------------------------------------------

void LocalRepository::handleManifest(const std::shared_ptr<Exchange>& exchange,
                                     const ImageName& image, std::string reference,
                                     ServedBlobCheck served_blob) {
  switch (exchange->request().method()) {
    case HttpMethod::kGet:
    case HttpMethod::kHead:
      serveManifest(exchange, image, reference);
      return;
    case HttpMethod::kPut:
      putManifest(exchange, image, std::move(reference), std::move(served_blob));
      return;
    case HttpMethod::kDelete:
      deleteManifest(exchange, image, reference);
      return;
    default: {
      ResponseHead head;
      head.add("Allow", "GET, HEAD, PUT, DELETE");
      respondRegistryError(*exchange, 405, error_code::kUnsupported,
                           "manifests answer GET, HEAD, PUT and DELETE", std::move(head));
      return;
    }
  }
}

void LocalRepository::serveManifest(const std::shared_ptr<Exchange>& exchange,
                                    const ImageName& image, const std::string& reference,
                                    const MissHandler& on_miss) {
  Expected<ReferenceKind> kind = classifyReference(reference);
  if (!kind) {
    respondReferenceError(*exchange, reference, kind.status());
    return;
  }
  storage::Index& index = *context_.index;
  std::optional<Digest> digest;
  if (*kind == ReferenceKind::kTag) {
    Expected<storage::TagRecord> tag = index.getTag(config_.name, image.name, reference);
    if (tag) {
      Expected<Digest> parsed = Digest::parse(tag->digest);
      if (parsed) {
        digest = std::move(*parsed);
      }
    }
  } else {
    Expected<Digest> parsed = Digest::parse(reference);
    if (index.getLocalManifest(config_.name, image.name, *parsed)) {
      digest = std::move(*parsed);
    }
  }
  auto unknown = [&] {
    std::string message = "manifest " + reference + " of " + image.path_name + " is unknown";
    if (on_miss) {
      on_miss(notFound(std::move(message)));
      return;
    }
    respondRegistryError(*exchange, 404, error_code::kManifestUnknown, message);
  };
  if (!digest) {
    unknown();
    return;
  }
  Expected<cache::MemoryItemRef> manifest = readManifest(*context_.memory, index, *digest);
  if (!manifest) {
    log::storage().error(
        "local manifest record missing req={} repo={} name={} digest={} "
        "error=\"{}\"",
        exchange->requestId(), config_.name, image.name, digest->str(),
        manifest.status().toString());
    unknown();
    return;
  }
  respondManifestItem(*exchange, *digest, *manifest);
}

void LocalRepository::putManifest(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                                  std::string reference, ServedBlobCheck served_blob) {
  if (Expected<ReferenceKind> kind = classifyReference(reference); !kind) {
    respondReferenceError(*exchange, reference, kind.status());
    return;
  }
  const uint64_t max_bytes = config_.max_manifest_bytes;
  auto too_large = [max_bytes](Exchange& target) {
    respondRegistryError(
        target, 413, error_code::kManifestInvalid,
        "the manifest is larger than the limit of " + std::to_string(max_bytes) + " bytes");
  };
  std::string_view length_header = exchange->request().header("Content-Length");
  uint64_t declared_length = 0;
  if (!length_header.empty() &&
      std::from_chars(length_header.data(), length_header.data() + length_header.size(),
                      declared_length)
              .ec == std::errc() &&
      declared_length > max_bytes) {
    too_large(*exchange);
    return;
  }

  auto body = std::make_shared<std::string>();
  std::weak_ptr<Exchange> weak = exchange;
  exchange->readBody(
      [weak, body, max_bytes, too_large](std::string_view chunk) {
        if (body->size() + chunk.size() > max_bytes) {
          if (auto target = weak.lock()) {
            // The response goes out after the callback returns, once the server stopped reading.
            target->loop().post([target, too_large] { too_large(*target); });
          }
          return false;
        }
        body->append(chunk);
        return true;
      },
      [this, weak, image, reference = std::move(reference), body,
       served_blob = std::move(served_blob)]() mutable {
        if (auto target = weak.lock()) {
          storeManifest(target, image, reference, std::move(*body), std::move(served_blob));
        }
      });
}

void LocalRepository::storeManifest(const std::shared_ptr<Exchange>& exchange,
                                    const ImageName& image, const std::string& reference,
                                    std::string body, ServedBlobCheck served_blob) {
  Expected<ManifestReferences> references =
      checkPushedManifest(exchange->request().header("Content-Type"), body);
  if (!references) {
    respondRegistryError(*exchange, 400, error_code::kManifestInvalid,
                         std::string(references.status().message()));
    return;
  }

  std::optional<std::string> tag;
  Digest digest = sha256Of(body);
  if (classifyReference(reference).value() == ReferenceKind::kDigest) {
    Expected<Digest> expected = Digest::parse(reference);
    DigestHasher hasher(expected->algorithm());
    hasher.update(body);
    Digest actual = hasher.finish();
    if (actual != *expected) {
      respondRegistryError(*exchange, 400, error_code::kDigestInvalid,
                           "the manifest's digest is " + actual.str() + ", not " + expected->str());
      return;
    }
    digest = std::move(actual);
  } else {
    tag = reference;
  }

  auto outcome = std::make_shared<WorkOutcome>();
  auto shared_references = std::make_shared<ManifestReferences>(std::move(*references));
  auto shared_body = std::make_shared<std::string>(std::move(body));
  runBlocking(
      exchange->loop().uv(),
      [this, outcome, image, tag, digest, shared_references, shared_body, served_blob] {
        storage::Index& index = *context_.index;
        const ManifestReferences& refs = *shared_references;
        // Taken before manifest_write_mutex_, as every holder of both does.
        std::shared_lock push_lock = context_.collector->lockForPush();
        std::lock_guard lock(manifest_write_mutex_);

        // Blobs that the image gets with this manifest, because a virtual repository serves them.
        std::vector<Digest> linked_blobs;
        for (const BlobReference& blob : refs.blobs) {
          if (blob.is_external) {
            continue;
          }
          if (!index.getLocalBlob(config_.name, image.name, blob.digest)) {
            if (!served_blob || !served_blob(blob.digest)) {
              outcome->fail(400, error_code::kManifestBlobUnknown,
                            "blob " + blob.digest.str() + " is not in " + image.path_name +
                                "; push it before the manifest");
              return;
            }
            linked_blobs.push_back(blob.digest);
          }
          Expected<storage::BlobRecord> record = index.getBlob(blob.digest);
          if (record && record->size != blob.size) {
            outcome->fail(400, error_code::kManifestInvalid,
                          "the manifest gives blob " + blob.digest.str() + " a size of " +
                              std::to_string(blob.size) + " bytes, but it has " +
                              std::to_string(record->size));
            return;
          }
        }
        // NOTE: Child manifests are not linked from a virtual repository's members as blobs
        // are, so an index pushed through one needs its children pushed first, as skopeo does.
        for (const Digest& child : refs.manifests) {
          if (!index.getLocalManifest(config_.name, image.name, child)) {
            outcome->fail(400, error_code::kManifestBlobUnknown,
                          "manifest " + child.str() + " is not in " + image.path_name +
                              "; push it before the index");
            return;
          }
        }
        std::string previous_digest;
        if (tag) {
          Expected<storage::TagRecord> existing = index.getTag(config_.name, image.name, *tag);
          if (existing) {
            previous_digest = existing->digest;
          }
          if (config_.immutable_tags && existing && existing->digest != digest.str()) {
            outcome->fail(403, error_code::kDenied,
                          "tag " + *tag + " of " + image.path_name + " points to " +
                              existing->digest + " and tags of repository " + config_.name +
                              " are immutable; push under a new tag");
            return;
          }
        }
        if (Status held = holdServedBlobs(linked_blobs); !held.isOk()) {
          if (held.code() == StatusCode::kNotFound) {
            outcome->fail(400, error_code::kManifestBlobUnknown,
                          std::string(held.message()) + "; push it before the manifest");
          } else {
            log::storage().error("blob not held repo={} name={} error=\"{}\"", config_.name,
                                 image.name, held.toString());
            failStorage(*outcome, "holding a blob", held);
          }
          return;
        }

        int64_t now_ms = context_.clock->nowMs();
        storage::Index::Batch batch;
        if (tag && previous_digest != digest.str()) {
          batch.putTagChange(config_.name, image.name, *tag,
                             {.time_ms = now_ms,
                              .old_digest = previous_digest,
                              .new_digest = digest.str(),
                              .cause = "push"});
        }
        batch.putManifest(
            digest, storage::ManifestRecord{
                        .media_type = refs.media_type, .body = *shared_body, .created_ms = now_ms});
        batch.putLocalManifest(config_.name, image.name, digest, {.added_ms = now_ms});
        for (const Digest& linked : linked_blobs) {
          batch.putLocalBlob(config_.name, image.name, linked, {.added_ms = now_ms});
        }
        if (refs.subject) {
          batch.putReferrer(config_.name, image.name, *refs.subject, digest);
        }
        if (tag) {
          batch.putTag(
              config_.name, image.name, *tag,
              storage::TagRecord{
                  .digest = digest.str(), .media_type = refs.media_type, .confirmed_ms = now_ms});
        }
        if (Status written = index.write(std::move(batch), storage::Index::WriteMode::kSynced);
            !written.isOk()) {
          log::storage().error("manifest not stored repo={} name={} digest={} error=\"{}\"",
                               config_.name, image.name, digest.str(), written.toString());
          failStorage(*outcome, "storing the manifest", written);
          return;
        }
        keepManifest(*context_.memory, digest, refs.media_type, std::move(*shared_body));
      },
      [this, exchange, outcome, image, digest, shared_references, tag] {
        if (outcome->status != 0) {
          respondRegistryError(*exchange, outcome->status, outcome->code, outcome->message);
          return;
        }
        log::proxy().info("manifest pushed req={} repo={} name={} digest={} tag={}",
                          exchange->requestId(), config_.name, image.name, digest.str(),
                          tag ? *tag : "-");
        ResponseHead head;
        head.add("Location", "/v2/" + image.path_name + "/manifests/" + digest.str());
        head.add("Docker-Content-Digest", digest.str());
        if (shared_references->subject) {
          head.add("OCI-Subject", shared_references->subject->str());
        }
        respondEmpty(*exchange, 201, std::move(head));
      });
}

Status LocalRepository::holdServedBlobs(const std::vector<Digest>& blobs) const {
  for (const Digest& blob : blobs) {
    // Held first: once held, the blob's file is never evicted, so the check after it holds.
    OUTPOST_RETURN_IF_ERROR(context_.disk_budget->hold(blob));
    if (!context_.store->contains(blob)) {
      return notFound("blob " + blob.str() + " is no longer stored");
    }
  }
  return Status::ok();
}

void LocalRepository::deleteManifest(const std::shared_ptr<Exchange>& exchange,
                                     const ImageName& image, const std::string& reference) {
  Expected<ReferenceKind> kind = classifyReference(reference);
  if (!kind) {
    respondReferenceError(*exchange, reference, kind.status());
    return;
  }
  bool is_tag = *kind == ReferenceKind::kTag;
  if (!checkDeleteAllowed(*exchange, is_tag ? DeleteKind::kTag : DeleteKind::kManifest)) {
    return;
  }
  auto outcome = std::make_shared<WorkOutcome>();
  runBlocking(
      exchange->loop().uv(),
      [this, outcome, image, reference, is_tag] {
        storage::Index& index = *context_.index;
        std::lock_guard lock(manifest_write_mutex_);
        storage::Index::Batch batch;
        int64_t now_ms = context_.clock->nowMs();
        auto unknown = [&] {
          outcome->fail(404, error_code::kManifestUnknown,
                        "manifest " + reference + " of " + image.path_name + " is unknown");
        };
        auto immutable = [&](const std::string& tag) {
          outcome->fail(403, error_code::kDenied,
                        "tag " + tag + " of " + image.path_name +
                            " cannot be deleted: tags of "
                            "repository " +
                            config_.name + " are immutable");
        };

        if (is_tag) {
          Expected<storage::TagRecord> tag_record =
              index.getTag(config_.name, image.name, reference);
          if (!tag_record) {
            unknown();
            return;
          }
          if (config_.immutable_tags) {
            immutable(reference);
            return;
          }
          batch.deleteTag(config_.name, image.name, reference);
          batch.putTagChange(
              config_.name, image.name, reference,
              {.time_ms = now_ms, .old_digest = tag_record->digest, .cause = "delete"});
        } else {
          Digest digest = Digest::parse(reference).value();
          if (!index.getLocalManifest(config_.name, image.name, digest)) {
            unknown();
            return;
          }
          // The manifest's tags go with it, as the distribution specification requires.
          Expected<std::vector<std::string>> tags = index.listTags(config_.name, image.name);
          if (!tags) {
            failStorage(*outcome, "listing tags", tags.status());
            return;
          }
          for (const std::string& tag : *tags) {
            Expected<storage::TagRecord> record = index.getTag(config_.name, image.name, tag);
            if (!record || record->digest != digest.str()) {
              continue;
            }
            if (config_.immutable_tags) {
              immutable(tag);
              return;
            }
            batch.deleteTag(config_.name, image.name, tag);
            batch.putTagChange(
                config_.name, image.name, tag,
                {.time_ms = now_ms, .old_digest = record->digest, .cause = "delete"});
          }
          batch.deleteLocalManifest(config_.name, image.name, digest);
          // The manifest no longer refers to its subject.
          if (Expected<storage::ManifestRecord> record = index.getManifest(digest)) {
            Expected<ManifestReferences> refs =
                checkPushedManifest(record->media_type, record->body);
            if (refs && refs->subject) {
              batch.deleteReferrer(config_.name, image.name, *refs->subject, digest);
            }
          }
        }
        if (Status written = index.write(std::move(batch), storage::Index::WriteMode::kSynced);
            !written.isOk()) {
          log::storage().error("manifest not deleted repo={} name={} reference={} error=\"{}\"",
                               config_.name, image.name, reference, written.toString());
          failStorage(*outcome, "deleting the manifest", written);
        }
      },
      [this, exchange, outcome, image, reference] {
        if (outcome->status != 0) {
          respondRegistryError(*exchange, outcome->status, outcome->code, outcome->message);
          return;
        }
        log::proxy().info("manifest deleted req={} repo={} name={} reference={}",
                          exchange->requestId(), config_.name, image.name, reference);
        respondEmpty(*exchange, 202);
      });
}

// ----- Blobs ------------------------------------------------------------------------------

void LocalRepository::handleBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                                 std::string_view reference) {
  HttpMethod method = exchange->request().method();
  if (method != HttpMethod::kGet && method != HttpMethod::kHead && method != HttpMethod::kDelete) {
    ResponseHead head;
    head.add("Allow", "GET, HEAD, DELETE");
    respondRegistryError(*exchange, 405, error_code::kUnsupported,
                         "blobs answer GET, HEAD and DELETE; push through blobs/uploads/",
                         std::move(head));
    return;
  }
  std::optional<Digest> digest = parseDigestOrRespond(*exchange, reference);
  if (!digest) {
    return;
  }
  if (method == HttpMethod::kDelete) {
    if (!checkDeleteAllowed(*exchange, DeleteKind::kBlob)) {
      return;
    }
    auto outcome = std::make_shared<WorkOutcome>();
    runBlocking(
        exchange->loop().uv(),
        [this, outcome, image, digest = *digest] {
          storage::Index& index = *context_.index;
          if (!index.getLocalBlob(config_.name, image.name, digest)) {
            outcome->fail(404, error_code::kBlobUnknown,
                          "blob " + digest.str() + " is not in " + image.path_name);
            return;
          }
          storage::Index::Batch batch;
          batch.deleteLocalBlob(config_.name, image.name, digest);
          if (Status written = index.write(std::move(batch), storage::Index::WriteMode::kSynced);
              !written.isOk()) {
            log::storage().error("blob link not deleted repo={} name={} digest={} error=\"{}\"",
                                 config_.name, image.name, digest.str(), written.toString());
            failStorage(*outcome, "deleting the blob", written);
          }
        },
        [exchange, outcome] {
          if (outcome->status != 0) {
            respondRegistryError(*exchange, outcome->status, outcome->code, outcome->message);
            return;
          }
          respondEmpty(*exchange, 202);
        });
    return;
  }

  serveBlob(exchange, image, *digest);
}

void LocalRepository::serveBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                                const Digest& digest, const MissHandler& on_miss) {
  auto unknown = [&] {
    std::string message = "blob " + digest.str() + " is not in " + image.path_name;
    if (on_miss) {
      on_miss(notFound(std::move(message)));
      return;
    }
    respondRegistryError(*exchange, 404, error_code::kBlobUnknown, message);
  };
  if (!containsBlob(image.name, digest)) {
    unknown();
    return;
  }
  if (cache::MemoryItemRef item = context_.memory->find(cache::ContentKind::kBlob, digest)) {
    sendBlobItem(exchange, digest, std::move(item));
    return;
  }
  Expected<storage::BlobFile> file = context_.store->openBlob(digest);
  if (!file) {
    log::storage().error(
        "local blob file unreadable req={} repo={} name={} digest={} "
        "error=\"{}\"",
        exchange->requestId(), config_.name, image.name, digest.str(), file.status().toString());
    unknown();
    return;
  }
  uint64_t size = file->size;
  sendBlobFile(exchange, digest, std::move(*file), cache::DiskBudget::Pin());
  promoteBlob(exchange->loop(), *context_.memory, *context_.store, digest, size);
}

Status LocalRepository::rollbackTag(std::string_view name, std::string_view tag,
                                    const Digest& digest) {
  storage::Index& index = *context_.index;
  std::lock_guard lock(manifest_write_mutex_);
  if (config_.immutable_tags) {
    return Status(StatusCode::kPermissionDenied,
                  "tags of repository " + config_.name + " are immutable");
  }
  if (!index.getLocalManifest(config_.name, name, digest)) {
    return notFound("image " + std::string(name) + " no longer contains manifest " +
                    digest.str());
  }
  OUTPOST_ASSIGN_OR_RETURN(storage::ManifestRecord manifest, index.getManifest(digest));
  Expected<storage::TagRecord> current = index.getTag(config_.name, name, tag);
  std::string previous_digest = current ? current->digest : std::string();
  if (previous_digest == digest.str()) {
    return Status::ok();
  }
  int64_t now_ms = context_.clock->nowMs();
  storage::Index::Batch batch;
  batch.putTag(config_.name, name, tag,
               storage::TagRecord{.digest = digest.str(),
                                  .media_type = manifest.media_type,
                                  .confirmed_ms = now_ms});
  batch.putTagChange(config_.name, name, tag,
                     {.time_ms = now_ms,
                      .old_digest = previous_digest,
                      .new_digest = digest.str(),
                      .cause = "rollback"});
  return index.write(std::move(batch), storage::Index::WriteMode::kSynced);
}

// ----- Referrers --------------------------------------------------------------------------

void LocalRepository::serveReferrers(const std::shared_ptr<Exchange>& exchange,
                                     const ImageName& image, std::string_view reference,
                                     const MissHandler& on_miss) {
  std::optional<Digest> subject = parseDigestOrRespond(*exchange, reference);
  if (!subject) {
    return;
  }
  Expected<std::vector<Digest>> referrers =
      context_.index->listReferrers(config_.name, image.name, *subject);
  if (!referrers) {
    log::storage().error("referrers listing failed req={} repo={} name={} error=\"{}\"",
                         exchange->requestId(), config_.name, image.name,
                         referrers.status().toString());
    respondRegistryError(*exchange, 500, error_code::kUnknown, "listing referrers failed");
    return;
  }
  std::string artifact_type = exchange->request().queryParam("artifactType");
  nlohmann::json descriptors =
      referrerDescriptors(*exchange, *context_.index, *referrers, artifact_type);
  if (on_miss && descriptors.empty()) {
    on_miss(notFound("no referrers of " + subject->str() + " in " + image.path_name));
    return;
  }
  respondReferrerIndex(*exchange, std::move(descriptors), artifact_type);
}

// ----- Tags -------------------------------------------------------------------------------

void LocalRepository::serveTagList(const std::shared_ptr<Exchange>& exchange,
                                   const ImageName& image) {
  std::optional<PageRequest> page = readPageRequest(*exchange);
  if (!page) {
    return;
  }
  Expected<std::vector<std::string>> tags = listTags(image);
  if (!tags && tags.status().code() == StatusCode::kNotFound) {
    respondRegistryError(*exchange, 404, error_code::kNameUnknown,
                         std::string(tags.status().message()));
    return;
  }
  if (!tags) {
    log::storage().error("tag list failed req={} repo={} name={} error=\"{}\"",
                         exchange->requestId(), config_.name, image.name, tags.status().toString());
    respondRegistryError(*exchange, 500, error_code::kUnknown, "listing tags failed");
    return;
  }
  nlohmann::json body;
  body["name"] = image.path_name;
  respondListPage(*exchange, "/v2/" + image.path_name + "/tags/list", std::move(body), "tags",
                  *tags, *page);
}

Expected<std::vector<std::string>> LocalRepository::listTags(const ImageName& image) const {
  storage::Index& index = *context_.index;
  Expected<std::vector<std::string>> tags = index.listTags(config_.name, image.name);
  if (!tags || !tags->empty()) {
    return tags;
  }
  bool has_manifest = false;
  (void)index.forEachLocalManifest(config_.name, image.name,
                                   [&](const Digest&, const storage::ContentRecord&) {
                                     has_manifest = true;
                                     return false;
                                   });
  if (!has_manifest) {
    return notFound("repository " + image.path_name + " is unknown");
  }
  return tags;
}

}  // namespace outpost::proxy
