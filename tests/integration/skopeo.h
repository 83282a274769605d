// Skopeo: runs skopeo (1.9.3) isolated from the machine's container configuration.
//
// Each instance has its own folder with HOME, XDG_DATA_HOME, XDG_CONFIG_HOME, XDG_RUNTIME_DIR,
// TMPDIR, an empty auth file (REGISTRY_AUTH_FILE), an empty registries.d, a registries.conf
// without search registries, and a policy.json that accepts any image (insecureAcceptAnything).
// Credentials and TLS settings are passed per command, usually built from a RegistryEndpoint:
// plain-HTTP endpoints get --*-tls-verify=false, TLS endpoints get --*-cert-dir with the test
// CA, and endpoints with a username get --*-creds.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tests/integration/process.h"
#include "tests/integration/registry_endpoint.h"
#include "tests/integration/temp_dir.h"

namespace outpost::integration {

class Skopeo {
  // Restricts the public constructor to create(), because std::make_unique needs it public.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Writes the configuration files into a new temporary folder.
  static Expected<std::unique_ptr<Skopeo>> create();

  Skopeo(PrivateTag, TempDir dir);

  // Runs `skopeo <global flags> <arguments>`. The Expected fails only when skopeo could not be
  // started, and a failed command shows as an exit code in the CommandResult.
  Expected<CommandResult> run(std::vector<std::string> arguments,
                              int timeout_ms = kDefaultTimeoutMs) const;

  // `skopeo copy [extra_args] SOURCE DESTINATION`, with transport-qualified names
  // ("oci:/path:tag", "docker://127.0.0.1:PORT/repo:tag").
  Expected<CommandResult> copy(const std::string& source, const std::string& destination,
                               const std::vector<std::string>& extra_args = {}) const;

  // `skopeo inspect [extra_args] IMAGE`.
  Expected<CommandResult> inspect(const std::string& image,
                                  const std::vector<std::string>& extra_args = {}) const;

  // Returns the manifest bytes exactly as the registry stores them (`inspect --raw`) for
  // "repository:tag" or "repository@digest" on `endpoint`. A non-zero exit is an error.
  Expected<std::string> inspectRaw(const RegistryEndpoint& endpoint,
                                   std::string_view repository_reference) const;

  // "docker://HOST:PORT/<repository_reference>".
  static std::string dockerReference(const RegistryEndpoint& endpoint,
                                     std::string_view repository_reference);
  // Flags for an endpoint read as a copy source: --src-tls-verify=false or --src-cert-dir,
  // and --src-creds when it has credentials.
  static std::vector<std::string> sourceFlags(const RegistryEndpoint& endpoint);
  // The same for a copy destination (--dest-...).
  static std::vector<std::string> destinationFlags(const RegistryEndpoint& endpoint);
  // The same for inspect and other one-image commands (--tls-verify, --cert-dir, --creds).
  static std::vector<std::string> imageFlags(const RegistryEndpoint& endpoint);

  const std::string& workDir() const { return dir_.path(); }

  static constexpr int kDefaultTimeoutMs = 120'000;

 private:
  // NOTE: as root, containers/image keeps its blob-info cache in /var/lib/containers/cache
  // whatever XDG_DATA_HOME is set to, and skopeo 1.9.3 has no flag to move it. The cache only
  // suggests blobs to reuse or mount within the destination registry, so an entry from another test
  // can cost an extra mount attempt against 127.0.0.1 but never sends a request elsewhere.
  EnvChanges environment() const;

  TempDir dir_;
};

}  // namespace outpost::integration
