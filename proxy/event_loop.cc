#include "proxy/event_loop.h"

#include <cstdlib>

#include "base/log.h"

namespace outpost::proxy {

EventLoop::EventLoop(uint32_t index) : index_(index) {
  if (uv_loop_init(&loop_) != 0 || uv_async_init(&loop_, &wakeup_, &EventLoop::onAsync) != 0) {
    log::proxy().critical("event loop initialisation failed loop={}", index);
    std::abort();
  }
  wakeup_.data = this;
}

EventLoop::~EventLoop() {
  if (thread_.joinable()) {
    log::proxy().critical("event loop destroyed while its thread runs loop={}", index_);
    std::abort();
  }
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&wakeup_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&wakeup_), nullptr);
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

void EventLoop::start(Task on_start) {
  thread_ = std::thread([this, on_start = std::move(on_start)] {
    thread_id_ = std::this_thread::get_id();
    if (on_start) {
      on_start();
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
  // Wait until the thread has recorded its id, so isLoopThread() is meaningful at once.
  while (thread_id_.load() == std::thread::id()) {
    std::this_thread::yield();
  }
}

void EventLoop::post(Task task) {
  {
    std::lock_guard lock(mutex_);
    if (stop_requested_) {
      return;
    }
    pending_.push_back(std::move(task));
  }
  uv_async_send(&wakeup_);
}

void EventLoop::dispatch(Task task) {
  if (isLoopThread()) {
    task();
  } else {
    post(std::move(task));
  }
}

void EventLoop::requestStop() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  uv_async_send(&wakeup_);
}

void EventLoop::join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

void EventLoop::onAsync(uv_async_t* handle) {
  static_cast<EventLoop*>(handle->data)->drainTasks();
}

void EventLoop::drainTasks() {
  std::vector<Task> tasks;
  bool stop;
  {
    std::lock_guard lock(mutex_);
    tasks.swap(pending_);
    stop = stop_requested_;
  }
  for (Task& task : tasks) {
    task();
  }
  if (stop && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&wakeup_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&wakeup_), nullptr);
  }
}

}  // namespace outpost::proxy
