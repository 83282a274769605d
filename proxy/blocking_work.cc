#include "proxy/blocking_work.h"

#include <cstdlib>
#include <memory>

#include "base/log.h"

namespace outpost::proxy {
namespace {

struct BlockingJob {
  uv_work_t request;
  std::function<void()> work;
  std::function<void()> after;
};

}  // namespace

void runBlocking(uv_loop_t* loop, std::function<void()> work, std::function<void()> after) {
  auto job = std::make_unique<BlockingJob>();
  job->request.data = job.get();
  job->work = std::move(work);
  job->after = std::move(after);
  int result = uv_queue_work(
      loop, &job->request,
      [](uv_work_t* request) { static_cast<BlockingJob*>(request->data)->work(); },
      [](uv_work_t* request, int) {
        std::unique_ptr<BlockingJob> owned(static_cast<BlockingJob*>(request->data));
        owned->after();
      });
  if (result != 0) {
    // uv_queue_work fails only for a null callback, which cannot happen here.
    log::proxy().critical("uv_queue_work failed error={}", uv_strerror(result));
    std::abort();
  }
  job.release();  // owned by libuv until the after-callback
}

}  // namespace outpost::proxy
