// Bookkeeping for the libuv handles and requests of one upstream client, and a timer that can
// be destroyed at any time.
//
// libuv owns a handle's memory until its close callback runs. LoopTimer therefore allocates
// its uv_timer_t separately: the C++ object may go away at once, while the handle memory is
// freed in the close callback. HandleCounter counts every handle and request the client has
// open, so that UpstreamClient::close() can report completion only once libuv has released
// them all.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>

namespace outpost::proxy::upstream {

// Number of open handles and pending requests of one client. Loop thread only.
class HandleCounter {
 public:
  void acquire() { ++open_count_; }
  // Called from close callbacks and request callbacks once libuv no longer uses the memory.
  // Runs the callback given to notifyWhenReleased() when the count reaches zero after it.
  void release();

  // Runs `on_released` once the count is zero: from the release() that brings it there, or
  // at once when nothing is open.
  void notifyWhenReleased(std::function<void()> on_released);

  int64_t openCount() const { return open_count_; }

 private:
  int64_t open_count_ = 0;
  std::function<void()> on_released_;
};

// One uv_timer_t with a fixed callback. Loop thread only. The callback may destroy the timer's
// owner, and with it the timer: nothing touches the LoopTimer after the callback returns.
class LoopTimer {
 public:
  LoopTimer(uv_loop_t* loop, HandleCounter* counter, std::function<void()> on_fire);
  // Stops and closes the handle; `on_fire` never runs afterwards.
  ~LoopTimer();
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;

  // (Re)arms the timer to fire once after `timeout_ms`, measured from the loop's cached time.
  void start(uint64_t timeout_ms);
  void stop();
  bool isActive() const;

 private:
  struct Handle {
    uv_timer_t timer;
    LoopTimer* owner;
    HandleCounter* counter;
  };
  static void onTimer(uv_timer_t* timer);
  static void onClose(uv_handle_t* handle);

  // Owned by libuv from uv_timer_init until onClose, which frees it.
  Handle* handle_;
  std::function<void()> on_fire_;
};

}  // namespace outpost::proxy::upstream
