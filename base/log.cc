#include "base/log.h"

#include <spdlog/sinks/base_sink.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

namespace outpost::log {
namespace {

// Writes formatted lines to standard error in batches. One write(2) per line would cost a
// busy loop thread a system call per request for its access line alone, so lines gather in a
// buffer that goes out when it reaches kFlushBytes, when a warning or worse is logged, every
// kFlushInterval, and at exit. A crash loses at most that interval of info lines.
class BufferedStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  static constexpr size_t kFlushBytes = 32 * 1024;

  ~BufferedStderrSink() override {
    std::lock_guard<std::mutex> lock(mutex_);
    writeOut();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(message, formatted);
    buffer_.append(formatted.data(), formatted.size());
    if (buffer_.size() >= kFlushBytes) {
      writeOut();
    }
  }

  void flush_() override { writeOut(); }

 private:
  void writeOut() {
    size_t written = 0;
    while (written < buffer_.size()) {
      ssize_t result = ::write(STDERR_FILENO, buffer_.data() + written, buffer_.size() - written);
      if (result < 0 && errno == EINTR) {
        continue;
      }
      if (result <= 0) {
        break;  // standard error is gone: nowhere left to report it
      }
      written += static_cast<size_t>(result);
    }
    buffer_.clear();
  }

  std::string buffer_;
};

constexpr std::chrono::seconds kFlushInterval{1};

struct Loggers {
  std::shared_ptr<spdlog::logger> proxy;
  std::shared_ptr<spdlog::logger> cache;
  std::shared_ptr<spdlog::logger> storage;
  std::shared_ptr<spdlog::logger> access;
};

Loggers& loggers() {
  static Loggers instance = [] {
    auto sink = std::make_shared<BufferedStderrSink>();
    auto make = [&sink](const char* name) {
      auto logger = std::make_shared<spdlog::logger>(name, sink);
      logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %n %v", spdlog::pattern_time_type::utc);
      logger->set_level(spdlog::level::info);
      logger->flush_on(spdlog::level::warn);
      // Registered so that the flusher thread below reaches it.
      spdlog::register_logger(logger);
      return logger;
    };
    Loggers made{make("proxy"), make("cache"), make("storage"), make("access")};
    spdlog::flush_every(kFlushInterval);
    return made;
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
  }
  return true;
}

spdlog::logger& proxy() { return *loggers().proxy; }
spdlog::logger& cache() { return *loggers().cache; }
spdlog::logger& storage() { return *loggers().storage; }
spdlog::logger& access() { return *loggers().access; }

}  // namespace outpost::log
