// Logging: one named spdlog logger per top-level folder, configured once at start.
//
// Messages are a short sentence followed by key=value fields with stable lower-case keys,
// for example: "upstream fetch failed req=7f3a repo=library/redis status=503".
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace outpost::log {

// Creates the loggers "proxy", "cache", "storage" and "access" writing to standard error at
// `level` ("trace", "debug", "info", "warn", "error"). Safe to call again; later calls only
// change the level. Returns false for an unknown level name, leaving the level unchanged.
// Lines are written in batches: at once for warnings and errors, otherwise within a second.
bool setup(std::string_view level);

// The logger of each folder. Each works before setup() too, at level info.
spdlog::logger& proxy();
spdlog::logger& cache();
spdlog::logger& storage();
// One line per finished request.
spdlog::logger& access();

}  // namespace outpost::log
