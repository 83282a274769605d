#include "bench/load/driver/pull_mode.h"

#include <memory>
#include <optional>
#include <unordered_set>
#include <variant>
#include <vector>

#include "base/digest.h"
#include "bench/load/driver/error_body.h"
#include "bench/load/driver/http_connection.h"
#include "bench/load/driver/image_manifest.h"
#include "bench/load/driver/loop_handles.h"

namespace outpost::load {
namespace {

using nlohmann::json;

constexpr size_t kReadBufferBytes = 256 * 1024;
// The OCI distribution specification (spec.md, "Pushing Manifests") expects clients and
// registries to support manifests of at least 4 megabytes. A larger one is taken as broken.
constexpr uint64_t kMaxManifestBytes = 4 * 1024 * 1024;
constexpr std::string_view kPlatformOs = "linux";
constexpr std::string_view kPlatformArchitecture = "amd64";

enum class FetchKind { kManifestHead, kManifestGet, kBlobGet };

class PullClient;
class PullRun;

// One request of a pull and the checks on its response. A GET is hashed as it arrives; a
// manifest body is also kept, to be parsed.
class Fetch final : public ResponseObserver {
 public:
  Fetch(PullClient& client, FetchKind kind, std::string target, std::optional<Digest> digest,
        std::optional<uint64_t> size)
      : client_(client),
        kind_(kind),
        target_(std::move(target)),
        expected_digest_(std::move(digest)),
        expected_size_(size) {
    if (expected_digest_) {
      hasher_.emplace(expected_digest_->algorithm());
    }
  }

  Status onResponseHead(const ResponseHead& head) override;
  Status onResponseBody(std::span<const std::byte> bytes) override;
  // Hands the outcome to the client, which destroys this Fetch before returning.
  void onResponseEnd(Status status) override;

  // Checks the status, size and digest of a response that arrived whole.
  Status verify();
  // "GET /v2/...", for error messages.
  std::string describe() const;

  FetchKind kind() const { return kind_; }
  const std::optional<Digest>& expectedDigest() const { return expected_digest_; }
  uint64_t bodyBytes() const { return body_bytes_; }
  const std::string& body() const { return body_; }
  const std::string& contentType() const { return content_type_; }
  const std::string& headerDigest() const { return header_digest_; }
  std::optional<uint64_t> contentLength() const { return content_length_; }

 private:
  PullClient& client_;
  FetchKind kind_;
  std::string target_;
  std::optional<Digest> expected_digest_;
  std::optional<uint64_t> expected_size_;

  int status_ = 0;
  std::optional<DigestHasher> hasher_;
  uint64_t body_bytes_ = 0;
  std::string body_;
  // Copied from the response head, which the connection reuses for the next response.
  std::string content_type_;
  std::string header_digest_;
  std::optional<uint64_t> content_length_;
  ErrorBodySample error_body_;
};

// One client's pull: a state per step, and a pool of at most `parallel` keep-alive
// connections, each carrying one request at a time.
class PullClient {
 public:
  PullClient(PullRun& run, uint32_t index);

  void start();
  // Marks an unfinished client as failed without reporting it to the run, for a run that ends.
  void abandon(const std::string& reason);
  // Closes every connection. Safe at any time, including from inside onFetchEnd.
  void closeConnections();
  void onFetchEnd(Fetch& fetch, Status status);

  bool hasError() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  uint32_t index() const { return index_; }
  uint64_t bodyBytes() const { return body_bytes_; }
  uint64_t endNs() const { return end_ns_; }
  const std::string& manifestDigest() const { return manifest_digest_; }
  const std::string& imageDigest() const { return image_digest_; }
  size_t blobCount() const { return blobs_.size(); }
  uint64_t resentCount() const;
  json toJson(uint64_t start_ns) const;

 private:
  enum class Stage {
    kWaiting,
    kResolvingTag,
    kFetchingManifest,
    kFetchingPlatformManifest,
    kFetchingBlobs,
    kDone,
    kFailed,
  };
  struct Slot {
    std::unique_ptr<HttpConnection> connection;
    // The request in flight on `connection`, or null when the connection is free.
    std::unique_ptr<Fetch> fetch;
  };

  void startFetch(FetchKind kind, std::string target, std::optional<Digest> digest,
                  std::optional<uint64_t> size);
  std::unique_ptr<Fetch> takeFetch(const Fetch& fetch);
  Status handleTagResolved(const Fetch& fetch);
  Status handleManifest(const Fetch& fetch);
  Status handleBlob();
  void startBlobs(const ImageManifest& image);
  void startMoreBlobs();
  void fail(std::string message);
  void succeed();
  static std::string_view stageName(Stage stage);

  PullRun& run_;
  uint32_t index_;
  Stage stage_ = Stage::kWaiting;
  // Reserved to `parallel` entries up front, so that references to slots stay valid.
  std::vector<Slot> slots_;

  std::string manifest_digest_;
  std::string image_digest_;
  std::vector<Descriptor> blobs_;
  size_t next_blob_ = 0;
  size_t blobs_in_flight_ = 0;
  size_t blobs_done_ = 0;

  uint64_t body_bytes_ = 0;
  uint64_t request_count_ = 0;
  uint64_t end_ns_ = 0;
  std::string error_;
};

class PullRun {
 public:
  PullRun(uv_loop_t* loop, const PullOptions& options) : loop_(loop), options_(options) {}

  RunResult run();

  uv_loop_t* loop() const { return loop_; }
  const PullOptions& options() const { return options_; }
  const std::string& acceptLine() const { return accept_line_; }
  void countRequest(FetchKind kind);
  void onClientFinished();

 private:
  void onTimeout();
  void finish();
  RunResult buildResult() const;

  uv_loop_t* loop_;
  const PullOptions& options_;
  std::string accept_line_ = "Accept: " + manifestAcceptValue();
  std::vector<std::unique_ptr<PullClient>> clients_;
  OneShotTimer timeout_;
  uint64_t start_ns_ = 0;
  uint32_t finished_count_ = 0;
  bool is_done_ = false;
  uint64_t manifest_heads_ = 0;
  uint64_t manifest_gets_ = 0;
  uint64_t blob_gets_ = 0;
  std::vector<std::string> run_errors_;
};

std::string kindMethod(FetchKind kind) { return kind == FetchKind::kManifestHead ? "HEAD" : "GET"; }

Status Fetch::onResponseHead(const ResponseHead& head) {
  status_ = head.status();
  if (status_ != 200) {
    return Status::ok();
  }
  content_type_.assign(head.header("Content-Type"));
  header_digest_.assign(head.header("Docker-Content-Digest"));
  content_length_ = head.contentLength();
  if (kind_ != FetchKind::kManifestHead && expected_size_ && content_length_ &&
      *content_length_ != *expected_size_) {
    return corruption("Content-Length is " + std::to_string(*content_length_) + ", expected " +
                      std::to_string(*expected_size_));
  }
  return Status::ok();
}

Status Fetch::onResponseBody(std::span<const std::byte> bytes) {
  if (status_ != 200) {
    error_body_.append(bytes);
    return Status::ok();
  }
  body_bytes_ += bytes.size();
  if (expected_size_ && body_bytes_ > *expected_size_) {
    return corruption("the body is longer than the expected " + std::to_string(*expected_size_) +
                      " bytes");
  }
  if (kind_ == FetchKind::kManifestGet) {
    if (body_bytes_ > kMaxManifestBytes) {
      return corruption("the manifest is larger than " + std::to_string(kMaxManifestBytes) +
                        " bytes");
    }
    body_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  if (hasher_) {
    hasher_->update(bytes);
  }
  return Status::ok();
}

void Fetch::onResponseEnd(Status status) { client_.onFetchEnd(*this, std::move(status)); }

Status Fetch::verify() {
  if (status_ != 200) {
    return unavailable(error_body_.describe(status_));
  }
  if (expected_size_ && body_bytes_ != *expected_size_ && kind_ != FetchKind::kManifestHead) {
    return corruption("short body: " + std::to_string(body_bytes_) + " of " +
                      std::to_string(*expected_size_) + " bytes");
  }
  if (hasher_) {
    Digest actual = hasher_->finish();
    hasher_.reset();
    if (actual != *expected_digest_) {
      return corruption("the body has digest " + actual.str() + ", expected " +
                        expected_digest_->str());
    }
  }
  return Status::ok();
}

std::string Fetch::describe() const { return kindMethod(kind_) + " " + target_; }

PullClient::PullClient(PullRun& run, uint32_t index) : run_(run), index_(index) {
  slots_.reserve(run.options().parallel);
}

void PullClient::start() {
  stage_ = Stage::kResolvingTag;
  const PullOptions& options = run_.options();
  startFetch(FetchKind::kManifestHead,
             "/v2/" + options.repository + "/manifests/" + options.reference, std::nullopt,
             std::nullopt);
}

void PullClient::startFetch(FetchKind kind, std::string target, std::optional<Digest> digest,
                            std::optional<uint64_t> size) {
  Slot* free_slot = nullptr;
  for (Slot& slot : slots_) {
    if (slot.fetch == nullptr) {
      free_slot = &slot;
      break;
    }
  }
  if (free_slot == nullptr) {
    // Callers keep at most `parallel` fetches in flight, and the vector has room for that.
    slots_.push_back(Slot{
        std::make_unique<HttpConnection>(run_.loop(), run_.options().common.port, kReadBufferBytes),
        nullptr});
    free_slot = &slots_.back();
  }

  HttpRequest request;
  request.method = kindMethod(kind);
  request.target = target;
  if (kind != FetchKind::kBlobGet) {
    request.header_lines.push_back(run_.acceptLine());
  }
  free_slot->fetch =
      std::make_unique<Fetch>(*this, kind, std::move(target), std::move(digest), size);
  ++request_count_;
  run_.countRequest(kind);
  free_slot->connection->send(request, free_slot->fetch.get());
}

std::unique_ptr<Fetch> PullClient::takeFetch(const Fetch& fetch) {
  for (Slot& slot : slots_) {
    if (slot.fetch.get() == &fetch) {
      return std::move(slot.fetch);
    }
  }
  return nullptr;
}

void PullClient::onFetchEnd(Fetch& fetch, Status status) {
  // Kept alive until this function returns, and the slot is free for the next request.
  std::unique_ptr<Fetch> done = takeFetch(fetch);
  if (stage_ == Stage::kDone || stage_ == Stage::kFailed) {
    return;
  }
  body_bytes_ += fetch.bodyBytes();

  Status outcome = status.isOk() ? fetch.verify() : std::move(status);
  if (outcome.isOk()) {
    switch (fetch.kind()) {
      case FetchKind::kManifestHead:
        outcome = handleTagResolved(fetch);
        break;
      case FetchKind::kManifestGet:
        outcome = handleManifest(fetch);
        break;
      case FetchKind::kBlobGet:
        outcome = handleBlob();
        break;
    }
  }
  if (!outcome.isOk()) {
    fail(fetch.describe() + ": " + std::string(outcome.message()));
  }
}

Status PullClient::handleTagResolved(const Fetch& fetch) {
  Expected<Digest> digest = Digest::parse(fetch.headerDigest());
  if (!digest) {
    return corruption("the response has no valid Docker-Content-Digest (\"" + fetch.headerDigest() +
                      "\")");
  }
  const std::string& reference = run_.options().reference;
  if (Digest::parse(reference).hasValue() && digest->str() != reference) {
    return corruption("Docker-Content-Digest is " + digest->str() + " for reference " + reference);
  }

  manifest_digest_ = digest->str();
  stage_ = Stage::kFetchingManifest;
  std::string target = "/v2/" + run_.options().repository + "/manifests/" + digest->str();
  startFetch(FetchKind::kManifestGet, std::move(target), std::move(*digest), fetch.contentLength());
  return Status::ok();
}

Status PullClient::handleManifest(const Fetch& fetch) {
  OUTPOST_ASSIGN_OR_RETURN(auto manifest, parseManifest(fetch.body(), fetch.contentType()));

  if (const auto* index = std::get_if<ImageIndex>(&manifest)) {
    if (stage_ == Stage::kFetchingPlatformManifest) {
      return invalidArgument("the manifest chosen from the index is an index too");
    }
    const Descriptor& entry = selectPlatform(*index, kPlatformOs, kPlatformArchitecture);
    image_digest_ = entry.digest.str();
    stage_ = Stage::kFetchingPlatformManifest;
    startFetch(FetchKind::kManifestGet,
               "/v2/" + run_.options().repository + "/manifests/" + entry.digest.str(),
               entry.digest, entry.size);
    return Status::ok();
  }

  image_digest_ = fetch.expectedDigest()->str();
  startBlobs(std::get<ImageManifest>(manifest));
  return Status::ok();
}

void PullClient::startBlobs(const ImageManifest& image) {
  stage_ = Stage::kFetchingBlobs;
  // A layer listed twice is fetched once, as container runtimes do.
  std::unordered_set<std::string> seen;
  for (const Descriptor& blob : image.blobs) {
    if (seen.insert(blob.digest.str()).second) {
      blobs_.push_back(blob);
    }
  }
  startMoreBlobs();
}

void PullClient::startMoreBlobs() {
  uint32_t parallel = run_.options().parallel;
  while (blobs_in_flight_ < parallel && next_blob_ < blobs_.size() &&
         stage_ == Stage::kFetchingBlobs) {
    const Descriptor& blob = blobs_[next_blob_];
    ++next_blob_;
    ++blobs_in_flight_;
    startFetch(FetchKind::kBlobGet,
               "/v2/" + run_.options().repository + "/blobs/" + blob.digest.str(), blob.digest,
               blob.size);
  }
}

Status PullClient::handleBlob() {
  --blobs_in_flight_;
  ++blobs_done_;
  if (blobs_done_ == blobs_.size()) {
    succeed();
    return Status::ok();
  }
  startMoreBlobs();
  return Status::ok();
}

void PullClient::succeed() {
  stage_ = Stage::kDone;
  end_ns_ = uv_hrtime();
  run_.onClientFinished();
}

void PullClient::fail(std::string message) {
  if (stage_ == Stage::kDone || stage_ == Stage::kFailed) {
    return;
  }
  stage_ = Stage::kFailed;
  end_ns_ = uv_hrtime();
  error_ = std::move(message);
  closeConnections();
  run_.onClientFinished();
}

void PullClient::abandon(const std::string& reason) {
  if (stage_ == Stage::kDone || stage_ == Stage::kFailed) {
    return;
  }
  error_ = reason + " while " + std::string(stageName(stage_)) + " after " +
           std::to_string(body_bytes_) + " body bytes";
  stage_ = Stage::kFailed;
  end_ns_ = uv_hrtime();
}

void PullClient::closeConnections() {
  for (Slot& slot : slots_) {
    slot.connection->close();
    // The connection no longer calls this fetch; the fetch being handled was taken out first.
    slot.fetch.reset();
  }
}

uint64_t PullClient::resentCount() const {
  uint64_t count = 0;
  for (const Slot& slot : slots_) {
    count += slot.connection->retryCount();
  }
  return count;
}

std::string_view PullClient::stageName(Stage stage) {
  switch (stage) {
    case Stage::kWaiting:
      return "waiting to start";
    case Stage::kResolvingTag:
      return "resolving the reference";
    case Stage::kFetchingManifest:
      return "fetching the manifest";
    case Stage::kFetchingPlatformManifest:
      return "fetching the platform manifest";
    case Stage::kFetchingBlobs:
      return "fetching blobs";
    case Stage::kDone:
      return "done";
    case Stage::kFailed:
      return "failed";
  }
  return "unknown";
}

json PullClient::toJson(uint64_t start_ns) const {
  bool is_ok = stage_ == Stage::kDone;
  return {
      {"client", index_},
      {"wall_us", is_ok ? json(microsecondsBetween(start_ns, end_ns_)) : json(nullptr)},
      {"bytes", body_bytes_},
      {"requests", request_count_},
      {"blobs", blobs_done_},
      {"error", error_.empty() ? json(nullptr) : json(error_)},
  };
}

RunResult PullRun::run() {
  start_ns_ = uv_hrtime();
  timeout_.start(loop_, timeoutMilliseconds(options_.common.timeout_s), [this] { onTimeout(); });
  clients_.reserve(options_.clients);
  for (uint32_t i = 0; i < options_.clients; ++i) {
    clients_.push_back(std::make_unique<PullClient>(*this, i));
  }
  for (std::unique_ptr<PullClient>& client : clients_) {
    if (is_done_) {
      break;
    }
    client->start();
  }
  uv_run(loop_, UV_RUN_DEFAULT);
  return buildResult();
}

void PullRun::countRequest(FetchKind kind) {
  switch (kind) {
    case FetchKind::kManifestHead:
      ++manifest_heads_;
      break;
    case FetchKind::kManifestGet:
      ++manifest_gets_;
      break;
    case FetchKind::kBlobGet:
      ++blob_gets_;
      break;
  }
}

void PullRun::onClientFinished() {
  ++finished_count_;
  if (finished_count_ == clients_.size()) {
    finish();
  }
}

void PullRun::onTimeout() {
  std::string reason = "timed out after " + std::to_string(options_.common.timeout_s) + " s";
  run_errors_.push_back(reason + " with " + std::to_string(finished_count_) + " of " +
                        std::to_string(clients_.size()) + " clients finished");
  for (std::unique_ptr<PullClient>& client : clients_) {
    client->abandon(reason);
  }
  finish();
}

void PullRun::finish() {
  if (is_done_) {
    return;
  }
  is_done_ = true;
  timeout_.close();
  for (std::unique_ptr<PullClient>& client : clients_) {
    client->closeConnections();
  }
}

RunResult PullRun::buildResult() const {
  RunResult result;
  result.errors = run_errors_;
  json clients = json::array();
  uint64_t total_bytes = 0;
  uint64_t last_end_ns = start_ns_;
  uint64_t resent = 0;
  const PullClient* reference_client = nullptr;
  for (const std::unique_ptr<PullClient>& client : clients_) {
    if (client->hasError()) {
      result.errors.push_back("client " + std::to_string(client->index()) + ": " + client->error());
    } else if (reference_client == nullptr) {
      reference_client = client.get();
    }
    clients.push_back(client->toJson(start_ns_));
    total_bytes += client->bodyBytes();
    last_end_ns = std::max(last_end_ns, client->endNs());
    resent += client->resentCount();
  }

  result.report = {
      {"mode", "pull"},
      {"port", options_.common.port},
      {"repository", options_.repository},
      {"reference", options_.reference},
      {"clients", options_.clients},
      {"parallel", options_.parallel},
      {"ok", result.errors.empty()},
      {"wall_us", microsecondsBetween(start_ns_, last_end_ns)},
      {"total_bytes", total_bytes},
      {"requests",
       {{"manifest_head", manifest_heads_},
        {"manifest_get", manifest_gets_},
        {"blob_get", blob_gets_},
        {"resent", resent}}},
      {"manifest_digest",
       reference_client ? json(reference_client->manifestDigest()) : json(nullptr)},
      {"image_manifest_digest",
       reference_client ? json(reference_client->imageDigest()) : json(nullptr)},
      {"blobs", reference_client ? json(reference_client->blobCount()) : json(nullptr)},
      {"results", std::move(clients)},
      {"errors", result.errors},
  };
  return result;
}

}  // namespace

RunResult runPull(uv_loop_t* loop, const PullOptions& options) {
  PullRun run(loop, options);
  return run.run();
}

}  // namespace outpost::load
