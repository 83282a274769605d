// The cache's access order (AccessOrder): touch of a blob already tracked, touch of a new blob
// with eviction of the oldest as a full tier does it, and oldest() over a large order.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "cache/access_order.h"

namespace outpost::cache {
namespace {

// Minimum measured time per benchmark. Results settle well within it, and it keeps the default
// run of the whole binary well under a minute on 2 cores.
constexpr double kMinTimeSeconds = 0.2;

constexpr int64_t kLargeOrderEntries = 1'000'000;
constexpr uint64_t kBlobBytes = 4 << 20;

// Returns `count` distinct digests. Google Benchmark calls a benchmark function several times
// while it sizes the iteration count, so the digests are made once per process.
const std::vector<Digest>& digests(size_t count) {
  static std::vector<Digest> generated;
  while (generated.size() < count) {
    generated.push_back(sha256Of("layer-" + std::to_string(generated.size())));
  }
  return generated;
}

// An order of `entry_count` entries of kBlobBytes each, touched one millisecond apart in digest
// index order, with the clock that it reads. Built once per size and use for the same reason as
// above.
struct FilledOrder {
  ManualClock clock;
  AccessOrder order{clock};
  // Index of the next digest to insert, for the benchmark that inserts and evicts. The order
  // contains the entry_count digests before it, modulo entry_count + 1.
  size_t next_index = 0;
};

// Benchmarks that change which digests the order contains get an order of their own.
enum class OrderUse { kReadHits, kInsertAndEvict };

FilledOrder* filledOrder(OrderUse use, size_t entry_count) {
  static std::map<std::pair<OrderUse, size_t>, std::unique_ptr<FilledOrder>> orders;
  std::unique_ptr<FilledOrder>& filled = orders[{use, entry_count}];
  if (filled != nullptr) {
    return filled.get();
  }

  filled = std::make_unique<FilledOrder>();
  const std::vector<Digest>& all = digests(entry_count + 1);
  for (size_t i = 0; i < entry_count; ++i) {
    if (!filled->order.touch(all[i], kBlobBytes).isOk()) {
      filled.reset();
      return nullptr;
    }
    filled->clock.advanceMs(1);
  }
  filled->next_index = entry_count;
  return filled.get();
}

// Touches an entry that is already tracked, as every cache hit does. Items are touches.
void BM_LruTouchHit(benchmark::State& state) {
  auto entry_count = static_cast<size_t>(state.range(0));
  FilledOrder* filled = filledOrder(OrderUse::kReadHits, entry_count);
  if (filled == nullptr) {
    state.SkipWithError("filling the order failed");
    return;
  }
  const std::vector<Digest>& all = digests(entry_count);

  // A stride coprime with the entry count spreads the touches over all shards and entries.
  size_t index = 0;
  for (auto _ : state) {
    Status status = filled->order.touch(all[index], kBlobBytes);
    benchmark::DoNotOptimize(status);
    index = (index + 7919) % entry_count;
  }

  if (filled->order.entries() != entry_count) {
    state.SkipWithError("a hit changed the number of entries");
    return;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LruTouchHit)
    ->Arg(1'000)
    ->Arg(kLargeOrderEntries)
    ->ArgName("entries")
    ->MinTime(kMinTimeSeconds);

// Touches a digest that is not tracked, then evicts the oldest entry through oldest() and
// erase(), as a tier at its byte budget does on a miss. The order keeps its size, so memory
// stays bounded. Items are inserted and evicted blobs.
void BM_LruTouchMissEvict(benchmark::State& state) {
  auto entry_count = static_cast<size_t>(state.range(0));
  FilledOrder* filled = filledOrder(OrderUse::kInsertAndEvict, entry_count);
  if (filled == nullptr) {
    state.SkipWithError("filling the order failed");
    return;
  }
  const std::vector<Digest>& all = digests(entry_count + 1);

  for (auto _ : state) {
    filled->clock.advanceMs(1);
    Status touched = filled->order.touch(all[filled->next_index], kBlobBytes);
    std::vector<AccessOrder::Candidate> candidates = filled->order.oldest(1);
    if (!touched.isOk() || candidates.size() != 1 ||
        !filled->order.erase(candidates.front().digest).isOk()) {
      state.SkipWithError("a touch, oldest() or erase() failed");
      break;
    }
    filled->next_index = (filled->next_index + 1) % (entry_count + 1);
  }

  if (filled->order.entries() != entry_count) {
    state.SkipWithError("the order did not keep its size");
    return;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LruTouchMissEvict)
    ->Arg(1'000)
    ->Arg(kLargeOrderEntries)
    ->ArgName("entries")
    ->MinTime(kMinTimeSeconds);

// Asks a 1M-entry order, in the default 16 shards, for the `candidates` oldest entries. Items are
// candidates returned.
void BM_LruOldest(benchmark::State& state) {
  auto candidate_count = static_cast<uint64_t>(state.range(0));
  FilledOrder* filled = filledOrder(OrderUse::kReadHits, kLargeOrderEntries);
  if (filled == nullptr) {
    state.SkipWithError("filling the order failed");
    return;
  }

  for (auto _ : state) {
    std::vector<AccessOrder::Candidate> candidates =
        filled->order.oldest(candidate_count * kBlobBytes);
    if (candidates.size() != candidate_count) {
      state.SkipWithError("oldest() returned the wrong number of candidates");
      break;
    }
    benchmark::DoNotOptimize(candidates);
  }

  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_LruOldest)
    ->Arg(1)
    ->Arg(64)
    ->Arg(4096)
    ->ArgName("candidates")
    ->MinTime(kMinTimeSeconds);

}  // namespace
}  // namespace outpost::cache
