#include "cache/disk_budget.h"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <string>
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
    : index_(index), store_(store), options_(std::move(options)) {
  tiers_.push_back(std::make_unique<Tier>(
      clock, DiskTierOptions{options_.budget_bytes, options_.high_watermark_percent,
                             options_.low_watermark_percent}));
  for (const DiskTierOptions& limits : options_.lower_tiers) {
    tiers_.push_back(std::make_unique<Tier>(clock, limits));
  }
}

DiskBudget::~DiskBudget() { stop(); }

Status DiskBudget::validate(const DiskBudgetOptions& options) {
  std::vector<DiskTierOptions> tiers{DiskTierOptions{
      options.budget_bytes, options.high_watermark_percent, options.low_watermark_percent}};
  tiers.insert(tiers.end(), options.lower_tiers.begin(), options.lower_tiers.end());
  for (size_t i = 0; i < tiers.size(); ++i) {
    const DiskTierOptions& tier = tiers[i];
    std::string name = "disk tier " + std::to_string(i);
    if (tier.high_watermark_percent == 0 || tier.high_watermark_percent > 100) {
      return Status(StatusCode::kInvalidArgument,
                    name + ": high watermark must be 1 to 100 percent");
    }
    if (tier.low_watermark_percent == 0 ||
        tier.low_watermark_percent >= tier.high_watermark_percent) {
      return Status(
          StatusCode::kInvalidArgument,
          name + ": low watermark must be at least 1 percent and below the high watermark");
    }
    if (tiers.size() > 1 && tier.budget_bytes == 0) {
      return Status(StatusCode::kInvalidArgument,
                    name + ": every disk tier needs a byte budget when there are lower tiers");
    }
  }
  if (options.check_interval_ms <= 0) {
    return Status(StatusCode::kInvalidArgument, "check interval must be positive");
  }
  if (options.space_wait_ms <= 0) {
    return Status(StatusCode::kInvalidArgument, "space wait must be positive");
  }
  return Status::ok();
}

Status DiskBudget::start() {
  OUTPOST_RETURN_IF_ERROR(validate(options_));
  if (tiers_.size() != store_.tierCount()) {
    return Status(StatusCode::kInvalidArgument, "disk budget has " + std::to_string(tiers_.size()) +
                                                    " tiers but the blob store has " +
                                                    std::to_string(store_.tierCount()));
  }
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
  releaseWaiters(/*stopping=*/true);
}

void DiskBudget::recordAccess(const Digest& digest, uint64_t size_bytes, uint32_t tier,
                              AccessKind kind) {
  if (!isEnabled() || tier >= tiers_.size()) {
    return;
  }
  Tier& state = *tiers_[tier];
  if (Status status = state.order.touch(digest, size_bytes); !status.isOk()) {
    log::cache().warn("blob access not recorded digest={} bytes={} tier={} error=\"{}\"",
                      digest.str(), size_bytes, tier, status.toString());
    return;
  }
  if (kind == AccessKind::kRefresh) {
    return;  // no bytes read from this tier: recent, but no hit
  }
  state.counters.hits.fetch_add(1, std::memory_order_relaxed);
  if (tier > 0 && options_.promote_after_hits > 0) {
    bool is_due = false;
    {
      std::lock_guard lock(promote_mutex_);
      uint32_t& hits = lower_hits_[digest];
      if (++hits >= options_.promote_after_hits) {
        lower_hits_.erase(digest);
        promotions_due_.emplace_back(digest, tier);
        is_due = true;
      }
    }
    if (is_due) {
      wake();
      return;
    }
  }
  if (isOverHighWatermark(tier)) {
    wake();
  }
}

void DiskBudget::recordCommit(const Digest& digest, uint64_t size_bytes) {
  if (!isEnabled()) {
    return;
  }
  if (Status status = tiers_[0]->order.touch(digest, size_bytes); !status.isOk()) {
    log::cache().warn("blob commit not recorded digest={} bytes={} error=\"{}\"", digest.str(),
                      size_bytes, status.toString());
    return;
  }
  // A copy in a lower tier was removed by the commit (BlobStore::commit).
  for (uint32_t tier = 1; tier < tiers_.size(); ++tier) {
    (void)tiers_[tier]->order.erase(digest);
  }
  if (isOverHighWatermark(0)) {
    wake();
  }
}

void DiskBudget::dropHits(const Digest& digest) {
  if (tiers_.size() < 2) {
    return;
  }
  std::lock_guard lock(promote_mutex_);
  lower_hits_.erase(digest);
}

void DiskBudget::wake() {
  {
    std::lock_guard lock(mutex_);
    wake_requested_ = true;
  }
  wake_.notify_one();
}

void DiskBudget::forget(const Digest& digest) {
  if (!isEnabled()) {
    return;
  }
  dropHits(digest);
  for (const std::unique_ptr<Tier>& tier : tiers_) {
    if (Status erased = tier->order.erase(digest);
        !erased.isOk() && erased.code() != StatusCode::kNotFound) {
      log::cache().debug("removed blob still counted digest={} reason=\"{}\"", digest.str(),
                         erased.toString());
    }
  }
}

DiskBudget::Reservation DiskBudget::reserve(uint64_t bytes) {
  if (!isEnabled() || bytes == 0) {
    return Reservation();
  }
  reserved_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  if (isOverHighWatermark(0)) {
    wake();
  }
  return Reservation(this, bytes);
}

bool DiskBudget::hasRoomForDownload() const {
  return !isEnabled() || bytesCounted(0) < options_.budget_bytes;
}

void DiskBudget::waitForRoom(std::function<void(bool has_room)> done) {
  if (hasRoomForDownload()) {
    done(true);
    return;
  }
  counters_.space_waits.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(waiters_mutex_);
    waiters_.push_back(RoomWaiter{
        std::move(done),
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.space_wait_ms)});
  }
  wake();
}

void DiskBudget::releaseWaiters(bool stopping) {
  std::vector<RoomWaiter> ready;
  bool has_room = !stopping && hasRoomForDownload();
  {
    std::lock_guard lock(waiters_mutex_);
    if (waiters_.empty()) {
      return;
    }
    auto now = std::chrono::steady_clock::now();
    auto keep = std::partition(waiters_.begin(), waiters_.end(), [&](const RoomWaiter& waiter) {
      return !stopping && !has_room && waiter.deadline > now;
    });
    ready.assign(std::make_move_iterator(keep), std::make_move_iterator(waiters_.end()));
    waiters_.erase(keep, waiters_.end());
  }
  for (RoomWaiter& waiter : ready) {
    if (!has_room) {
      counters_.space_wait_timeouts.fetch_add(1, std::memory_order_relaxed);
    }
    waiter.done(has_room);
  }
  if (!has_room && !stopping) {
    log::cache().warn(
        "downloads gave up waiting for room count={} bytes={} reserved_bytes={} "
        "budget_bytes={}",
        ready.size(), bytesUsed(), bytesReserved(), options_.budget_bytes);
  }
}

DiskBudget::Pin DiskBudget::pin(const Digest& digest, uint32_t tier) {
  if (!isEnabled() || tier >= tiers_.size() || !tiers_[tier]->order.pin(digest).isOk()) {
    return Pin();
  }
  return Pin(&tiers_[tier]->order, digest);
}

Status DiskBudget::restore() {
  std::vector<uint64_t> restored(tiers_.size(), 0);
  auto started = std::chrono::steady_clock::now();
  Status status = index_.forEachBlob([&](const Digest& digest, const storage::BlobRecord& record) {
    if (index_.isBlobHeld(digest)) {
      return true;  // never evicted, so not counted
    }
    if (record.tier >= tiers_.size()) {
      // A tier removed from the configuration: the blob cannot be found, and fsck removes
      // the record.
      log::cache().warn("blob record names a tier that is not configured digest={} tier={}",
                        digest.str(), record.tier);
      return true;
    }
    if (Status restored_one =
            tiers_[record.tier]->order.restore(digest, record.size, record.last_access_ms);
        !restored_one.isOk()) {
      log::cache().warn("blob record not restored digest={} error=\"{}\"", digest.str(),
                        restored_one.toString());
      return true;
    }
    ++restored[record.tier];
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
  for (uint32_t tier = 0; tier < tiers_.size(); ++tier) {
    log::cache().info(
        "blob access order restored tier={} blobs={} bytes={} budget_bytes={} duration_ms={}", tier,
        restored[tier], tiers_[tier]->order.bytes(), tiers_[tier]->limits.budget_bytes, elapsed_ms);
  }
  return Status::ok();
}

uint64_t DiskBudget::percentOf(uint64_t bytes, uint32_t percent) {
  return bytes / 100 * percent + bytes % 100 * percent / 100;
}

uint64_t DiskBudget::bytesCounted(uint32_t tier) const {
  uint64_t bytes = tiers_[tier]->order.bytes();
  return tier == 0 ? bytes + bytesReserved() : bytes;
}

bool DiskBudget::isOverHighWatermark(uint32_t tier) const {
  const DiskTierOptions& limits = tiers_[tier]->limits;
  return bytesCounted(tier) > percentOf(limits.budget_bytes, limits.high_watermark_percent);
}

uint64_t DiskBudget::evictIfOverBudget() {
  if (!isEnabled()) {
    return 0;
  }
  promoteDue();
  uint64_t freed_first_tier = 0;
  // A demotion can push the next tier over its high watermark, so passes repeat while they
  // make progress and a tier is still over.
  for (int pass = 0; pass < 4; ++pass) {
    bool made_progress = false;
    for (uint32_t tier = static_cast<uint32_t>(tiers_.size()); tier-- > 0;) {
      if (isOverHighWatermark(tier)) {
        uint64_t freed = shrinkTier(tier, made_progress);
        if (tier == 0) {
          freed_first_tier += freed;
        }
      }
    }
    bool any_over = false;
    for (uint32_t tier = 0; tier < tiers_.size(); ++tier) {
      any_over = any_over || isOverHighWatermark(tier);
    }
    if (!made_progress || !any_over) {
      break;
    }
  }
  return freed_first_tier;
}

uint64_t DiskBudget::shrinkTier(uint32_t tier, bool& made_progress) {
  Tier& state = *tiers_[tier];
  const bool is_last = tier + 1 == tiers_.size();
  uint64_t low_watermark = percentOf(state.limits.budget_bytes, state.limits.low_watermark_percent);
  uint64_t freed = 0;
  // Candidates are taken again after each batch, since loop threads touch and add blobs while
  // earlier ones move. A batch where nothing could leave ends the pass: every remaining
  // candidate is pinned or failing, and the next check tries again.
  while (bytesCounted(tier) > low_watermark && state.order.entries() > 0) {
    std::vector<AccessOrder::Candidate> candidates =
        state.order.oldest(bytesCounted(tier) - low_watermark);
    bool batch_progress = false;
    for (const AccessOrder::Candidate& candidate : candidates) {
      MoveOutcome outcome = is_last ? evict(tier, candidate) : move(tier, tier + 1, candidate);
      switch (outcome) {
        case MoveOutcome::kMoved:
        case MoveOutcome::kRemoved:
          freed += candidate.size_bytes;
          batch_progress = true;
          break;
        case MoveOutcome::kHeld:
          batch_progress = true;
          break;
        case MoveOutcome::kSkipped:
          break;
      }
    }
    if (!batch_progress) {
      log::cache().warn(
          "disk tier over budget and nothing can leave it tier={} bytes={} reserved_bytes={} "
          "budget_bytes={}",
          tier, state.order.bytes(), tier == 0 ? bytesReserved() : 0, state.limits.budget_bytes);
      break;
    }
    made_progress = true;
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
    for (const std::unique_ptr<Tier>& tier : tiers_) {
      (void)tier->order.erase(digest);
    }
  }
  return Status::ok();
}

DiskBudget::MoveOutcome DiskBudget::evict(uint32_t tier, const AccessOrder::Candidate& candidate) {
  std::lock_guard lock(evict_mutex_);
  if (!tiers_[tier]->order.erase(candidate.digest).isOk()) {
    return MoveOutcome::kSkipped;  // pinned since oldest() chose it, or already erased
  }
  return removeErased(tier, candidate);
}

DiskBudget::MoveOutcome DiskBudget::removeErased(uint32_t tier,
                                                 const AccessOrder::Candidate& candidate) {
  const Digest& digest = candidate.digest;
  Tier& state = *tiers_[tier];
  dropHits(digest);
  if (index_.isBlobHeld(digest)) {
    // A local repository contains it: it stays on disk and is no longer counted.
    return MoveOutcome::kHeld;
  }
  if (Status status = index_.deleteBlob(digest); !status.isOk()) {
    state.counters.failures.fetch_add(1, std::memory_order_relaxed);
    counters_.eviction_failures.fetch_add(1, std::memory_order_relaxed);
    log::cache().error("blob eviction failed step=index digest={} tier={} error=\"{}\"",
                       digest.str(), tier, status.toString());
    // The blob is still served, so it stays in the order, at its old place.
    (void)state.order.restore(digest, candidate.size_bytes, candidate.last_access_ms);
    return MoveOutcome::kSkipped;
  }
  if (Status status = store_.remove(digest);
      !status.isOk() && status.code() != StatusCode::kNotFound) {
    // The index no longer names the file, so no request reads it. fsck reports and removes it.
    state.counters.failures.fetch_add(1, std::memory_order_relaxed);
    counters_.eviction_failures.fetch_add(1, std::memory_order_relaxed);
    log::cache().error("blob eviction failed step=file digest={} tier={} error=\"{}\"",
                       digest.str(), tier, status.toString());
    return MoveOutcome::kSkipped;
  }
  state.counters.evictions.fetch_add(1, std::memory_order_relaxed);
  state.counters.evicted_bytes.fetch_add(candidate.size_bytes, std::memory_order_relaxed);
  counters_.evictions.fetch_add(1, std::memory_order_relaxed);
  counters_.evicted_bytes.fetch_add(candidate.size_bytes, std::memory_order_relaxed);
  log::cache().debug("blob evicted digest={} bytes={} tier={} last_access_ms={}", digest.str(),
                     candidate.size_bytes, tier, candidate.last_access_ms);
  return MoveOutcome::kRemoved;
}

DiskBudget::MoveOutcome DiskBudget::move(uint32_t from, uint32_t to,
                                         const AccessOrder::Candidate& candidate) {
  const Digest& digest = candidate.digest;
  Tier& source = *tiers_[from];
  Tier& target = *tiers_[to];
  const bool is_demotion = to > from;
  if (!source.order.erase(digest).isOk()) {
    return MoveOutcome::kSkipped;  // pinned since chosen, or already erased
  }
  // Hits count toward a promotion only while the blob stays in the tier they were made in.
  dropHits(digest);
  if (index_.isBlobHeld(digest)) {
    return MoveOutcome::kHeld;
  }
  auto putBack = [&] {
    (void)source.order.restore(digest, candidate.size_bytes, candidate.last_access_ms);
  };

  if (Status copied = store_.copyToTier(digest, from, to); !copied.isOk()) {
    if (copied.code() == StatusCode::kNotFound) {
      // Removed meanwhile (the scrub, an eviction after a crash), or counted twice by a
      // reader that raced an earlier move: nothing left here to count.
      log::cache().debug("blob to move is gone digest={} tier={}", digest.str(), from);
      return MoveOutcome::kRemoved;
    }
    if (copied.code() == StatusCode::kCorruption) {
      removeCorrupt(from, digest, copied);
      return MoveOutcome::kRemoved;
    }
    source.counters.failures.fetch_add(1, std::memory_order_relaxed);
    log::cache().error("blob move failed step=copy digest={} from_tier={} to_tier={} error=\"{}\"",
                       digest.str(), from, to, copied.toString());
    if (is_demotion) {
      // The upper tier must keep its budget, so the blob leaves the cache instead.
      std::lock_guard lock(evict_mutex_);
      return removeErased(from, candidate);
    }
    putBack();
    return MoveOutcome::kSkipped;
  }
  reportStep(MoveStep::kCopied, digest);

  Expected<storage::BlobRecord> record = index_.setBlobTier(digest, static_cast<uint8_t>(to));
  if (!record) {
    // The copy is not named by the index; remove it. Without a record (deleted meanwhile) the
    // source goes too, as its deleter intended.
    (void)store_.removeFromTier(digest, to);
    if (record.status().code() == StatusCode::kNotFound) {
      (void)store_.removeFromTier(digest, from);
      return MoveOutcome::kRemoved;
    }
    source.counters.failures.fetch_add(1, std::memory_order_relaxed);
    log::cache().error("blob move failed step=index digest={} from_tier={} to_tier={} error=\"{}\"",
                       digest.str(), from, to, record.status().toString());
    putBack();
    return MoveOutcome::kSkipped;
  }
  reportStep(MoveStep::kIndexed, digest);

  if (Status removed = store_.removeFromTier(digest, from);
      !removed.isOk() && removed.code() != StatusCode::kNotFound) {
    // Served from either copy; fsck removes the one the index does not name.
    source.counters.failures.fetch_add(1, std::memory_order_relaxed);
    log::cache().error("blob move left its source digest={} from_tier={} error=\"{}\"",
                       digest.str(), from, removed.toString());
  }
  reportStep(MoveStep::kSourceRemoved, digest);

  if (is_demotion) {
    (void)target.order.restore(digest, candidate.size_bytes, candidate.last_access_ms);
    source.counters.demotions.fetch_add(1, std::memory_order_relaxed);
  } else {
    (void)target.order.touch(digest, candidate.size_bytes);
    target.counters.promotions.fetch_add(1, std::memory_order_relaxed);
  }
  log::cache().debug("blob moved digest={} bytes={} from_tier={} to_tier={}", digest.str(),
                     candidate.size_bytes, from, to);
  return MoveOutcome::kMoved;
}

void DiskBudget::removeCorrupt(uint32_t tier, const Digest& digest, const Status& reason) {
  std::lock_guard lock(evict_mutex_);
  tiers_[tier]->counters.corrupt_removed.fetch_add(1, std::memory_order_relaxed);
  log::cache().error("corrupt blob removed during a move digest={} tier={} error=\"{}\"",
                     digest.str(), tier, reason.toString());
  if (Status deleted = index_.deleteBlob(digest); !deleted.isOk()) {
    log::cache().error("corrupt blob record not deleted digest={} error=\"{}\"", digest.str(),
                       deleted.toString());
    return;  // the file stays with its record; the scrub or fsck finds it again
  }
  (void)store_.remove(digest);
}

void DiskBudget::promoteDue() {
  std::deque<std::pair<Digest, uint32_t>> due;
  {
    std::lock_guard lock(promote_mutex_);
    due.swap(promotions_due_);
  }
  std::deque<std::pair<Digest, uint32_t>> retry;
  for (auto& [digest, tier] : due) {
    std::optional<AccessOrder::EntryInfo> info = tiers_[tier]->order.find(digest);
    if (!info) {
      continue;  // moved or evicted since the hit
    }
    if (info->pin_count > 0) {
      // Being sent, most likely by the very request that made it due: the next pass tries
      // again. A move that fails is not retried; later hits make the blob due again.
      retry.emplace_back(std::move(digest), tier);
      continue;
    }
    move(tier, 0, AccessOrder::Candidate{digest, info->size_bytes, info->last_access_ms});
  }
  if (!retry.empty()) {
    std::lock_guard lock(promote_mutex_);
    promotions_due_.insert(promotions_due_.end(), std::make_move_iterator(retry.begin()),
                           std::make_move_iterator(retry.end()));
  }
}

void DiskBudget::reportStep(MoveStep step, const Digest& digest) const {
  if (options_.on_move_step) {
    options_.on_move_step(step, digest);
  }
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
      log::cache().info("blobs left the first tier freed_bytes={} bytes={} budget_bytes={}", freed,
                        bytesUsed(), options_.budget_bytes);
    }
    releaseWaiters(/*stopping=*/false);
    lock.lock();
    // Waiters are checked for their deadline at least this often.
    auto interval = std::chrono::milliseconds(std::min<int64_t>(options_.check_interval_ms, 100));
    bool has_waiters = false;
    {
      std::lock_guard waiters_lock(waiters_mutex_);
      has_waiters = !waiters_.empty();
    }
    wake_.wait_for(lock,
                   has_waiters ? interval : std::chrono::milliseconds(options_.check_interval_ms),
                   [this] { return stop_requested_ || wake_requested_; });
    wake_requested_ = false;
  }
}

}  // namespace outpost::cache
