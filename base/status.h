// Status and Expected<T>: how failures travel through Outpost.
//
// Code on a loop thread never throws; every fallible call returns one of these. An OK Status
// allocates nothing. Layers report their own codes (storage says kNotFound or kCorruption), and
// the proxy translates them once into registry error codes and HTTP statuses.
#pragma once

#include <cassert>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace outpost {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kOutOfRange,
  kCorruption,
  kIOError,
  kNoSpace,
  kUnavailable,
  kTimedOut,
  kUnauthenticated,
  kPermissionDenied,
  kTooManyRequests,
  kCancelled,
  kInternal,
};

// Returns the lower-case name of `code`, as used in log fields ("not_found").
std::string_view statusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : state_(code == StatusCode::kOk
                   ? nullptr
                   : std::make_unique<State>(State{code, std::move(message)})) {}

  Status(const Status& other)
      : state_(other.state_ ? std::make_unique<State>(*other.state_) : nullptr) {}
  Status& operator=(const Status& other) {
    state_ = other.state_ ? std::make_unique<State>(*other.state_) : nullptr;
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status ok() { return Status(); }

  bool isOk() const { return state_ == nullptr; }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  std::string_view message() const { return state_ ? std::string_view(state_->message) : ""; }

  // Returns "code: message", for logs and tests.
  std::string toString() const;

 private:
  struct State {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<State> state_;
};

// Builds a Status from a code and a message; short helpers keep call sites on one line.
inline Status invalidArgument(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}
inline Status notFound(std::string message) {
  return Status(StatusCode::kNotFound, std::move(message));
}
inline Status corruption(std::string message) {
  return Status(StatusCode::kCorruption, std::move(message));
}
inline Status ioError(std::string message) {
  return Status(StatusCode::kIOError, std::move(message));
}
inline Status unavailable(std::string message) {
  return Status(StatusCode::kUnavailable, std::move(message));
}
inline Status internalError(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}

// Builds the Status for a failed system call: ENOSPC and EDQUOT map to kNoSpace, ENOENT to
// kNotFound, anything else to kIOError. The message is "<what>: <strerror>".
Status errnoStatus(std::string_view what, int error_number);

// A value of type T or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : storage_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(Status status) : storage_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(storage_).isOk() && "Expected needs a value or a failed Status");
  }

  bool hasValue() const { return std::holds_alternative<T>(storage_); }
  explicit operator bool() const { return hasValue(); }

  T& value() & { return std::get<T>(storage_); }
  const T& value() const& { return std::get<T>(storage_); }
  T&& value() && { return std::get<T>(std::move(storage_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // Returns the failure; OK when a value is present.
  Status status() const { return hasValue() ? Status() : std::get<Status>(storage_); }
  Status&& takeStatus() && { return std::get<Status>(std::move(storage_)); }

 private:
  std::variant<T, Status> storage_;
};

}  // namespace outpost

#define OUTPOST_CONCAT_INNER(a, b) a##b
#define OUTPOST_CONCAT(a, b) OUTPOST_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` fails.
#define OUTPOST_RETURN_IF_ERROR(expr)                          \
  do {                                                         \
    ::outpost::Status outpost_status_ = (expr);                \
    if (!outpost_status_.isOk()) return outpost_status_;       \
  } while (false)

// Declares `lhs` from an Expected-returning `expr`, or returns its Status on failure.
#define OUTPOST_ASSIGN_OR_RETURN(lhs, expr)                                       \
  auto OUTPOST_CONCAT(outpost_expected_, __LINE__) = (expr);                      \
  if (!OUTPOST_CONCAT(outpost_expected_, __LINE__)) {                             \
    return std::move(OUTPOST_CONCAT(outpost_expected_, __LINE__)).takeStatus();   \
  }                                                                               \
  lhs = std::move(OUTPOST_CONCAT(outpost_expected_, __LINE__)).value()
