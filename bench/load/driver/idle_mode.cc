#include "bench/load/driver/idle_mode.h"

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "bench/load/driver/error_body.h"
#include "bench/load/driver/http_connection.h"
#include "bench/load/driver/loop_handles.h"

namespace outpost::load {
namespace {

using nlohmann::json;

// Responses here are small; the buffer only bounds one read.
constexpr size_t kReadBufferBytes = 16 * 1024;
// Connections opening at once. Opening thousands together could overflow the server's listen
// backlog, and the kernel would then retry the dropped handshakes only after a second.
constexpr uint32_t kMaxOpeningConnections = 256;
// Descriptors needed beside the connections: stdio, the loop's epoll and signal pipe, spares.
constexpr uint64_t kSpareDescriptors = 64;
// Drops are counted without limit, but only this many are described one by one.
constexpr size_t kMaxDescribedDrops = 20;

class IdleRun;

class IdleConnection final : public ResponseObserver {
 public:
  IdleConnection(IdleRun& run, uint32_t index, uv_loop_t* loop, uint16_t port)
      : run_(run), index_(index), connection_(loop, port, kReadBufferBytes) {}

  HttpConnection& connection() { return connection_; }
  uint32_t index() const { return index_; }
  bool isHeld() const { return is_held_; }
  void markHeld() { is_held_ = true; }

  Status onResponseHead(const ResponseHead& head) override {
    status_ = head.status();
    return Status::ok();
  }
  Status onResponseBody(std::span<const std::byte> bytes) override {
    if (status_ < 200 || status_ > 299) {
      error_body_.append(bytes);
    }
    return Status::ok();
  }
  void onResponseEnd(Status status) override;

 private:
  IdleRun& run_;
  uint32_t index_;
  HttpConnection connection_;
  int status_ = 0;
  bool is_held_ = false;
  ErrorBodySample error_body_;
};

class IdleRun {
 public:
  IdleRun(uv_loop_t* loop, const IdleOptions& options, uint64_t open_file_limit)
      : loop_(loop), options_(options), open_file_limit_(open_file_limit) {}

  RunResult run();
  void onResponse(IdleConnection& connection, Status status);

 private:
  enum class Phase { kOpening, kHolding, kDone };

  void openMore();
  void onConnected(IdleConnection& connection, Status status);
  void onIdleClose(IdleConnection& connection, Status status);
  void onAllReady();
  void onSignal(const char* name);
  void release(std::string released_by);
  void abort(std::string error);
  void finish();
  RunResult buildResult() const;

  uv_loop_t* loop_;
  const IdleOptions& options_;
  uint64_t open_file_limit_;
  HttpRequest request_;
  std::vector<std::unique_ptr<IdleConnection>> connections_;
  OneShotTimer timeout_;
  SignalWatch sigterm_;
  SignalWatch sigint_;
  StdinEndWatch stdin_end_;

  Phase phase_ = Phase::kOpening;
  uint32_t opening_count_ = 0;
  uint32_t ready_count_ = 0;
  uint32_t dropped_count_ = 0;
  uint64_t start_ns_ = 0;
  uint64_t ready_ns_ = 0;
  uint64_t release_ns_ = 0;
  std::string released_by_;
  std::vector<std::string> errors_;
};

void IdleConnection::onResponseEnd(Status status) {
  if (status.isOk() && (status_ < 200 || status_ > 299)) {
    status = unavailable(error_body_.describe(status_));
  }
  run_.onResponse(*this, std::move(status));
}

RunResult IdleRun::run() {
  start_ns_ = uv_hrtime();
  request_.target = options_.path;
  timeout_.start(loop_, timeoutMilliseconds(options_.common.timeout_s), [this] {
    abort("timed out after " + std::to_string(options_.common.timeout_s) + " s with " +
          std::to_string(ready_count_) + " of " + std::to_string(options_.connections) +
          " connections ready");
  });
  sigterm_.start(loop_, SIGTERM, [this] { onSignal("SIGTERM"); });
  sigint_.start(loop_, SIGINT, [this] { onSignal("SIGINT"); });

  connections_.reserve(options_.connections);
  openMore();
  uv_run(loop_, UV_RUN_DEFAULT);
  return buildResult();
}

void IdleRun::openMore() {
  while (phase_ == Phase::kOpening && opening_count_ < kMaxOpeningConnections &&
         connections_.size() < options_.connections) {
    auto index = static_cast<uint32_t>(connections_.size());
    connections_.push_back(
        std::make_unique<IdleConnection>(*this, index, loop_, options_.common.port));
    IdleConnection* target = connections_.back().get();
    ++opening_count_;
    // Both callbacks run only while the connection is open, and finish() closes every
    // connection before the objects go away.
    target->connection().setOnIdleClose(
        [this, target](Status status) { onIdleClose(*target, std::move(status)); });
    target->connection().connect(
        [this, target](Status status) { onConnected(*target, std::move(status)); });
  }
}

void IdleRun::onConnected(IdleConnection& connection, Status status) {
  if (!status.isOk()) {
    abort("connection " + std::to_string(connection.index()) + ": " +
          std::string(status.message()));
    return;
  }
  connection.connection().send(request_, &connection);
}

void IdleRun::onResponse(IdleConnection& connection, Status status) {
  if (phase_ != Phase::kOpening) {
    return;
  }
  if (!status.isOk()) {
    abort("connection " + std::to_string(connection.index()) + ": GET " + options_.path + ": " +
          std::string(status.message()));
    return;
  }
  if (connection.connection().state() != HttpConnection::State::kIdle) {
    abort("connection " + std::to_string(connection.index()) +
          ": the server did not keep the connection open after GET " + options_.path);
    return;
  }
  connection.markHeld();
  --opening_count_;
  ++ready_count_;
  if (ready_count_ == options_.connections) {
    onAllReady();
    return;
  }
  openMore();
}

void IdleRun::onIdleClose(IdleConnection& connection, Status status) {
  if (phase_ == Phase::kDone || !connection.isHeld()) {
    return;
  }
  ++dropped_count_;
  if (dropped_count_ <= kMaxDescribedDrops) {
    errors_.push_back("connection " + std::to_string(connection.index()) +
                      " was dropped while held: " + std::string(status.message()));
  }
}

void IdleRun::onAllReady() {
  phase_ = Phase::kHolding;
  ready_ns_ = uv_hrtime();
  timeout_.close();
  std::printf("ready %u\n", ready_count_);
  std::fflush(stdout);
  // May call release() before it returns, when standard input is a file or /dev/null.
  stdin_end_.start(loop_, [this] { release("stdin"); });
}

void IdleRun::onSignal(const char* name) {
  if (phase_ == Phase::kHolding) {
    release(name);
    return;
  }
  abort(std::string("interrupted by ") + name + " with " + std::to_string(ready_count_) + " of " +
        std::to_string(options_.connections) + " connections ready");
}

void IdleRun::release(std::string released_by) {
  if (phase_ != Phase::kHolding) {
    return;
  }
  released_by_ = std::move(released_by);
  release_ns_ = uv_hrtime();
  finish();
}

void IdleRun::abort(std::string error) {
  if (phase_ == Phase::kDone) {
    return;
  }
  errors_.push_back(std::move(error));
  finish();
}

void IdleRun::finish() {
  phase_ = Phase::kDone;
  timeout_.close();
  sigterm_.close();
  sigint_.close();
  stdin_end_.close();
  for (std::unique_ptr<IdleConnection>& connection : connections_) {
    connection->connection().close();
  }
}

RunResult IdleRun::buildResult() const {
  RunResult result;
  result.errors = errors_;
  if (dropped_count_ > kMaxDescribedDrops) {
    result.errors.push_back(std::to_string(dropped_count_ - kMaxDescribedDrops) +
                            " more connections were dropped while held");
  }
  bool was_ready = ready_ns_ != 0;
  result.report = {
      {"mode", "idle"},
      {"port", options_.common.port},
      {"path", options_.path},
      {"connections", options_.connections},
      {"ok", result.errors.empty()},
      {"ready", ready_count_},
      {"held", ready_count_ - dropped_count_},
      {"dropped", dropped_count_},
      {"open_us", was_ready ? json(microsecondsBetween(start_ns_, ready_ns_)) : json(nullptr)},
      {"held_us",
       release_ns_ != 0 ? json(microsecondsBetween(ready_ns_, release_ns_)) : json(nullptr)},
      {"released_by", released_by_.empty() ? json(nullptr) : json(released_by_)},
      {"open_file_limit", open_file_limit_},
      {"errors", result.errors},
  };
  return result;
}

}  // namespace

Expected<uint64_t> raiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return errnoStatus("reading RLIMIT_NOFILE", errno);
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return errnoStatus("raising RLIMIT_NOFILE to " + std::to_string(limit.rlim_max), errno);
    }
  }
  return static_cast<uint64_t>(limit.rlim_cur);
}

RunResult runIdle(uv_loop_t* loop, const IdleOptions& options) {
  Expected<uint64_t> limit = raiseOpenFileLimit();
  RunResult failed;
  failed.report = {{"mode", "idle"}, {"ok", false}};
  if (!limit) {
    failed.errors.push_back(limit.status().toString());
  } else if (*limit < options.connections + kSpareDescriptors) {
    failed.errors.push_back(std::to_string(options.connections) + " connections need about " +
                            std::to_string(options.connections + kSpareDescriptors) +
                            " file descriptors, but RLIMIT_NOFILE allows " +
                            std::to_string(*limit) + "; raise the hard limit (ulimit -Hn)");
  }
  if (!failed.errors.empty()) {
    failed.report["errors"] = failed.errors;
    return failed;
  }

  IdleRun run(loop, options, *limit);
  return run.run();
}

}  // namespace outpost::load
