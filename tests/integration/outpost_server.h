// OutpostServer: the built outpost binary running on 127.0.0.1 with a configuration written
// by the test, for end-to-end tests through real clients.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/integration/process.h"
#include "tests/integration/registry_endpoint.h"
#include "tests/integration/temp_dir.h"

namespace outpost::integration {

struct OutpostRemote {
  std::string name;
  std::string url;
  std::vector<std::string> hosts;
  std::string username;
  std::string password;
  std::string ca_file;
  std::string tag_ttl = "5m";
  bool library_prefix = false;
};

struct OutpostOptions {
  std::vector<OutpostRemote> remotes;
  // Empty: the first remote.
  std::string default_repository;
  int loops = 2;
  // Durations of the upstream section, as YAML values.
  std::string revalidate_timeout = "2s";
  std::string down_backoff = "2s";
  std::string body_stall_timeout = "10s";
  int max_retries = 1;
  std::string log_level = "debug";
  // Empty: a folder inside the server's temporary folder.
  std::string data_dir;
  // More keys of the storage section, as YAML lines indented by two spaces, each ending in a
  // newline ("  scrub_interval: 100ms\n").
  std::string storage_yaml;
  // The entries of the locals section, as YAML lines indented by two spaces, each ending in a
  // newline ("  - name: local\n").
  std::string locals_yaml;
  // The entries of the virtuals section, in the same form ("  - name: all\n").
  std::string virtuals_yaml;
};

// Options with one remote named "upstream" for the registry at `url` (reached by `host_port`
// through ?ns= too), the usual shape of a test.
OutpostOptions optionsForUpstream(const std::string& url, const std::string& host_port);

class OutpostServer {
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Writes the configuration, starts `outpost serve` on a free port and waits for /healthz.
  static Expected<std::unique_ptr<OutpostServer>> start(OutpostOptions options);

  OutpostServer(PrivateTag, OutpostOptions options, TempDir dir);

  // "127.0.0.1:PORT".
  std::string hostPort() const;
  std::string url() const { return "http://" + hostPort(); }
  RegistryEndpoint endpoint() const;
  const std::string& dataDir() const { return data_dir_; }
  const std::string& configPath() const { return config_path_; }
  // Where a committed blob lives: <data_dir>/blobs/sha256/<2 hex>/<hex>, for "sha256:<hex>".
  std::string storedBlobPath(const std::string& digest) const;
  pid_t pid() const { return process_ ? process_->pid() : -1; }

  // Sends SIGTERM and waits; returns the exit description ("exited with code 0").
  std::string stop();
  // Sends SIGKILL, as a crash would.
  void kill();
  // Starts again on the same port with the same data.
  Status restart();

  // Returns the value of one metric line, e.g. metric("outpost_downloads_started_total").
  Expected<uint64_t> metric(const std::string& name_with_labels) const;
  std::string logTail(size_t max_bytes = 6000) const;

 private:
  Status launch();

  OutpostOptions options_;
  TempDir dir_;
  std::string config_path_;
  std::string data_dir_;
  uint16_t port_ = 0;
  std::optional<Process> process_;
};

}  // namespace outpost::integration
