#include "proxy/repository_router.h"

#include "base/ascii.h"

namespace outpost::proxy {

Expected<RoutedName> RepositoryRouter::resolve(std::string_view name,
                                               std::optional<std::string_view> ns) const {
  std::optional<RoutedName> routed;
  size_t slash = name.find('/');
  if (slash != std::string_view::npos) {
    routed = findByKey(name.substr(0, slash));
    if (routed) {
      name = name.substr(slash + 1);
    }
  }
  if (!routed && ns) {
    std::string host = toLowerAscii(*ns);
    std::optional<size_t> remote = findByHost(host);
    if (!remote) {
      return notFound("no remote repository mirrors registry host " + host);
    }
    routed = RoutedName{RepositoryKind::kRemote, *remote, {}};
  }
  if (!routed) {
    routed = findByKey(config_.default_repository);
  }
  if (!routed) {
    return notFound("no repository serves " + std::string(name));
  }

  const bool adds_library_prefix = routed->kind == RepositoryKind::kRemote &&
                                   config_.remotes[routed->index].library_prefix &&
                                   name.find('/') == std::string_view::npos;
  routed->name = adds_library_prefix ? "library/" + std::string(name) : std::string(name);
  return std::move(*routed);
}

std::optional<RoutedName> RepositoryRouter::findByKey(std::string_view key) const {
  for (size_t i = 0; i < config_.remotes.size(); ++i) {
    if (config_.remotes[i].name == key) {
      return RoutedName{RepositoryKind::kRemote, i, {}};
    }
  }
  for (size_t i = 0; i < config_.locals.size(); ++i) {
    if (config_.locals[i].name == key) {
      return RoutedName{RepositoryKind::kLocal, i, {}};
    }
  }
  return std::nullopt;
}

std::optional<size_t> RepositoryRouter::findByHost(std::string_view host) const {
  for (size_t i = 0; i < config_.remotes.size(); ++i) {
    for (const std::string& mirrored : config_.remotes[i].hosts) {
      if (mirrored == host) {
        return i;
      }
    }
  }
  return std::nullopt;
}

}  // namespace outpost::proxy
