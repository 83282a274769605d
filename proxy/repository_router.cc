#include "proxy/repository_router.h"

#include "base/ascii.h"

namespace outpost::proxy {

std::string nameInRemote(const RemoteConfig& remote, std::string_view name) {
  if (remote.library_prefix && name.find('/') == std::string_view::npos) {
    return "library/" + std::string(name);
  }
  return std::string(name);
}

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

  routed->name = routed->kind == RepositoryKind::kRemote
                     ? nameInRemote(config_.remotes[routed->index], name)
                     : std::string(name);
  return std::move(*routed);
}

std::vector<RoutedName> RepositoryRouter::flattenedMembers(size_t virtual_index) const {
  std::vector<RoutedName> members;
  for (const std::string& key : flattenMembers(config_, config_.virtuals[virtual_index])) {
    // A loaded configuration names only repositories that exist, and flattenMembers returns
    // no virtual repository.
    if (std::optional<RoutedName> member = findByKey(key)) {
      members.push_back(std::move(*member));
    }
  }
  return members;
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
  for (size_t i = 0; i < config_.virtuals.size(); ++i) {
    if (config_.virtuals[i].name == key) {
      return RoutedName{RepositoryKind::kVirtual, i, {}};
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
