#include "base/digest.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>

namespace outpost {
namespace {

TEST(DigestTest, FromRawMatchesParsedText) {
  std::array<uint8_t, 32> raw{};
  for (size_t i = 0; i < raw.size(); ++i) {
    raw[i] = static_cast<uint8_t>(i * 9 + 1);
  }

  Expected<Digest> digest = Digest::fromRaw(DigestAlgorithm::kSha256, raw);

  ASSERT_TRUE(digest) << digest.status().toString();
  Expected<Digest> parsed = Digest::parse(digest->str());
  ASSERT_TRUE(parsed) << parsed.status().toString();
  EXPECT_EQ(*parsed, *digest);
  EXPECT_EQ(digest->str().substr(0, 11), "sha256:010a");
  EXPECT_EQ(digest->hex().size(), 64u);
}

TEST(DigestTest, FromRawOfSha512) {
  std::array<uint8_t, 64> raw{};
  raw[63] = 0xff;

  Expected<Digest> digest = Digest::fromRaw(DigestAlgorithm::kSha512, raw);

  ASSERT_TRUE(digest) << digest.status().toString();
  EXPECT_EQ(digest->algorithm(), DigestAlgorithm::kSha512);
  EXPECT_EQ(digest->str(), "sha512:" + std::string(126, '0') + "ff");
}

TEST(DigestTest, FromRawRejectsWrongLength) {
  std::array<uint8_t, 32> raw{};

  Expected<Digest> digest = Digest::fromRaw(DigestAlgorithm::kSha512, raw);

  ASSERT_FALSE(digest);
  EXPECT_EQ(digest.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(Digest::fromRaw(DigestAlgorithm::kSha256, std::span<const uint8_t>(raw.data(), 31)));
}

TEST(DigestTest, HasherOutputParsesBack) {
  Digest digest = sha256Of("hello");

  EXPECT_EQ(digest.str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
}

}  // namespace
}  // namespace outpost
