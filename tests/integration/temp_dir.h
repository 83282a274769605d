// TempDir and small file helpers for the integration harness.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace outpost::integration {

// A folder made under /tmp and removed with everything in it when the object is destroyed.
// When the environment variable OUTPOST_KEEP_TEST_DIRS is set, the folder is kept and its path
// is printed to standard error, so that logs and configs can be read after a failure.
class TempDir {
 public:
  // Creates /tmp/outpost-<label>-XXXXXX. `label` names the owner ("registry", "skopeo").
  static Expected<TempDir> create(std::string_view label);

  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  // Returns path() + "/" + name without touching the disk.
  std::string file(std::string_view name) const;
  // Creates path()/name and any missing parents, and returns the full path.
  Expected<std::string> makeSubdir(std::string_view name) const;

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  void removeNow();

  std::string path_;
};

// Writes `contents` to `path`, replacing the file, with permission bits `mode`.
Status writeFile(const std::string& path, std::string_view contents, int mode = 0644);

// Reads the whole file at `path`.
Expected<std::string> readFile(const std::string& path);

// Waits until `path` exists, polling every 20 ms, for at most `timeout_ms`. Outpost commits a
// download (fsync, rename) just after its last byte went out, so its file can appear a moment
// after the client is done.
bool waitForFile(const std::string& path, int timeout_ms = 10'000);

// Returns `size` pseudo-random bytes, the same for the same `seed`.
std::string randomBytes(size_t size, uint64_t seed);

}  // namespace outpost::integration
