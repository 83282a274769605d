#include "cache/access_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
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

Digest sha512Digest(int i) {
  DigestHasher hasher(DigestAlgorithm::kSha512);
  hasher.update("blob-" + std::to_string(i));
  return hasher.finish();
}

// Returns the digest that `text` spells, for digests that share parts on purpose.
Digest parsedDigest(const std::string& text) {
  Expected<Digest> digest = Digest::parse(text);
  EXPECT_TRUE(digest.hasValue()) << text << ": " << digest.status().toString();
  return std::move(digest).value();
}

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

TEST_P(AccessOrderTest, TracksSha512Digests) {
  ASSERT_TRUE(order_.restore(sha512Digest(0), 10, clock_.nowMs() - 100).isOk());
  ASSERT_TRUE(order_.touch(sha512Digest(1), 20).isOk());
  clock_.advanceMs(1);
  ASSERT_TRUE(order_.touch(blobDigest(1), 30).isOk());
  clock_.advanceMs(1);
  ASSERT_TRUE(order_.touch(sha512Digest(2), 40).isOk());

  EXPECT_EQ(order_.entries(), 4u);
  EXPECT_EQ(order_.bytes(), 100u);
  EXPECT_TRUE(order_.contains(sha512Digest(0)));
  EXPECT_FALSE(order_.contains(sha512Digest(3)));
  // Same content, other algorithm: a different digest.
  EXPECT_FALSE(order_.contains(blobDigest(0)));
  std::optional<AccessOrder::EntryInfo> info = order_.find(sha512Digest(1));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->size_bytes, 20u);

  // The candidates carry the full digests, equal to the ones given, text included.
  std::vector<AccessOrder::Candidate> candidates = order_.oldest(kAllBytes);
  ASSERT_EQ(candidates.size(), 4u);
  std::vector<Digest> expected = {sha512Digest(0), sha512Digest(1), blobDigest(1), sha512Digest(2)};
  for (size_t i = 0; i < candidates.size(); ++i) {
    EXPECT_EQ(candidates[i].digest, expected[i]) << "position " << i;
    EXPECT_EQ(candidates[i].digest.str(), expected[i].str()) << "position " << i;
    EXPECT_EQ(candidates[i].digest.algorithm(), expected[i].algorithm()) << "position " << i;
  }

  ASSERT_TRUE(order_.pin(sha512Digest(0)).isOk());
  EXPECT_EQ(order_.erase(sha512Digest(0)).code(), StatusCode::kUnavailable);
  ASSERT_TRUE(order_.unpin(sha512Digest(0)).isOk());
  ASSERT_TRUE(order_.erase(sha512Digest(0)).isOk());
  EXPECT_FALSE(order_.contains(sha512Digest(0)));
  EXPECT_EQ(order_.erase(sha512Digest(0)).code(), StatusCode::kNotFound);

  std::map<Digest, int64_t> touches;
  for (const AccessOrder::AccessTime& touch : order_.collectTouches()) {
    touches.emplace(touch.digest, touch.last_access_ms);
  }
  std::map<Digest, int64_t> expected_touches = {{sha512Digest(1), clock_.nowMs() - 2},
                                                {blobDigest(1), clock_.nowMs() - 1},
                                                {sha512Digest(2), clock_.nowMs()}};
  EXPECT_EQ(touches, expected_touches);
}

TEST_P(AccessOrderTest, DigestsSharingPrefixStayApart) {
  const std::string zeros(128, '0');
  struct Case {
    const char* name;
    std::string first;
    std::string second;
  };
  const Case cases[] = {
      {"sha256 differing in the last character", "sha256:" + zeros.substr(0, 63) + "1",
       "sha256:" + zeros.substr(0, 63) + "2"},
      {"sha256 differing in the first character", "sha256:1" + zeros.substr(0, 63),
       "sha256:2" + zeros.substr(0, 63)},
      {"sha512 differing in the last character", "sha512:" + zeros.substr(0, 127) + "1",
       "sha512:" + zeros.substr(0, 127) + "2"},
      {"sha512 differing just after the first half",
       "sha512:" + zeros.substr(0, 64) + "1" + zeros.substr(0, 63),
       "sha512:" + zeros.substr(0, 64) + "2" + zeros.substr(0, 63)},
      {"sha256 equal to the first half of a sha512", "sha256:" + std::string(64, 'f'),
       "sha512:" + std::string(64, 'f') + zeros.substr(0, 64)},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Digest first = parsedDigest(test_case.first);
    Digest second = parsedDigest(test_case.second);
    AccessOrder order(clock_, GetParam());

    ASSERT_TRUE(order.touch(first, 1).isOk());
    EXPECT_FALSE(order.contains(second));
    EXPECT_EQ(order.pin(second).code(), StatusCode::kNotFound);
    ASSERT_TRUE(order.touch(second, 2).isOk());
    EXPECT_EQ(order.entries(), 2u);
    EXPECT_EQ(order.find(first)->size_bytes, 1u);
    EXPECT_EQ(order.find(second)->size_bytes, 2u);

    ASSERT_TRUE(order.pin(second).isOk());
    EXPECT_EQ(order.find(first)->pin_count, 0u);
    ASSERT_TRUE(order.erase(first).isOk());
    EXPECT_FALSE(order.contains(first));
    ASSERT_TRUE(order.contains(second));
    EXPECT_EQ(order.find(second)->pin_count, 1u);
    EXPECT_EQ(order.bytes(), 2u);
  }
}

TEST_P(AccessOrderTest, EqualRestoredTimesSortByDigestText) {
  // sha256 and sha512 digests, some sharing prefixes, all restored at one time.
  const std::string zeros(128, '0');
  std::vector<Digest> digests = {
      parsedDigest("sha512:" + std::string(64, 'f') + zeros.substr(0, 64)),
      parsedDigest("sha512:" + std::string(64, 'f') + zeros.substr(0, 63) + "1"),
      parsedDigest("sha512:" + zeros),
      parsedDigest("sha256:" + std::string(64, 'f')),
      parsedDigest("sha256:" + zeros.substr(0, 63) + "1"),
      parsedDigest("sha256:" + zeros.substr(0, 64)),
  };
  for (int i = 0; i < 20; ++i) {
    digests.push_back(blobDigest(i));
    digests.push_back(sha512Digest(i));
  }
  for (const Digest& digest : digests) {
    ASSERT_TRUE(order_.restore(digest, 1, 5'000).isOk());
  }

  std::vector<Digest> sorted = digests;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(oldestDigests(order_, kAllBytes), sorted);
}

TEST_P(AccessOrderTest, TouchedAndRestoredTieSortsByDigest) {
  std::vector<Digest> digests = {blobDigest(0), blobDigest(1)};
  std::sort(digests.begin(), digests.end());
  int64_t now_ms = clock_.nowMs();

  struct Case {
    const char* name;
    const Digest& touched;
    const Digest& restored;
  };
  const Case cases[] = {
      {"touched digest lower", digests[0], digests[1]},
      {"restored digest lower", digests[1], digests[0]},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    AccessOrder order(clock_, GetParam());
    ASSERT_TRUE(order.touch(test_case.touched, 1).isOk());
    ASSERT_TRUE(order.restore(test_case.restored, 1, now_ms).isOk());

    EXPECT_EQ(oldestDigests(order, kAllBytes), digests);
  }
}

// Touching entries in time order and restoring the same entries and times in random order build
// the same order, and stay the same through later touches and erases.
TEST_P(AccessOrderTest, RestoreInRandomOrderMatchesTouches) {
  constexpr int kCount = 20'000;
  std::vector<Digest> digests;
  for (int i = 0; i < kCount; ++i) {
    digests.push_back(i % 10 == 0 ? sha512Digest(i) : blobDigest(i));
  }
  auto sizeOf = [](int i) { return static_cast<uint64_t>(i % 7 == 0 ? 0 : 100 + i); };

  // Touched one millisecond apart, in a shuffled order, so that digest order and time order
  // differ.
  std::vector<int> touch_order(kCount);
  for (int i = 0; i < kCount; ++i) {
    touch_order[i] = i;
  }
  std::shuffle(touch_order.begin(), touch_order.end(), std::mt19937(11));
  std::vector<int64_t> times_ms(kCount);
  for (int i : touch_order) {
    times_ms[i] = clock_.nowMs();
    ASSERT_TRUE(order_.touch(digests[i], sizeOf(i)).isOk());
    clock_.advanceMs(1);
  }

  std::vector<int> restore_order = touch_order;
  std::shuffle(restore_order.begin(), restore_order.end(), std::mt19937(12));
  AccessOrder restored(clock_, GetParam());
  for (int i : restore_order) {
    ASSERT_TRUE(restored.restore(digests[i], sizeOf(i), times_ms[i]).isOk());
  }

  auto expectSameOrder = [&] {
    std::vector<AccessOrder::Candidate> touched_candidates = order_.oldest(kAllBytes);
    std::vector<AccessOrder::Candidate> restored_candidates = restored.oldest(kAllBytes);
    ASSERT_EQ(touched_candidates.size(), restored_candidates.size());
    for (size_t i = 0; i < touched_candidates.size(); ++i) {
      ASSERT_EQ(touched_candidates[i].digest, restored_candidates[i].digest) << "position " << i;
      ASSERT_EQ(touched_candidates[i].last_access_ms, restored_candidates[i].last_access_ms)
          << "position " << i;
      ASSERT_EQ(touched_candidates[i].size_bytes, restored_candidates[i].size_bytes)
          << "position " << i;
    }
    EXPECT_EQ(oldestDigests(order_, 1'000'000), oldestDigests(restored, 1'000'000));
    EXPECT_EQ(order_.bytes(), restored.bytes());
    EXPECT_EQ(order_.entries(), restored.entries());
  };
  {
    SCOPED_TRACE("after restore");
    expectSameOrder();
  }

  std::mt19937 random(13);
  for (int step = 0; step < 500; ++step) {
    int i = static_cast<int>(random() % kCount);
    ASSERT_TRUE(order_.touch(digests[i], sizeOf(i)).isOk());
    ASSERT_TRUE(restored.touch(digests[i], sizeOf(i)).isOk());
    clock_.advanceMs(1);
  }
  for (int step = 0; step < 500; ++step) {
    int i = static_cast<int>(random() % kCount);
    EXPECT_EQ(order_.erase(digests[i]).code(), restored.erase(digests[i]).code());
  }
  {
    SCOPED_TRACE("after touches and erases");
    expectSameOrder();
  }
}

TEST_P(AccessOrderTest, ErasedEntriesLeaveNoTrace) {
  // Waves of inserts and erases leave many deleted table positions and freed slots behind.
  for (int wave = 0; wave < 20; ++wave) {
    SCOPED_TRACE("wave " + std::to_string(wave));
    for (int i = 0; i < 500; ++i) {
      Digest digest = i % 4 == 0 ? sha512Digest(wave * 500 + i) : blobDigest(wave * 500 + i);
      if (i % 2 == 0) {
        ASSERT_TRUE(order_.touch(digest, 1).isOk());
      } else {
        ASSERT_TRUE(order_.restore(digest, 1, i).isOk());
      }
    }
    for (int i = 0; i < 500; ++i) {
      Digest digest = i % 4 == 0 ? sha512Digest(wave * 500 + i) : blobDigest(wave * 500 + i);
      ASSERT_TRUE(order_.erase(digest).isOk());
      ASSERT_FALSE(order_.contains(digest));
    }
    ASSERT_EQ(order_.entries(), 0u);
    ASSERT_TRUE(order_.oldest(kAllBytes).empty());
  }

  ASSERT_TRUE(order_.touch(blobDigest(0), 3).isOk());
  EXPECT_EQ(oldestDigests(order_, kAllBytes), std::vector<Digest>{blobDigest(0)});
  EXPECT_EQ(order_.bytes(), 3u);
}

// Random calls on a pool of digests, checked against a plain map. Every access time is distinct:
// touches at even milliseconds, restores at odd ones. So the expected order is simply by time.
TEST_P(AccessOrderTest, RandomCallsMatchModel) {
  struct ModelEntry {
    uint64_t size_bytes = 0;
    int64_t last_access_ms = 0;
    uint32_t pin_count = 0;
    bool is_restored = false;
  };
  std::vector<Digest> pool;
  for (int i = 0; i < 150; ++i) {
    pool.push_back(blobDigest(i));
  }
  for (int i = 0; i < 50; ++i) {
    pool.push_back(sha512Digest(i));
  }
  const std::string zeros(128, '0');
  for (int i = 0; i < 10; ++i) {
    std::string tail = zeros.substr(0, 63) + std::to_string(i);
    pool.push_back(parsedDigest("sha512:" + zeros.substr(0, 64) + tail));
    pool.push_back(parsedDigest("sha256:" + tail));
  }
  auto sizeOf = [](size_t i) { return static_cast<uint64_t>(i % 9 == 0 ? 0 : 10 + i); };

  std::map<size_t, ModelEntry> model;
  std::set<int64_t> used_times_ms;
  std::mt19937 random(static_cast<unsigned>(GetParam()));
  auto expectMatchesModel = [&](uint64_t bytes_to_free) {
    std::vector<std::pair<int64_t, size_t>> by_time;
    for (const auto& [i, entry] : model) {
      if (entry.pin_count == 0) {
        by_time.emplace_back(entry.last_access_ms, i);
      }
    }
    std::sort(by_time.begin(), by_time.end());
    std::vector<Digest> expected;
    uint64_t freed_bytes = 0;
    for (const auto& [time_ms, i] : by_time) {
      if (freed_bytes >= bytes_to_free) {
        break;
      }
      expected.push_back(pool[i]);
      freed_bytes += sizeOf(i);
    }
    EXPECT_EQ(oldestDigests(order_, bytes_to_free), expected);
  };

  for (int step = 0; step < 20'000; ++step) {
    size_t i = random() % pool.size();
    auto found = model.find(i);
    switch (random() % 10) {
      case 0:
      case 1:
      case 2: {
        clock_.advanceMs(2);
        ASSERT_TRUE(order_.touch(pool[i], sizeOf(i)).isOk());
        ModelEntry& entry = model[i];
        entry.size_bytes = sizeOf(i);
        entry.last_access_ms = clock_.nowMs();
        entry.is_restored = false;
        break;
      }
      case 3:
      case 4: {
        // An odd time, before or after the clock, used by no other entry.
        int64_t time_ms = clock_.nowMs() - 20'001 + 2 * static_cast<int64_t>(random() % 20'000);
        if (!used_times_ms.insert(time_ms).second) {
          break;
        }
        ASSERT_TRUE(order_.restore(pool[i], sizeOf(i), time_ms).isOk());
        if (found == model.end()) {
          model[i] = ModelEntry{sizeOf(i), time_ms, 0, true};
        } else if (found->second.is_restored) {
          found->second.last_access_ms = std::max(found->second.last_access_ms, time_ms);
        }
        break;
      }
      case 5:
      case 6: {
        Status status = order_.erase(pool[i]);
        if (found == model.end()) {
          ASSERT_EQ(status.code(), StatusCode::kNotFound) << step;
        } else if (found->second.pin_count > 0) {
          ASSERT_EQ(status.code(), StatusCode::kUnavailable) << step;
        } else {
          ASSERT_TRUE(status.isOk()) << step << ": " << status.toString();
          model.erase(found);
        }
        break;
      }
      case 7:
        if (found == model.end()) {
          ASSERT_EQ(order_.pin(pool[i]).code(), StatusCode::kNotFound) << step;
        } else {
          ASSERT_TRUE(order_.pin(pool[i]).isOk()) << step;
          ++found->second.pin_count;
        }
        break;
      case 8:
        if (found == model.end()) {
          ASSERT_EQ(order_.unpin(pool[i]).code(), StatusCode::kNotFound) << step;
        } else if (found->second.pin_count == 0) {
          ASSERT_EQ(order_.unpin(pool[i]).code(), StatusCode::kInternal) << step;
        } else {
          ASSERT_TRUE(order_.unpin(pool[i]).isOk()) << step;
          --found->second.pin_count;
        }
        break;
      default: {
        SCOPED_TRACE("step " + std::to_string(step));
        expectMatchesModel(random() % 2'000);
        break;
      }
    }
  }

  SCOPED_TRACE("after the last step");
  expectMatchesModel(kAllBytes);
  uint64_t expected_bytes = 0;
  for (size_t i = 0; i < pool.size(); ++i) {
    auto found = model.find(i);
    std::optional<AccessOrder::EntryInfo> info = order_.find(pool[i]);
    ASSERT_EQ(info.has_value(), found != model.end()) << pool[i].str();
    if (found == model.end()) {
      continue;
    }
    EXPECT_EQ(info->size_bytes, found->second.size_bytes) << pool[i].str();
    EXPECT_EQ(info->last_access_ms, found->second.last_access_ms) << pool[i].str();
    EXPECT_EQ(info->pin_count, found->second.pin_count) << pool[i].str();
    expected_bytes += found->second.size_bytes;
  }
  EXPECT_EQ(order_.entries(), model.size());
  EXPECT_EQ(order_.bytes(), expected_bytes);
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

TEST(AccessOrderSingleShardTest, RejectsNewEntryInFullShard) {
  ManualClock clock;
  AccessOrder order(clock, 1);
  order.setMaxEntriesPerShardForTest(2);
  ASSERT_TRUE(order.touch(blobDigest(0), 10).isOk());
  ASSERT_TRUE(order.restore(sha512Digest(1), 20, clock.nowMs() - 5).isOk());

  Status touched = order.touch(blobDigest(2), 30);
  EXPECT_EQ(touched.code(), StatusCode::kOutOfRange) << touched.toString();
  EXPECT_NE(touched.message().find(blobDigest(2).str()), std::string::npos) << touched.toString();
  Status restored = order.restore(sha512Digest(2), 30, 1);
  EXPECT_EQ(restored.code(), StatusCode::kOutOfRange) << restored.toString();
  EXPECT_FALSE(order.contains(blobDigest(2)));
  EXPECT_FALSE(order.contains(sha512Digest(2)));
  EXPECT_EQ(order.entries(), 2u);
  EXPECT_EQ(order.bytes(), 30u);

  // Tracked entries still move, and an erase makes room.
  clock.advanceMs(1);
  ASSERT_TRUE(order.touch(sha512Digest(1), 20).isOk());
  ASSERT_TRUE(order.erase(blobDigest(0)).isOk());
  ASSERT_TRUE(order.touch(blobDigest(2), 30).isOk());
  std::vector<Digest> expected = {sha512Digest(1), blobDigest(2)};
  EXPECT_EQ(oldestDigests(order, kAllBytes), expected);
}

}  // namespace
}  // namespace cache
}  // namespace outpost
