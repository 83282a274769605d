// ClientCore: the state that the calls of one UpstreamClient share: the pool, the token cache,
// what the client learnt about the registry's authentication, and the table of live calls.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

#include "base/status.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/upstream/loop_timer.h"
#include "proxy/upstream/tls_session.h"
#include "proxy/upstream/token_cache.h"
#include "proxy/upstream/upstream_client.h"
#include "proxy/upstream/url.h"

namespace outpost::proxy::upstream {

class CallState;

// Parameters of one call, with the request target resolved against the base URL.
struct CallSpec {
  std::string method;
  Url target;
  HeaderList headers;
  int64_t deadline_ms = 0;
  std::string request_id;
  // Authorization sent on every attempt to the target's origin, as the Basic credentials of a
  // token request. Empty for registry calls, whose Authorization the call works out itself.
  std::string fixed_authorization;
  // True when the call responds to 401 challenges from the target's origin with a token or
  // Basic credentials.
  bool handles_challenges = true;
  // When not OK, the call completes with this Status without sending anything.
  Status rejection;
};

class ClientCore {
 public:
  ClientCore(uv_loop_t* loop, UpstreamOptions options);
  // Precondition: close() has completed.
  ~ClientCore();
  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;

  // Builds the spec of a registry request against the base URL. Problems with the request are
  // recorded in CallSpec::rejection, to be reported through the handler.
  CallSpec specForRequest(UpstreamRequest request) const;
  // Starts a call; see UpstreamClient::start.
  std::unique_ptr<UpstreamCall> startCall(CallSpec spec, UpstreamHandler* handler);
  // Frees a finished call; called by the call itself once no frame of it is on the stack.
  void destroyCall(CallState* call);
  void close(std::function<void()> on_closed);

  uv_loop_t* loop() const { return loop_; }
  const UpstreamOptions& options() const { return options_; }
  UpstreamCounters& counters() { return counters_; }
  HandleCounter& handles() { return handles_; }
  ConnectionPool& pool() { return pool_; }
  TokenCache& tokens() { return tokens_; }

  // Returns the TLS context, built on first use. Fails when the CA file cannot be loaded.
  Expected<SSL_CTX*> tlsContext();

  bool hasCredentials() const { return !options_.username.empty() || !options_.password.empty(); }
  // The Basic Authorization value for the configured credentials.
  const std::string& basicAuthorization() const { return basic_authorization_; }

  // The realm and service of the registry's last Bearer challenge, used to find a cached token
  // before a request is sent. Empty until the first token was granted.
  const std::optional<TokenKey>& bearerRealm() const { return bearer_realm_; }
  void setBearerRealm(const TokenKey& key);
  // True once the registry asked for Basic credentials; later requests then carry them up
  // front.
  bool isBasicChallenged() const { return is_basic_challenged_; }
  void setBasicChallenged() { is_basic_challenged_ = true; }

  // Returns a delay in [delay_ms / 2, delay_ms] so that clients that failed together do not
  // retry together.
  int64_t jitter(int64_t delay_ms);

 private:
  // Declared first, so destroyed last: every other member that owns handles refers to it.
  HandleCounter handles_;
  uv_loop_t* loop_;
  UpstreamOptions options_;
  UpstreamCounters counters_;
  Expected<Url> base_url_;
  ConnectionPool pool_;
  TokenCache tokens_;
  std::string basic_authorization_;
  std::optional<TokenKey> bearer_realm_;
  bool is_basic_challenged_ = false;
  std::optional<Expected<SslCtxPtr>> tls_context_;
  std::minstd_rand random_;
  uint64_t next_call_id_ = 1;
  bool is_closing_ = false;
  std::unordered_map<CallState*, std::unique_ptr<CallState>> calls_;
  // A handle that exists only so that close() always has a close callback to wait for, which
  // keeps on_closed from running inside close().
  std::unique_ptr<LoopTimer> close_barrier_;
};

}  // namespace outpost::proxy::upstream
