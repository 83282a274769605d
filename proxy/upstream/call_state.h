// CallState: one call of the upstream client, from start() to onComplete.
//
// A call makes one or more attempts. Each attempt takes a connection from the pool, sends the
// request and reads the response head. The head then decides the next step:
//   301, 302, 303, 307, 308 with Location   -> attempt at the new URL, at most 5 times
//   401 with a Bearer challenge             -> fetch a token, then attempt once more
//   401 with a Basic challenge              -> attempt once more with Basic credentials
//   429, 500, 502, 503, 504, retries left   -> wait (backoff or Retry-After), attempt again
//   anything else                           -> deliver the head, stream the body
// A response that is not delivered is read to its end when it is small, so that its
// connection can be reused, and its connection is closed otherwise.
//
// Phases:
//   kStarting           the first attempt waits for a 0 ms timer, so that no callback runs
//                       inside start()
//   kAwaitingConnection waiting in the pool's queue or for a new connection to open
//   kAwaitingHead       request sent
//   kDiscardingBody     reading a response that is not delivered, before the next step
//   kBackingOff         waiting for the retry timer
//   kFetchingToken      a token call to the realm is in progress
//   kStreamingBody      head delivered, body chunks go to the handler
//   kDone               completed or cancelled, after which no callback runs
//
// Lifetime: the ClientCore owns every CallState, and the caller's UpstreamCall only points at
// it.
// Handlers may destroy their UpstreamCall inside any callback, and the call may finish inside
// a connection callback, so a finished call is not freed while one of its methods is on the
// stack: each entry point holds an EntryGuard, and the outermost guard frees the call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "proxy/upstream/client_core.h"
#include "proxy/upstream/loop_timer.h"
#include "proxy/upstream/token_cache.h"
#include "proxy/upstream/upstream_client.h"
#include "proxy/upstream/upstream_connection.h"
#include "proxy/upstream/url.h"

namespace outpost::proxy::upstream {

class CallState;

// The UpstreamCall handed to the caller. Destroying it cancels the call unless the call has
// already completed.
class CallHandle final : public UpstreamCall {
 public:
  explicit CallHandle(CallState* state) : state_(state) {}
  ~CallHandle() override;
  // Called by the call when it completes; the handle then points nowhere.
  void detach() { state_ = nullptr; }

 private:
  CallState* state_;
};

class CallState final : public ConnectionListener {
 public:
  CallState(ClientCore& core, uint64_t id, CallSpec spec, UpstreamHandler* handler);
  ~CallState();
  CallState(const CallState&) = delete;
  CallState& operator=(const CallState&) = delete;

  // Arms the deadline and the start timer. `handle` is the caller's UpstreamCall.
  void begin(CallHandle* handle);
  // Stops the call without any further callback; used when the caller destroys its handle.
  void cancel();
  // Completes the call with `status`, as when the client closes.
  void abort(Status status);

  // ConnectionListener.
  void onConnectionAssigned(UpstreamConnection* connection) override;
  void onConnectionReady() override;
  void onResponseHead(UpstreamResponse& response) override;
  void onResponseBody(std::string_view chunk) override;
  void onResponseComplete() override;
  void onConnectionFailed(const ConnectionFailure& failure) override;

 private:
  enum class Phase {
    kStarting,
    kAwaitingConnection,
    kAwaitingHead,
    kDiscardingBody,
    kBackingOff,
    kFetchingToken,
    kStreamingBody,
    kDone,
  };
  // The step after a response that is not delivered.
  enum class NextStep { kNone, kRedirect, kRetry, kFetchToken, kRetryWithBasic };
  // Kind of Authorization header sent with the current attempt.
  enum class SentAuthorization { kNone, kFixed, kBasic, kCachedBearer, kNewBearer };

  // Collects the token response for the parent call.
  class TokenHandler final : public UpstreamHandler {
   public:
    explicit TokenHandler(CallState* parent) : parent_(parent) {}
    void onHead(const UpstreamResponse& response) override;
    Status onBody(std::string_view chunk) override;
    void onComplete(Status status) override;

    int status() const { return status_; }
    const std::string& body() const { return body_; }
    void clear();

   private:
    CallState* parent_;
    int status_ = 0;
    std::string body_;
  };

  // Keeps the call alive while one of its methods is on the stack.
  class EntryGuard {
   public:
    explicit EntryGuard(CallState* call) : call_(call) { ++call_->entry_depth_; }
    ~EntryGuard();
    EntryGuard(const EntryGuard&) = delete;
    EntryGuard& operator=(const EntryGuard&) = delete;

   private:
    CallState* call_;
  };

  void onStepTimer();
  void onDeadline();
  void onTokenComplete(Status status);

  void startAttempt();
  void useConnection(UpstreamConnection* connection);
  void sendRequest();
  std::string buildRequestHead();
  std::string chooseAuthorization();

  bool planRedirect(const UpstreamResponse& response);
  bool planAuthentication(const UpstreamResponse& response);
  bool planRetry(const UpstreamResponse& response);
  void beginStep(NextStep step, const UpstreamResponse& response);
  void runNextStep();
  void scheduleRetry(int64_t delay_ms, std::string_view reason);
  int64_t backoffDelayMs();
  void fetchToken();
  void deliverHead(const UpstreamResponse& response);

  void finish(Status status);
  void releaseResources();
  void dropConnection();

  ClientCore& core_;
  uint64_t id_;
  CallSpec spec_;
  UpstreamHandler* handler_;
  CallHandle* handle_ = nullptr;
  Phase phase_ = Phase::kStarting;
  int entry_depth_ = 0;

  // The current attempt.
  std::string method_;
  Url target_;
  // Credentials go only to the origin of the first URL (RFC 9110 section 11.6.2 scopes them
  // to the protection space), never to the host of a redirect.
  Url credential_origin_;
  UpstreamConnection* connection_ = nullptr;
  bool is_waiting_for_connection_ = false;
  bool needs_new_connection_ = false;
  SentAuthorization sent_authorization_ = SentAuthorization::kNone;
  TokenKey cached_token_key_;

  // Steps taken so far.
  int retry_count_ = 0;
  int redirect_count_ = 0;
  int attempt_count_ = 0;
  bool is_stale_retry_used_ = false;
  bool is_challenge_answered_ = false;
  bool use_basic_ = false;

  // The step that follows the response being discarded.
  NextStep next_step_ = NextStep::kNone;
  Url redirect_target_;
  int64_t retry_delay_ms_ = 0;
  std::string retry_reason_;
  TokenKey token_key_;

  // Token flow.
  std::string bearer_token_;
  TokenHandler token_handler_;
  std::unique_ptr<UpstreamCall> token_call_;

  LoopTimer step_timer_;
  LoopTimer deadline_timer_;
};

}  // namespace outpost::proxy::upstream
