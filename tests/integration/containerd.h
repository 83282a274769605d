// Containerd: a private containerd (1.6.20) for pull tests, driven with `ctr`.
//
// The daemon runs as root with its own config. Its root, state, temp, gRPC and ttrpc sockets
// and `opt` plugin path are all in a temporary folder. The CRI plugin is disabled, and so are
// the snapshotters that need extra kernel support (aufs, btrfs, devmapper, zfs).
// Images go to the namespace "outpost-test".
//
// Pulls use a hosts folder (`ctr images pull --hosts-dir`): writeHostsDir() writes
// DIR/<registry host>/hosts.toml with `server` on a closed loopback port and one
// `[host."URL"]` table per mirror, plus DIR/_default/hosts.toml with the same closed server.
// A pull therefore reaches the mirrors or fails on 127.0.0.1, and never goes to Docker Hub.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tests/integration/process.h"
#include "tests/integration/temp_dir.h"

namespace outpost::integration {

// A port that nothing listens on, used as the `server` of every hosts.toml the harness writes.
inline constexpr std::string_view kClosedServerUrl = "http://127.0.0.1:9";

struct MirrorHost {
  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
  std::string url;
  // PEM CA for an https mirror, or empty for plain HTTP.
  std::string ca_file;
  std::vector<std::string> capabilities = {"pull", "resolve"};
};

// Writes the hosts folder described above for `registry_host` ("docker.io", "ghcr.io",
// "127.0.0.1:5000"). Mirrors whose URL is not on 127.0.0.1 are rejected.
Status writeHostsDir(const std::string& hosts_dir, std::string_view registry_host,
                     const std::vector<MirrorHost>& mirrors);

// The registry host of an image reference as containerd reads it: the first path component
// when it contains '.' or ':' or is "localhost", else "docker.io".
std::string registryHostOf(std::string_view reference);

class Containerd {
  // Restricts the public constructor to start(); std::make_unique needs it public.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Starts the daemon and waits until `ctr version` reaches it. If it cannot start, the
  // Status carries the end of its log.
  static Expected<std::unique_ptr<Containerd>> start();

  Containerd(PrivateTag, TempDir dir, Process process);

  const std::string& socketPath() const { return socket_path_; }

  // Runs `ctr --address SOCKET --namespace outpost-test <arguments>`.
  Expected<CommandResult> ctr(std::vector<std::string> arguments, int timeout_ms = 120'000) const;

  // Runs `ctr images pull --hosts-dir HOSTS_DIR [extra_args] REFERENCE`. Fails with
  // kInvalidArgument, without starting ctr, when HOSTS_DIR has no hosts.toml with a host table
  // for the reference's registry host or for _default, because containerd would then contact
  // the real registry.
  Expected<CommandResult> pull(const std::string& reference, const std::string& hosts_dir,
                               const std::vector<std::string>& extra_args = {}) const;

  // Returns the digest that `reference` points to in containerd's image store.
  Expected<std::string> imageDigest(const std::string& reference) const;

  // Removes the image and, synchronously, the content nothing else references.
  Status removeImage(const std::string& reference) const;

  void stop() { process_.stop(); }
  std::string logTail(size_t max_bytes = 4000) const { return process_.logTail(max_bytes); }
  Process& process() { return process_; }

  static constexpr std::string_view kNamespace = "outpost-test";

 private:
  // Declared before process_ so that the daemon stops before its folder is removed.
  TempDir dir_;
  std::string socket_path_;
  Process process_;
};

}  // namespace outpost::integration
