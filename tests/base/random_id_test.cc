#include "base/random_id.h"

#include <gtest/gtest.h>

#include <string>

namespace outpost {
namespace {

TEST(RandomIdTest, HexOfRequestedLength) {
  for (size_t bytes : {1u, 16u, 256u}) {
    Expected<std::string> id = randomHexId(bytes);
    ASSERT_TRUE(id) << id.status().toString();
    EXPECT_EQ(id->size(), bytes * 2);
    EXPECT_EQ(id->find_first_not_of("0123456789abcdef"), std::string::npos) << *id;
  }
}

TEST(RandomIdTest, TwoIdsDiffer) {
  Expected<std::string> first = randomHexId();
  Expected<std::string> second = randomHexId();
  ASSERT_TRUE(first) << first.status().toString();
  ASSERT_TRUE(second) << second.status().toString();

  EXPECT_NE(*first, *second);
}

TEST(RandomIdTest, SizeOutOfRangeRejected) {
  EXPECT_EQ(randomHexId(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(randomHexId(257).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace outpost
