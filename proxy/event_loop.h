// EventLoop: one libuv loop on a thread of its own, the unit Outpost scales by (one per core).
//
// Objects created on a loop belong to its thread. Other threads reach them only through
// post(), which queues a task and wakes the loop with a uv_async_t.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace outpost::proxy {

class EventLoop {
 public:
  using Task = std::function<void()>;

  explicit EventLoop(uint32_t index);
  ~EventLoop();  // precondition: the thread has been joined (join()) or never started
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs the loop on a new thread; `on_start` runs first on that thread.
  void start(Task on_start);
  // Queues `task` to run on the loop thread. Safe from any thread, including the loop's own.
  void post(Task task);
  // Runs `task` now when called on the loop thread, else posts it.
  void dispatch(Task task);
  // Asks the loop to end once every handle is closed; the wake-up handle is closed here.
  void requestStop();
  void join();

  bool isLoopThread() const { return std::this_thread::get_id() == thread_id_.load(); }
  uv_loop_t* uv() { return &loop_; }
  uint32_t index() const { return index_; }

 private:
  static void onAsync(uv_async_t* handle);
  void drainTasks();

  uint32_t index_;
  uv_loop_t loop_;
  uv_async_t wakeup_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::mutex mutex_;
  std::vector<Task> pending_;  // guarded by mutex_
  bool stop_requested_ = false;  // guarded by mutex_
};

}  // namespace outpost::proxy
