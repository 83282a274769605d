// RegistryEndpoint: how a client reaches one registry on 127.0.0.1.
#pragma once

#include <string>

namespace outpost::integration {

// The address, transport and credentials of a registry, as Skopeo, ImageBuilder and tests need
// them. DistributionRegistry::endpoint() makes one, and a test of another server (an Outpost
// instance) fills one in by hand.
struct RegistryEndpoint {
  // "127.0.0.1:PORT".
  std::string host_port;
  bool use_tls = false;
  // Folder of trusted CA certificates (*.crt) when use_tls. Empty means the system roots.
  std::string ca_dir;
  // PEM CA certificate inside ca_dir, for curl and containerd's hosts.toml.
  std::string ca_file;
  // Empty for anonymous access.
  std::string username;
  std::string password;

  std::string url() const { return (use_tls ? "https://" : "http://") + host_port; }
  bool hasCredentials() const { return !username.empty(); }
  // "user:password", the form of skopeo's --creds.
  std::string credentials() const { return username + ":" + password; }
};

}  // namespace outpost::integration
