#include "proxy/byte_range.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace outpost::proxy {
namespace {

constexpr uint64_t kMaxUint64 = UINT64_MAX;

struct RangeCase {
  std::string name;
  std::string header;
  uint64_t blob_size;
  RangeResult expected;
  uint64_t first = 0;  // Checked only for kSatisfiable.
  uint64_t last = 0;
};

TEST(ByteRangeTest, ParsesRanges) {
  const std::vector<RangeCase> cases = {
      // Satisfiable forms.
      {"closed range", "bytes=0-499", 1000, RangeResult::kSatisfiable, 0, 499},
      {"single byte", "bytes=5-5", 1000, RangeResult::kSatisfiable, 5, 5},
      {"open range", "bytes=500-", 1000, RangeResult::kSatisfiable, 500, 999},
      {"open range at last byte", "bytes=999-", 1000, RangeResult::kSatisfiable, 999, 999},
      {"suffix", "bytes=-100", 1000, RangeResult::kSatisfiable, 900, 999},
      {"suffix longer than blob", "bytes=-5000", 1000, RangeResult::kSatisfiable, 0, 999},
      {"suffix equal to blob", "bytes=-1000", 1000, RangeResult::kSatisfiable, 0, 999},
      {"last clamped", "bytes=10-5000", 1000, RangeResult::kSatisfiable, 10, 999},
      {"last at end", "bytes=0-999", 1000, RangeResult::kSatisfiable, 0, 999},
      {"whole one-byte blob", "bytes=0-", 1, RangeResult::kSatisfiable, 0, 0},
      {"leading zeros", "bytes=007-010", 1000, RangeResult::kSatisfiable, 7, 10},

      // Whitespace and case.
      {"outer whitespace", "  bytes=1-2\t", 1000, RangeResult::kSatisfiable, 1, 2},
      {"whitespace around equals", "bytes = 1-2", 1000, RangeResult::kSatisfiable, 1, 2},
      {"whitespace after equals", "bytes= 1-2 ", 1000, RangeResult::kSatisfiable, 1, 2},
      {"upper-case unit", "BYTES=1-2", 1000, RangeResult::kSatisfiable, 1, 2},
      {"empty list elements", "bytes=, 1-2 ,", 1000, RangeResult::kSatisfiable, 1, 2},

      // Unsatisfiable.
      {"first at size", "bytes=1000-", 1000, RangeResult::kUnsatisfiable},
      {"first past size", "bytes=2000-3000", 1000, RangeResult::kUnsatisfiable},
      {"zero suffix", "bytes=-0", 1000, RangeResult::kUnsatisfiable},
      {"empty blob closed range", "bytes=0-0", 0, RangeResult::kUnsatisfiable},
      {"empty blob open range", "bytes=0-", 0, RangeResult::kUnsatisfiable},
      {"empty blob suffix", "bytes=-5", 0, RangeResult::kUnsatisfiable},

      // Ignored: absent, other units, several ranges, invalid syntax.
      {"empty header", "", 1000, RangeResult::kNone},
      {"whitespace only", "   ", 1000, RangeResult::kNone},
      {"other unit", "items=0-5", 1000, RangeResult::kNone},
      {"unit prefix only", "byte=0-5", 1000, RangeResult::kNone},
      {"no equals", "bytes 0-5", 1000, RangeResult::kNone},
      {"no range set", "bytes=", 1000, RangeResult::kNone},
      {"only commas", "bytes=,,", 1000, RangeResult::kNone},
      {"two ranges", "bytes=0-1,5-6", 1000, RangeResult::kNone},
      {"two ranges with space", "bytes=0-1, 5-6", 1000, RangeResult::kNone},
      {"two ranges both unsatisfiable", "bytes=2000-,3000-", 1000, RangeResult::kNone},
      {"first after last", "bytes=10-5", 1000, RangeResult::kNone},
      {"first after last past size", "bytes=5000-4000", 1000, RangeResult::kNone},
      {"no dash", "bytes=5", 1000, RangeResult::kNone},
      {"dash only", "bytes=-", 1000, RangeResult::kNone},
      {"double dash", "bytes=--5", 1000, RangeResult::kNone},
      {"three numbers", "bytes=1-2-3", 1000, RangeResult::kNone},
      {"negative first", "bytes=-1-5", 1000, RangeResult::kNone},
      {"plus sign", "bytes=+1-5", 1000, RangeResult::kNone},
      {"hex", "bytes=0x10-0x20", 1000, RangeResult::kNone},
      {"space inside range", "bytes=1 - 2", 1000, RangeResult::kNone},
      {"letters", "bytes=a-b", 1000, RangeResult::kNone},
      {"invalid on empty blob", "bytes=x", 0, RangeResult::kNone},
  };
  for (const RangeCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    ByteRange range{12345, 67890};
    const RangeResult result = parseRange(test_case.header, test_case.blob_size, &range);
    ASSERT_EQ(result, test_case.expected) << test_case.header;
    if (result == RangeResult::kSatisfiable) {
      EXPECT_EQ(range.first, test_case.first);
      EXPECT_EQ(range.last, test_case.last);
    } else {
      EXPECT_EQ(range.first, 12345u) << "output written for a result other than kSatisfiable";
      EXPECT_EQ(range.last, 67890u) << "output written for a result other than kSatisfiable";
    }
  }
}

TEST(ByteRangeTest, LargeNumbers) {
  const std::string just_over_max = "18446744073709551616";  // UINT64_MAX + 1
  const std::string huge = std::string(40, '9');
  const std::vector<RangeCase> cases = {
      {"first at UINT64_MAX", "bytes=18446744073709551615-", kMaxUint64,
       RangeResult::kUnsatisfiable},
      {"last at UINT64_MAX", "bytes=0-18446744073709551615", 1000, RangeResult::kSatisfiable, 0,
       999},
      {"last over UINT64_MAX", "bytes=5-" + just_over_max, 1000, RangeResult::kSatisfiable, 5,
       999},
      {"last with 40 digits", "bytes=5-" + huge, 1000, RangeResult::kSatisfiable, 5, 999},
      {"first over UINT64_MAX", "bytes=" + just_over_max + "-", 1000,
       RangeResult::kUnsatisfiable},
      {"first with 40 digits", "bytes=" + huge + "-", 1000, RangeResult::kUnsatisfiable},
      {"both huge, ordered", "bytes=" + just_over_max + "-" + huge, 1000,
       RangeResult::kUnsatisfiable},
      {"both huge, reversed", "bytes=" + huge + "-" + just_over_max, 1000, RangeResult::kNone},
      {"huge first, small last", "bytes=" + huge + "-5", 1000, RangeResult::kNone},
      {"huge with leading zeros", "bytes=" + std::string(30, '0') + "7-" + huge, 1000,
       RangeResult::kSatisfiable, 7, 999},
      {"suffix over UINT64_MAX", "bytes=-" + huge, 1000, RangeResult::kSatisfiable, 0, 999},
      {"suffix on maximum size", "bytes=-10", kMaxUint64, RangeResult::kSatisfiable,
       kMaxUint64 - 10, kMaxUint64 - 1},
      {"open range on maximum size", "bytes=0-", kMaxUint64, RangeResult::kSatisfiable, 0,
       kMaxUint64 - 1},
  };
  for (const RangeCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    ByteRange range;
    const RangeResult result = parseRange(test_case.header, test_case.blob_size, &range);
    ASSERT_EQ(result, test_case.expected) << test_case.header;
    if (result == RangeResult::kSatisfiable) {
      EXPECT_EQ(range.first, test_case.first);
      EXPECT_EQ(range.last, test_case.last);
    }
  }
}

TEST(ByteRangeTest, LengthIsInclusive) {
  EXPECT_EQ((ByteRange{0, 0}).length(), 1u);
  EXPECT_EQ((ByteRange{10, 19}).length(), 10u);
}

TEST(ByteRangeTest, FormatsContentRange) {
  EXPECT_EQ(contentRangeValue(ByteRange{0, 499}, 1000), "bytes 0-499/1000");
  EXPECT_EQ(contentRangeValue(ByteRange{999, 999}, 1000), "bytes 999-999/1000");
  EXPECT_EQ(contentRangeValue(ByteRange{0, kMaxUint64 - 1}, kMaxUint64),
            "bytes 0-18446744073709551614/18446744073709551615");
}

TEST(ByteRangeTest, FormatsUnsatisfiedContentRange) {
  EXPECT_EQ(unsatisfiedContentRangeValue(1000), "bytes */1000");
  EXPECT_EQ(unsatisfiedContentRangeValue(0), "bytes */0");
}

}  // namespace
}  // namespace outpost::proxy
