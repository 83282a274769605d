// DistributionRegistry: a real CNCF distribution registry (`docker-registry serve`, 2.8.2)
// on 127.0.0.1 with its storage in a temporary folder.
//
// Modes, combinable where distribution allows:
//   auth   kNone, kHtpasswd (a bcrypt file from `htpasswd -Bbn`) or kToken (a TokenIssuer is
//          started and set as auth.token realm, service, issuer and rootcertbundle).
//   TLS    a CA and a server certificate for 127.0.0.1, made with openssl.
//   proxy  proxy.remoteurl, so that distribution runs as a pull-through cache of another
//          registry on 127.0.0.1. It then rejects pushes.
//
// distribution reads every REGISTRY_* environment variable as a configuration override, so
// the registry starts with all of them removed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "tests/integration/certificates.h"
#include "tests/integration/process.h"
#include "tests/integration/registry_endpoint.h"
#include "tests/integration/temp_dir.h"
#include "tests/integration/token_issuer.h"

namespace outpost::integration {

enum class RegistryAuth { kNone, kHtpasswd, kToken };

// The registry that a distribution in proxy mode caches.
struct ProxyUpstream {
  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT". Other hosts are rejected.
  std::string remote_url;
  // Empty for anonymous. distribution 2.8.2 sends them to token realms only, not to Basic auth.
  std::string username;
  std::string password;
  // PEM CA that signs an https upstream, passed to distribution as SSL_CERT_FILE.
  std::string ca_file;
};

struct RegistryOptions {
  RegistryAuth auth = RegistryAuth::kNone;
  bool use_tls = false;
  // Credentials for kHtpasswd and kToken.
  std::string username = "outpost-user";
  std::string password = "outpost-password";
  // The token service (audience) for kToken.
  std::string service = "outpost-test-registry";
  std::optional<ProxyUpstream> proxy;
};

class DistributionRegistry {
  // Restricts the public constructor to start(), because std::make_unique needs it public.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Starts the registry on a free port and waits until GET /v2/ responds. Retries on another
  // port when the chosen one was taken in the meantime.
  static Expected<std::unique_ptr<DistributionRegistry>> start(RegistryOptions options = {});

  DistributionRegistry(PrivateTag, RegistryOptions options, TempDir dir);
  ~DistributionRegistry();

  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
  std::string url() const;
  // "127.0.0.1:PORT", the registry part of image references.
  std::string hostPort() const;
  uint16_t port() const { return port_; }

  // The endpoint with this registry's credentials (none for kNone) and CA.
  RegistryEndpoint endpoint() const;
  // The same endpoint without credentials.
  RegistryEndpoint anonymousEndpoint() const;

  const RegistryOptions& options() const { return options_; }
  const std::string& username() const { return options_.username; }
  const std::string& password() const { return options_.password; }
  // "user:password", the form of skopeo's --creds and ctr's --user.
  std::string credentials() const { return options_.username + ":" + options_.password; }
  // PEM CA file and its folder, both empty without TLS.
  const std::string& caFile() const { return certificates_.ca_file; }
  const std::string& caDir() const { return certificates_.ca_dir; }
  // The issuer of a kToken registry, else nullptr.
  TokenIssuer* tokenIssuer() { return token_issuer_.get(); }
  const std::string& storageDir() const { return storage_dir_; }
  const std::string& configPath() const { return config_path_; }

  // Stops the registry process and keeps its storage, for tests of an unreachable upstream.
  void stop();
  // Starts the registry again on the same port with the same storage.
  Status restart();
  bool isRunning();
  // The pid of the registry process, or -1 before the first start.
  pid_t pid() const { return process_.has_value() ? process_->pid() : -1; }
  // The end of the registry log, including its access log lines.
  std::string logTail(size_t max_bytes = 4000) const;

 private:
  Status prepareFiles();
  std::string configYaml() const;
  // Starts the process on port_ and waits for /v2/. Reports kAlreadyExists when the port was
  // taken by someone else.
  Status launch();

  RegistryOptions options_;
  // Declared first so that it is removed after the processes below have stopped.
  TempDir dir_;
  std::string storage_dir_;
  std::string config_path_;
  std::string htpasswd_path_;
  TestCertificates certificates_;
  std::unique_ptr<TokenIssuer> token_issuer_;
  uint16_t port_ = 0;
  std::optional<Process> process_;
};

}  // namespace outpost::integration
