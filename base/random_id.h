// Random identifiers for names that must not collide: temporary files, upload sessions.
#pragma once

#include <cstddef>
#include <string>

#include "base/status.h"

namespace outpost {

// Returns `bytes` random bytes from getrandom(2) as lower-case hex (2 * bytes characters).
// `bytes` is at most 256. Fails only when getrandom fails.
Expected<std::string> randomHexId(size_t bytes = 16);

}  // namespace outpost
