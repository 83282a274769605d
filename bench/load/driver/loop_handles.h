// Small owners of the libuv handles that a run keeps beside its connections: a one-shot timer,
// a signal watch and a watch for the end of standard input.
//
// Each embeds its handle and keeps an explicit state (unused, open, closing, closed). The
// owning object must outlive the loop run that closes the handle: a mode object lives on
// main()'s stack, closes its handles when it finishes, and uv_run returns only after their
// close callbacks have run. Loop thread only.
#pragma once

#include <uv.h>

#include <functional>

namespace outpost::load {

enum class HandleState { kUnused, kOpen, kClosing, kClosed };

// A timer that fires once.
class OneShotTimer {
 public:
  OneShotTimer() = default;
  // Precondition: the handle is unused or closed, so libuv no longer uses it.
  ~OneShotTimer();
  OneShotTimer(const OneShotTimer&) = delete;
  OneShotTimer& operator=(const OneShotTimer&) = delete;

  // Runs `on_fire` once after `timeout_ms`, unless close() comes first.
  void start(uv_loop_t* loop, uint64_t timeout_ms, std::function<void()> on_fire);
  // Stops the timer and starts closing its handle. Safe in every state.
  void close();

 private:
  static void onTimer(uv_timer_t* timer);
  static void onClose(uv_handle_t* handle);

  uv_timer_t timer_;
  HandleState state_ = HandleState::kUnused;
  std::function<void()> on_fire_;
};

// A watch for one signal number. While it is open the signal's default action is replaced.
class SignalWatch {
 public:
  SignalWatch() = default;
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  // Runs `on_signal` each time `signal_number` arrives, until close().
  void start(uv_loop_t* loop, int signal_number, std::function<void()> on_signal);
  void close();

 private:
  static void onSignal(uv_signal_t* handle, int signal_number);
  static void onClose(uv_handle_t* handle);

  uv_signal_t signal_;
  HandleState state_ = HandleState::kUnused;
  std::function<void()> on_signal_;
};

// A watch that reports when standard input reaches its end. Input bytes are read and dropped.
// uv_poll_init makes standard input non-blocking. close() restores its file status flags,
// because a terminal is shared with the shell that started the driver.
class StdinEndWatch {
 public:
  StdinEndWatch() = default;
  ~StdinEndWatch();
  StdinEndWatch(const StdinEndWatch&) = delete;
  StdinEndWatch& operator=(const StdinEndWatch&) = delete;

  // Runs `on_end` once when standard input reaches EOF or fails. A regular file or /dev/null
  // cannot be watched with epoll and ends at once, so `on_end` then runs before start()
  // returns.
  void start(uv_loop_t* loop, std::function<void()> on_end);
  void close();

 private:
  static void onReadable(uv_poll_t* handle, int status, int events);
  static void onClose(uv_handle_t* handle);
  void reportEnd();

  uv_poll_t poll_;
  HandleState state_ = HandleState::kUnused;
  std::function<void()> on_end_;
  // fcntl(F_GETFL) of standard input before uv_poll_init, or -1.
  int saved_file_flags_ = -1;
};

}  // namespace outpost::load
