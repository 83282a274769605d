// RocksDB index reads and writes through outpost::storage::Index. Every benchmark run opens a
// fresh index in its own temporary folder and removes the folder afterwards.
//
// Read benchmarks close and reopen the index after filling it. RocksDB 7.8 writes the recovered
// write-ahead log into table files while it opens, because avoid_flush_during_recovery is false
// by default. Reads then go through table files, bloom filters and the block cache as they do
// after a restart, rather than only the memtable.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "base/log.h"
#include "base/status.h"
#include "bench/micro/temp_folder.h"
#include "storage/index.h"
#include "storage/index_record.h"

namespace outpost::storage {
namespace {

using bench::TempFolder;

// Number of records written before a read benchmark starts.
constexpr size_t kStoredRecords = 64;
// Threads that fill an index. RocksDB commits concurrent synced writes as a group with one
// fsync, so several writers need fewer fsyncs than one.
constexpr size_t kFillThreads = 32;

constexpr std::string_view kRepository = "dockerhub";
constexpr std::string_view kImage = "library/alpine";

// Minimum measured time per benchmark. Results settle well within it, and it keeps the default
// run of the whole binary well under a minute on 2 cores.
constexpr double kMinTimeSeconds = 0.2;

// Opens an index in `folder`, or skips the benchmark with the reason and returns null.
std::unique_ptr<Index> openIndex(benchmark::State& state, const TempFolder& folder) {
  // The index logs every open at info level, which would interleave with the result table.
  log::setup("warn");
  if (folder.path().empty()) {
    state.SkipWithError("creating a temporary folder failed, check that TMPDIR is writable");
    return nullptr;
  }
  Expected<std::unique_ptr<Index>> index = Index::open(folder.path() / "index");
  if (!index) {
    state.SkipWithError(index.status().toString().c_str());
    return nullptr;
  }
  return std::move(*index);
}

// Closes `index` and opens it again from the same folder, so that its records move into table
// files. Skips the benchmark and returns null on failure.
std::unique_ptr<Index> reopenIndex(benchmark::State& state, const TempFolder& folder,
                                   std::unique_ptr<Index> index) {
  index.reset();
  return openIndex(state, folder);
}

// Runs `write(i)` for every i in [0, count) on kFillThreads threads. Returns the first failure.
Status writeConcurrently(size_t count, const std::function<Status(size_t)>& write) {
  std::vector<Status> failures(kFillThreads);
  std::vector<std::thread> threads;
  for (size_t thread_index = 0; thread_index < kFillThreads; ++thread_index) {
    threads.emplace_back([&, thread_index] {
      for (size_t i = thread_index; i < count; i += kFillThreads) {
        Status status = write(i);
        if (!status.isOk()) {
          failures[thread_index] = std::move(status);
          return;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (Status& failure : failures) {
    if (!failure.isOk()) {
      return failure;
    }
  }
  return Status::ok();
}

std::vector<Digest> sampleDigests(std::string_view prefix, size_t count) {
  std::vector<Digest> digests;
  digests.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    digests.push_back(sha256Of(std::string(prefix) + std::to_string(i)));
  }
  return digests;
}

// Returns a manifest-like JSON body of exactly `size` bytes (at least 64).
std::string manifestBody(size_t size, size_t seed) {
  std::string body =
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",";
  body.append("\"annotations\":{\"seed\":\"" + std::to_string(seed) + "\",\"padding\":\"");
  static constexpr char kHex[] = "0123456789abcdef";
  size_t state = seed * 2654435761u + 1;
  while (body.size() + 3 < size) {
    state = state * 6364136223846793005u + 1442695040888963407u;
    body.push_back(kHex[(state >> 60) & 0xf]);
  }
  body.append("\"}}");
  body.resize(size, ' ');
  return body;
}

std::string tagName(size_t i) { return "3." + std::to_string(i); }

TagRecord tagRecord(const Digest& digest, int64_t confirmed_ms) {
  return TagRecord{digest.str(), "application/vnd.oci.image.index.v1+json", confirmed_ms};
}

void BM_IndexGetManifestHit(benchmark::State& state) {
  TempFolder folder;
  std::unique_ptr<Index> index = openIndex(state, folder);
  if (!index) {
    return;
  }
  auto body_bytes = static_cast<size_t>(state.range(0));
  std::vector<Digest> digests = sampleDigests("manifest-", kStoredRecords);
  Status filled = writeConcurrently(kStoredRecords, [&](size_t i) {
    return index->putManifest(digests[i],
                              ManifestRecord{"application/vnd.oci.image.manifest.v1+json",
                                             manifestBody(body_bytes, i), 1});
  });
  if (!filled.isOk()) {
    state.SkipWithError(filled.toString().c_str());
    return;
  }
  index = reopenIndex(state, folder, std::move(index));
  if (!index) {
    return;
  }

  size_t next = 0;
  for (auto _ : state) {
    Expected<ManifestRecord> record = index->getManifest(digests[next]);
    benchmark::DoNotOptimize(record);
    if (!record) {
      state.SkipWithError(record.status().toString().c_str());
      break;
    }
    next = (next + 1) % digests.size();
  }

  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_IndexGetManifestHit)
    ->Arg(1 << 10)
    ->Arg(8 << 10)
    ->Arg(64 << 10)
    ->ArgName("body_bytes")
    ->MinTime(kMinTimeSeconds);

// Looks up digests that are not stored, next to kStoredRecords that are. The bloom filter of
// each table file rejects most misses without reading a data block.
void BM_IndexGetManifestMiss(benchmark::State& state) {
  TempFolder folder;
  std::unique_ptr<Index> index = openIndex(state, folder);
  if (!index) {
    return;
  }
  std::vector<Digest> stored = sampleDigests("manifest-", kStoredRecords);
  Status filled = writeConcurrently(kStoredRecords, [&](size_t i) {
    return index->putManifest(
        stored[i],
        ManifestRecord{"application/vnd.oci.image.manifest.v1+json", manifestBody(4 << 10, i), 1});
  });
  if (!filled.isOk()) {
    state.SkipWithError(filled.toString().c_str());
    return;
  }
  index = reopenIndex(state, folder, std::move(index));
  if (!index) {
    return;
  }
  std::vector<Digest> absent = sampleDigests("absent-", 1024);

  size_t next = 0;
  for (auto _ : state) {
    Expected<ManifestRecord> record = index->getManifest(absent[next]);
    benchmark::DoNotOptimize(record);
    if (record.status().code() != StatusCode::kNotFound) {
      state.SkipWithError("a lookup of an absent manifest did not return kNotFound");
      break;
    }
    next = (next + 1) % absent.size();
  }

  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IndexGetManifestMiss)->MinTime(kMinTimeSeconds);

void BM_IndexGetTag(benchmark::State& state) {
  TempFolder folder;
  std::unique_ptr<Index> index = openIndex(state, folder);
  if (!index) {
    return;
  }
  std::vector<Digest> digests = sampleDigests("index-", kStoredRecords);
  Status filled = writeConcurrently(kStoredRecords, [&](size_t i) {
    return index->putTag(kRepository, kImage, tagName(i), tagRecord(digests[i], 1));
  });
  if (!filled.isOk()) {
    state.SkipWithError(filled.toString().c_str());
    return;
  }
  index = reopenIndex(state, folder, std::move(index));
  if (!index) {
    return;
  }
  std::vector<std::string> tags;
  for (size_t i = 0; i < kStoredRecords; ++i) {
    tags.push_back(tagName(i));
  }

  size_t next = 0;
  for (auto _ : state) {
    Expected<TagRecord> record = index->getTag(kRepository, kImage, tags[next]);
    benchmark::DoNotOptimize(record);
    if (!record) {
      state.SkipWithError(record.status().toString().c_str());
      break;
    }
    next = (next + 1) % tags.size();
  }

  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IndexGetTag)->MinTime(kMinTimeSeconds);

// One synced write per iteration from one thread, so each item includes a WAL fsync and the
// rate follows the disk's flush latency far more than the CPU.
void BM_IndexPutTag(benchmark::State& state) {
  state.SetLabel("synced write, includes fsync");
  TempFolder folder;
  std::unique_ptr<Index> index = openIndex(state, folder);
  if (!index) {
    return;
  }
  std::vector<Digest> digests = sampleDigests("index-", kStoredRecords);
  std::vector<std::string> tags;
  for (size_t i = 0; i < kStoredRecords; ++i) {
    tags.push_back(tagName(i));
  }

  // Overwriting a fixed set of tags bounds the memtable and write-ahead log.
  size_t next = 0;
  int64_t confirmed_ms = 0;
  for (auto _ : state) {
    Status status =
        index->putTag(kRepository, kImage, tags[next], tagRecord(digests[next], ++confirmed_ms));
    if (!status.isOk()) {
      state.SkipWithError(status.toString().c_str());
      break;
    }
    next = (next + 1) % tags.size();
  }

  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IndexPutTag)->UseRealTime()->MinTime(kMinTimeSeconds);

// Records one read of each of `batch` blobs with touchBlob, then writes the times back with one
// flushAccessTimes. Items are touches, so items/s compares across batch sizes.
void BM_IndexTouchAndFlush(benchmark::State& state) {
  TempFolder folder;
  std::unique_ptr<Index> index = openIndex(state, folder);
  if (!index) {
    return;
  }
  auto batch = static_cast<size_t>(state.range(0));
  std::vector<Digest> digests = sampleDigests("blob-", batch);
  Status filled = writeConcurrently(batch, [&](size_t i) {
    return index->putBlob(digests[i], BlobRecord{uint64_t{1} << 20, 1, 1});
  });
  if (!filled.isOk()) {
    state.SkipWithError(filled.toString().c_str());
    return;
  }

  int64_t now_ms = 1;
  for (auto _ : state) {
    ++now_ms;
    for (const Digest& digest : digests) {
      index->touchBlob(digest, now_ms);
    }
    Status flushed = index->flushAccessTimes();
    if (!flushed.isOk()) {
      state.SkipWithError(flushed.toString().c_str());
      break;
    }
  }

  if (state.error_occurred()) {
    return;
  }
  Expected<BlobRecord> record = index->getBlob(digests.back());
  if (!record || record->last_access_ms != now_ms) {
    state.SkipWithError("the last flush did not write the latest access time");
    return;
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_IndexTouchAndFlush)
    ->Arg(100)
    ->Arg(1000)
    ->ArgName("batch")
    ->UseRealTime()
    ->MinTime(kMinTimeSeconds);

}  // namespace
}  // namespace outpost::storage
