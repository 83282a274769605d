#include "cache/access_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"

namespace outpost {

// Prints digests as text in failure messages rather than as bytes. Found by argument-dependent
// lookup, so it sits in Digest's namespace, with internal linkage.
[[maybe_unused]] static void PrintTo(const Digest& digest, std::ostream* out) {
  *out << digest.str();
}

namespace cache {
namespace {

constexpr uint64_t kAllBytes = std::numeric_limits<uint64_t>::max();

Digest blobDigest(int i) { return sha256Of("blob-" + std::to_string(i)); }

// Returns the digests of oldest(bytes_to_free), in order.
std::vector<Digest> oldestDigests(const AccessOrder& order, uint64_t bytes_to_free) {
  std::vector<Digest> digests;
  for (const AccessOrder::Candidate& candidate : order.oldest(bytes_to_free)) {
    digests.push_back(candidate.digest);
  }
  return digests;
}

// The same cases run with one shard, where the order is one list, and with several, where
// oldest() merges shards.
class AccessOrderTest : public ::testing::TestWithParam<size_t> {
 protected:
  ManualClock clock_;
  AccessOrder order_{clock_, GetParam()};
};

INSTANTIATE_TEST_SUITE_P(ShardCounts, AccessOrderTest, ::testing::Values(1, 3, 16, 64),
                         [](const ::testing::TestParamInfo<size_t>& param_info) {
                           return "Shards" + std::to_string(param_info.param);
                         });

TEST_P(AccessOrderTest, EvictsOldestFirst) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(order_.touch(blobDigest(i), 10).isOk());
    clock_.advanceMs(1);
  }

  std::vector<Digest> expected = {blobDigest(0), blobDigest(1), blobDigest(2)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), expected);
}

TEST_P(AccessOrderTest, TouchMovesEntryToNewest) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(order_.touch(blobDigest(i), 10).isOk());
    clock_.advanceMs(1);
  }
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());

  std::vector<Digest> expected = {blobDigest(1), blobDigest(2), blobDigest(0)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), expected);
  std::optional<AccessOrder::EntryInfo> info = order_.find(blobDigest(0));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->last_access_ms, clock_.nowMs());
}

TEST_P(AccessOrderTest, OldestStopsOnceBytesAreReached) {
  // Sizes 10, 20 and 30, touched in that order.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(order_.touch(blobDigest(i), 10 * static_cast<uint64_t>(i + 1)).isOk());
    clock_.advanceMs(1);
  }

  struct Case {
    const char* name;
    uint64_t bytes_to_free;
    size_t expected_count;
  };
  const Case cases[] = {
      {"zero bytes", 0, 0},
      {"one byte", 1, 1},
      {"exactly the oldest", 10, 1},
      {"one byte past the oldest", 11, 2},
      {"exactly the two oldest", 30, 2},
      {"all bytes", 60, 3},
      {"more than all bytes", 61, 3},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    std::vector<Digest> digests = oldestDigests(order_, test_case.bytes_to_free);
    ASSERT_EQ(digests.size(), test_case.expected_count);
    for (size_t i = 0; i < digests.size(); ++i) {
      EXPECT_EQ(digests[i], blobDigest(static_cast<int>(i))) << "position " << i;
    }
  }
}

TEST_P(AccessOrderTest, OldestReportsSizeAndTime) {
  int64_t touched_ms = clock_.nowMs();
  ASSERT_TRUE(order_.touch(blobDigest(0), 1234).isOk());

  std::vector<AccessOrder::Candidate> candidates = order_.oldest(1);
  ASSERT_EQ(candidates.size(), 1u);
  EXPECT_EQ(candidates[0].size_bytes, 1234u);
  EXPECT_EQ(candidates[0].last_access_ms, touched_ms);
}

TEST_P(AccessOrderTest, OldestRemovesNothing) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());

  EXPECT_EQ(order_.oldest(kAllBytes).size(), 1u);
  EXPECT_TRUE(order_.contains(blobDigest(0)));
  EXPECT_EQ(order_.entries(), 1u);
  EXPECT_EQ(order_.bytes(), 10u);
}

TEST_P(AccessOrderTest, TracksByteTotals) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 100).isOk());
  ASSERT_TRUE(order_.touch(blobDigest(1), 250).isOk());
  EXPECT_EQ(order_.bytes(), 350u);
  EXPECT_EQ(order_.entries(), 2u);

  // A hit adds nothing.
  ASSERT_TRUE(order_.touch(blobDigest(0), 100).isOk());
  EXPECT_EQ(order_.bytes(), 350u);
  EXPECT_EQ(order_.entries(), 2u);

  ASSERT_TRUE(order_.restore(blobDigest(2), 1000, 5).isOk());
  EXPECT_EQ(order_.bytes(), 1350u);
  EXPECT_EQ(order_.entries(), 3u);

  ASSERT_TRUE(order_.erase(blobDigest(1)).isOk());
  EXPECT_EQ(order_.bytes(), 1100u);
  EXPECT_EQ(order_.entries(), 2u);
  EXPECT_FALSE(order_.contains(blobDigest(1)));

  ASSERT_TRUE(order_.erase(blobDigest(0)).isOk());
  ASSERT_TRUE(order_.erase(blobDigest(2)).isOk());
  EXPECT_EQ(order_.bytes(), 0u);
  EXPECT_EQ(order_.entries(), 0u);
  EXPECT_TRUE(order_.oldest(kAllBytes).empty());
}

TEST_P(AccessOrderTest, EraseUnknownDigestIsNotFound) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());
  EXPECT_EQ(order_.erase(blobDigest(1)).code(), StatusCode::kNotFound);

  ASSERT_TRUE(order_.erase(blobDigest(0)).isOk());
  EXPECT_EQ(order_.erase(blobDigest(0)).code(), StatusCode::kNotFound);
}

TEST_P(AccessOrderTest, TouchRejectsChangedSize) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());
  int64_t touched_ms = clock_.nowMs();
  clock_.advanceMs(1);
  ASSERT_TRUE(order_.touch(blobDigest(1), 20).isOk());
  clock_.advanceMs(5);

  Status status = order_.touch(blobDigest(0), 11);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.toString();

  // The failed touch neither moved the entry nor changed the totals.
  std::vector<Digest> expected = {blobDigest(0), blobDigest(1)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), expected);
  EXPECT_EQ(order_.find(blobDigest(0))->last_access_ms, touched_ms);
  EXPECT_EQ(order_.bytes(), 30u);
}

TEST_P(AccessOrderTest, RestoreRejectsChangedSize) {
  ASSERT_TRUE(order_.restore(blobDigest(0), 10, 100).isOk());

  Status status = order_.restore(blobDigest(0), 11, 200);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.toString();
  EXPECT_EQ(order_.find(blobDigest(0))->last_access_ms, 100);
  EXPECT_EQ(order_.bytes(), 10u);
}

TEST_P(AccessOrderTest, RejectsTotalOverflow) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  ASSERT_TRUE(order_.touch(blobDigest(0), kMax - 5).isOk());

  Status touched = order_.touch(blobDigest(1), 6);
  EXPECT_EQ(touched.code(), StatusCode::kOutOfRange) << touched.toString();
  Status restored = order_.restore(blobDigest(2), kMax, 1);
  EXPECT_EQ(restored.code(), StatusCode::kOutOfRange) << restored.toString();
  EXPECT_FALSE(order_.contains(blobDigest(1)));
  EXPECT_FALSE(order_.contains(blobDigest(2)));
  EXPECT_EQ(order_.bytes(), kMax - 5);
  EXPECT_EQ(order_.entries(), 1u);

  // Up to the maximum itself still fits.
  ASSERT_TRUE(order_.touch(blobDigest(3), 5).isOk());
  EXPECT_EQ(order_.bytes(), kMax);
}

TEST_P(AccessOrderTest, ZeroSizeEntriesCountButHoldNoBytes) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 0).isOk());
  clock_.advanceMs(1);
  ASSERT_TRUE(order_.touch(blobDigest(1), 0).isOk());
  clock_.advanceMs(1);
  ASSERT_TRUE(order_.touch(blobDigest(2), 10).isOk());
  clock_.advanceMs(1);
  ASSERT_TRUE(order_.touch(blobDigest(3), 0).isOk());

  EXPECT_EQ(order_.entries(), 4u);
  EXPECT_EQ(order_.bytes(), 10u);

  // The zero-size entries older than the first sized one come with it, the newer one does not.
  std::vector<Digest> expected = {blobDigest(0), blobDigest(1), blobDigest(2)};
  EXPECT_EQ(oldestDigests(order_, 1), expected);
  // A request above the total returns every unpinned entry.
  EXPECT_EQ(order_.oldest(11).size(), 4u);
}

TEST_P(AccessOrderTest, SkipsPinnedEntries) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(order_.touch(blobDigest(i), 10).isOk());
    clock_.advanceMs(1);
  }

  ASSERT_TRUE(order_.pin(blobDigest(0)).isOk());
  ASSERT_TRUE(order_.pin(blobDigest(0)).isOk());
  std::vector<Digest> without_first = {blobDigest(1), blobDigest(2)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), without_first);
  EXPECT_EQ(oldestDigests(order_, 10), std::vector<Digest>{blobDigest(1)});
  EXPECT_EQ(order_.find(blobDigest(0))->pin_count, 2u);

  // One of two pins released: still pinned.
  ASSERT_TRUE(order_.unpin(blobDigest(0)).isOk());
  EXPECT_EQ(oldestDigests(order_, kAllBytes), without_first);

  ASSERT_TRUE(order_.unpin(blobDigest(0)).isOk());
  std::vector<Digest> all = {blobDigest(0), blobDigest(1), blobDigest(2)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), all);

  // Pinned entries still count in the totals.
  ASSERT_TRUE(order_.pin(blobDigest(2)).isOk());
  EXPECT_EQ(order_.bytes(), 30u);
  EXPECT_EQ(order_.entries(), 3u);
}

TEST_P(AccessOrderTest, SkipsPinnedRestoredEntries) {
  ASSERT_TRUE(order_.restore(blobDigest(0), 10, 100).isOk());
  ASSERT_TRUE(order_.restore(blobDigest(1), 10, 200).isOk());
  ASSERT_TRUE(order_.pin(blobDigest(0)).isOk());

  EXPECT_EQ(oldestDigests(order_, kAllBytes), std::vector<Digest>{blobDigest(1)});
}

TEST_P(AccessOrderTest, OldestIsEmptyWhenAllPinned) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());
  ASSERT_TRUE(order_.pin(blobDigest(0)).isOk());

  EXPECT_TRUE(order_.oldest(kAllBytes).empty());
}

TEST_P(AccessOrderTest, EraseRejectsPinnedEntry) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());
  ASSERT_TRUE(order_.pin(blobDigest(0)).isOk());

  Status status = order_.erase(blobDigest(0));
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.toString();
  EXPECT_TRUE(order_.contains(blobDigest(0)));
  EXPECT_EQ(order_.bytes(), 10u);

  ASSERT_TRUE(order_.unpin(blobDigest(0)).isOk());
  EXPECT_TRUE(order_.erase(blobDigest(0)).isOk());
}

TEST_P(AccessOrderTest, TouchKeepsPin) {
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());
  ASSERT_TRUE(order_.pin(blobDigest(0)).isOk());
  clock_.advanceMs(1);
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());

  EXPECT_EQ(order_.find(blobDigest(0))->pin_count, 1u);
  EXPECT_TRUE(order_.oldest(kAllBytes).empty());
}

TEST_P(AccessOrderTest, PinAndUnpinReportMisuse) {
  struct Case {
    const char* name;
    std::function<Status(AccessOrder&)> call;
    StatusCode expected;
  };
  // blobDigest(0) is tracked and unpinned, blobDigest(1) is not tracked.
  const std::vector<Case> cases = {
      {"pin of unknown digest", [](AccessOrder& order) { return order.pin(blobDigest(1)); },
       StatusCode::kNotFound},
      {"unpin of unknown digest", [](AccessOrder& order) { return order.unpin(blobDigest(1)); },
       StatusCode::kNotFound},
      {"unpin of unpinned entry", [](AccessOrder& order) { return order.unpin(blobDigest(0)); },
       StatusCode::kInternal},
      {"second unpin after one pin",
       [](AccessOrder& order) {
         EXPECT_TRUE(order.pin(blobDigest(0)).isOk());
         EXPECT_TRUE(order.unpin(blobDigest(0)).isOk());
         return order.unpin(blobDigest(0));
       },
       StatusCode::kInternal},
      {"unpin after erase",
       [](AccessOrder& order) {
         EXPECT_TRUE(order.erase(blobDigest(0)).isOk());
         return order.unpin(blobDigest(0));
       },
       StatusCode::kNotFound},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    AccessOrder order(clock_, GetParam());
    ASSERT_TRUE(order.touch(blobDigest(0), 10).isOk());

    Status status = test_case.call(order);
    EXPECT_EQ(status.code(), test_case.expected) << status.toString();
    EXPECT_FALSE(status.message().empty());
    // The failed call left no pin behind.
    if (order.contains(blobDigest(0))) {
      EXPECT_EQ(order.find(blobDigest(0))->pin_count, 0u);
    }
  }
}

TEST_P(AccessOrderTest, MergesShardsIntoGlobalOrder) {
  constexpr int kCount = 300;
  std::vector<int> touch_order(kCount);
  for (int i = 0; i < kCount; ++i) {
    touch_order[i] = i;
  }
  std::shuffle(touch_order.begin(), touch_order.end(), std::mt19937(7));

  std::vector<Digest> expected;
  for (int i : touch_order) {
    ASSERT_TRUE(order_.touch(blobDigest(i), 1).isOk());
    expected.push_back(blobDigest(i));
    clock_.advanceMs(1);
  }

  EXPECT_EQ(oldestDigests(order_, kAllBytes), expected);
  // A prefix request returns the same prefix.
  std::vector<Digest> prefix(expected.begin(), expected.begin() + 40);
  EXPECT_EQ(oldestDigests(order_, 40), prefix);
}

TEST_P(AccessOrderTest, MergesRestoredAndTouchedEntries) {
  int64_t now_ms = clock_.nowMs();
  // Restored times before, between and after the touches, which happen at now and now + 10.
  ASSERT_TRUE(order_.restore(blobDigest(0), 1, now_ms - 100).isOk());
  ASSERT_TRUE(order_.restore(blobDigest(1), 1, now_ms + 5).isOk());
  ASSERT_TRUE(order_.restore(blobDigest(2), 1, now_ms + 50).isOk());
  ASSERT_TRUE(order_.touch(blobDigest(3), 1).isOk());
  clock_.advanceMs(10);
  ASSERT_TRUE(order_.touch(blobDigest(4), 1).isOk());

  std::vector<Digest> expected = {blobDigest(0), blobDigest(3), blobDigest(1), blobDigest(4),
                                  blobDigest(2)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), expected);
}

TEST_P(AccessOrderTest, RestoreInAnyOrderBuildsSameOrder) {
  // Times repeat (i / 3), so the tie-break by digest is exercised as well.
  struct Record {
    Digest digest;
    uint64_t size_bytes;
    int64_t last_access_ms;
  };
  std::vector<Record> records;
  for (int i = 0; i < 500; ++i) {
    records.push_back(Record{blobDigest(i), static_cast<uint64_t>(100 + i), 1'000 + i / 3});
  }

  std::vector<Digest> sorted_order;
  {
    std::vector<Record> sorted = records;
    std::sort(sorted.begin(), sorted.end(), [](const Record& a, const Record& b) {
      return std::tie(a.last_access_ms, a.digest) < std::tie(b.last_access_ms, b.digest);
    });
    for (const Record& record : sorted) {
      sorted_order.push_back(record.digest);
    }
  }

  for (unsigned seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("shuffle seed " + std::to_string(seed));
    std::vector<Record> shuffled = records;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(seed));
    AccessOrder order(clock_, GetParam());
    for (const Record& record : shuffled) {
      ASSERT_TRUE(order.restore(record.digest, record.size_bytes, record.last_access_ms).isOk());
    }

    EXPECT_EQ(oldestDigests(order, kAllBytes), sorted_order);
    EXPECT_EQ(order.entries(), records.size());
  }
}

TEST_P(AccessOrderTest, RestoreTwiceKeepsLaterTime) {
  ASSERT_TRUE(order_.restore(blobDigest(0), 10, 300).isOk());
  ASSERT_TRUE(order_.restore(blobDigest(1), 10, 200).isOk());

  ASSERT_TRUE(order_.restore(blobDigest(0), 10, 100).isOk());
  EXPECT_EQ(order_.find(blobDigest(0))->last_access_ms, 300);

  ASSERT_TRUE(order_.restore(blobDigest(1), 10, 400).isOk());
  EXPECT_EQ(order_.find(blobDigest(1))->last_access_ms, 400);
  std::vector<Digest> expected = {blobDigest(0), blobDigest(1)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), expected);
  EXPECT_EQ(order_.entries(), 2u);
  EXPECT_EQ(order_.bytes(), 20u);
}

TEST_P(AccessOrderTest, RestoreKeepsTouchedEntry) {
  int64_t touched_ms = clock_.nowMs();
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());

  ASSERT_TRUE(order_.restore(blobDigest(0), 10, touched_ms - 1000).isOk());
  EXPECT_EQ(order_.find(blobDigest(0))->last_access_ms, touched_ms);
  ASSERT_TRUE(order_.restore(blobDigest(0), 10, touched_ms + 1000).isOk());
  EXPECT_EQ(order_.find(blobDigest(0))->last_access_ms, touched_ms);
  EXPECT_EQ(order_.entries(), 1u);
}

TEST_P(AccessOrderTest, TouchMovesRestoredEntryToNewest) {
  ASSERT_TRUE(order_.restore(blobDigest(0), 10, 100).isOk());
  ASSERT_TRUE(order_.restore(blobDigest(1), 10, 200).isOk());

  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());

  std::vector<Digest> expected = {blobDigest(1), blobDigest(0)};
  EXPECT_EQ(oldestDigests(order_, kAllBytes), expected);
  EXPECT_EQ(order_.find(blobDigest(0))->last_access_ms, clock_.nowMs());
}

TEST_P(AccessOrderTest, CollectsTouchesSinceLastCollection) {
  ASSERT_TRUE(order_.restore(blobDigest(9), 10, 5).isOk());
  int64_t first_ms = clock_.nowMs();
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());
  ASSERT_TRUE(order_.touch(blobDigest(1), 10).isOk());
  ASSERT_TRUE(order_.touch(blobDigest(2), 10).isOk());
  ASSERT_TRUE(order_.erase(blobDigest(2)).isOk());
  clock_.advanceMs(7);
  ASSERT_TRUE(order_.touch(blobDigest(1), 10).isOk());

  std::map<Digest, int64_t> first;
  for (const AccessOrder::AccessTime& touch : order_.collectTouches()) {
    EXPECT_TRUE(first.emplace(touch.digest, touch.last_access_ms).second)
        << touch.digest.str() << " reported twice";
  }
  std::map<Digest, int64_t> expected_first = {{blobDigest(0), first_ms},
                                              {blobDigest(1), first_ms + 7}};
  EXPECT_EQ(first, expected_first);

  EXPECT_TRUE(order_.collectTouches().empty());

  clock_.advanceMs(3);
  ASSERT_TRUE(order_.touch(blobDigest(0), 10).isOk());
  ASSERT_TRUE(order_.touch(blobDigest(9), 10).isOk());
  std::map<Digest, int64_t> second;
  for (const AccessOrder::AccessTime& touch : order_.collectTouches()) {
    second.emplace(touch.digest, touch.last_access_ms);
  }
  std::map<Digest, int64_t> expected_second = {{blobDigest(0), first_ms + 10},
                                               {blobDigest(9), first_ms + 10}};
  EXPECT_EQ(second, expected_second);
}

TEST_P(AccessOrderTest, ConcurrentTouchesKeepTotalsExact) {
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 20'000;
  constexpr int kDigestCount = 256;
  std::vector<Digest> digests;
  for (int i = 0; i < kDigestCount; ++i) {
    digests.push_back(blobDigest(i));
  }
  auto sizeOf = [](int i) { return static_cast<uint64_t>(1000 + 7 * i); };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(t + 1));
      for (int op = 0; op < kOpsPerThread; ++op) {
        int i = static_cast<int>(random() % kDigestCount);
        // Each call may fail for a reason another thread caused (erased, pinned), so only the
        // totals are checked, after the threads end.
        switch (random() % 8) {
          case 0:
          case 1:
          case 2:
            static_cast<void>(order_.touch(digests[i], sizeOf(i)));
            break;
          case 3:
            static_cast<void>(order_.restore(digests[i], sizeOf(i), clock_.nowMs() - 50));
            break;
          case 4:
          case 5:
            static_cast<void>(order_.erase(digests[i]));
            break;
          case 6:
            if (order_.pin(digests[i]).isOk()) {
              EXPECT_TRUE(order_.unpin(digests[i]).isOk());
            }
            break;
          default:
            clock_.advanceMs(1);
            static_cast<void>(order_.oldest(10'000));
            break;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }

  uint64_t expected_bytes = 0;
  uint64_t expected_entries = 0;
  for (int i = 0; i < kDigestCount; ++i) {
    std::optional<AccessOrder::EntryInfo> info = order_.find(digests[i]);
    if (!info) {
      continue;
    }
    EXPECT_EQ(info->size_bytes, sizeOf(i)) << digests[i].str();
    EXPECT_EQ(info->pin_count, 0u) << digests[i].str();
    expected_bytes += info->size_bytes;
    ++expected_entries;
  }
  EXPECT_EQ(order_.bytes(), expected_bytes);
  EXPECT_EQ(order_.entries(), expected_entries);

  // Every entry is in exactly one sequence, so the merge returns each once, oldest first.
  std::vector<AccessOrder::Candidate> candidates = order_.oldest(kAllBytes);
  EXPECT_EQ(candidates.size(), expected_entries);
  for (size_t i = 1; i < candidates.size(); ++i) {
    EXPECT_LE(candidates[i - 1].last_access_ms, candidates[i].last_access_ms) << "position " << i;
  }
}

TEST(AccessOrderSingleShardTest, SameMillisecondKeepsTouchOrder) {
  ManualClock clock;
  AccessOrder order(clock, 1);
  // Touched in reverse digest order, so digest order would invert them.
  std::vector<Digest> digests = {blobDigest(0), blobDigest(1), blobDigest(2)};
  std::sort(digests.begin(), digests.end(), std::greater<>());
  for (const Digest& digest : digests) {
    ASSERT_TRUE(order.touch(digest, 1).isOk());
  }

  EXPECT_EQ(oldestDigests(order, kAllBytes), digests);
}

TEST(AccessOrderSingleShardTest, ClockStepBackIsClamped) {
  ManualClock clock;
  AccessOrder order(clock, 1);
  int64_t first_ms = clock.nowMs();
  ASSERT_TRUE(order.touch(blobDigest(0), 1).isOk());
  clock.advanceMs(-500);
  ASSERT_TRUE(order.touch(blobDigest(1), 1).isOk());

  EXPECT_EQ(order.find(blobDigest(1))->last_access_ms, first_ms);
  std::vector<Digest> expected = {blobDigest(0), blobDigest(1)};
  EXPECT_EQ(oldestDigests(order, kAllBytes), expected);
}

TEST(AccessOrderSingleShardTest, ZeroShardCountWorksAsOne) {
  ManualClock clock;
  AccessOrder order(clock, 0);
  ASSERT_TRUE(order.touch(blobDigest(0), 10).isOk());

  EXPECT_TRUE(order.contains(blobDigest(0)));
  EXPECT_EQ(oldestDigests(order, kAllBytes), std::vector<Digest>{blobDigest(0)});
}

}  // namespace
}  // namespace cache
}  // namespace outpost
