// Hashing of blob chunks as a fill receives them: DigestHasher (SHA-256 through OpenSSL EVP)
// and XXH3_64bits over the same chunk sizes, and Digest::parse on the digests clients send.
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"

namespace outpost {
namespace {

constexpr int64_t kMinChunkBytes = 4 << 10;
constexpr int64_t kMaxChunkBytes = 1 << 20;

// Minimum measured time per benchmark. Results settle well within it, and it keeps the default
// run of the whole binary well under a minute on 2 cores.
constexpr double kMinTimeSeconds = 0.2;

// Returns `size` pseudo-random bytes from a fixed seed, so every run hashes the same input.
std::vector<std::byte> randomBytes(size_t size) {
  std::mt19937_64 generator(0x6f7574706f7374);
  std::vector<std::byte> bytes(size);
  for (std::byte& byte : bytes) {
    byte = static_cast<std::byte>(generator() & 0xff);
  }
  return bytes;
}

// One hasher takes every chunk, as one fill's hasher takes every chunk of its blob. Its state
// has a fixed size, so memory stays bounded however many iterations run.
void BM_DigestHasherUpdate(benchmark::State& state) {
  std::vector<std::byte> chunk = randomBytes(static_cast<size_t>(state.range(0)));
  DigestHasher hasher(DigestAlgorithm::kSha256);

  for (auto _ : state) {
    hasher.update(std::span<const std::byte>(chunk));
    benchmark::ClobberMemory();
  }

  Digest digest = hasher.finish();
  benchmark::DoNotOptimize(digest);
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_DigestHasherUpdate)
    ->RangeMultiplier(16)
    ->Range(kMinChunkBytes, kMaxChunkBytes)
    ->ArgName("chunk_bytes")
    ->MinTime(kMinTimeSeconds);

void BM_Xxh3(benchmark::State& state) {
  std::vector<std::byte> chunk = randomBytes(static_cast<size_t>(state.range(0)));

  for (auto _ : state) {
    XXH64_hash_t hash = XXH3_64bits(chunk.data(), chunk.size());
    benchmark::DoNotOptimize(hash);
  }

  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Xxh3)
    ->RangeMultiplier(16)
    ->Range(kMinChunkBytes, kMaxChunkBytes)
    ->ArgName("chunk_bytes")
    ->MinTime(kMinTimeSeconds);

struct DigestSample {
  std::string_view label;
  std::string_view text;
  bool is_valid;
};

constexpr std::array<DigestSample, 4> kDigestSamples = {{
    {"sha256", "sha256:8a1e25ce7c4f75e372e9884f8f7b1bedcfe4a7a7d452eb4b0a1c7477c9a90345", true},
    {"sha512",
     "sha512:"
     "3f2b4e1c9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
     "1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
     true},
    {"upper-case hex (invalid)",
     "sha256:8A1E25CE7C4F75E372E9884F8F7B1BEDCFE4A7A7D452EB4B0A1C7477C9A90345", false},
    {"unsupported algorithm", "blake3:8a1e25ce7c4f75e372e9884f8f7b1bedcfe4a7a7d452eb4b0a1c7477c9a9",
     false},
}};

void BM_DigestParse(benchmark::State& state) {
  const DigestSample& sample = kDigestSamples[static_cast<size_t>(state.range(0))];
  state.SetLabel(std::string(sample.label));
  Expected<Digest> first = Digest::parse(sample.text);
  if (first.hasValue() != sample.is_valid) {
    state.SkipWithError(sample.is_valid ? "sample digest was rejected"
                                        : "invalid sample digest was accepted");
    return;
  }

  for (auto _ : state) {
    Expected<Digest> parsed = Digest::parse(sample.text);
    benchmark::DoNotOptimize(parsed);
  }

  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DigestParse)
    ->DenseRange(0, kDigestSamples.size() - 1)
    ->ArgName("digest")
    ->MinTime(kMinTimeSeconds);

}  // namespace
}  // namespace outpost
