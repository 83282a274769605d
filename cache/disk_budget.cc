#include "cache/disk_budget.h"

#include <chrono>
#include <utility>
#include <vector>

#include "base/log.h"

namespace outpost::cache {

DiskBudget::Pin::Pin(Pin&& other) noexcept
    : order_(std::exchange(other.order_, nullptr)), digest_(std::move(other.digest_)) {}

DiskBudget::Pin& DiskBudget::Pin::operator=(Pin&& other) noexcept {
  if (this != &other) {
    release();
    order_ = std::exchange(other.order_, nullptr);
    digest_ = std::move(other.digest_);
  }
  return *this;
}

DiskBudget::Pin::~Pin() { release(); }

void DiskBudget::Pin::release() {
  if (order_ == nullptr) {
    return;
  }
  if (Status status = order_->unpin(*digest_); !status.isOk()) {
    log::cache().error("blob unpin failed digest={} error=\"{}\"", digest_->str(),
                       status.toString());
  }
  order_ = nullptr;
}

DiskBudget::Reservation::Reservation(Reservation&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DiskBudget::Reservation& DiskBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DiskBudget::Reservation::~Reservation() { release(); }

void DiskBudget::Reservation::release() {
  if (budget_ != nullptr) {
    budget_->reserved_bytes_.fetch_sub(bytes_, std::memory_order_relaxed);
    budget_ = nullptr;
    bytes_ = 0;
  }
}

DiskBudget::DiskBudget(storage::Index& index, storage::BlobStore& store, const Clock& clock,
                       DiskBudgetOptions options)
    : index_(index), store_(store), options_(options), order_(clock) {}

DiskBudget::~DiskBudget() { stop(); }

Status DiskBudget::validate(const DiskBudgetOptions& options) {
  if (options.high_watermark_percent == 0 || options.high_watermark_percent > 100) {
    return Status(StatusCode::kInvalidArgument, "high watermark must be 1 to 100 percent");
  }
  if (options.low_watermark_percent == 0 ||
      options.low_watermark_percent >= options.high_watermark_percent) {
    return Status(StatusCode::kInvalidArgument,
                  "low watermark must be at least 1 percent and below the high watermark");
  }
  if (options.check_interval_ms <= 0) {
    return Status(StatusCode::kInvalidArgument, "check interval must be positive");
  }
  return Status::ok();
}

Status DiskBudget::start() {
  OUTPOST_RETURN_IF_ERROR(validate(options_));
  if (!isEnabled()) {
    return Status::ok();
  }
  if (thread_.joinable()) {
    return Status(StatusCode::kInternal, "disk budget already started");
  }
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void DiskBudget::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void DiskBudget::recordAccess(const Digest& digest, uint64_t size_bytes) {
  if (!isEnabled()) {
    return;
  }
  if (Status status = order_.touch(digest, size_bytes); !status.isOk()) {
    log::cache().warn("blob access not recorded digest={} bytes={} error=\"{}\"", digest.str(),
                      size_bytes, status.toString());
    return;
  }
  wakeIfOverHighWatermark();
}

void DiskBudget::wakeIfOverHighWatermark() {
  if (bytesCounted() > highWatermarkBytes()) {
    {
      std::lock_guard lock(mutex_);
      wake_requested_ = true;
    }
    wake_.notify_one();
  }
}

void DiskBudget::forget(const Digest& digest) {
  if (!isEnabled()) {
    return;
  }
  if (Status erased = order_.erase(digest); !erased.isOk()) {
    log::cache().debug("removed blob still counted digest={} reason=\"{}\"", digest.str(),
                       erased.toString());
  }
}

DiskBudget::Reservation DiskBudget::reserve(uint64_t bytes) {
  if (!isEnabled() || bytes == 0) {
    return Reservation();
  }
  reserved_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  wakeIfOverHighWatermark();
  return Reservation(this, bytes);
}

DiskBudget::Pin DiskBudget::pin(const Digest& digest) {
  if (!isEnabled() || !order_.pin(digest).isOk()) {
    return Pin();
  }
  return Pin(&order_, digest);
}

Status DiskBudget::restore() {
  uint64_t restored = 0;
  auto started = std::chrono::steady_clock::now();
  Status status = index_.forEachBlob([&](const Digest& digest, const storage::BlobRecord& record) {
    if (index_.isBlobHeld(digest)) {
      return true;  // never evicted, so not counted
    }
    if (Status restored_one = order_.restore(digest, record.size, record.last_access_ms);
        !restored_one.isOk()) {
      log::cache().warn("blob record not restored digest={} error=\"{}\"", digest.str(),
                        restored_one.toString());
      return true;
    }
    ++restored;
    return true;
  });
  auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
  if (!status.isOk()) {
    log::cache().error("blob access order not restored error=\"{}\"", status.toString());
    return status;
  }
  restored_.store(true, std::memory_order_release);
  log::cache().info("blob access order restored blobs={} bytes={} budget_bytes={} duration_ms={}",
                    restored, order_.bytes(), options_.budget_bytes, elapsed_ms);
  return Status::ok();
}

uint64_t DiskBudget::highWatermarkBytes() const {
  return options_.budget_bytes / 100 * options_.high_watermark_percent +
         options_.budget_bytes % 100 * options_.high_watermark_percent / 100;
}

uint64_t DiskBudget::lowWatermarkBytes() const {
  return options_.budget_bytes / 100 * options_.low_watermark_percent +
         options_.budget_bytes % 100 * options_.low_watermark_percent / 100;
}

uint64_t DiskBudget::evictIfOverBudget() {
  if (!isEnabled() || bytesCounted() <= highWatermarkBytes()) {
    return 0;
  }
  uint64_t freed = 0;
  // Candidates are taken again after each batch, since loop threads touch and add blobs while
  // earlier ones are evicted. A batch where nothing could be evicted ends the pass: every
  // remaining candidate is pinned or failing, and the next check tries again.
  while (bytesCounted() > lowWatermarkBytes() && order_.entries() > 0) {
    std::vector<AccessOrder::Candidate> candidates =
        order_.oldest(bytesCounted() - lowWatermarkBytes());
    bool made_progress = false;
    for (const AccessOrder::Candidate& candidate : candidates) {
      switch (evict(candidate)) {
        case EvictOutcome::kEvicted:
          freed += candidate.size_bytes;
          made_progress = true;
          break;
        case EvictOutcome::kHeld:
          made_progress = true;
          break;
        case EvictOutcome::kSkipped:
          break;
      }
    }
    if (!made_progress) {
      log::cache().warn(
          "disk budget exceeded and nothing evictable bytes={} reserved_bytes={} budget_bytes={}",
          order_.bytes(), bytesReserved(), options_.budget_bytes);
      break;
    }
  }
  return freed;
}

Status DiskBudget::hold(const Digest& digest) {
  std::lock_guard lock(evict_mutex_);
  storage::Index::Batch batch;
  batch.putHeldBlob(digest);
  OUTPOST_RETURN_IF_ERROR(index_.write(std::move(batch), storage::Index::WriteMode::kSynced));
  if (isEnabled()) {
    // A pinned entry stays counted until an eviction finds it held.
    (void)order_.erase(digest);
  }
  return Status::ok();
}

DiskBudget::EvictOutcome DiskBudget::evict(const AccessOrder::Candidate& candidate) {
  const Digest& digest = candidate.digest;
  std::lock_guard lock(evict_mutex_);
  if (!order_.erase(digest).isOk()) {
    return EvictOutcome::kSkipped;  // pinned since oldest() chose it, or already erased
  }
  if (index_.isBlobHeld(digest)) {
    // A local repository contains it: it stays on disk and is no longer counted.
    return EvictOutcome::kHeld;
  }
  if (Status status = index_.deleteBlob(digest); !status.isOk()) {
    counters_.eviction_failures.fetch_add(1, std::memory_order_relaxed);
    log::cache().error("blob eviction failed step=index digest={} error=\"{}\"", digest.str(),
                       status.toString());
    // The blob is still served, so it stays in the order, at its old place.
    (void)order_.restore(digest, candidate.size_bytes, candidate.last_access_ms);
    return EvictOutcome::kSkipped;
  }
  if (Status status = store_.remove(digest);
      !status.isOk() && status.code() != StatusCode::kNotFound) {
    // The index no longer names the file, so no request reads it. fsck reports and removes it.
    counters_.eviction_failures.fetch_add(1, std::memory_order_relaxed);
    log::cache().error("blob eviction failed step=file digest={} error=\"{}\"", digest.str(),
                       status.toString());
    return EvictOutcome::kSkipped;
  }
  counters_.evictions.fetch_add(1, std::memory_order_relaxed);
  counters_.evicted_bytes.fetch_add(candidate.size_bytes, std::memory_order_relaxed);
  log::cache().debug("blob evicted digest={} bytes={} last_access_ms={}", digest.str(),
                     candidate.size_bytes, candidate.last_access_ms);
  return EvictOutcome::kEvicted;
}

void DiskBudget::run() {
  if (!restore().isOk()) {
    // Without the order, evicting could remove recently used blobs, so nothing is evicted.
    return;
  }
  std::unique_lock lock(mutex_);
  while (!stop_requested_) {
    lock.unlock();
    uint64_t freed = evictIfOverBudget();
    if (freed > 0) {
      log::cache().info("blobs evicted freed_bytes={} bytes={} budget_bytes={}", freed,
                        order_.bytes(), options_.budget_bytes);
    }
    lock.lock();
    wake_.wait_for(lock, std::chrono::milliseconds(options_.check_interval_ms),
                   [this] { return stop_requested_ || wake_requested_; });
    wake_requested_ = false;
  }
}

}  // namespace outpost::cache
