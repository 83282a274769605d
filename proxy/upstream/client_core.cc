#include "proxy/upstream/client_core.h"

#include <cassert>
#include <utility>
#include <vector>

#include "base/log.h"
#include "proxy/http_message.h"
#include "proxy/upstream/call_state.h"
#include "proxy/upstream/http_headers.h"
#include "proxy/www_authenticate.h"

namespace outpost::proxy::upstream {
namespace {

// Headers that the client writes itself or that would change the message framing.
constexpr std::string_view kReservedHeaders[] = {
    "Host",           "User-Agent",        "Authorization", "Proxy-Authorization",
    "Content-Length", "Transfer-Encoding", "Connection",    "Upgrade",
};

Expected<Url> parseBaseUrl(const std::string& text) {
  Expected<Url> url = parseUrl(text);
  if (!url) {
    return invalidArgument("invalid upstream base_url '" + text +
                           "': " + std::string(url.status().message()));
  }
  if (url->path_and_query.find('?') != std::string::npos) {
    return invalidArgument("invalid upstream base_url '" + text + "': it has a query");
  }
  return url;
}

ConnectionSettings connectionSettings(const UpstreamOptions& options) {
  ConnectionSettings settings;
  settings.connect_timeout_ms = options.connect_timeout_ms;
  settings.response_timeout_ms = options.response_timeout_ms;
  settings.body_stall_timeout_ms = options.body_stall_timeout_ms;
  settings.idle_timeout_ms = options.idle_connection_timeout_ms;
  return settings;
}

// A request target in origin form: a '/' and then visible characters other than '#'.
bool isValidPathAndQuery(std::string_view target) {
  if (target.empty() || target.front() != '/') {
    return false;
  }
  for (char c : target) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f || c == '#') {
      return false;
    }
  }
  return true;
}

Status validateRequest(const UpstreamRequest& request) {
  if (!isValidMethod(request.method)) {
    return invalidArgument("invalid request method '" + request.method + "'");
  }
  if (!isValidPathAndQuery(request.path_and_query)) {
    return invalidArgument("invalid request path '" + request.path_and_query +
                           "': it must start with '/' and contain no spaces, controls or '#'");
  }
  if (request.deadline_ms < 0) {
    return invalidArgument("deadline_ms must not be negative");
  }
  for (const auto& [name, value] : request.headers) {
    if (!isValidHeaderName(name) || !isValidHeaderValue(value)) {
      return invalidArgument("invalid request header '" + name + "'");
    }
    for (std::string_view reserved : kReservedHeaders) {
      if (equalsIgnoreCase(name, reserved)) {
        return invalidArgument("request header '" + name + "' is set by the upstream client");
      }
    }
  }
  return Status::ok();
}

}  // namespace

ClientCore::ClientCore(uv_loop_t* loop, UpstreamOptions options)
    : loop_(loop),
      options_(std::move(options)),
      base_url_(parseBaseUrl(options_.base_url)),
      pool_(loop, &handles_, &counters_, connectionSettings(options_),
            options_.max_connections_per_host),
      tokens_(options_.clock != nullptr ? options_.clock : &SystemClock::instance()),
      random_(static_cast<std::minstd_rand::result_type>(uv_hrtime())),
      close_barrier_(std::make_unique<LoopTimer>(loop, &handles_, [] {})) {
  if (hasCredentials()) {
    basic_authorization_ = proxy::basicAuthorization(options_.username, options_.password);
  }
  if (!base_url_) {
    log::proxy().error("upstream client has an invalid base URL error=\"{}\"",
                       base_url_.status().message());
  }
}

ClientCore::~ClientCore() {
  assert(calls_.empty());
  assert(handles_.openCount() == 0);
}

CallSpec ClientCore::specForRequest(UpstreamRequest request) const {
  CallSpec spec;
  spec.rejection = validateRequest(request);
  if (spec.rejection.isOk() && !base_url_) {
    spec.rejection = base_url_.status();
  }
  if (spec.rejection.isOk() && !isValidHeaderValue(options_.user_agent)) {
    spec.rejection = invalidArgument("invalid upstream user_agent");
  }

  spec.method = std::move(request.method);
  spec.headers = std::move(request.headers);
  spec.deadline_ms = request.deadline_ms;
  spec.request_id = std::move(request.request_id);
  if (base_url_) {
    spec.target = *base_url_;
    // The base URL's path, without its trailing '/', prefixes every request path.
    std::string_view prefix = base_url_->path_and_query;
    if (prefix.ends_with('/')) {
      prefix.remove_suffix(1);
    }
    spec.target.path_and_query = std::string(prefix) + request.path_and_query;
  }
  return spec;
}

std::unique_ptr<UpstreamCall> ClientCore::startCall(CallSpec spec, UpstreamHandler* handler) {
  assert(!is_closing_ && "UpstreamClient::start called after close");
  if (is_closing_) {
    spec.rejection = Status(StatusCode::kCancelled, "upstream client is closing");
  }
  auto call = std::make_unique<CallState>(*this, next_call_id_++, std::move(spec), handler);
  CallState* raw = call.get();
  calls_.emplace(raw, std::move(call));
  auto handle = std::make_unique<CallHandle>(raw);
  raw->begin(handle.get());
  return handle;
}

void ClientCore::destroyCall(CallState* call) {
  auto it = calls_.find(call);
  if (it == calls_.end()) {
    return;
  }
  // Leave the map before the destructor runs, so that nothing it triggers finds a half-erased
  // entry.
  std::unique_ptr<CallState> owned = std::move(it->second);
  calls_.erase(it);
  owned.reset();
}

void ClientCore::close(std::function<void()> on_closed) {
  assert(!is_closing_);
  is_closing_ = true;

  // Completing one call can end others (a registry call ends its token call), so each is
  // looked up again before it is aborted.
  std::vector<CallState*> active;
  active.reserve(calls_.size());
  for (const auto& [call, owned] : calls_) {
    active.push_back(call);
  }
  for (CallState* call : active) {
    if (calls_.contains(call)) {
      call->abort(Status(StatusCode::kCancelled, "upstream client closed"));
    }
  }

  pool_.closeAll();
  close_barrier_.reset();
  handles_.notifyWhenReleased(std::move(on_closed));
}

Expected<SSL_CTX*> ClientCore::tlsContext() {
  if (!tls_context_) {
    tls_context_.emplace(createClientTlsContext(options_.ca_file, options_.insecure_skip_verify));
    if (!*tls_context_) {
      log::proxy().error("upstream TLS setup failed error=\"{}\"",
                         tls_context_->status().message());
    }
  }
  if (!*tls_context_) {
    return tls_context_->status();
  }
  return tls_context_->value().get();
}

void ClientCore::setBearerRealm(const TokenKey& key) {
  bearer_realm_ = TokenKey{key.realm, key.service, std::string()};
}

int64_t ClientCore::jitter(int64_t delay_ms) {
  if (delay_ms <= 1) {
    return delay_ms;
  }
  const int64_t half = delay_ms / 2;
  return half + static_cast<int64_t>(random_() % static_cast<uint64_t>(delay_ms - half + 1));
}

}  // namespace outpost::proxy::upstream
