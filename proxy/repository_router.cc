#include "proxy/repository_router.h"

#include "base/ascii.h"

namespace outpost::proxy {

Expected<RoutedName> RepositoryRouter::resolve(std::string_view name,
                                               std::optional<std::string_view> ns) const {
  std::optional<size_t> remote;
  size_t slash = name.find('/');
  if (slash != std::string_view::npos) {
    remote = findByKey(name.substr(0, slash));
    if (remote) {
      name = name.substr(slash + 1);
    }
  }
  if (!remote && ns) {
    std::string host = toLowerAscii(*ns);
    remote = findByHost(host);
    if (!remote) {
      return notFound("no remote repository mirrors registry host " + host);
    }
  }
  if (!remote) {
    remote = findByKey(config_.default_repository);
  }
  if (!remote) {
    return notFound("no repository serves " + std::string(name));
  }

  RoutedName routed;
  routed.remote_index = *remote;
  if (config_.remotes[*remote].library_prefix && name.find('/') == std::string_view::npos) {
    routed.name = "library/" + std::string(name);
  } else {
    routed.name = std::string(name);
  }
  return routed;
}

std::optional<size_t> RepositoryRouter::findByKey(std::string_view key) const {
  for (size_t i = 0; i < config_.remotes.size(); ++i) {
    if (config_.remotes[i].name == key) {
      return i;
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
