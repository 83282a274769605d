#include "proxy/www_authenticate.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstddef>

#include "base/ascii.h"

namespace outpost::proxy {
namespace {

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isOws(char c) { return c == ' ' || c == '\t'; }

// tchar from RFC 9110 section 5.6.2.
bool isTokenChar(char c) {
  if (isAlpha(c) || isDigit(c)) {
    return true;
  }
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool isToken68Char(char c) {
  return isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' ||
         c == '/';
}

// Characters allowed inside a quoted string, apart from '"' and '\': HTAB, SP, VCHAR and
// obs-text (RFC 9110 section 5.6.4).
bool isQuotedTextChar(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte == '\t') {
    return true;
  }
  return byte >= 0x20 && byte != 0x7f;
}

// Recursive-descent parser over one header value. Each read method either consumes what it
// read and returns true, or leaves the position where the text left the grammar.
class ChallengeParser {
 public:
  explicit ChallengeParser(std::string_view text) : text_(text) {}

  std::vector<AuthChallenge> parseAll() {
    std::vector<AuthChallenge> challenges;
    while (true) {
      skipListSeparators();
      if (atEnd()) {
        break;
      }
      const std::string_view scheme = readToken();
      if (scheme.empty() || !(atEnd() || peek() == ',' || isOws(peek()))) {
        break;
      }
      AuthChallenge& challenge = challenges.emplace_back();
      challenge.scheme = toLowerAscii(scheme);
      if (!parseChallengeBody(&challenge)) {
        break;
      }
    }
    return challenges;
  }

 private:
  enum class ParamStart { kParam, kNotParam };

  bool atEnd() const { return position_ >= text_.size(); }
  char peek() const { return text_[position_]; }

  void skipOws() {
    while (!atEnd() && isOws(peek())) {
      ++position_;
    }
  }

  void skipListSeparators() {
    while (!atEnd() && (isOws(peek()) || peek() == ',')) {
      ++position_;
    }
  }

  std::string_view readToken() {
    const std::size_t start = position_;
    while (!atEnd() && isTokenChar(peek())) {
      ++position_;
    }
    return text_.substr(start, position_ - start);
  }

  // Reads the quoted-string that starts at the position and unescapes its quoted-pairs.
  bool readQuotedString(std::string* value) {
    ++position_;
    while (!atEnd()) {
      const char c = peek();
      ++position_;
      if (c == '"') {
        return true;
      }
      if (c == '\\') {
        if (atEnd() || !isQuotedTextChar(peek())) {
          return false;
        }
        value->push_back(peek());
        ++position_;
      } else if (isQuotedTextChar(c)) {
        value->push_back(c);
      } else {
        return false;
      }
    }
    return false;
  }

  // Reads "name BWS = BWS value". Returns kNotParam, with the position unchanged, when the token
  // at the position is not followed by '=' and so starts the next challenge or a token68.
  ParamStart readParamName(std::string_view* name) {
    const std::size_t start = position_;
    *name = readToken();
    skipOws();
    if (name->empty() || atEnd() || peek() != '=') {
      position_ = start;
      return ParamStart::kNotParam;
    }
    ++position_;
    skipOws();
    // "abc=" or "abc==" at the end of the challenge is a token68 with padding, not a parameter.
    if (atEnd() || peek() == ',' || peek() == '=') {
      position_ = start;
      return ParamStart::kNotParam;
    }
    return ParamStart::kParam;
  }

  bool readParamValue(std::string_view name, AuthChallenge* challenge) {
    std::string value;
    if (peek() == '"') {
      if (!readQuotedString(&value)) {
        return false;
      }
    } else {
      const std::string_view token = readToken();
      if (token.empty()) {
        return false;
      }
      value = token;
    }
    challenge->params.emplace_back(toLowerAscii(name), std::move(value));
    return true;
  }

  bool readToken68(AuthChallenge* challenge) {
    const std::size_t start = position_;
    while (!atEnd() && isToken68Char(peek())) {
      ++position_;
    }
    if (position_ == start) {
      return false;
    }
    while (!atEnd() && peek() == '=') {
      ++position_;
    }
    challenge->token68 = std::string(text_.substr(start, position_ - start));
    skipOws();
    return atEnd() || peek() == ',';
  }

  // Parses what follows the scheme: nothing, a token68, or a list of parameters. Returns false
  // when the text leaves the grammar.
  bool parseChallengeBody(AuthChallenge* challenge) {
    skipOws();
    if (atEnd() || peek() == ',') {
      return true;
    }

    std::string_view name;
    if (readParamName(&name) == ParamStart::kNotParam) {
      return readToken68(challenge);
    }
    if (!readParamValue(name, challenge)) {
      return false;
    }

    while (true) {
      skipOws();
      if (atEnd()) {
        return true;
      }
      if (peek() != ',') {
        return false;
      }
      skipListSeparators();
      if (atEnd()) {
        return true;
      }
      if (readParamName(&name) == ParamStart::kNotParam) {
        // Either the scheme of the next challenge, which parseAll reads, or garbage that it
        // stops at.
        return true;
      }
      if (!readParamValue(name, challenge)) {
        return false;
      }
    }
  }

  std::string_view text_;
  std::size_t position_ = 0;
};

// Base64 of `bytes` with padding, through OpenSSL. EVP_EncodeBlock takes an int length, so long
// input goes in chunks whose size is a multiple of 3, which keeps padding at the very end.
std::string base64Encode(std::string_view bytes) {
  constexpr std::size_t kChunkBytes = 3 * 16 * 1024;
  const std::size_t encoded_size = 4 * ((bytes.size() + 2) / 3);
  // One more byte for the NUL that EVP_EncodeBlock writes after each chunk.
  std::string encoded(encoded_size + 1, '\0');
  std::size_t output_offset = 0;
  while (!bytes.empty()) {
    const std::size_t chunk = std::min(kChunkBytes, bytes.size());
    const int written = EVP_EncodeBlock(
        reinterpret_cast<unsigned char*>(encoded.data() + output_offset),
        reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(chunk));
    output_offset += static_cast<std::size_t>(written);
    bytes.remove_prefix(chunk);
  }
  encoded.resize(encoded_size);
  return encoded;
}

}  // namespace

std::string AuthChallenge::param(std::string_view name) const {
  const std::string lower_name = toLowerAscii(name);
  for (const auto& [param_name, value] : params) {
    if (param_name == lower_name) {
      return value;
    }
  }
  return {};
}

std::vector<AuthChallenge> parseWwwAuthenticate(std::string_view header_value) {
  return ChallengeParser(header_value).parseAll();
}

std::string basicAuthorization(std::string_view user, std::string_view password) {
  std::string credentials;
  credentials.reserve(user.size() + 1 + password.size());
  credentials += user;
  credentials += ':';
  credentials += password;
  return "Basic " + base64Encode(credentials);
}

}  // namespace outpost::proxy
