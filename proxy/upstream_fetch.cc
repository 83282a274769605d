#include "proxy/upstream_fetch.h"

#include <memory>

namespace outpost::proxy {
namespace {

// Owns itself from start until its completion callback, which frees it together with the
// UpstreamCall (the client allows destroying a call from inside its callbacks).
class BufferedFetch final : public UpstreamHandler {
 public:
  BufferedFetch(uint64_t max_body_bytes, std::function<void(FetchResult)> done)
      : max_body_bytes_(max_body_bytes), done_(std::move(done)) {}

  void start(UpstreamClient& client, UpstreamRequest request) {
    call_ = client.start(std::move(request), this);
  }

  void onHead(const UpstreamResponse& response) override {
    result_.status = response.status;
    result_.headers = response.headers;
  }

  Status onBody(std::string_view chunk) override {
    if (result_.body.size() + chunk.size() > max_body_bytes_) {
      return Status(StatusCode::kOutOfRange,
                    "upstream response body exceeds " + std::to_string(max_body_bytes_) +
                        " bytes");
    }
    result_.body.append(chunk);
    return Status::ok();
  }

  void onComplete(Status status) override {
    result_.transport = std::move(status);
    std::unique_ptr<BufferedFetch> self(this);
    auto done = std::move(done_);
    done(std::move(result_));
  }

 private:
  uint64_t max_body_bytes_;
  std::function<void(FetchResult)> done_;
  FetchResult result_;
  std::unique_ptr<UpstreamCall> call_;
};

}  // namespace

void fetchBuffered(UpstreamClient& client, UpstreamRequest request,
                   uint64_t max_body_bytes, std::function<void(FetchResult)> done) {
  auto* fetch = new BufferedFetch(max_body_bytes, std::move(done));
  fetch->start(client, std::move(request));
}

}  // namespace outpost::proxy
