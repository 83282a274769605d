// runBlocking: runs a step that may wait on the disk (fsync, a synced RocksDB write) on
// libuv's thread pool, then continues on the loop thread that asked for it.
#pragma once

#include <uv.h>

#include <functional>

namespace outpost::proxy {

// Runs `work` on a thread-pool thread, then `after` on `loop`'s thread. Both always run, also
// when the loop is stopping. Must be called on `loop`'s thread.
void runBlocking(uv_loop_t* loop, std::function<void()> work, std::function<void()> after);

}  // namespace outpost::proxy
