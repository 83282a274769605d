#include "cache/memory_tier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace outpost::cache {
namespace {

constexpr uint64_t kItemBytes = 1000;
const uint64_t kItemCharge = MemoryTier::chargeOf(kItemBytes, 0);

Digest digestOf(int i) { return sha256Of("item " + std::to_string(i)); }

MemoryItemRef blobItem(uint64_t size, char fill = 'x') {
  return std::make_shared<const MemoryItem>(MemoryItem{std::string(size, fill), ""});
}

// A tier of one shard with room for exactly `items` items of kItemBytes.
MemoryTier tierForItems(uint64_t items) {
  return MemoryTier(
      MemoryTierOptions{.budget_bytes = items * kItemCharge, .max_item_bytes = kItemBytes});
}

bool insertBlob(MemoryTier& tier, int i, uint64_t size = kItemBytes) {
  return tier.insert(ContentKind::kBlob, digestOf(i), blobItem(size), InsertOrigin::kFill);
}

bool holdsBlob(MemoryTier& tier, int i) {
  return tier.find(ContentKind::kBlob, digestOf(i)) != nullptr;
}

TEST(MemoryTierTest, OffKeepsNothingAndCountsNothing) {
  MemoryTier tier(MemoryTierOptions{.budget_bytes = 0, .max_item_bytes = 1024});
  EXPECT_FALSE(tier.isEnabled());
  EXPECT_FALSE(tier.admits(1));
  EXPECT_FALSE(insertBlob(tier, 1, 10));
  EXPECT_EQ(tier.find(ContentKind::kBlob, digestOf(1)), nullptr);
  EXPECT_EQ(tier.erase(digestOf(1)), 0u);
  EXPECT_EQ(tier.entries(), 0u);
  EXPECT_EQ(tier.counters().misses.load(), 0u);
  EXPECT_FALSE(tier.claimPromotion(ContentKind::kBlob, digestOf(1), 10));
}

TEST(MemoryTierTest, FindReturnsInsertedBytesAndCounts) {
  MemoryTier tier = tierForItems(4);
  Digest digest = digestOf(1);
  auto item = std::make_shared<const MemoryItem>(
      MemoryItem{"{\"schemaVersion\":2}", "application/vnd.oci.image.manifest.v1+json"});
  ASSERT_TRUE(tier.insert(ContentKind::kManifest, digest, item, InsertOrigin::kFill));

  MemoryItemRef found = tier.find(ContentKind::kManifest, digest);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found.get(), item.get()) << "the tier must share the buffer, not copy it";
  EXPECT_EQ(found->media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(tier.find(ContentKind::kManifest, digestOf(2)), nullptr);

  EXPECT_EQ(tier.counters().hits.load(), 1u);
  EXPECT_EQ(tier.counters().misses.load(), 1u);
  EXPECT_EQ(tier.counters().insertions.load(), 1u);
  EXPECT_EQ(tier.counters().promotions.load(), 0u);
  EXPECT_EQ(tier.entries(), 1u);
  EXPECT_EQ(tier.bytes(), MemoryTier::chargeOf(item->bytes.size(), item->media_type.size()));
}

TEST(MemoryTierTest, EvictsLeastRecentlyUsedFirst) {
  MemoryTier tier = tierForItems(3);
  ASSERT_EQ(tier.shardCount(), 1u);
  ASSERT_TRUE(insertBlob(tier, 1));
  ASSERT_TRUE(insertBlob(tier, 2));
  ASSERT_TRUE(insertBlob(tier, 3));
  // 1 becomes the most recently used, so 2 is the oldest.
  ASSERT_TRUE(holdsBlob(tier, 1));

  ASSERT_TRUE(insertBlob(tier, 4));
  EXPECT_EQ(tier.counters().evictions.load(), 1u);
  EXPECT_EQ(tier.entries(), 3u);
  EXPECT_FALSE(holdsBlob(tier, 2));
  EXPECT_TRUE(holdsBlob(tier, 3));
  EXPECT_TRUE(holdsBlob(tier, 1));
  EXPECT_TRUE(holdsBlob(tier, 4));

  // Now 3 is the oldest: 3, 1, 4 were used in that order.
  ASSERT_TRUE(insertBlob(tier, 5));
  EXPECT_FALSE(holdsBlob(tier, 3));
  EXPECT_TRUE(holdsBlob(tier, 1));
  EXPECT_EQ(tier.counters().evictions.load(), 2u);
}

TEST(MemoryTierTest, EvictsSeveralSmallItemsForOneLarge) {
  // Room for three items of kItemBytes, or one of 3600 bytes.
  MemoryTier tier(MemoryTierOptions{.budget_bytes = 3 * kItemCharge, .max_item_bytes = 3600});
  ASSERT_EQ(tier.shardCount(), 1u);
  ASSERT_TRUE(insertBlob(tier, 1, 100));
  ASSERT_TRUE(insertBlob(tier, 2, 100));
  ASSERT_TRUE(insertBlob(tier, 3, 100));
  ASSERT_TRUE(insertBlob(tier, 4, 3600));
  EXPECT_FALSE(holdsBlob(tier, 1));
  EXPECT_FALSE(holdsBlob(tier, 2));
  EXPECT_FALSE(holdsBlob(tier, 3));
  EXPECT_TRUE(holdsBlob(tier, 4));
  EXPECT_EQ(tier.counters().evictions.load(), 3u);
  EXPECT_EQ(tier.bytes(), MemoryTier::chargeOf(3600, 0));
}

TEST(MemoryTierTest, KeepsWithinBudget) {
  MemoryTier tier(MemoryTierOptions{.budget_bytes = 64 * 1024, .max_item_bytes = 4096});
  std::mt19937 random(7);
  uint64_t inserted = 0;
  for (int i = 0; i < 2000; ++i) {
    uint64_t size = random() % 4097;
    if (insertBlob(tier, i, size)) {
      ++inserted;
    }
    ASSERT_LE(tier.bytes(), tier.budgetBytes()) << "after item " << i;
  }
  EXPECT_EQ(inserted, 2000u);
  EXPECT_EQ(tier.counters().insertions.load(), 2000u);
  EXPECT_EQ(tier.counters().evictions.load() + tier.entries(), 2000u);
}

TEST(MemoryTierTest, RejectsItemAboveMaxSize) {
  MemoryTier tier = tierForItems(3);
  EXPECT_FALSE(tier.admits(kItemBytes + 1));
  EXPECT_TRUE(tier.admits(kItemBytes));
  EXPECT_FALSE(insertBlob(tier, 1, kItemBytes + 1));
  EXPECT_TRUE(insertBlob(tier, 2, kItemBytes));
  EXPECT_FALSE(holdsBlob(tier, 1));
  EXPECT_EQ(tier.entries(), 1u);
  EXPECT_EQ(tier.counters().insertions.load(), 1u);
}

TEST(MemoryTierTest, RejectsItemWhoseChargeExceedsBudget) {
  // A maximum item equal to the budget leaves no room for the bookkeeping estimate.
  MemoryTier tier(MemoryTierOptions{.budget_bytes = 4096, .max_item_bytes = 4096});
  EXPECT_FALSE(insertBlob(tier, 1, 4096));
  EXPECT_TRUE(insertBlob(tier, 2, 4096 - MemoryTier::kEntryOverheadBytes));
  EXPECT_EQ(tier.bytes(), 4096u);
}

TEST(MemoryTierTest, InsertOfPresentKeyKeepsFirstItem) {
  MemoryTier tier = tierForItems(3);
  auto first = blobItem(kItemBytes, 'a');
  ASSERT_TRUE(tier.insert(ContentKind::kBlob, digestOf(1), first, InsertOrigin::kFill));
  EXPECT_TRUE(tier.insert(ContentKind::kBlob, digestOf(1), blobItem(kItemBytes, 'b'),
                          InsertOrigin::kPromotion));
  EXPECT_EQ(tier.find(ContentKind::kBlob, digestOf(1)).get(), first.get());
  EXPECT_EQ(tier.entries(), 1u);
  EXPECT_EQ(tier.bytes(), kItemCharge);
  EXPECT_EQ(tier.counters().insertions.load(), 1u);
  EXPECT_EQ(tier.counters().promotions.load(), 0u);
}

TEST(MemoryTierTest, KeepsKindsApartAndErasesBoth) {
  MemoryTier tier = tierForItems(4);
  Digest digest = digestOf(1);
  auto blob = blobItem(10, 'b');
  auto manifest = std::make_shared<const MemoryItem>(MemoryItem{std::string(10, 'm'), "type"});
  ASSERT_TRUE(tier.insert(ContentKind::kBlob, digest, blob, InsertOrigin::kFill));
  EXPECT_EQ(tier.find(ContentKind::kManifest, digest), nullptr);
  ASSERT_TRUE(tier.insert(ContentKind::kManifest, digest, manifest, InsertOrigin::kPromotion));
  EXPECT_EQ(tier.find(ContentKind::kBlob, digest).get(), blob.get());
  EXPECT_EQ(tier.find(ContentKind::kManifest, digest).get(), manifest.get());
  EXPECT_EQ(tier.entries(), 2u);
  EXPECT_EQ(tier.counters().promotions.load(), 1u);

  EXPECT_EQ(tier.erase(digest), 2u);
  EXPECT_EQ(tier.find(ContentKind::kBlob, digest), nullptr);
  EXPECT_EQ(tier.find(ContentKind::kManifest, digest), nullptr);
  EXPECT_EQ(tier.entries(), 0u);
  EXPECT_EQ(tier.bytes(), 0u);
  EXPECT_EQ(tier.counters().erasures.load(), 2u);
  EXPECT_EQ(tier.erase(digest), 0u);
}

TEST(MemoryTierTest, ErasedItemCanComeBack) {
  MemoryTier tier = tierForItems(3);
  ASSERT_TRUE(insertBlob(tier, 1));
  ASSERT_TRUE(insertBlob(tier, 2));
  EXPECT_EQ(tier.erase(digestOf(1)), 1u);
  EXPECT_TRUE(holdsBlob(tier, 2));
  ASSERT_TRUE(insertBlob(tier, 1));
  EXPECT_TRUE(holdsBlob(tier, 1));
  EXPECT_EQ(tier.bytes(), 2 * kItemCharge);
}

TEST(MemoryTierTest, ItemOutlivesEvictionWhileHeld) {
  MemoryTier tier = tierForItems(1);
  ASSERT_TRUE(insertBlob(tier, 1));
  MemoryItemRef held = tier.find(ContentKind::kBlob, digestOf(1));
  ASSERT_NE(held, nullptr);
  ASSERT_TRUE(insertBlob(tier, 2));
  EXPECT_FALSE(holdsBlob(tier, 1));
  EXPECT_EQ(held->bytes, std::string(kItemBytes, 'x'));
  EXPECT_EQ(held.use_count(), 1) << "the tier dropped its reference";
}

TEST(MemoryTierTest, ShardCountScalesWithBudget) {
  MemoryTier large(MemoryTierOptions{.budget_bytes = 256u << 20, .max_item_bytes = 1u << 20});
  EXPECT_EQ(large.shardCount(), MemoryTier::kMaxShardCount);
  MemoryTier medium(MemoryTierOptions{.budget_bytes = 40u << 20, .max_item_bytes = 1u << 20});
  EXPECT_EQ(medium.shardCount(), 4u);
  MemoryTier small(MemoryTierOptions{.budget_bytes = 4u << 20, .max_item_bytes = 1u << 20});
  EXPECT_EQ(small.shardCount(), 1u);
}

TEST(MemoryTierTest, ValidateRejectsItemAboveBudget) {
  Status status =
      MemoryTier::validate(MemoryTierOptions{.budget_bytes = 1000, .max_item_bytes = 1001});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("1001"), std::string_view::npos) << status.toString();
  EXPECT_TRUE(MemoryTier::validate({.budget_bytes = 1000, .max_item_bytes = 1000}).isOk());
  EXPECT_TRUE(MemoryTier::validate({.budget_bytes = 0, .max_item_bytes = 1u << 30}).isOk());
}

TEST(MemoryTierTest, PromotionClaimIsExclusive) {
  MemoryTier tier = tierForItems(4);
  Digest digest = digestOf(1);
  {
    MemoryTier::PromotionClaim claim = tier.claimPromotion(ContentKind::kBlob, digest, 10);
    ASSERT_TRUE(claim);
    EXPECT_FALSE(tier.claimPromotion(ContentKind::kBlob, digest, 10));
    // Another kind of the same digest is another item.
    EXPECT_TRUE(tier.claimPromotion(ContentKind::kManifest, digest, 10));
    MemoryTier::PromotionClaim moved = std::move(claim);
    EXPECT_FALSE(claim);
    EXPECT_FALSE(tier.claimPromotion(ContentKind::kBlob, digest, 10));
  }
  EXPECT_TRUE(tier.claimPromotion(ContentKind::kBlob, digest, 10));

  EXPECT_FALSE(tier.claimPromotion(ContentKind::kBlob, digest, kItemBytes + 1))
      << "too large to keep";
  ASSERT_TRUE(insertBlob(tier, 1, 10));
  EXPECT_FALSE(tier.claimPromotion(ContentKind::kBlob, digest, 10)) << "already held";
  EXPECT_EQ(tier.counters().misses.load(), 0u) << "claims do not count lookups";
}

TEST(MemoryTierTest, PromotionClaimsAreBounded) {
  MemoryTier tier = tierForItems(4);
  std::vector<MemoryTier::PromotionClaim> claims;
  for (size_t i = 0; i < MemoryTier::kMaxPromotionsInFlight; ++i) {
    claims.push_back(tier.claimPromotion(ContentKind::kBlob, digestOf(static_cast<int>(i)), 10));
    ASSERT_TRUE(claims.back()) << "claim " << i;
  }
  EXPECT_FALSE(tier.claimPromotion(ContentKind::kBlob, digestOf(1000), 10));
  claims.pop_back();
  EXPECT_TRUE(tier.claimPromotion(ContentKind::kBlob, digestOf(1000), 10));
}

TEST(MemoryTierTest, ConcurrentUseKeepsBudgetAndCounts) {
  // Several shards, and more items than the budget has room for, so that threads evict each other's
  // items while they read them.
  MemoryTier tier(MemoryTierOptions{.budget_bytes = 256 * 1024, .max_item_bytes = 2048});
  ASSERT_GT(tier.shardCount(), 1u);
  constexpr int kThreads = 4;
  constexpr int kOperations = 20000;
  constexpr int kDigests = 400;
  std::vector<Digest> digests;
  for (int i = 0; i < kDigests; ++i) {
    digests.push_back(digestOf(i));
  }
  std::atomic<uint64_t> finds{0};
  std::atomic<bool> over_budget{false};
  std::atomic<bool> wrong_bytes{false};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<uint32_t>(t + 1));
      for (int op = 0; op < kOperations; ++op) {
        int i = static_cast<int>(random() % kDigests);
        // Each digest has one size and fill, as content addressing guarantees.
        uint64_t size = 100 + static_cast<uint64_t>(i) * 4;
        char fill = static_cast<char>('a' + i % 26);
        switch (random() % 8) {
          case 0:
            tier.erase(digests[i]);
            break;
          case 1:
          case 2:
            tier.insert(ContentKind::kBlob, digests[i], blobItem(size, fill), InsertOrigin::kFill);
            break;
          default: {
            finds.fetch_add(1);
            MemoryItemRef item = tier.find(ContentKind::kBlob, digests[i]);
            if (item && item->bytes != std::string(size, fill)) {
              wrong_bytes = true;
            }
          }
        }
        if (tier.bytes() > tier.budgetBytes()) {
          over_budget = true;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }

  EXPECT_FALSE(over_budget.load());
  EXPECT_FALSE(wrong_bytes.load());
  const MemoryTierCounters& counters = tier.counters();
  EXPECT_EQ(counters.hits.load() + counters.misses.load(), finds.load());
  EXPECT_EQ(counters.insertions.load() - counters.evictions.load() - counters.erasures.load(),
            tier.entries());

  // The totals match the items that remain.
  uint64_t remaining = 0;
  uint64_t remaining_bytes = 0;
  for (int i = 0; i < kDigests; ++i) {
    if (tier.find(ContentKind::kBlob, digests[i]) != nullptr) {
      ++remaining;
      remaining_bytes += MemoryTier::chargeOf(100 + static_cast<uint64_t>(i) * 4, 0);
    }
  }
  EXPECT_EQ(remaining, tier.entries());
  EXPECT_EQ(remaining_bytes, tier.bytes());
}

}  // namespace
}  // namespace outpost::cache
