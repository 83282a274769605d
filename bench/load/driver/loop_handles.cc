#include "bench/load/driver/loop_handles.h"

#include <fcntl.h>
#include <unistd.h>

#include <cassert>
#include <utility>

#include "base/unique_fd.h"

namespace outpost::load {

OneShotTimer::~OneShotTimer() {
  assert(state_ == HandleState::kUnused || state_ == HandleState::kClosed);
}

void OneShotTimer::start(uv_loop_t* loop, uint64_t timeout_ms, std::function<void()> on_fire) {
  assert(state_ == HandleState::kUnused);
  // uv_timer_init and uv_timer_start fail only for invalid arguments.
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  state_ = HandleState::kOpen;
  on_fire_ = std::move(on_fire);
  uv_timer_start(&timer_, &OneShotTimer::onTimer, timeout_ms, 0);
}

void OneShotTimer::close() {
  if (state_ != HandleState::kOpen) {
    return;
  }
  state_ = HandleState::kClosing;
  on_fire_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &OneShotTimer::onClose);
}

void OneShotTimer::onTimer(uv_timer_t* timer) {
  auto* self = static_cast<OneShotTimer*>(timer->data);
  if (self->on_fire_) {
    // Moved out first: the callback usually closes this timer.
    std::function<void()> on_fire = std::move(self->on_fire_);
    self->on_fire_ = nullptr;
    on_fire();
  }
}

void OneShotTimer::onClose(uv_handle_t* handle) {
  static_cast<OneShotTimer*>(handle->data)->state_ = HandleState::kClosed;
}

SignalWatch::~SignalWatch() {
  assert(state_ == HandleState::kUnused || state_ == HandleState::kClosed);
}

void SignalWatch::start(uv_loop_t* loop, int signal_number, std::function<void()> on_signal) {
  assert(state_ == HandleState::kUnused);
  uv_signal_init(loop, &signal_);
  signal_.data = this;
  state_ = HandleState::kOpen;
  on_signal_ = std::move(on_signal);
  uv_signal_start(&signal_, &SignalWatch::onSignal, signal_number);
}

void SignalWatch::close() {
  if (state_ != HandleState::kOpen) {
    return;
  }
  state_ = HandleState::kClosing;
  on_signal_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&signal_), &SignalWatch::onClose);
}

void SignalWatch::onSignal(uv_signal_t* handle, int /*signal_number*/) {
  auto* self = static_cast<SignalWatch*>(handle->data);
  if (self->on_signal_) {
    self->on_signal_();
  }
}

void SignalWatch::onClose(uv_handle_t* handle) {
  static_cast<SignalWatch*>(handle->data)->state_ = HandleState::kClosed;
}

StdinEndWatch::~StdinEndWatch() {
  assert(state_ == HandleState::kUnused || state_ == HandleState::kClosed);
}

void StdinEndWatch::start(uv_loop_t* loop, std::function<void()> on_end) {
  assert(state_ == HandleState::kUnused);
  on_end_ = std::move(on_end);
  saved_file_flags_ = ::fcntl(STDIN_FILENO, F_GETFL);
  // epoll rejects regular files and /dev/null with EPERM. Reading them reaches EOF at once.
  if (uv_poll_init(loop, &poll_, STDIN_FILENO) < 0) {
    reportEnd();
    return;
  }
  poll_.data = this;
  state_ = HandleState::kOpen;
  uv_poll_start(&poll_, UV_READABLE | UV_DISCONNECT, &StdinEndWatch::onReadable);
}

void StdinEndWatch::close() {
  on_end_ = nullptr;
  if (state_ != HandleState::kOpen) {
    return;
  }
  state_ = HandleState::kClosing;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &StdinEndWatch::onClose);
  if (saved_file_flags_ >= 0) {
    ::fcntl(STDIN_FILENO, F_SETFL, saved_file_flags_);
  }
}

void StdinEndWatch::onReadable(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<StdinEndWatch*>(handle->data);
  if (status < 0) {
    self->reportEnd();
    return;
  }
  char discarded[4096];
  ssize_t count = retryOnEintr([&] { return ::read(STDIN_FILENO, discarded, sizeof(discarded)); });
  if (count > 0 || (count < 0 && errno == EAGAIN)) {
    return;
  }
  self->reportEnd();
}

void StdinEndWatch::reportEnd() {
  if (!on_end_) {
    return;
  }
  std::function<void()> on_end = std::move(on_end_);
  on_end_ = nullptr;
  on_end();
}

void StdinEndWatch::onClose(uv_handle_t* handle) {
  static_cast<StdinEndWatch*>(handle->data)->state_ = HandleState::kClosed;
}

}  // namespace outpost::load
