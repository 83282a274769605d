#include "base/digest.h"

#include <cstdlib>

namespace outpost {
namespace {

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool isLowerHex(char c) { return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9'); }
bool isEncodedChar(char c) {
  return isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '=' || c == '_' || c == '-';
}
bool isAlgorithmSeparator(char c) { return c == '+' || c == '.' || c == '_' || c == '-'; }

bool isValidAlgorithm(std::string_view algorithm) {
  if (algorithm.empty() || !isLowerAlnum(algorithm.front()) || !isLowerAlnum(algorithm.back())) {
    return false;
  }
  for (size_t i = 0; i < algorithm.size(); ++i) {
    char c = algorithm[i];
    if (isAlgorithmSeparator(c)) {
      if (!isLowerAlnum(algorithm[i + 1])) {
        return false;
      }
    } else if (!isLowerAlnum(c)) {
      return false;
    }
  }
  return true;
}

const EVP_MD* evpFor(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::kSha256 ? EVP_sha256() : EVP_sha512();
}

}  // namespace

Expected<Digest> Digest::parse(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return invalidArgument("digest has no algorithm prefix");
  }
  std::string_view algorithm = text.substr(0, colon);
  std::string_view encoded = text.substr(colon + 1);
  if (!isValidAlgorithm(algorithm)) {
    return invalidArgument("digest algorithm is not well-formed");
  }
  if (encoded.empty()) {
    return invalidArgument("digest has an empty encoded part");
  }
  for (char c : encoded) {
    if (!isEncodedChar(c)) {
      return invalidArgument("digest has a character outside [a-zA-Z0-9=_-]");
    }
  }

  DigestAlgorithm parsed;
  size_t hex_length;
  if (algorithm == "sha256") {
    parsed = DigestAlgorithm::kSha256;
    hex_length = 64;
  } else if (algorithm == "sha512") {
    parsed = DigestAlgorithm::kSha512;
    hex_length = 128;
  } else {
    return Status(StatusCode::kOutOfRange, "digest algorithm is not supported");
  }
  if (encoded.size() != hex_length) {
    return invalidArgument("digest has the wrong length for its algorithm");
  }
  for (char c : encoded) {
    if (!isLowerHex(c)) {
      return invalidArgument("digest is not lower-case hex");
    }
  }
  return Digest(parsed, std::string(text));
}

std::string_view Digest::algorithmName() const {
  return algorithm_ == DigestAlgorithm::kSha256 ? "sha256" : "sha512";
}

DigestHasher::DigestHasher(DigestAlgorithm algorithm)
    : algorithm_(algorithm), ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), evpFor(algorithm), nullptr) != 1) {
    // Only an allocation failure inside OpenSSL gets here; nothing sensible can follow.
    std::abort();
  }
}

void DigestHasher::update(std::span<const std::byte> bytes) {
  EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size());
}

Expected<Digest> Digest::fromRaw(DigestAlgorithm algorithm, std::span<const uint8_t> raw) {
  size_t expected = algorithm == DigestAlgorithm::kSha256 ? 32 : 64;
  if (raw.size() != expected) {
    return invalidArgument("a raw digest of " + std::to_string(raw.size()) + " bytes; " +
                           std::to_string(expected) + " expected");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(algorithm == DigestAlgorithm::kSha256 ? "sha256:" : "sha512:");
  text.reserve(text.size() + 2 * raw.size());
  for (uint8_t byte : raw) {
    text.push_back(kHex[byte >> 4]);
    text.push_back(kHex[byte & 0x0f]);
  }
  return Digest(algorithm, std::move(text));
}

Digest DigestHasher::finish() {
  unsigned char raw[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx_.get(), raw, &length);
  Expected<Digest> digest =
      Digest::fromRaw(algorithm_, std::span<const uint8_t>(raw, static_cast<size_t>(length)));
  if (!digest) {
    // OpenSSL returns the algorithm's own length, so only a broken library gets here.
    std::abort();
  }
  return std::move(digest).value();
}

Digest DigestHasher::digestSoFar() const {
  DigestHasher copy(algorithm_);
  if (EVP_MD_CTX_copy_ex(copy.ctx_.get(), ctx_.get()) != 1) {
    // Both contexts are initialised, so copying fails only when OpenSSL cannot allocate memory,
    // and nothing sensible can follow.
    std::abort();
  }
  return copy.finish();
}

Digest sha256Of(std::string_view bytes) {
  DigestHasher hasher;
  hasher.update(bytes);
  return hasher.finish();
}

}  // namespace outpost
