#include "tests/integration/temp_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "base/unique_fd.h"

namespace outpost::integration {

Expected<TempDir> TempDir::create(std::string_view label) {
  std::string pattern = "/tmp/outpost-";
  pattern += label;
  pattern += "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    return errnoStatus("mkdtemp " + pattern, errno);
  }
  return TempDir(std::string(buffer.data()));
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, std::string())) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    removeNow();
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

TempDir::~TempDir() { removeNow(); }

void TempDir::removeNow() {
  if (path_.empty()) {
    return;
  }
  if (std::getenv("OUTPOST_KEEP_TEST_DIRS") != nullptr) {
    std::fprintf(stderr, "kept test folder path=%s\n", path_.c_str());
    path_.clear();
    return;
  }
  std::error_code error;
  std::filesystem::remove_all(path_, error);
  if (error) {
    std::fprintf(stderr, "removing test folder failed path=%s error=%s\n", path_.c_str(),
                 error.message().c_str());
  }
  path_.clear();
}

std::string TempDir::file(std::string_view name) const {
  std::string full = path_;
  full += '/';
  full += name;
  return full;
}

Expected<std::string> TempDir::makeSubdir(std::string_view name) const {
  std::string full = file(name);
  std::error_code error;
  std::filesystem::create_directories(full, error);
  if (error) {
    return ioError("creating folder " + full + " failed: " + error.message());
  }
  return full;
}

Status writeFile(const std::string& path, std::string_view contents, int mode) {
  UniqueFd fd(retryOnEintr(
      [&] { return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode); }));
  if (!fd) {
    return errnoStatus("open " + path, errno);
  }

  size_t written = 0;
  while (written < contents.size()) {
    ssize_t result = retryOnEintr(
        [&] { return ::write(fd.get(), contents.data() + written, contents.size() - written); });
    if (result < 0) {
      return errnoStatus("write " + path, errno);
    }
    written += static_cast<size_t>(result);
  }

  // open() applies the umask, so set the exact bits: files such as keys must not be wider.
  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) {
    return errnoStatus("fchmod " + path, errno);
  }
  return Status::ok();
}

Expected<std::string> readFile(const std::string& path) {
  UniqueFd fd(retryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd) {
    return errnoStatus("open " + path, errno);
  }

  std::string contents;
  char buffer[64 * 1024];
  while (true) {
    ssize_t result = retryOnEintr([&] { return ::read(fd.get(), buffer, sizeof(buffer)); });
    if (result < 0) {
      return errnoStatus("read " + path, errno);
    }
    if (result == 0) {
      return contents;
    }
    contents.append(buffer, static_cast<size_t>(result));
  }
}

bool waitForFile(const std::string& path, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 20) {
    if (std::filesystem::exists(path)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::filesystem::exists(path);
}

std::string randomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) {
    c = static_cast<char>(random());
  }
  return bytes;
}

}  // namespace outpost::integration
