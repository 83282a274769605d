// The cache's access order (AccessOrder): touch of a blob already tracked, touch of a new blob
// with eviction of the oldest as a full tier does it, oldest() over a large order, and the
// resident memory that restored entries take.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
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

// Returns `count` distinct sha512 digests, made once per process like digests().
const std::vector<Digest>& sha512Digests(size_t count) {
  static std::vector<Digest> generated;
  while (generated.size() < count) {
    DigestHasher hasher(DigestAlgorithm::kSha512);
    hasher.update("layer-" + std::to_string(generated.size()));
    generated.push_back(hasher.finish());
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

// Returns the resident set size of this process (VmRSS in /proc/self/status), or nothing when
// the file is missing or has no such line.
std::optional<uint64_t> residentBytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      uint64_t kibibytes = 0;
      if (status >> kibibytes) {
        return kibibytes * 1024;
      }
      return std::nullopt;
    }
    status.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

// Restores `entries` blobs into an empty order in the default 16 shards, as start-up does from
// the index: in digest order, with access times in random order. The digests are sha256, or
// sha512 when the argument `sha512` is 1. Reports the growth of resident memory divided by the
// entry count as the counter bytes_per_entry, which includes the allocator's overhead. Runs one
// iteration, and should run alone (--benchmark_filter), because memory that earlier orders freed
// may stay in the allocator and hide this one's growth. The time is that of the whole restore.
void BM_LruRestoreResidentBytes(benchmark::State& state) {
  auto entry_count = static_cast<size_t>(state.range(0));
  // The digests exist before the first reading, so they do not count.
  const std::vector<Digest>& all =
      state.range(1) == 1 ? sha512Digests(entry_count) : digests(entry_count);
  std::vector<int64_t> times_ms(entry_count);
  std::mt19937_64 random(42);
  for (int64_t& time_ms : times_ms) {
    time_ms = 1'700'000'000'000 + static_cast<int64_t>(random() % entry_count);
  }

  for (auto _ : state) {
    ManualClock clock;
    std::optional<uint64_t> before_bytes = residentBytes();
    auto order = std::make_unique<AccessOrder>(clock);
    for (size_t i = 0; i < entry_count; ++i) {
      if (!order->restore(all[i], kBlobBytes, times_ms[i]).isOk()) {
        state.SkipWithError("a restore failed");
        return;
      }
    }
    std::optional<uint64_t> after_bytes = residentBytes();
    if (!before_bytes || !after_bytes) {
      state.SkipWithError("VmRSS is missing from /proc/self/status");
      return;
    }
    if (order->entries() != entry_count) {
      state.SkipWithError("the order lost entries");
      return;
    }
    state.counters["bytes_per_entry"] =
        (static_cast<double>(*after_bytes) - static_cast<double>(*before_bytes)) /
        static_cast<double>(entry_count);

    // Freeing is not part of the restore.
    state.PauseTiming();
    order.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_LruRestoreResidentBytes)
    ->Args({kLargeOrderEntries, 0})
    ->Args({kLargeOrderEntries, 1})
    ->ArgNames({"entries", "sha512"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace outpost::cache
