#include "storage/blob_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "base/log.h"

namespace outpost::storage {

BlobWriter::BlobWriter(UniqueFd fd, std::filesystem::path temp_path, DigestAlgorithm algorithm)
    : fd_(std::move(fd)),
      temp_path_(std::move(temp_path)),
      algorithm_(algorithm),
      hasher_(algorithm) {}

BlobWriter::~BlobWriter() {
  if (state_ == State::kWriting) {
    discard();
  }
}

BlobWriter::BlobWriter(BlobWriter&& other) noexcept
    : fd_(std::move(other.fd_)),
      temp_path_(std::move(other.temp_path_)),
      algorithm_(other.algorithm_),
      hasher_(std::move(other.hasher_)),
      size_(other.size_.load()),
      state_(std::exchange(other.state_, State::kDiscarded)),
      fault_after_bytes_(other.fault_after_bytes_),
      fault_error_number_(other.fault_error_number_) {}

BlobWriter& BlobWriter::operator=(BlobWriter&& other) noexcept {
  if (this == &other) {
    return *this;
  }
  if (state_ == State::kWriting) {
    discard();
  }
  fd_ = std::move(other.fd_);
  temp_path_ = std::move(other.temp_path_);
  algorithm_ = other.algorithm_;
  hasher_ = std::move(other.hasher_);
  size_.store(other.size_.load());
  state_ = std::exchange(other.state_, State::kDiscarded);
  fault_after_bytes_ = other.fault_after_bytes_;
  fault_error_number_ = other.fault_error_number_;
  return *this;
}

Status BlobWriter::append(std::string_view bytes) {
  return append(std::as_bytes(std::span(bytes.data(), bytes.size())));
}

Status BlobWriter::append(std::span<const std::byte> bytes) {
  if (state_ != State::kWriting) {
    return invalidArgument("blob writer is committed or discarded and takes no more bytes path=" +
                           temp_path_.string());
  }

  uint64_t start = size_.load(std::memory_order_relaxed);
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t count = writeOnce(start + written, bytes.subspan(written));
    if (count <= 0) {
      // write(2) returns 0 only for an empty request, so 0 here is treated as an I/O error
      // instead of looping forever.
      int error_number = count < 0 ? errno : EIO;
      discard();
      return errnoStatus("write to temporary blob file " + temp_path_.string() + " failed",
                         error_number);
    }
    written += static_cast<size_t>(count);
  }

  hasher_.update(bytes);
  size_.store(start + written, std::memory_order_release);
  return Status::ok();
}

void BlobWriter::setWriteFaultForTest(uint64_t fail_after_bytes, int error_number) {
  fault_after_bytes_ = fail_after_bytes;
  fault_error_number_ = error_number;
}

ssize_t BlobWriter::writeOnce(uint64_t offset, std::span<const std::byte> bytes) {
  size_t count = bytes.size();
  if (fault_error_number_ != 0) {
    uint64_t allowed = fault_after_bytes_ > offset ? fault_after_bytes_ - offset : 0;
    if (allowed == 0) {
      errno = fault_error_number_;
      return -1;
    }
    count = static_cast<size_t>(std::min<uint64_t>(count, allowed));
  }
  return retryOnEintr([&] { return ::write(fd_.get(), bytes.data(), count); });
}

void BlobWriter::discard() {
  if (state_ != State::kWriting) {
    return;
  }
  state_ = State::kDiscarded;
  if (::unlink(temp_path_.c_str()) != 0 && errno != ENOENT) {
    log::storage().error("temporary blob file could not be removed path={} error={}",
                         temp_path_.string(), std::strerror(errno));
  }
}

void BlobWriter::replaceFd(UniqueFd fd) {
  // dup3 swaps the open file behind the same descriptor number in one step, so a reader in
  // another thread that uses fd() never sees a closed or reused number.
  if (retryOnEintr([&] { return ::dup3(fd.get(), fd_.get(), O_CLOEXEC); }) < 0) {
    log::storage().warn(
        "blob writer keeps its unlinked temporary file because dup3 failed path={} error={}",
        temp_path_.string(), std::strerror(errno));
  }
}

}  // namespace outpost::storage
