// Coalescing of concurrent fetches: SingleFlight join and complete as the manifest path uses
// them, and FillRegistry::join when the blob's fill is already running.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "base/digest.h"
#include "base/log.h"
#include "base/status.h"
#include "bench/micro/temp_folder.h"
#include "cache/blob_fill.h"
#include "cache/fill_registry.h"
#include "cache/single_flight.h"
#include "storage/blob_store.h"

namespace outpost::cache {
namespace {

using bench::TempFolder;

// Minimum measured time per benchmark. Results settle well within it, and it keeps the default
// run of the whole binary well under a minute on 2 cores.
constexpr double kMinTimeSeconds = 0.2;

// The fetched manifest that every waiter receives, reduced to its media type and body.
struct ManifestResult {
  std::string media_type;
  std::string body;
};

// The client exchange that a manifest waiter's callback keeps alive, reduced to a counter.
struct Waiter {
  uint64_t delivered_bytes = 0;
};

// One iteration is one coalesced fetch: `waiters` joins (the first one leads), then one
// complete that calls every callback. Items are waiters served.
void BM_SingleFlightJoinComplete(benchmark::State& state) {
  auto waiter_count = static_cast<size_t>(state.range(0));
  SingleFlight<std::string, std::shared_ptr<const ManifestResult>> flights;
  // The key has the shape RemoteRepository builds: name, reference and Accept, NUL-separated.
  std::string key = std::string("library/alpine") + '\0' + "3.19" + '\0' +
                    "application/vnd.oci.image.index.v1+json";
  auto result = std::make_shared<const ManifestResult>(
      ManifestResult{"application/vnd.oci.image.index.v1+json", std::string(1500, 'm')});
  auto waiter = std::make_shared<Waiter>();

  size_t leader_count = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < waiter_count; ++i) {
      // Like the server's callback, this one captures a shared_ptr, so std::function allocates:
      // libstdc++ stores only trivially copyable callables of up to 16 bytes inline.
      bool is_leader =
          flights.join(key, [waiter](const std::shared_ptr<const ManifestResult>& delivered) {
            waiter->delivered_bytes += delivered->body.size();
          });
      leader_count += is_leader ? 1 : 0;
    }
    flights.complete(key, result);
  }

  benchmark::DoNotOptimize(waiter->delivered_bytes);
  auto iterations = static_cast<uint64_t>(state.iterations());
  if (leader_count != iterations ||
      waiter->delivered_bytes != iterations * waiter_count * result->body.size()) {
    state.SkipWithError("SingleFlight did not elect one leader and call every waiter");
    return;
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SingleFlightJoinComplete)
    ->Arg(1)
    ->Arg(64)
    ->ArgName("waiters")
    ->MinTime(kMinTimeSeconds);

// Makes a running fill for `digest` with a writer from `store`, as the remote blob path does on
// a miss.
Expected<std::shared_ptr<BlobFill>> makeFill(storage::BlobStore& store, const Digest& digest) {
  Expected<std::unique_ptr<storage::BlobWriter>> writer = store.createWriter(digest.algorithm());
  if (!writer) {
    return writer.status();
  }
  return std::make_shared<BlobFill>(digest, std::move(*writer));
}

// Joins the running fill of one digest while the registry contains `fills` running fills. Every
// request for a blob after the one that started its download does this.
void BM_FillRegistryJoinHit(benchmark::State& state) {
  // BlobStore::open logs at info level, which would interleave with the result table.
  log::setup("warn");
  TempFolder folder;
  if (folder.path().empty()) {
    state.SkipWithError("creating a temporary folder failed, check that TMPDIR is writable");
    return;
  }
  Expected<std::unique_ptr<storage::BlobStore>> opened = storage::BlobStore::open(folder.path());
  if (!opened) {
    state.SkipWithError(opened.status().toString().c_str());
    return;
  }
  storage::BlobStore& store = **opened;

  auto fill_count = static_cast<size_t>(state.range(0));
  std::vector<Digest> digests;
  for (size_t i = 0; i < fill_count; ++i) {
    digests.push_back(sha256Of("layer-" + std::to_string(i)));
  }
  FillRegistry registry;
  auto is_cached = [&] { return false; };
  for (const Digest& digest : digests) {
    Expected<FillRegistry::Joined> first =
        registry.join(digest, is_cached, [&] { return makeFill(store, digest); });
    if (!first || !first->is_new) {
      state.SkipWithError("the first join did not start a new fill");
      return;
    }
  }

  const Digest& requested = digests.front();
  auto make_fill = [&]() -> Expected<std::shared_ptr<BlobFill>> {
    return internalError("a join of a running fill made a new one");
  };
  for (auto _ : state) {
    Expected<FillRegistry::Joined> joined = registry.join(requested, is_cached, make_fill);
    benchmark::DoNotOptimize(joined);
    if (!joined || joined->is_new) {
      state.SkipWithError("a join of a running fill did not return that fill");
      break;
    }
  }

  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FillRegistryJoinHit)->Arg(1)->Arg(64)->ArgName("fills")->MinTime(kMinTimeSeconds);

}  // namespace
}  // namespace outpost::cache
