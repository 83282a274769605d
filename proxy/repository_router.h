// RepositoryRouter: which configured repository a /v2/ request addresses, and the name to
// ask it for.
//
// Resolution, in order:
//   1. the first path component is a repository key, of a remote, local or virtual
//      repository: /v2/<key>/<name>/...;
//   2. containerd's mirror parameter ?ns=<registry-host> names a host that a remote mirrors;
//      an ns that matches no remote fails, so that it is never dialled;
//   3. the default repository, which is what a Docker daemon with registry-mirrors reaches.
// A remote with library_prefix gives a one-component name the "library/" prefix, as Docker Hub
// requires ("alpine" is "library/alpine"). A virtual repository gets the name unchanged, and
// each of its members gets it as it would through its own key.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "proxy/config.h"

namespace outpost::proxy {

enum class RepositoryKind { kRemote, kLocal, kVirtual };

struct RoutedName {
  RepositoryKind kind = RepositoryKind::kRemote;
  size_t index = 0;  // into Config::remotes, Config::locals or Config::virtuals, by kind
  std::string name;  // the name to ask the repository for
};

// The name that `remote` is asked for when a client writes `name` after its key: with
// "library/" in front of a one-component name when the remote has library_prefix.
std::string nameInRemote(const RemoteConfig& remote, std::string_view name);

class RepositoryRouter {
 public:
  explicit RepositoryRouter(const Config& config) : config_(config) {}

  // Resolves `name` (validated, from the path) with the request's `ns` parameter, if any.
  // Fails with kNotFound and a message for the client when nothing serves the request.
  Expected<RoutedName> resolve(std::string_view name, std::optional<std::string_view> ns) const;

  // The remote and local repositories that virtual repository `virtual_index` reads from, in
  // the order they are asked (see flattenMembers in config.h), each with an empty name.
  std::vector<RoutedName> flattenedMembers(size_t virtual_index) const;

 private:
  // The repository whose key is `key`, with an empty name.
  std::optional<RoutedName> findByKey(std::string_view key) const;
  std::optional<size_t> findByHost(std::string_view host) const;

  const Config& config_;
};

}  // namespace outpost::proxy
