#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace outpost {

std::string_view statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kAlreadyExists: return "already_exists";
    case StatusCode::kOutOfRange: return "out_of_range";
    case StatusCode::kCorruption: return "corruption";
    case StatusCode::kIOError: return "io_error";
    case StatusCode::kNoSpace: return "no_space";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kTimedOut: return "timed_out";
    case StatusCode::kUnauthenticated: return "unauthenticated";
    case StatusCode::kPermissionDenied: return "permission_denied";
    case StatusCode::kTooManyRequests: return "too_many_requests";
    case StatusCode::kCancelled: return "cancelled";
    case StatusCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::toString() const {
  if (isOk()) {
    return "ok";
  }
  std::string text(statusCodeName(code()));
  if (!message().empty()) {
    text += ": ";
    text += message();
  }
  return text;
}

Status errnoStatus(std::string_view what, int error_number) {
  std::string message(what);
  message += ": ";
  message += std::strerror(error_number);
  switch (error_number) {
    case ENOSPC:
    case EDQUOT:
      return Status(StatusCode::kNoSpace, std::move(message));
    case ENOENT:
      return Status(StatusCode::kNotFound, std::move(message));
    default:
      return Status(StatusCode::kIOError, std::move(message));
  }
}

}  // namespace outpost
