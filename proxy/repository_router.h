// RepositoryRouter: which configured repository a /v2/ request addresses, and the name to
// ask it for.
//
// Resolution, in order:
//   1. the first path component is a repository key, of a remote or a local repository:
//      /v2/<key>/<name>/...;
//   2. containerd's mirror parameter ?ns=<registry-host> names a host that a remote mirrors;
//      an ns that matches no remote fails, so that it is never dialled;
//   3. the default repository, which is what a Docker daemon with registry-mirrors reaches.
// A remote with library_prefix gives a one-component name the "library/" prefix, as Docker Hub
// requires ("alpine" is "library/alpine").
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "proxy/config.h"

namespace outpost::proxy {

enum class RepositoryKind { kRemote, kLocal };

struct RoutedName {
  RepositoryKind kind = RepositoryKind::kRemote;
  size_t index = 0;  // into Config::remotes or Config::locals, by kind
  std::string name;  // the name to ask the repository for
};

class RepositoryRouter {
 public:
  explicit RepositoryRouter(const Config& config) : config_(config) {}

  // Resolves `name` (validated, from the path) with the request's `ns` parameter, if any.
  // Fails with kNotFound and a message for the client when nothing serves the request.
  Expected<RoutedName> resolve(std::string_view name, std::optional<std::string_view> ns) const;

 private:
  // The repository whose key is `key`, with an empty name.
  std::optional<RoutedName> findByKey(std::string_view key) const;
  std::optional<size_t> findByHost(std::string_view host) const;

  const Config& config_;
};

}  // namespace outpost::proxy
