// The blob half of RemoteRepository: serving blobs from the memory tier, or from their committed
// files with sendfile, downloading a missing blob once into a BlobFill, and streaming that fill
// to every waiting client.
#include <charconv>

#include "base/log.h"
#include "proxy/blocking_work.h"
#include "proxy/content_response.h"
#include "proxy/memory_content.h"
#include "proxy/registry_error.h"
#include "proxy/remote_repository.h"

namespace outpost::proxy {

// Streams one request's bytes from a BlobFill while the download runs. Woken by the fill on
// the producer's thread, it posts itself to its own loop and sends what has become releasable.
class FillReader : public std::enable_shared_from_this<FillReader> {
 public:
  FillReader(RemoteRepository& remote, std::shared_ptr<Exchange> exchange,
             std::shared_ptr<cache::BlobFill> fill, MissHandler on_miss)
      : remote_(remote),
        exchange_(std::move(exchange)),
        fill_(std::move(fill)),
        on_miss_(std::move(on_miss)) {}

  void start() {
    std::weak_ptr<FillReader> weak = weak_from_this();
    EventLoop* loop = &exchange_->loop();
    // The fill holds only a weak reference: a reader that finished or whose client left is
    // not kept alive by the download.
    subscription_ = fill_->subscribe([weak, loop] {
      std::shared_ptr<FillReader> self = weak.lock();
      if (!self || self->wake_pending_.exchange(true)) {
        return;
      }
      loop->post([self] {
        self->wake_pending_.store(false);
        self->pump();
      });
    });
    // The exchange drops this callback on finish() or after running it, which ends the
    // reference cycle between the two.
    exchange_->setOnAbort([self = shared_from_this()] { self->stop(); });
    pump();
  }

 private:
  void pump() {
    if (is_stopped_ || is_sending_) {
      return;
    }
    if (!exchange_->isOpen()) {
      stop();
      return;
    }
    cache::BlobFill::Snapshot snapshot = fill_->snapshot();
    if (!is_head_sent_) {
      if (snapshot.state == cache::BlobFill::State::kFailed) {
        stop();
        // Another repository may respond to the exchange next, so this reader releases it.
        exchange_->setOnAbort({});
        remote_.failRead(*exchange_, on_miss_, snapshot.failure, error_code::kBlobUnknown);
        return;
      }
      std::optional<uint64_t> size = snapshot.total_size;
      if (!size && snapshot.state != cache::BlobFill::State::kRunning) {
        size = snapshot.written;
      }
      if (!size) {
        return;  // the upstream has not announced a length yet
      }
      std::optional<BlobRangePlan> plan = startBlobResponse(*exchange_, fill_->digest(), *size);
      if (!plan) {
        stop();
        return;
      }
      is_head_sent_ = true;
      offset_ = plan->first;
      end_ = plan->first + plan->length;
      if (exchange_->isHead() || plan->length == 0) {
        stop();
        exchange_->finish();
        return;
      }
    }

    if (snapshot.state == cache::BlobFill::State::kFailed) {
      // The head is out: the only honest signal left is a short body.
      log::proxy().error("blob download failed while sending req={} digest={} sent={} error=\"{}\"",
                         exchange_->requestId(), fill_->digest().str(), offset_,
                         snapshot.failure.toString());
      stop();
      exchange_->abort();
      return;
    }
    uint64_t limit = std::min(end_, snapshot.releasable());
    if (offset_ < limit) {
      is_sending_ = true;
      exchange_->sendFile(fill_, fill_->fd(), offset_, limit - offset_,
                          [self = shared_from_this(), limit] {
                            self->is_sending_ = false;
                            self->offset_ = limit;
                            self->pump();
                          });
      return;
    }
    if (offset_ >= end_) {
      stop();
      exchange_->finish();
    }
  }

  void stop() {
    if (!is_stopped_) {
      is_stopped_ = true;
      fill_->unsubscribe(subscription_);
    }
  }

  RemoteRepository& remote_;
  std::shared_ptr<Exchange> exchange_;
  std::shared_ptr<cache::BlobFill> fill_;
  // Receives a failure that comes before the response head; empty to send it.
  MissHandler on_miss_;
  uint64_t subscription_ = 0;
  std::atomic<bool> wake_pending_{false};
  bool is_stopped_ = false;
  bool is_sending_ = false;
  bool is_head_sent_ = false;
  uint64_t offset_ = 0;
  uint64_t end_ = 0;
};

// The upstream download behind one BlobFill. Owns itself from start until the fill is
// committed or failed.
class BlobDownload final : public UpstreamHandler {
 public:
  BlobDownload(RemoteRepository& remote, EventLoop& loop, std::shared_ptr<cache::BlobFill> fill)
      : remote_(remote), loop_(loop), fill_(std::move(fill)) {}

  void start(UpstreamRequest request) { call_ = remote_.client(loop_).start(std::move(request), this); }

  void onHead(const UpstreamResponse& response) override {
    status_ = response.status;
    if (status_ == 200) {
      startMemoryCopy(response.content_length);
    }
    if (status_ == 200 && response.content_length) {
      fill_->setTotalSize(*response.content_length);
      // Counted toward the disk budget until this download ends, so that room is made while
      // the bytes arrive.
      reservation_ = remote_.context_.disk_budget->reserve(*response.content_length);
    }
    if (status_ == 429) {
      std::string_view retry_after = response.header("Retry-After");
      int64_t seconds = 0;
      std::from_chars(retry_after.data(), retry_after.data() + retry_after.size(), seconds);
      remote_.retry_after_seconds_.store(seconds, std::memory_order_relaxed);
    }
  }

  Status onBody(std::string_view chunk) override {
    if (status_ != 200) {
      return Status::ok();  // an error body; the status decides
    }
    remote_.counters_.upstream_bytes.fetch_add(chunk.size(), std::memory_order_relaxed);
    copyToMemory(chunk);
    return fill_->append(chunk);
  }

  void onComplete(Status status) override {
    // Free the call now: the client allows it inside a callback, and the commit below may
    // outlive the client itself at shutdown.
    std::unique_ptr<UpstreamCall> call = std::move(call_);
    remote_.recordUpstreamOutcome(status);
    if (status.isOk() && status_ != 200) {
      FetchResult result;
      result.status = status_;
      status = remote_.statusFromUpstream(result);
    }
    if (status.isOk()) {
      status = fill_->verify();
    }
    if (!status.isOk()) {
      finishFailed(status);
      return;
    }
    commit();
  }

 private:
  void commit() {
    auto commit_status = std::make_shared<Status>();
    storage::BlobStore* store = remote_.context_.store;
    storage::Index* index = remote_.context_.index;
    int64_t now_ms = remote_.context_.clock->nowMs();
    std::shared_ptr<cache::BlobFill> fill = fill_;
    runBlocking(
        loop_.uv(),
        [store, index, fill, commit_status, now_ms] {
          *commit_status = store->commit(fill->writer(), fill->digest());
          if (commit_status->isOk()) {
            uint64_t size = fill->snapshot().written;
            *commit_status = index->putBlob(fill->digest(), storage::BlobRecord{size, now_ms, now_ms});
          }
        },
        [this, commit_status] {
          if (commit_status->isOk()) {
            fill_->markCommitted();
            remote_.context_.disk_budget->recordCommit(fill_->digest(), fill_->snapshot().written);
            remote_.context_.metrics->fills_completed.fetch_add(1, std::memory_order_relaxed);
            log::cache().debug("blob stored digest={} bytes={}", fill_->digest().str(),
                               fill_->snapshot().written);
            keepMemoryCopy();
          } else {
            // The bytes were verified, so readers still finish; only the cache entry is lost.
            remote_.context_.metrics->fills_failed.fetch_add(1, std::memory_order_relaxed);
            log::storage().error("blob commit failed digest={} error=\"{}\"",
                                 fill_->digest().str(), commit_status->toString());
          }
          remote_.context_.fills->remove(fill_);
          delete this;
        });
  }

  // A blob small enough for the memory tier is copied as it arrives, and kept once verified and
  // committed, so that filling the tier never reads the file back.
  // NOTE: the copies of downloads in progress are not counted in the memory budget. Each is at
  // most storage.memory_cache_max_item_bytes.
  void startMemoryCopy(std::optional<uint64_t> content_length) {
    cache::MemoryTier& memory = *remote_.context_.memory;
    is_copying_ = content_length ? memory.admits(*content_length) : memory.isEnabled();
    if (is_copying_ && content_length) {
      memory_copy_.reserve(*content_length);
    }
  }

  void copyToMemory(std::string_view chunk) {
    if (!is_copying_) {
      return;
    }
    if (!remote_.context_.memory->admits(memory_copy_.size() + chunk.size())) {
      is_copying_ = false;
      std::string().swap(memory_copy_);
      return;
    }
    memory_copy_.append(chunk);
  }

  void keepMemoryCopy() {
    if (!is_copying_ || memory_copy_.size() != fill_->snapshot().written) {
      return;
    }
    remote_.context_.memory->insert(cache::ContentKind::kBlob, fill_->digest(),
                                    std::make_shared<const cache::MemoryItem>(
                                        cache::MemoryItem{std::move(memory_copy_), std::string()}),
                                    cache::InsertOrigin::kFill);
  }

  void finishFailed(const Status& status) {
    fill_->fail(status);
    remote_.context_.fills->remove(fill_);
    remote_.context_.metrics->fills_failed.fetch_add(1, std::memory_order_relaxed);
    if (status.code() != StatusCode::kNotFound) {
      log::cache().error("blob download failed remote={} digest={} error=\"{}\"",
                         remote_.name(), fill_->digest().str(), status.toString());
    }
    delete this;
  }

  RemoteRepository& remote_;
  EventLoop& loop_;
  std::shared_ptr<cache::BlobFill> fill_;
  std::unique_ptr<UpstreamCall> call_;
  int status_ = 0;
  cache::DiskBudget::Reservation reservation_;
  bool is_copying_ = false;
  std::string memory_copy_;
};

void RemoteRepository::serveBlob(const std::shared_ptr<Exchange>& exchange, std::string name,
                                 Digest digest, MissHandler on_miss) {
  if (cache::MemoryItemRef item = context_.memory->find(cache::ContentKind::kBlob, digest)) {
    exchange->setOutcome(CacheOutcome::kHit);
    context_.metrics->cache_hits.fetch_add(1, std::memory_order_relaxed);
    touchDiskCopy(digest, item->bytes.size());
    sendBlobItem(exchange, digest, std::move(item));
    return;
  }
  Expected<storage::BlobFile> file = context_.store->openBlob(digest);
  if (file) {
    exchange->setOutcome(CacheOutcome::kHit);
    context_.metrics->cache_hits.fetch_add(1, std::memory_order_relaxed);
    serveBlobFile(exchange, digest, std::move(*file));
    return;
  }
  if (file.status().code() != StatusCode::kNotFound) {
    log::storage().error("blob open failed req={} digest={} error=\"{}\"", exchange->requestId(),
                         digest.str(), file.status().toString());
  }
  context_.metrics->cache_misses.fetch_add(1, std::memory_order_relaxed);
  if (exchange->isHead()) {
    // A running download has the size; otherwise ask the upstream without downloading.
    if (std::shared_ptr<cache::BlobFill> fill = context_.fills->find(digest)) {
      exchange->setOutcome(CacheOutcome::kFillJoined);
      std::make_shared<FillReader>(*this, exchange, std::move(fill), std::move(on_miss))->start();
    } else {
      serveBlobHeadFromUpstream(exchange, name, digest, on_miss);
    }
    return;
  }

  storage::BlobStore* store = context_.store;
  Expected<cache::FillRegistry::Joined> joined = context_.fills->join(
      digest, [&] { return store->contains(digest); },
      [&]() -> Expected<std::shared_ptr<cache::BlobFill>> {
        if (isMarkedDown()) {
          return markedDownStatus();
        }
        Expected<std::unique_ptr<storage::BlobWriter>> writer =
            store->createWriter(digest.algorithm());
        if (!writer) {
          return writer.status();
        }
        return std::make_shared<cache::BlobFill>(digest, std::move(*writer));
      });
  if (!joined) {
    failRead(*exchange, on_miss, joined.status(), error_code::kBlobUnknown);
    return;
  }
  if (!joined->fill) {
    // Committed between the first lookup and the join.
    serveBlob(exchange, std::move(name), std::move(digest), std::move(on_miss));
    return;
  }
  if (joined->is_new) {
    exchange->setOutcome(CacheOutcome::kMiss);
    context_.metrics->fills_started.fetch_add(1, std::memory_order_relaxed);
    startBlobDownload(exchange->loop(), name, joined->fill, exchange->requestId());
  } else {
    exchange->setOutcome(CacheOutcome::kFillJoined);
    context_.metrics->fills_joined.fetch_add(1, std::memory_order_relaxed);
  }
  std::make_shared<FillReader>(*this, exchange, joined->fill, std::move(on_miss))->start();
}

void RemoteRepository::serveBlobFile(const std::shared_ptr<Exchange>& exchange,
                                     const Digest& digest, storage::BlobFile file) {
  context_.index->touchBlob(digest, context_.clock->nowMs());
  context_.disk_budget->recordAccess(digest, file.size, file.tier,
                                     exchange->isHead() ? cache::DiskBudget::AccessKind::kRefresh
                                                        : cache::DiskBudget::AccessKind::kRead);
  uint64_t size = file.size;
  // Pinned, so that the disk budget does not choose the blob while it is sent.
  cache::DiskBudget::Pin pin = context_.disk_budget->pin(digest, file.tier);
  sendBlobFile(exchange, digest, std::move(file), std::move(pin));
  promoteBlob(exchange->loop(), *context_.memory, *context_.store, digest, size);
}

void RemoteRepository::touchDiskCopy(const Digest& digest, uint64_t size) {
  context_.index->touchBlob(digest, context_.clock->nowMs());
  // Only a blob that the disk budget still counts in the first tier is touched: recording an
  // access for a file that was evicted meanwhile would count it again. The pin keeps it counted
  // until then. A copy in a lower tier is left to age, since memory serves it.
  if (cache::DiskBudget::Pin pin = context_.disk_budget->pin(digest); pin.isPinned()) {
    context_.disk_budget->recordAccess(digest, size, 0, cache::DiskBudget::AccessKind::kRefresh);
  }
}

void RemoteRepository::serveBlobHeadFromUpstream(const std::shared_ptr<Exchange>& exchange,
                                                 const std::string& name, const Digest& digest,
                                                 const MissHandler& on_miss) {
  if (isMarkedDown()) {
    failRead(*exchange, on_miss, markedDownStatus(), error_code::kBlobUnknown);
    return;
  }
  exchange->setOutcome(CacheOutcome::kMiss);
  EventLoop& loop = exchange->loop();
  fetchBuffered(
      client(loop),
      makeRequest("HEAD", "/v2/" + name + "/blobs/" + digest.str(), exchange->requestId()), 0,
      [this, exchange, digest, on_miss](FetchResult result) {
        recordUpstreamOutcome(result.transport);
        if (!exchange->isOpen()) {
          return;
        }
        uint64_t length = 0;
        std::string_view text = result.header("Content-Length");
        auto parsed = std::from_chars(text.data(), text.data() + text.size(), length);
        if (!result.transport.isOk() || result.status != 200 || parsed.ec != std::errc()) {
          failRead(*exchange, on_miss, statusFromUpstream(result), error_code::kBlobUnknown);
          return;
        }
        ResponseHead head(200);
        head.add("Content-Type", "application/octet-stream");
        head.add("Docker-Content-Digest", digest.str());
        head.add("Accept-Ranges", "bytes");
        head.add("Docker-Distribution-API-Version", "registry/2.0");
        exchange->startResponse(std::move(head), length);
        exchange->finish();
      });
}

void RemoteRepository::startBlobDownload(EventLoop& loop, const std::string& name,
                                         const std::shared_ptr<cache::BlobFill>& fill,
                                         std::string_view request_id) {
  cache::DiskBudget& budget = *context_.disk_budget;
  if (budget.hasRoomForDownload()) {
    auto* download = new BlobDownload(*this, loop, fill);
    download->start(
        makeRequest("GET", "/v2/" + name + "/blobs/" + fill->digest().str(), request_id));
    return;
  }
  // The first tier is full: the download waits for the budget's thread to make room, so that a
  // burst of downloads does not fill the disk. Clients joined to the fill wait with it.
  log::cache().info(
      "blob download waits for room req={} digest={} bytes={} reserved_bytes={} "
      "budget_bytes={}",
      request_id, fill->digest().str(), budget.bytesUsed(), budget.bytesReserved(),
      budget.budgetBytes());
  budget.waitForRoom([this, loop = &loop, name, fill, id = std::string(request_id)](bool has_room) {
    loop->post([this, loop, name, fill, id, has_room] {
      if (has_room) {
        startBlobDownload(*loop, name, fill, id);
        return;
      }
      Status failure(StatusCode::kNoSpace,
                     "no room in the cache for a download: the first disk tier stayed full, "
                     "and nothing in it could be moved or evicted");
      fill->fail(failure);
      context_.fills->remove(fill);
      context_.metrics->fills_failed.fetch_add(1, std::memory_order_relaxed);
      log::cache().error("blob download gave up waiting for room req={} digest={}", id,
                         fill->digest().str());
    });
  });
}

}  // namespace outpost::proxy
