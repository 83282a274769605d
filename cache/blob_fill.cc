#include "cache/blob_fill.h"

#include "base/log.h"

namespace outpost::cache {

uint64_t BlobFill::Snapshot::releasable() const {
  if (state == State::kVerified || state == State::kCommitted) {
    return written;
  }
  if (state == State::kFailed || written == 0) {
    return 0;
  }
  return written - 1;
}

BlobFill::BlobFill(Digest digest, std::unique_ptr<storage::BlobWriter> writer)
    : digest_(std::move(digest)), writer_(std::move(writer)), fd_(writer_->fd()) {}

BlobFill::~BlobFill() = default;

void BlobFill::setTotalSize(uint64_t size) {
  std::lock_guard lock(mutex_);
  total_size_ = size;
}

Status BlobFill::append(std::string_view bytes) {
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kRunning) {
      return Status(StatusCode::kInternal, "append to a fill that is not running");
    }
    if (total_size_ && written_ + bytes.size() > *total_size_) {
      return Status(StatusCode::kOutOfRange, "upstream sent more bytes than its Content-Length");
    }
  }
  // Only the producer appends, so the write itself needs no lock.
  Status status = writer_->append(bytes);
  if (!status.isOk()) {
    return status;
  }
  {
    std::lock_guard lock(mutex_);
    written_ += bytes.size();
  }
  wakeAll();
  return Status::ok();
}

Status BlobFill::verify() {
  Digest actual = writer_->digestSoFar();
  if (actual != digest_) {
    Status status = corruption("downloaded bytes have digest " + actual.str() + ", expected " +
                               digest_.str());
    fail(status);
    return status;
  }
  {
    std::lock_guard lock(mutex_);
    if (total_size_ && *total_size_ != written_) {
      // Cannot happen with a matching digest unless the upstream announced a wrong length.
      total_size_ = written_;
    }
    state_ = State::kVerified;
  }
  wakeAll();
  return Status::ok();
}

void BlobFill::markCommitted() {
  {
    std::lock_guard lock(mutex_);
    state_ = State::kCommitted;
  }
  wakeAll();
}

void BlobFill::fail(Status status) {
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::kFailed) {
      return;
    }
    state_ = State::kFailed;
    failure_ = std::move(status);
  }
  // Remove the file now rather than when the last reader lets go of the fill.
  writer_->discard();
  wakeAll();
}

BlobFill::Snapshot BlobFill::snapshot() const {
  std::lock_guard lock(mutex_);
  return Snapshot{state_, written_, total_size_, failure_};
}

uint64_t BlobFill::subscribe(std::function<void()> waker) {
  std::lock_guard lock(mutex_);
  uint64_t id = next_subscriber_id_++;
  subscribers_.emplace_back(id, std::make_shared<std::function<void()>>(std::move(waker)));
  return id;
}

void BlobFill::unsubscribe(uint64_t id) {
  std::lock_guard lock(mutex_);
  std::erase_if(subscribers_, [id](const auto& entry) { return entry.first == id; });
}

size_t BlobFill::subscriberCount() const {
  std::lock_guard lock(mutex_);
  return subscribers_.size();
}

void BlobFill::wakeAll() {
  // Copy the wakers out so that they run without the lock: a waker may unsubscribe.
  std::vector<std::shared_ptr<std::function<void()>>> wakers;
  {
    std::lock_guard lock(mutex_);
    wakers.reserve(subscribers_.size());
    for (const auto& entry : subscribers_) {
      wakers.push_back(entry.second);
    }
  }
  for (const auto& waker : wakers) {
    (*waker)();
  }
}

}  // namespace outpost::cache
