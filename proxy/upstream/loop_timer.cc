#include "proxy/upstream/loop_timer.h"

#include <cassert>
#include <memory>
#include <utility>

namespace outpost::proxy::upstream {

void HandleCounter::release() {
  assert(open_count_ > 0);
  --open_count_;
  if (open_count_ > 0 || !on_released_) {
    return;
  }
  // The callback may destroy the client that owns this counter, so nothing here touches
  // members after it runs.
  std::function<void()> on_released = std::move(on_released_);
  on_released_ = nullptr;
  on_released();
}

void HandleCounter::notifyWhenReleased(std::function<void()> on_released) {
  if (open_count_ == 0) {
    on_released();
    return;
  }
  on_released_ = std::move(on_released);
}

LoopTimer::LoopTimer(uv_loop_t* loop, HandleCounter* counter, std::function<void()> on_fire)
    : on_fire_(std::move(on_fire)) {
  auto handle = std::make_unique<Handle>();
  handle->owner = this;
  handle->counter = counter;
  // uv_timer_init cannot fail for a valid loop.
  uv_timer_init(loop, &handle->timer);
  handle->timer.data = handle.get();
  counter->acquire();
  handle_ = handle.release();
}

LoopTimer::~LoopTimer() {
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->timer), &LoopTimer::onClose);
}

void LoopTimer::start(uint64_t timeout_ms) {
  uv_timer_start(&handle_->timer, &LoopTimer::onTimer, timeout_ms, 0);
}

void LoopTimer::stop() { uv_timer_stop(&handle_->timer); }

bool LoopTimer::isActive() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(&handle_->timer)) != 0;
}

void LoopTimer::onTimer(uv_timer_t* timer) {
  auto* handle = static_cast<Handle*>(timer->data);
  if (handle->owner != nullptr) {
    handle->owner->on_fire_();
  }
}

void LoopTimer::onClose(uv_handle_t* closed) {
  std::unique_ptr<Handle> handle(static_cast<Handle*>(closed->data));
  HandleCounter* counter = handle->counter;
  handle.reset();
  counter->release();
}

}  // namespace outpost::proxy::upstream
