#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <memory>
#include <mutex>

namespace outpost::log {
namespace {

struct Loggers {
  std::shared_ptr<spdlog::logger> proxy;
  std::shared_ptr<spdlog::logger> cache;
  std::shared_ptr<spdlog::logger> storage;
  std::shared_ptr<spdlog::logger> access;
};

Loggers& loggers() {
  static Loggers instance = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto make = [&sink](const char* name) {
      auto logger = std::make_shared<spdlog::logger>(name, sink);
      logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %n %v", spdlog::pattern_time_type::utc);
      logger->set_level(spdlog::level::info);
      return logger;
    };
    return Loggers{make("proxy"), make("cache"), make("storage"), make("access")};
  }();
  return instance;
}

}  // namespace

bool setup(std::string_view level_name) {
  spdlog::level::level_enum level = spdlog::level::from_str(std::string(level_name));
  if (level == spdlog::level::off && level_name != "off") {
    return false;
  }
  Loggers& all = loggers();
  for (auto* logger : {&all.proxy, &all.cache, &all.storage, &all.access}) {
    (*logger)->set_level(level);
    (*logger)->flush_on(spdlog::level::warn);
  }
  return true;
}

spdlog::logger& proxy() { return *loggers().proxy; }
spdlog::logger& cache() { return *loggers().cache; }
spdlog::logger& storage() { return *loggers().storage; }
spdlog::logger& access() { return *loggers().access; }

}  // namespace outpost::log
