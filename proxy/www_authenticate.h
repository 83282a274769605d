// Authentication challenges from upstream WWW-Authenticate headers (RFC 9110 section 11.6.1),
// and the Basic credentials the upstream client sends back (RFC 7617).
//
// Grammar (RFC 9110 sections 11.2 and 11.6.1):
//   WWW-Authenticate = #challenge
//   challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//   auth-param       = token BWS "=" BWS ( token / quoted-string )
//   token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
// Commas separate both challenges and the parameters of one challenge. A token followed by "="
// starts another parameter, and any other token starts the next challenge.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outpost::proxy {

// One challenge, such as Docker Hub's
// Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="…".
struct AuthChallenge {
  // Scheme name, lower-cased ("basic", "bearer").
  std::string scheme;
  // Parameters in header order, names lower-cased, quoted values unescaped.
  std::vector<std::pair<std::string, std::string>> params;
  // Token68 credential form, used by schemes such as Negotiate in place of parameters.
  std::string token68;

  // Returns the value of the first parameter called `name` (case-insensitive), or an empty
  // string when there is none.
  std::string param(std::string_view name) const;
};

// Parses one WWW-Authenticate header value into its challenges, in header order. A response
// with several WWW-Authenticate lines needs one call per line.
//
// Parsing stops at the first text outside the grammar, such as an unterminated quoted string.
// The result then contains the challenges before it, and the challenge in progress with the
// parameters that were complete. Never throws.
std::vector<AuthChallenge> parseWwwAuthenticate(std::string_view header_value);

// Formats an Authorization value for the Basic scheme: "Basic " and the base64 of
// "<user>:<password>" (RFC 7617 section 2). `user` must not contain ':', which the RFC does not
// allow in a user-id.
std::string basicAuthorization(std::string_view user, std::string_view password);

}  // namespace outpost::proxy
