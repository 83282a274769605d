// Digest: a validated content digest ("sha256:<64 lower-case hex>"), and a streaming hasher.
//
// Grammar, from the OCI image specification (descriptor.md, "Digests"):
//   digest    ::= algorithm ":" encoded
//   algorithm ::= [a-z0-9]+ ([+._-] [a-z0-9]+)*
//   encoded   ::= [a-zA-Z0-9=_-]+
// Outpost stores and verifies sha256 (64 lower-case hex) and sha512 (128 lower-case hex).
// A well-formed digest of another algorithm fails with kOutOfRange rather than
// kInvalidArgument, so that callers can tell "unsupported" from "malformed".
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace outpost {

enum class DigestAlgorithm { kSha256, kSha512 };

class Digest {
 public:
  // Parses and validates `text`. Fails with kInvalidArgument for text outside the grammar or
  // an encoded part of the wrong length or case, with kOutOfRange for a well-formed digest of
  // an algorithm Outpost does not compute.
  static Expected<Digest> parse(std::string_view text);
  // The digest whose binary value is `raw`, without parsing text. Fails with kInvalidArgument
  // when `raw` is not as long as the algorithm's output (32 bytes for sha256, 64 for sha512).
  static Expected<Digest> fromRaw(DigestAlgorithm algorithm, std::span<const uint8_t> raw);

  DigestAlgorithm algorithm() const { return algorithm_; }
  std::string_view algorithmName() const;
  // The lower-case hex part after the colon.
  std::string_view hex() const { return std::string_view(text_).substr(text_.find(':') + 1); }
  // The whole digest, "sha256:…".
  const std::string& str() const { return text_; }

  friend bool operator==(const Digest& a, const Digest& b) { return a.text_ == b.text_; }
  friend auto operator<=>(const Digest& a, const Digest& b) { return a.text_ <=> b.text_; }

 private:
  friend class DigestHasher;
  Digest(DigestAlgorithm algorithm, std::string text)
      : algorithm_(algorithm), text_(std::move(text)) {}

  DigestAlgorithm algorithm_;
  std::string text_;
};

// Computes a digest over bytes fed in pieces, with OpenSSL's EVP interface.
class DigestHasher {
 public:
  explicit DigestHasher(DigestAlgorithm algorithm = DigestAlgorithm::kSha256);

  void update(std::span<const std::byte> bytes);
  void update(std::string_view bytes) {
    update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  }
  // Returns the digest of everything fed so far. The hasher may not be used afterwards.
  Digest finish();
  // Returns the digest of everything fed so far from a copy of the state, so that the hasher
  // can take more input afterwards.
  Digest digestSoFar() const;

 private:
  struct CtxDeleter {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };
  DigestAlgorithm algorithm_;
  std::unique_ptr<EVP_MD_CTX, CtxDeleter> ctx_;
};

// Returns the sha256 digest of `bytes`.
Digest sha256Of(std::string_view bytes);

}  // namespace outpost

template <>
struct std::hash<outpost::Digest> {
  size_t operator()(const outpost::Digest& digest) const noexcept {
    return std::hash<std::string>()(digest.str());
  }
};
