// Throwaway TLS certificates and token-signing keys, made with the openssl command.
#pragma once

#include <string>

#include "base/status.h"

namespace outpost::integration {

// A test CA and a server certificate it signed, valid for two days.
struct TestCertificates {
  // Folder that holds only ca.crt, in the layout of skopeo's --cert-dir and Docker's certs.d.
  std::string ca_dir;
  // PEM CA certificate, ca_dir + "/ca.crt".
  std::string ca_file;
  // PEM server certificate for IP 127.0.0.1 and DNS localhost (ECDSA P-256).
  std::string certificate_file;
  std::string key_file;
};

// Writes a CA and a server certificate under `dir`, which must exist.
Expected<TestCertificates> makeTestCertificates(const std::string& dir);

// An RSA key and a self-signed certificate for it. A token issuer signs RS256 tokens with the
// key, and distribution trusts the certificate through auth.token.rootcertbundle.
struct SigningKey {
  std::string key_file;
  std::string certificate_file;
};

// Writes a 2048-bit RSA signing key and its certificate under `dir`, which must exist.
Expected<SigningKey> makeSigningKey(const std::string& dir);

}  // namespace outpost::integration
