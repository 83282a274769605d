#include "bench/load/driver/fan_out_mode.h"

#include <cstring>
#include <memory>
#include <optional>

#include "bench/load/driver/error_body.h"
#include "bench/load/driver/http_connection.h"
#include "bench/load/driver/loop_handles.h"
#include "bench/load/driver/mapped_file.h"

namespace outpost::load {
namespace {

using nlohmann::json;

// Large enough that one read(2) moves a good share of a blob on loopback.
constexpr size_t kReadBufferBytes = 256 * 1024;

class FanOutRun;

// Returns {"p50", "max"} of `values_us` (nearest rank), or null when there are none.
json summarize(const std::vector<uint64_t>& values_us) {
  if (values_us.empty()) {
    return nullptr;
  }
  return {{"p50", nearestRankPercentile(values_us, 0.5)},
          {"max", nearestRankPercentile(values_us, 1.0)}};
}

// One client: its connection, the checks on its response and what it measured.
class FanOutClient final : public ResponseObserver {
 public:
  FanOutClient(FanOutRun& run, uint32_t index, uv_loop_t* loop, uint16_t port)
      : run_(run), index_(index), connection_(loop, port, kReadBufferBytes) {}

  HttpConnection& connection() { return connection_; }
  uint32_t index() const { return index_; }
  bool isFinished() const { return is_finished_; }
  bool hasError() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  uint64_t bodyBytes() const { return body_bytes_; }
  // Marks an unfinished client as failed, for a run that ends early.
  void abandon(const std::string& reason);

  Status onResponseHead(const ResponseHead& head) override;
  Status onResponseBody(std::span<const std::byte> bytes) override;
  void onResponseEnd(Status status) override;

  std::optional<uint64_t> firstByteMicroseconds(uint64_t release_ns) const;
  std::optional<uint64_t> lastByteMicroseconds(uint64_t release_ns) const;
  json toJson(uint64_t release_ns) const;

 private:
  Status compareWithExpected(std::span<const std::byte> bytes) const;

  FanOutRun& run_;
  uint32_t index_;
  HttpConnection connection_;
  int status_ = 0;
  uint64_t body_bytes_ = 0;
  // uv_hrtime() values; 0 until the event.
  uint64_t first_byte_ns_ = 0;
  uint64_t last_byte_ns_ = 0;
  bool is_finished_ = false;
  ErrorBodySample error_body_;
  std::string error_;
};

class FanOutRun {
 public:
  FanOutRun(uv_loop_t* loop, const FanOutOptions& options, const MappedFile* expected)
      : loop_(loop), options_(options), expected_(expected) {}

  RunResult run();

  const MappedFile* expected() const { return expected_; }
  void onClientFinished();

 private:
  void connectAll();
  void onConnected(FanOutClient& client, Status status);
  void onIdleClose(FanOutClient& client, Status status);
  void release();
  void onTimeout();
  void abort(std::string error);
  void finish();
  RunResult buildResult() const;

  uv_loop_t* loop_;
  const FanOutOptions& options_;
  const MappedFile* expected_;
  HttpRequest request_;
  std::vector<std::unique_ptr<FanOutClient>> clients_;
  OneShotTimer timeout_;

  uint64_t start_ns_ = 0;
  uint64_t release_ns_ = 0;
  uint32_t connected_count_ = 0;
  uint32_t finished_count_ = 0;
  bool is_released_ = false;
  bool is_done_ = false;
  // Failures that belong to the run rather than one response: a connect error, the timeout.
  std::vector<std::string> run_errors_;
};

void FanOutClient::abandon(const std::string& reason) {
  if (is_finished_) {
    return;
  }
  is_finished_ = true;
  error_ = reason + " after " + std::to_string(body_bytes_) + " body bytes";
}

Status FanOutClient::onResponseHead(const ResponseHead& head) {
  status_ = head.status();
  const MappedFile* expected = run_.expected();
  if (status_ != 200 || expected == nullptr) {
    return Status::ok();
  }
  std::optional<uint64_t> length = head.contentLength();
  if (length && *length != expected->size()) {
    return corruption("Content-Length is " + std::to_string(*length) + " but " + expected->path() +
                      " has " + std::to_string(expected->size()) + " bytes");
  }
  return Status::ok();
}

Status FanOutClient::onResponseBody(std::span<const std::byte> bytes) {
  if (first_byte_ns_ == 0) {
    first_byte_ns_ = uv_hrtime();
  }
  if (status_ != 200) {
    error_body_.append(bytes);
    return Status::ok();
  }
  if (run_.expected() != nullptr) {
    OUTPOST_RETURN_IF_ERROR(compareWithExpected(bytes));
  }
  body_bytes_ += bytes.size();
  return Status::ok();
}

Status FanOutClient::compareWithExpected(std::span<const std::byte> bytes) const {
  const MappedFile& expected = *run_.expected();
  // body_bytes_ never exceeds the file size, so the subtraction cannot wrap.
  if (bytes.size() > expected.size() - body_bytes_) {
    return corruption("the body is longer than " + expected.path() + " (" +
                      std::to_string(expected.size()) + " bytes)");
  }
  const std::byte* want = expected.bytes().data() + body_bytes_;
  if (std::memcmp(want, bytes.data(), bytes.size()) == 0) {
    return Status::ok();
  }
  size_t offset = 0;
  while (want[offset] == bytes[offset]) {
    ++offset;
  }
  return corruption("the body differs from " + expected.path() + " at byte " +
                    std::to_string(body_bytes_ + offset));
}

void FanOutClient::onResponseEnd(Status status) {
  last_byte_ns_ = uv_hrtime();
  is_finished_ = true;
  const MappedFile* expected = run_.expected();
  if (!status.isOk()) {
    error_ = std::string(status.message());
  } else if (status_ != 200) {
    error_ = error_body_.describe(status_);
  } else if (expected != nullptr && body_bytes_ != expected->size()) {
    error_ = "short body: " + std::to_string(body_bytes_) + " of " +
             std::to_string(expected->size()) + " bytes";
  }
  run_.onClientFinished();
}

std::optional<uint64_t> FanOutClient::firstByteMicroseconds(uint64_t release_ns) const {
  if (first_byte_ns_ == 0) {
    return std::nullopt;
  }
  return microsecondsBetween(release_ns, first_byte_ns_);
}

std::optional<uint64_t> FanOutClient::lastByteMicroseconds(uint64_t release_ns) const {
  if (last_byte_ns_ == 0 || !error_.empty()) {
    return std::nullopt;
  }
  return microsecondsBetween(release_ns, last_byte_ns_);
}

json FanOutClient::toJson(uint64_t release_ns) const {
  json result = {{"client", index_}, {"status", status_}, {"body_bytes", body_bytes_}};
  std::optional<uint64_t> first = firstByteMicroseconds(release_ns);
  std::optional<uint64_t> last = lastByteMicroseconds(release_ns);
  result["first_byte_us"] = first ? json(*first) : json(nullptr);
  result["last_byte_us"] = last ? json(*last) : json(nullptr);
  result["error"] = error_.empty() ? json(nullptr) : json(error_);
  return result;
}

RunResult FanOutRun::run() {
  request_.target = options_.path;
  request_.header_lines = options_.header_lines;
  start_ns_ = uv_hrtime();
  timeout_.start(loop_, timeoutMilliseconds(options_.common.timeout_s), [this] { onTimeout(); });

  clients_.reserve(options_.clients);
  for (uint32_t i = 0; i < options_.clients; ++i) {
    clients_.push_back(std::make_unique<FanOutClient>(*this, i, loop_, options_.common.port));
  }
  connectAll();
  uv_run(loop_, UV_RUN_DEFAULT);
  return buildResult();
}

void FanOutRun::connectAll() {
  for (std::unique_ptr<FanOutClient>& client : clients_) {
    // A connect that fails at once aborts the run from inside connect().
    if (is_done_) {
      return;
    }
    FanOutClient* target = client.get();
    // Both callbacks run only while the connection is open, and finish() closes every
    // connection before the clients go away.
    target->connection().setOnIdleClose(
        [this, target](Status status) { onIdleClose(*target, std::move(status)); });
    target->connection().connect(
        [this, target](Status status) { onConnected(*target, std::move(status)); });
  }
}

void FanOutRun::onConnected(FanOutClient& client, Status status) {
  if (!status.isOk()) {
    abort("client " + std::to_string(client.index()) + ": " + std::string(status.message()));
    return;
  }
  ++connected_count_;
  if (connected_count_ == clients_.size()) {
    release();
  }
}

void FanOutRun::onIdleClose(FanOutClient& client, Status status) {
  // After its response a client is done; the server may close its connection.
  if (is_released_) {
    return;
  }
  abort("client " + std::to_string(client.index()) +
        ": connection lost before the release: " + std::string(status.message()));
}

void FanOutRun::release() {
  is_released_ = true;
  release_ns_ = uv_hrtime();
  for (std::unique_ptr<FanOutClient>& client : clients_) {
    if (is_done_) {
      return;
    }
    client->connection().send(request_, client.get());
  }
}

void FanOutRun::onClientFinished() {
  ++finished_count_;
  if (finished_count_ == clients_.size()) {
    finish();
  }
}

void FanOutRun::onTimeout() {
  std::string reason = "timed out after " + std::to_string(options_.common.timeout_s) + " s";
  run_errors_.push_back(reason + " with " + std::to_string(finished_count_) + " of " +
                        std::to_string(clients_.size()) + " clients finished and " +
                        std::to_string(connected_count_) + " connected");
  // Before the release no client has sent anything, so the run error alone describes it.
  if (is_released_) {
    for (std::unique_ptr<FanOutClient>& client : clients_) {
      client->abandon(reason);
    }
  }
  finish();
}

void FanOutRun::abort(std::string error) {
  run_errors_.push_back(std::move(error));
  finish();
}

void FanOutRun::finish() {
  if (is_done_) {
    return;
  }
  is_done_ = true;
  timeout_.close();
  for (std::unique_ptr<FanOutClient>& client : clients_) {
    client->connection().close();
  }
}

RunResult FanOutRun::buildResult() const {
  RunResult result;
  result.errors = run_errors_;
  json clients = json::array();
  std::vector<uint64_t> first_bytes;
  std::vector<uint64_t> last_bytes;
  uint64_t total_body_bytes = 0;
  for (const std::unique_ptr<FanOutClient>& client : clients_) {
    if (client->hasError()) {
      result.errors.push_back("client " + std::to_string(client->index()) + ": " + client->error());
    }
    if (is_released_) {
      clients.push_back(client->toJson(release_ns_));
      if (std::optional<uint64_t> first = client->firstByteMicroseconds(release_ns_)) {
        first_bytes.push_back(*first);
      }
      if (std::optional<uint64_t> last = client->lastByteMicroseconds(release_ns_)) {
        last_bytes.push_back(*last);
      }
    }
    total_body_bytes += client->bodyBytes();
  }

  result.report = {
      {"mode", "fan-out"},
      {"port", options_.common.port},
      {"path", options_.path},
      {"clients", options_.clients},
      {"ok", result.errors.empty()},
      {"expected_bytes", expected_ != nullptr ? json(expected_->size()) : json(nullptr)},
      {"connect_us",
       is_released_ ? json(microsecondsBetween(start_ns_, release_ns_)) : json(nullptr)},
      {"total_body_bytes", total_body_bytes},
      {"first_byte_us", summarize(first_bytes)},
      {"last_byte_us", summarize(last_bytes)},
      {"results", std::move(clients)},
      {"errors", result.errors},
  };
  return result;
}

}  // namespace

RunResult runFanOut(uv_loop_t* loop, const FanOutOptions& options) {
  std::optional<MappedFile> expected;
  if (!options.expect_file.empty()) {
    Expected<MappedFile> mapped = MappedFile::open(options.expect_file);
    if (!mapped) {
      RunResult result;
      result.errors.push_back(mapped.status().toString());
      result.report = {{"mode", "fan-out"}, {"ok", false}, {"errors", result.errors}};
      return result;
    }
    expected.emplace(std::move(*mapped));
  }
  FanOutRun run(loop, options, expected ? &*expected : nullptr);
  return run.run();
}

}  // namespace outpost::load
