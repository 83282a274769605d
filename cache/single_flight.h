// SingleFlight: many callers asking for the same key at once share one piece of work.
//
// The first caller of join() for a key becomes the leader and runs the work; later callers
// wait. complete() hands the one result to every waiter. Used for manifests and tag
// revalidations, whose results are small and go to every waiter whole; blobs stream through
// BlobFill instead.
#pragma once

#include <functional>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outpost::cache {

template <typename Key, typename Result, typename Hash = std::hash<Key>>
class SingleFlight {
 public:
  using Callback = std::function<void(const Result&)>;

  // Queues `callback` for `key`. Returns true when no work for `key` was running: the caller
  // is then the leader and must call complete() for `key` exactly once.
  bool join(const Key& key, Callback callback) {
    std::lock_guard lock(mutex_);
    auto [entry, inserted] = waiters_.try_emplace(key);
    entry->second.push_back(std::move(callback));
    return inserted;
  }

  // Calls every waiter of `key` with `result`, on this thread and without the lock held, in
  // the order they joined. A waiter that needs its own thread posts from its callback.
  void complete(const Key& key, const Result& result) {
    std::vector<Callback> callbacks;
    {
      std::lock_guard lock(mutex_);
      auto entry = waiters_.find(key);
      if (entry == waiters_.end()) {
        return;
      }
      callbacks = std::move(entry->second);
      waiters_.erase(entry);
    }
    for (Callback& callback : callbacks) {
      callback(result);
    }
  }

  // Returns how many callers wait for `key` (0 when no work runs).
  size_t waiterCount(const Key& key) const {
    std::lock_guard lock(mutex_);
    auto entry = waiters_.find(key);
    return entry == waiters_.end() ? 0 : entry->second.size();
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<Key, std::vector<Callback>, Hash> waiters_;  // guarded by mutex_
};

}  // namespace outpost::cache
