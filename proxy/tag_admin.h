// TagAdmin: the admin API of tag history, rollback and pins, under /api/v1/.
//
//   GET    /api/v1/repositories/<key>/images/<name>/tags/<tag>/history[?n=<count>]
//   POST   /api/v1/repositories/<key>/images/<name>/tags/<tag>/rollback  {"digest":"sha256:..."}
//   DELETE /api/v1/repositories/<key>/images/<name>/tags/<tag>/pin
//
// History lists the tag's changes, newest first (at most n, 100 by default), with its current
// digest and, for a remote repository, its pin. A rollback takes a digest that the tag pointed
// to before. In a local repository it moves the tag there. In a remote repository it pins the
// tag: the tag is served at that digest and not revalidated until the pin is deleted, however
// the upstream moves. Every rollback, pin and unpin is itself recorded in the history.
// Responses are JSON; errors carry the registry error body.
// NOTE: like the registry API, the admin API has no authentication yet, so it must not be
// reachable by untrusted clients.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "proxy/config.h"
#include "proxy/http_server.h"
#include "proxy/local_repository.h"
#include "storage/index.h"

namespace outpost::proxy {

class TagAdmin {
 public:
  // Every argument outlives this object. `locals` is in the order of Config::locals.
  TagAdmin(const Config& config, storage::Index& index, const Clock& clock,
           const std::vector<std::unique_ptr<LocalRepository>>& locals);

  // Handles a request whose path starts with /api/v1/; `path` is the rest.
  void handle(const std::shared_ptr<Exchange>& exchange, std::string_view path);

 private:
  struct TagTarget {
    std::string repository;
    std::string name;  // as stored: with "library/" added where the remote adds it
    std::string tag;
    LocalRepository* local = nullptr;  // null for a remote repository
  };

  void serveHistory(const std::shared_ptr<Exchange>& exchange, const TagTarget& target);
  void rollback(const std::shared_ptr<Exchange>& exchange, TagTarget target);
  void unpin(const std::shared_ptr<Exchange>& exchange, TagTarget target);
  // Pins a remote tag to `digest`. BLOCKING: a synced index write.
  Status pinRemoteTag(const TagTarget& target, const Digest& digest);
  // Deletes a remote tag's pin. BLOCKING: a synced index write.
  Status unpinRemoteTag(const TagTarget& target);

  const Config& config_;
  storage::Index& index_;
  const Clock& clock_;
  const std::vector<std::unique_ptr<LocalRepository>>& locals_;
};

}  // namespace outpost::proxy
