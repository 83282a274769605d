#include "proxy/upstream/upstream_client.h"

#include <utility>

#include "proxy/upstream/client_core.h"

namespace outpost::proxy {

UpstreamClient::UpstreamClient(uv_loop_t* loop, UpstreamOptions options)
    : core_(std::make_unique<upstream::ClientCore>(loop, std::move(options))) {}

UpstreamClient::~UpstreamClient() = default;

std::unique_ptr<UpstreamCall> UpstreamClient::start(UpstreamRequest request,
                                                    UpstreamHandler* handler) {
  return core_->startCall(core_->specForRequest(std::move(request)), handler);
}

void UpstreamClient::close(std::function<void()> on_closed) { core_->close(std::move(on_closed)); }

const UpstreamCounters& UpstreamClient::counters() const { return core_->counters(); }

}  // namespace outpost::proxy
