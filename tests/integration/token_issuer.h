// TokenIssuer: the bearer-token realm for a registry under test, run as token_issuer.py.
//
// The script implements the Docker Registry token protocol: GET /token with optional Basic
// credentials, and the OAuth2 POST /token with grant_type=password that containerd prefers.
// It signs RS256 JSON Web Tokens whose `kid` header is the libtrust fingerprint of the signing
// key, which is how distribution 2.8.2 finds the key among its rootcertbundle certificates.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/integration/certificates.h"
#include "tests/integration/process.h"
#include "tests/integration/temp_dir.h"

namespace outpost::integration {

struct TokenIssuerOptions {
  // The `service` a client must request, which becomes the token audience.
  std::string service = "outpost-test-registry";
  // The `iss` claim that the registry trusts.
  std::string issuer = "outpost-test-issuer";
  // Required Basic credentials. An empty username lets anyone get a token.
  std::string username;
  std::string password;
  // Actions granted when requested. Other requested actions are left out of the token.
  std::vector<std::string> allowed_actions = {"pull", "push", "delete", "*"};
  int expires_in_s = 300;
};

// Counters read from the issuer's /stats endpoint.
struct TokenIssuerStats {
  // Every GET or POST /token, granted or not.
  int64_t token_requests = 0;
  int64_t tokens_issued = 0;
  // Requests rejected for bad credentials or an unknown service.
  int64_t rejected = 0;
  // Every scope requested, in order ("repository:library/alpine:pull").
  std::vector<std::string> scopes;
};

class TokenIssuer {
  // Restricts the public constructor to start(), because std::make_unique needs it public.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Generates a signing key, starts the script on a port the kernel picks and waits until it
  // responds. The script runs under /usr/bin/python3, the interpreter that python3-jwt is
  // installed for.
  static Expected<std::unique_ptr<TokenIssuer>> start(TokenIssuerOptions options = {});

  TokenIssuer(PrivateTag, TokenIssuerOptions options, TempDir dir, SigningKey key, Process process,
              uint16_t port);

  // "http://127.0.0.1:PORT/token", the realm for auth.token.
  std::string realm() const;
  std::string url() const;
  uint16_t port() const { return port_; }
  const TokenIssuerOptions& options() const { return options_; }
  // PEM certificate of the signing key, for auth.token.rootcertbundle.
  const std::string& certificateFile() const { return key_.certificate_file; }

  Expected<TokenIssuerStats> stats() const;
  Status resetStats() const;

  Process& process() { return process_; }
  std::string logTail() const { return process_.logTail(); }

 private:
  TokenIssuerOptions options_;
  // Declared before process_ so that the process stops before its folder is removed.
  TempDir dir_;
  SigningKey key_;
  Process process_;
  uint16_t port_;
};

}  // namespace outpost::integration
