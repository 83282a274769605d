#include "proxy/upstream/call_state.h"

#include <cassert>
#include <charconv>
#include <optional>
#include <utility>

#include "base/log.h"
#include "proxy/http_message.h"
#include "proxy/www_authenticate.h"

namespace outpost::proxy::upstream {
namespace {

// Redirects followed per call before it fails.
constexpr int kMaxRedirects = 5;
// A response that is not delivered (a redirect, a challenge, a retried error) is read to its
// end when its body is at most this long, so that the connection stays usable. Longer or
// chunked bodies cost a new connection instead.
constexpr uint64_t kMaxDiscardedBodyBytes = 64 * 1024;
// Longest Retry-After the client waits for. A longer one ends the retries, and the caller
// gets the 429 or 503 head with its Retry-After to pass on.
constexpr int64_t kMaxRetryAfterMs = 10'000;
constexpr int64_t kMaxBackoffMs = 10'000;
// Token responses are a few KiB of JSON.
constexpr size_t kMaxTokenResponseBytes = 1024 * 1024;

bool isRedirectStatus(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool isRetryableStatus(int status) {
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

// Reads Retry-After in its delay-seconds form (RFC 9110 section 10.2.3). The HTTP-date form
// and malformed values return nothing, and the backoff delay applies.
std::optional<int64_t> retryAfterMs(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  if (value.empty() || value.size() > 9) {
    return std::nullopt;
  }
  int64_t seconds = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (error != std::errc() || end != value.data() + value.size() || seconds < 0) {
    return std::nullopt;
  }
  return seconds * 1000;
}

// The realm URL without its query, for messages and logs.
std::string_view realmForLog(const TokenKey& key) {
  std::string_view realm = key.realm;
  return realm.substr(0, realm.find('?'));
}

}  // namespace

CallHandle::~CallHandle() {
  if (state_ != nullptr) {
    state_->cancel();
  }
}

CallState::EntryGuard::~EntryGuard() {
  if (--call_->entry_depth_ == 0 && call_->phase_ == Phase::kDone) {
    call_->core_.destroyCall(call_);
  }
}

CallState::CallState(ClientCore& core, uint64_t id, CallSpec spec, UpstreamHandler* handler)
    : core_(core),
      id_(id),
      spec_(std::move(spec)),
      handler_(handler),
      method_(spec_.method),
      target_(spec_.target),
      credential_origin_(spec_.target),
      token_handler_(this),
      step_timer_(core.loop(), &core.handles(), [this] { onStepTimer(); }),
      deadline_timer_(core.loop(), &core.handles(), [this] { onDeadline(); }) {}

CallState::~CallState() {
  assert(connection_ == nullptr);
  assert(!token_call_);
}

void CallState::begin(CallHandle* handle) {
  handle_ = handle;
  if (spec_.deadline_ms > 0) {
    deadline_timer_.start(static_cast<uint64_t>(spec_.deadline_ms));
  }
  step_timer_.start(0);
}

void CallState::cancel() {
  EntryGuard guard(this);
  if (phase_ == Phase::kDone) {
    return;
  }
  phase_ = Phase::kDone;
  handle_ = nullptr;
  handler_ = nullptr;
  log::proxy().debug("upstream call cancelled req={} call={} url={}", spec_.request_id, id_,
                     target_.withoutQuery());
  releaseResources();
}

void CallState::abort(Status status) {
  EntryGuard guard(this);
  finish(std::move(status));
}

// ----- Attempts -----------------------------------------------------------------------

void CallState::onStepTimer() {
  EntryGuard guard(this);
  if (phase_ == Phase::kStarting || phase_ == Phase::kBackingOff) {
    startAttempt();
  }
}

void CallState::startAttempt() {
  if (!spec_.rejection.isOk()) {
    finish(spec_.rejection);
    return;
  }
  SSL_CTX* tls_context = nullptr;
  if (target_.isTls()) {
    Expected<SSL_CTX*> context = core_.tlsContext();
    if (!context) {
      finish(context.status());
      return;
    }
    tls_context = *context;
  }

  phase_ = Phase::kAwaitingConnection;
  const bool needs_new_connection = std::exchange(needs_new_connection_, false);
  UpstreamConnection* connection =
      core_.pool().acquire(target_, tls_context, this, needs_new_connection);
  if (connection == nullptr) {
    is_waiting_for_connection_ = true;
    return;
  }
  useConnection(connection);
}

void CallState::useConnection(UpstreamConnection* connection) {
  connection_ = connection;
  if (connection->isIdle()) {
    sendRequest();
  }
}

void CallState::onConnectionAssigned(UpstreamConnection* connection) {
  EntryGuard guard(this);
  assert(phase_ == Phase::kAwaitingConnection);
  is_waiting_for_connection_ = false;
  useConnection(connection);
}

void CallState::onConnectionReady() {
  EntryGuard guard(this);
  if (phase_ == Phase::kAwaitingConnection && connection_ != nullptr) {
    sendRequest();
  }
}

void CallState::sendRequest() {
  phase_ = Phase::kAwaitingHead;
  ++attempt_count_;
  std::string head = buildRequestHead();
  log::proxy().debug("upstream request sent req={} call={} method={} url={} attempt={} conn={}",
                     spec_.request_id, id_, method_, target_.withoutQuery(), attempt_count_,
                     connection_->id());
  connection_->sendRequest(std::move(head), method_ == "HEAD", this);
}

std::string CallState::buildRequestHead() {
  std::string head;
  head.reserve(512);
  head.append(method_);
  head.push_back(' ');
  head.append(target_.path_and_query);
  head.append(" HTTP/1.1\r\nHost: ");
  head.append(target_.hostHeader());
  head.append("\r\nUser-Agent: ");
  head.append(core_.options().user_agent);
  head.append("\r\n");

  const std::string authorization = chooseAuthorization();
  if (!authorization.empty()) {
    head.append("Authorization: ");
    head.append(authorization);
    head.append("\r\n");
  }
  for (const auto& [name, value] : spec_.headers) {
    head.append(name);
    head.append(": ");
    head.append(value);
    head.append("\r\n");
  }
  head.append("\r\n");
  return head;
}

std::string CallState::chooseAuthorization() {
  sent_authorization_ = SentAuthorization::kNone;
  if (!isSameOrigin(target_, credential_origin_)) {
    return {};
  }
  if (!spec_.fixed_authorization.empty()) {
    sent_authorization_ = SentAuthorization::kFixed;
    return spec_.fixed_authorization;
  }
  if (!spec_.handles_challenges) {
    return {};
  }
  if (!bearer_token_.empty()) {
    sent_authorization_ = SentAuthorization::kNewBearer;
    return "Bearer " + bearer_token_;
  }

  // A token granted to an earlier call for the same repository saves the 401 round trip.
  if (const std::optional<TokenKey>& realm = core_.bearerRealm()) {
    TokenKey key{realm->realm, realm->service, pullScopeForPath(spec_.target.path())};
    if (std::optional<std::string> token = core_.tokens().find(key)) {
      sent_authorization_ = SentAuthorization::kCachedBearer;
      cached_token_key_ = std::move(key);
      return "Bearer " + *token;
    }
  }
  if (core_.hasCredentials() && (use_basic_ || core_.isBasicChallenged())) {
    sent_authorization_ = SentAuthorization::kBasic;
    return core_.basicAuthorization();
  }
  return {};
}

// ----- Response head: deliver it, or plan the next attempt ----------------------------

void CallState::onResponseHead(UpstreamResponse& response) {
  EntryGuard guard(this);
  if (phase_ != Phase::kAwaitingHead) {
    return;
  }
  response.effective_url = target_.withoutQuery();
  log::proxy().debug("upstream response head req={} call={} url={} status={}", spec_.request_id,
                     id_, response.effective_url, response.status);

  const int status = response.status;
  bool is_step_planned = false;
  if (isRedirectStatus(status)) {
    is_step_planned = planRedirect(response);
  } else if (status == 401) {
    is_step_planned = planAuthentication(response);
  } else if (isRetryableStatus(status)) {
    is_step_planned = planRetry(response);
  }
  if (is_step_planned || phase_ == Phase::kDone) {
    return;
  }
  deliverHead(response);
}

bool CallState::planRedirect(const UpstreamResponse& response) {
  const std::string_view location = response.header("Location");
  if (location.empty()) {
    return false;
  }
  if (redirect_count_ >= kMaxRedirects) {
    finish(unavailable("too many redirects: " + target_.withoutQuery() +
                       " redirected again after " + std::to_string(kMaxRedirects) + " redirects"));
    return true;
  }
  Expected<Url> next = resolveLocation(target_, location);
  if (!next) {
    finish(unavailable("invalid redirect from " + target_.withoutQuery() + ": " +
                       std::string(next.status().message())));
    return true;
  }

  redirect_target_ = std::move(next).value();
  // RFC 9110 section 15.4.4: after 303 the client retrieves the new URL with GET (or HEAD).
  if (response.status == 303 && method_ != "HEAD") {
    method_ = "GET";
  }
  beginStep(NextStep::kRedirect, response);
  return true;
}

bool CallState::planAuthentication(const UpstreamResponse& response) {
  if (!spec_.handles_challenges || is_challenge_answered_ ||
      !isSameOrigin(target_, credential_origin_)) {
    return false;
  }

  std::optional<AuthChallenge> bearer;
  std::optional<AuthChallenge> basic;
  for (const auto& [name, value] : response.headers) {
    if (!equalsIgnoreCase(name, "WWW-Authenticate")) {
      continue;
    }
    for (AuthChallenge& challenge : parseWwwAuthenticate(value)) {
      if (challenge.scheme == "bearer" && !bearer && !challenge.param("realm").empty()) {
        bearer = std::move(challenge);
      } else if (challenge.scheme == "basic" && !basic) {
        basic = std::move(challenge);
      }
    }
  }

  if (bearer) {
    if (sent_authorization_ == SentAuthorization::kCachedBearer) {
      core_.tokens().erase(cached_token_key_);
    }
    token_key_ = TokenKey{bearer->param("realm"), bearer->param("service"), bearer->param("scope")};
    if (token_key_.scope.empty()) {
      token_key_.scope = pullScopeForPath(spec_.target.path());
    }
    is_challenge_answered_ = true;
    beginStep(NextStep::kFetchToken, response);
    return true;
  }
  if (basic && core_.hasCredentials() && sent_authorization_ != SentAuthorization::kBasic) {
    core_.setBasicChallenged();
    is_challenge_answered_ = true;
    beginStep(NextStep::kRetryWithBasic, response);
    return true;
  }
  return false;
}

bool CallState::planRetry(const UpstreamResponse& response) {
  if (retry_count_ >= core_.options().max_retries) {
    return false;
  }
  int64_t delay_ms = backoffDelayMs();
  if (response.status == 429 || response.status == 503) {
    if (std::optional<int64_t> retry_after_ms = retryAfterMs(response.header("Retry-After"))) {
      if (*retry_after_ms > kMaxRetryAfterMs) {
        return false;
      }
      delay_ms = *retry_after_ms;
    }
  }
  retry_delay_ms_ = delay_ms;
  retry_reason_ = "status " + std::to_string(response.status);
  beginStep(NextStep::kRetry, response);
  return true;
}

void CallState::beginStep(NextStep step, const UpstreamResponse& response) {
  next_step_ = step;
  const bool has_no_body = method_ == "HEAD" || response.status == 204 || response.status == 304 ||
                           response.content_length == uint64_t{0};
  if (has_no_body ||
      (response.content_length && *response.content_length <= kMaxDiscardedBodyBytes)) {
    // The connection reads the rest of the response; onResponseComplete runs the step.
    phase_ = Phase::kDiscardingBody;
    return;
  }
  dropConnection();
  runNextStep();
}

void CallState::runNextStep() {
  switch (std::exchange(next_step_, NextStep::kNone)) {
    case NextStep::kRedirect:
      ++redirect_count_;
      log::proxy().debug("upstream redirect followed req={} call={} from={} to={}",
                         spec_.request_id, id_, target_.withoutQuery(),
                         redirect_target_.withoutQuery());
      target_ = std::move(redirect_target_);
      startAttempt();
      return;
    case NextStep::kRetry:
      scheduleRetry(retry_delay_ms_, retry_reason_);
      return;
    case NextStep::kFetchToken:
      fetchToken();
      return;
    case NextStep::kRetryWithBasic:
      use_basic_ = true;
      startAttempt();
      return;
    case NextStep::kNone:
      return;
  }
}

void CallState::scheduleRetry(int64_t delay_ms, std::string_view reason) {
  ++retry_count_;
  core_.counters().retries.fetch_add(1, std::memory_order_relaxed);
  log::proxy().warn(
      "upstream request failed, retrying req={} call={} url={} reason=\"{}\" "
      "retry={} delay_ms={}",
      spec_.request_id, id_, target_.withoutQuery(), reason, retry_count_, delay_ms);
  phase_ = Phase::kBackingOff;
  step_timer_.start(static_cast<uint64_t>(delay_ms));
}

int64_t CallState::backoffDelayMs() {
  int64_t delay_ms = std::max<int64_t>(0, core_.options().retry_base_delay_ms);
  for (int i = 0; i < retry_count_ && delay_ms < kMaxBackoffMs; ++i) {
    delay_ms *= 2;
  }
  return core_.jitter(std::min(delay_ms, kMaxBackoffMs));
}

void CallState::deliverHead(const UpstreamResponse& response) {
  phase_ = Phase::kStreamingBody;
  handler_->onHead(response);
}

// ----- Body and end of the exchange ---------------------------------------------------

void CallState::onResponseBody(std::string_view chunk) {
  if (phase_ != Phase::kStreamingBody) {
    return;
  }
  EntryGuard guard(this);
  Status status = handler_->onBody(chunk);
  if (phase_ == Phase::kDone || status.isOk()) {
    return;
  }
  finish(std::move(status));
}

void CallState::onResponseComplete() {
  EntryGuard guard(this);
  UpstreamConnection* connection = std::exchange(connection_, nullptr);
  core_.pool().release(connection);
  if (phase_ == Phase::kStreamingBody) {
    finish(Status::ok());
    return;
  }
  if (phase_ == Phase::kDiscardingBody) {
    runNextStep();
  }
}

void CallState::onConnectionFailed(const ConnectionFailure& failure) {
  EntryGuard guard(this);
  connection_ = nullptr;
  switch (phase_) {
    case Phase::kStreamingBody:
      finish(failure.status);
      return;
    case Phase::kDiscardingBody:
      runNextStep();
      return;
    case Phase::kAwaitingConnection:
    case Phase::kAwaitingHead:
      break;
    default:
      return;
  }

  // A pooled connection that the server closed while it was idle fails before any response
  // byte. That is no sign of a failing upstream, so the request goes out once more on a new
  // connection without using up a retry.
  if (failure.is_reused_connection && failure.is_before_response && !is_stale_retry_used_) {
    is_stale_retry_used_ = true;
    needs_new_connection_ = true;
    log::proxy().debug("upstream pooled connection failed, repeating on a new one req={} call={}",
                       spec_.request_id, id_);
    startAttempt();
    return;
  }
  if (failure.is_retryable && retry_count_ < core_.options().max_retries) {
    scheduleRetry(backoffDelayMs(), failure.status.message());
    return;
  }
  finish(failure.status);
}

void CallState::onDeadline() {
  EntryGuard guard(this);
  finish(Status(StatusCode::kTimedOut, "upstream request to " + target_.withoutQuery() +
                                           " exceeded its deadline of " +
                                           std::to_string(spec_.deadline_ms) + " ms"));
}

// ----- Token flow ---------------------------------------------------------------------

// TODO: coalesce token requests. Calls that meet the same challenge at the same time each fetch
// a token until the first grant is cached, which costs one token request per waiting call.
void CallState::fetchToken() {
  Expected<Url> url = tokenRequestUrl(token_key_);
  if (!url) {
    finish(unavailable("cannot request a token for " + target_.withoutQuery() + ": " +
                       std::string(url.status().message())));
    return;
  }

  phase_ = Phase::kFetchingToken;
  CallSpec spec;
  spec.method = "GET";
  spec.target = std::move(url).value();
  spec.headers = {{"Accept", "application/json"}};
  spec.request_id = spec_.request_id;
  spec.handles_challenges = false;
  if (core_.hasCredentials()) {
    spec.fixed_authorization = core_.basicAuthorization();
  }
  token_handler_.clear();
  core_.counters().token_requests.fetch_add(1, std::memory_order_relaxed);
  log::proxy().debug("upstream token requested req={} call={} realm={} scope={}", spec_.request_id,
                     id_, realmForLog(token_key_), token_key_.scope);
  token_call_ = core_.startCall(std::move(spec), &token_handler_);
}

void CallState::onTokenComplete(Status status) {
  EntryGuard guard(this);
  // The token call has completed, so destroying its handle cancels nothing.
  token_call_.reset();
  if (phase_ != Phase::kFetchingToken) {
    return;
  }

  const std::string realm(realmForLog(token_key_));
  if (!status.isOk()) {
    finish(Status(status.code(),
                  "token request to " + realm + " failed: " + std::string(status.message())));
    return;
  }
  const int http_status = token_handler_.status();
  if (http_status / 100 != 2) {
    const StatusCode code = (http_status == 401 || http_status == 403)
                                ? StatusCode::kUnauthenticated
                                : StatusCode::kUnavailable;
    finish(Status(code,
                  "token request to " + realm + " returned status " + std::to_string(http_status)));
    return;
  }
  Expected<TokenGrant> grant = parseTokenResponse(token_handler_.body());
  token_handler_.clear();
  if (!grant) {
    finish(unavailable("invalid token response from " + realm + ": " +
                       std::string(grant.status().message())));
    return;
  }

  core_.tokens().insert(token_key_, *grant);
  core_.setBearerRealm(token_key_);
  bearer_token_ = std::move(grant->token);
  log::proxy().debug("upstream token granted req={} call={} realm={} scope={} expires_in_s={}",
                     spec_.request_id, id_, realm, token_key_.scope, grant->expires_in_s);
  startAttempt();
}

void CallState::TokenHandler::onHead(const UpstreamResponse& response) {
  status_ = response.status;
}

Status CallState::TokenHandler::onBody(std::string_view chunk) {
  if (body_.size() + chunk.size() > kMaxTokenResponseBytes) {
    return unavailable("token response exceeds " + std::to_string(kMaxTokenResponseBytes) +
                       " bytes");
  }
  body_.append(chunk);
  return Status::ok();
}

void CallState::TokenHandler::onComplete(Status status) {
  parent_->onTokenComplete(std::move(status));
}

void CallState::TokenHandler::clear() {
  status_ = 0;
  body_.clear();
  body_.shrink_to_fit();
}

// ----- Completion ---------------------------------------------------------------------

void CallState::finish(Status status) {
  if (phase_ == Phase::kDone) {
    return;
  }
  phase_ = Phase::kDone;
  releaseResources();
  if (handle_ != nullptr) {
    handle_->detach();
    handle_ = nullptr;
  }
  if (!status.isOk()) {
    log::proxy().debug("upstream call failed req={} call={} url={} error=\"{}\"", spec_.request_id,
                       id_, target_.withoutQuery(), status.toString());
  }
  UpstreamHandler* handler = std::exchange(handler_, nullptr);
  handler->onComplete(std::move(status));
}

void CallState::releaseResources() {
  step_timer_.stop();
  deadline_timer_.stop();
  if (is_waiting_for_connection_) {
    is_waiting_for_connection_ = false;
    core_.pool().cancelWait(target_, this);
  }
  dropConnection();
  token_call_.reset();
}

void CallState::dropConnection() {
  if (connection_ != nullptr) {
    core_.pool().discard(std::exchange(connection_, nullptr));
  }
}

}  // namespace outpost::proxy::upstream
