#include "bench/load/driver/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <utility>

#include "base/unique_fd.h"

namespace outpost::load {

Expected<MappedFile> MappedFile::open(const std::string& path) {
  UniqueFd fd(retryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd) {
    return errnoStatus("opening " + path, errno);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return errnoStatus("reading the size of " + path, errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return invalidArgument(path + " is not a regular file");
  }
  auto size = static_cast<size_t>(info.st_size);
  if (size == 0) {
    return MappedFile(path, nullptr, 0);
  }

  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
  if (data == MAP_FAILED) {
    return errnoStatus("mapping " + path, errno);
  }
  return MappedFile(path, static_cast<const std::byte*>(data), size);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() { unmap(); }

void MappedFile::unmap() {
  if (data_ != nullptr) {
    ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
  }
}

}  // namespace outpost::load
