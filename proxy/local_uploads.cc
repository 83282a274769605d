// The blob upload half of LocalRepository: upload sessions (POST, PATCH, PUT, GET, DELETE of
// /v2/<name>/blobs/uploads/), monolithic uploads, and cross-repository mounts.
//
// Chunks are written on the loop thread as their bytes arrive, as blob downloads are: the
// writes go to the page cache, and the fsync that makes a blob durable runs at completion, on
// the thread pool.
// NOTE: creating and finding a session (mkdir, open, stat) also run on the loop thread, so a
// slow disk stalls the loop for those calls.
#include <charconv>

#include "base/log.h"
#include "proxy/blocking_work.h"
#include "proxy/local_repository.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;
};

bool parseNumber(std::string_view text, uint64_t* value) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return !text.empty() && error == std::errc() && end == text.data() + text.size();
}

// Parses a chunk's Content-Range, "<first>-<last>" with inclusive byte offsets as the
// distribution specification writes it. A "bytes " or "bytes=" prefix is accepted too.
std::optional<ContentRange> parseContentRange(std::string_view text) {
  for (std::string_view prefix : {"bytes ", "bytes="}) {
    if (text.starts_with(prefix)) {
      text.remove_prefix(prefix.size());
      break;
    }
  }
  size_t dash = text.find('-');
  ContentRange range;
  if (dash == std::string_view::npos || !parseNumber(text.substr(0, dash), &range.first) ||
      !parseNumber(text.substr(dash + 1), &range.last) || range.last < range.first) {
    return std::nullopt;
  }
  return range;
}

// The Range value of an upload's status: the inclusive offsets of the bytes received, "0-0"
// when there are none, as CNCF distribution sends it and clients parse it.
std::string receivedRange(uint64_t size) { return "0-" + std::to_string(size > 0 ? size - 1 : 0); }

void respondUploadUnknown(Exchange& exchange, std::string_view id) {
  respondRegistryError(exchange, 404, error_code::kBlobUploadUnknown,
                       "upload " + std::string(id.substr(0, 64)) + " is unknown");
}

// Sends the error for a failed step of an upload.
void respondUploadFailure(Exchange& exchange, std::string_view id, const Status& failure) {
  switch (failure.code()) {
    case StatusCode::kNotFound:
      respondUploadUnknown(exchange, id);
      return;
    case StatusCode::kAlreadyExists:
      respondRegistryError(exchange, 409, error_code::kBlobUploadInvalid,
                           std::string(failure.message()));
      return;
    case StatusCode::kNoSpace:
      respondRegistryError(exchange, 507, error_code::kUnknown,
                           "the upload failed: no space left on disk");
      return;
    default:
      respondRegistryError(exchange, 500, error_code::kUnknown, "the upload failed");
      return;
  }
}

}  // namespace

std::string LocalRepository::uploadOwner(const ImageName& image) const {
  return config_.name + "/" + image.name;
}

void LocalRepository::handleUpload(const std::shared_ptr<Exchange>& exchange,
                                   const ImageName& image, std::string id) {
  HttpMethod method = exchange->request().method();
  if (id.empty()) {
    if (method != HttpMethod::kPost) {
      ResponseHead head;
      head.add("Allow", "POST");
      respondRegistryError(*exchange, 405, error_code::kUnsupported,
                           "blobs/uploads/ answers POST, which starts an upload", std::move(head));
      return;
    }
    startUpload(exchange, image);
    return;
  }

  switch (method) {
    case HttpMethod::kPatch:
      receiveChunk(exchange, image, std::move(id), false);
      return;
    case HttpMethod::kPut:
      receiveChunk(exchange, image, std::move(id), true);
      return;
    case HttpMethod::kGet:
    case HttpMethod::kHead: {
      Expected<storage::UploadInfo> info = context_.uploads->find(id);
      if (!info || info->repository != uploadOwner(image)) {
        respondUploadUnknown(*exchange, id);
        return;
      }
      respondUploadStatus(*exchange, image, id, info->size, 204);
      return;
    }
    case HttpMethod::kDelete: {
      Expected<storage::UploadInfo> info = context_.uploads->find(id);
      if (!info || info->repository != uploadOwner(image)) {
        respondUploadUnknown(*exchange, id);
        return;
      }
      if (Status cancelled = context_.uploads->cancel(id); !cancelled.isOk()) {
        respondUploadFailure(*exchange, id, cancelled);
        return;
      }
      log::proxy().info("upload cancelled req={} repo={} name={} id={}", exchange->requestId(),
                        config_.name, image.name, id);
      ResponseHead head(204);
      head.add("Docker-Distribution-API-Version", "registry/2.0");
      exchange->respond(std::move(head), "");
      return;
    }
    default: {
      ResponseHead head;
      head.add("Allow", "GET, HEAD, PATCH, PUT, DELETE");
      respondRegistryError(*exchange, 405, error_code::kUnsupported,
                           "an upload answers GET, HEAD, PATCH, PUT and DELETE", std::move(head));
      return;
    }
  }
}

void LocalRepository::respondUploadStatus(Exchange& exchange, const ImageName& image,
                                          const std::string& id, uint64_t size, int status) {
  ResponseHead head(status);
  head.add("Location", "/v2/" + image.path_name + "/blobs/uploads/" + id);
  head.add("Range", receivedRange(size));
  head.add("Docker-Upload-UUID", id);
  head.add("Docker-Distribution-API-Version", "registry/2.0");
  exchange.respond(std::move(head), "");
}

void LocalRepository::startUpload(const std::shared_ptr<Exchange>& exchange,
                                  const ImageName& image) {
  const HttpRequest& request = exchange->request();
  std::optional<Digest> digest;
  if (request.hasQueryParam("digest")) {
    std::string text = request.queryParam("digest");
    std::optional<Digest> parsed = parseDigestOrRespond(*exchange, text);
    if (!parsed) {
      return;
    }
    digest = std::move(*parsed);
  }
  if (request.hasQueryParam("mount")) {
    std::string text = request.queryParam("mount");
    std::optional<Digest> mounted = parseDigestOrRespond(*exchange, text);
    if (!mounted) {
      return;
    }
    // Without "from", or when the source lacks the blob, a normal upload session starts, as the
    // distribution specification allows.
    std::string from = request.queryParam("from");
    if (!from.empty() && mount_source_check_ && mount_source_check_(from, *mounted)) {
      mountBlob(exchange, image, *mounted);
      return;
    }
  }

  Expected<storage::UploadInfo> created = context_.uploads->create(uploadOwner(image));
  if (!created) {
    log::storage().error("upload not created req={} repo={} name={} error=\"{}\"",
                         exchange->requestId(), config_.name, image.name,
                         created.status().toString());
    respondUploadFailure(*exchange, "", created.status());
    return;
  }
  if (!digest) {
    respondUploadStatus(*exchange, image, created->id, 0, 202);
    return;
  }
  // A monolithic upload: the body is the whole blob.
  receiveChunk(exchange, image, created->id, true);
}

void LocalRepository::mountBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                                const Digest& digest) {
  auto failure = std::make_shared<Status>();
  auto mounted = std::make_shared<bool>(false);
  runBlocking(
      exchange->loop().uv(),
      [this, failure, mounted, image, digest] {
        std::shared_lock push_lock = context_.collector->lockForPush();
        // Held first: once held, the blob's file is never evicted, so the check after it holds.
        if (Status held = context_.disk_budget->hold(digest); !held.isOk()) {
          *failure = held;
          return;
        }
        if (!context_.store->contains(digest)) {
          return;  // evicted before the hold: a normal upload starts instead
        }
        storage::Index::Batch batch;
        batch.putLocalBlob(config_.name, image.name, digest, {.added_ms = context_.clock->nowMs()});
        *failure = context_.index->write(std::move(batch), storage::Index::WriteMode::kSynced);
        *mounted = failure->isOk();
      },
      [this, exchange, failure, mounted, image, digest] {
        if (!failure->isOk()) {
          log::storage().error("blob not mounted req={} repo={} name={} digest={} error=\"{}\"",
                               exchange->requestId(), config_.name, image.name, digest.str(),
                               failure->toString());
          respondUploadFailure(*exchange, "", *failure);
          return;
        }
        if (!*mounted) {
          Expected<storage::UploadInfo> created = context_.uploads->create(uploadOwner(image));
          if (!created) {
            respondUploadFailure(*exchange, "", created.status());
            return;
          }
          respondUploadStatus(*exchange, image, created->id, 0, 202);
          return;
        }
        log::proxy().info("blob mounted req={} repo={} name={} digest={}", exchange->requestId(),
                          config_.name, image.name, digest.str());
        ResponseHead head(201);
        head.add("Location", "/v2/" + image.path_name + "/blobs/" + digest.str());
        head.add("Docker-Content-Digest", digest.str());
        head.add("Docker-Distribution-API-Version", "registry/2.0");
        exchange->respond(std::move(head), "");
      });
}

void LocalRepository::receiveChunk(const std::shared_ptr<Exchange>& exchange,
                                   const ImageName& image, std::string id, bool is_final) {
  const HttpRequest& request = exchange->request();
  std::optional<Digest> digest;
  if (is_final) {
    std::string text = request.queryParam("digest");
    if (text.empty()) {
      respondRegistryError(*exchange, 400, error_code::kDigestInvalid,
                           "the request that completes an upload needs ?digest=");
      return;
    }
    std::optional<Digest> parsed = parseDigestOrRespond(*exchange, text);
    if (!parsed) {
      return;
    }
    digest = std::move(*parsed);
  }

  Expected<storage::UploadInfo> info = context_.uploads->find(id);
  if (!info || info->repository != uploadOwner(image)) {
    respondUploadUnknown(*exchange, id);
    return;
  }

  std::optional<ContentRange> range;
  if (std::string_view header = request.header("Content-Range"); !header.empty()) {
    range = parseContentRange(header);
    if (!range) {
      respondRegistryError(
          *exchange, 400, error_code::kBlobUploadInvalid,
          "invalid Content-Range " + std::string(header) + "; send <first>-<last> byte offsets");
      return;
    }
    if (range->first != info->size) {
      // Chunks arrive in order: the client resumes from the Range it gets here.
      ResponseHead head(416);
      head.add("Location", "/v2/" + image.path_name + "/blobs/uploads/" + id);
      head.add("Range", receivedRange(info->size));
      head.add("Docker-Upload-UUID", id);
      respondRegistryError(*exchange, 416, error_code::kBlobUploadInvalid,
                           "the chunk starts at byte " + std::to_string(range->first) +
                               " but the upload has " + std::to_string(info->size) + " bytes",
                           std::move(head));
      return;
    }
  }

  Expected<std::unique_ptr<storage::UploadStore::ChunkWriter>> begun =
      context_.uploads->beginChunk(id, info->size);
  if (!begun) {
    respondUploadFailure(*exchange, id, begun.status());
    return;
  }
  std::shared_ptr<storage::UploadStore::ChunkWriter> chunk = std::move(*begun);
  auto write_failure = std::make_shared<Status>();
  std::weak_ptr<Exchange> weak = exchange;
  exchange->readBody(
      [weak, chunk, write_failure, id](std::string_view bytes) {
        Status written = chunk->write(bytes);
        if (written.isOk()) {
          return true;
        }
        log::storage().error("upload chunk not written id={} error=\"{}\"", id, written.toString());
        if (auto target = weak.lock()) {
          // The response goes out after the callback returns, once the server stopped reading.
          target->loop().post(
              [target, id, written] { respondUploadFailure(*target, id, written); });
        }
        return false;
      },
      [this, weak, chunk, image, id, range, digest]() mutable {
        std::shared_ptr<Exchange> target = weak.lock();
        if (!target) {
          return;
        }
        if (range && chunk->chunkBytes() != range->last - range->first + 1) {
          respondRegistryError(*target, 400, error_code::kBlobUploadInvalid,
                               "the chunk has " + std::to_string(chunk->chunkBytes()) +
                                   " bytes but its Content-Range names " +
                                   std::to_string(range->last - range->first + 1));
          return;
        }
        Expected<uint64_t> size = chunk->commit();
        if (!size) {
          respondUploadFailure(*target, id, size.status());
          return;
        }
        if (!digest) {
          respondUploadStatus(*target, image, id, *size, 202);
          return;
        }
        completeUpload(target, image, id, std::move(*digest));
      });
}

void LocalRepository::completeUpload(const std::shared_ptr<Exchange>& exchange,
                                     const ImageName& image, std::string id, Digest digest) {
  auto failure = std::make_shared<Status>();
  auto failed_step = std::make_shared<std::string_view>();
  runBlocking(
      exchange->loop().uv(),
      [this, failure, failed_step, image, id, digest] {
        std::shared_lock push_lock = context_.collector->lockForPush();
        // Held before the commit, so that an eviction running now cannot remove a file the
        // commit finds already in place.
        if (Status held = context_.disk_budget->hold(digest); !held.isOk()) {
          *failed_step = "hold";
          *failure = held;
          return;
        }
        if (Status completed = context_.uploads->complete(id, digest, *context_.store);
            !completed.isOk()) {
          *failed_step = "commit";
          *failure = completed;
          return;
        }
        Expected<storage::BlobFile> file = context_.store->openBlob(digest);
        if (!file) {
          *failed_step = "open";
          *failure = file.status();
          return;
        }
        int64_t now_ms = context_.clock->nowMs();
        storage::Index::Batch batch;
        batch.putBlob(digest,
                      storage::BlobRecord{
                          .size = file->size, .created_ms = now_ms, .last_access_ms = now_ms});
        batch.putLocalBlob(config_.name, image.name, digest, {.added_ms = now_ms});
        if (Status written =
                context_.index->write(std::move(batch), storage::Index::WriteMode::kSynced);
            !written.isOk()) {
          *failed_step = "index";
          *failure = written;
        }
      },
      [this, exchange, failure, failed_step, image, id, digest] {
        if (failure->code() == StatusCode::kCorruption) {
          // Nothing was stored and the session is gone, as the specification has it.
          log::proxy().warn("upload digest mismatch req={} repo={} name={} id={} expected={}",
                            exchange->requestId(), config_.name, image.name, id, digest.str());
          respondRegistryError(*exchange, 400, error_code::kDigestInvalid,
                               "the uploaded bytes do not have digest " + digest.str());
          return;
        }
        if (!failure->isOk()) {
          log::storage().error(
              "upload not completed req={} repo={} name={} id={} step={} "
              "error=\"{}\"",
              exchange->requestId(), config_.name, image.name, id, *failed_step,
              failure->toString());
          respondUploadFailure(*exchange, id, *failure);
          return;
        }
        log::proxy().info("blob pushed req={} repo={} name={} digest={}", exchange->requestId(),
                          config_.name, image.name, digest.str());
        ResponseHead head(201);
        head.add("Location", "/v2/" + image.path_name + "/blobs/" + digest.str());
        head.add("Docker-Content-Digest", digest.str());
        head.add("Docker-Distribution-API-Version", "registry/2.0");
        exchange->respond(std::move(head), "");
      });
}

}  // namespace outpost::proxy
