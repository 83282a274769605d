#include "base/random_id.h"

#include <sys/random.h>

#include <array>
#include <cerrno>

#include "base/unique_fd.h"

namespace outpost {

Expected<std::string> randomHexId(size_t bytes) {
  std::array<unsigned char, 256> random{};
  if (bytes == 0 || bytes > random.size()) {
    return invalidArgument("a random id has 1 to 256 bytes");
  }
  // Once the urandom pool is initialised, getrandom(2) returns requests of up to 256 bytes
  // whole (Linux man page getrandom(2)), so a short count means something is wrong.
  ssize_t count = retryOnEintr([&] { return ::getrandom(random.data(), bytes, 0); });
  if (count < 0) {
    return errnoStatus("getrandom failed", errno);
  }
  if (static_cast<size_t>(count) != bytes) {
    return Status(StatusCode::kIOError, "getrandom returned " + std::to_string(count) + " of " +
                                            std::to_string(bytes) + " bytes");
  }

  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  id.reserve(bytes * 2);
  for (size_t i = 0; i < bytes; ++i) {
    id.push_back(kHex[random[i] >> 4]);
    id.push_back(kHex[random[i] & 0x0f]);
  }
  return id;
}

}  // namespace outpost
