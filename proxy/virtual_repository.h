// VirtualRepository: one repository key over an ordered list of remote and local repositories,
// as Artifactory's virtual Docker repositories work.
//
// Nested virtual repositories are expanded when the configuration loads (flattenMembers), so
// the members here are remote and local repositories only. Each member is asked for a name as
// it would be through its own key, so a remote with library_prefix gets "library/alpine" for
// "alpine".
//
// Reads of manifests, blobs and referrers ask the members in order, and the first member that
// has the reference sends the response. A member that lacks it reports kNotFound through a
// MissHandler instead of responding, and the next member is asked. So does a member that
// fails, such as a remote whose upstream is down with nothing cached. When no member responds,
// the response is a 404 if every member lacked the reference, else the first failure. A tag
// list is the sorted union of the tags of every member that has the name.
//
// Writes (pushes and deletes) go to the deployment local repository; RegistryService routes
// them there.
//
// One object serves every loop. It keeps no per-request state, because each read carries its own.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "proxy/config.h"
#include "proxy/http_server.h"
#include "proxy/local_repository.h"
#include "proxy/remote_repository.h"
#include "storage/blob_store.h"

namespace outpost::proxy {

// A repository that a virtual repository reads from. Exactly one of remote and local is set.
struct VirtualMember {
  RemoteRepository* remote = nullptr;
  LocalRepository* local = nullptr;

  const std::string& key() const { return remote != nullptr ? remote->name() : local->name(); }
};

class VirtualRepository {
 public:
  // `members` are in the order they are asked, and `deployment` is null when the repository
  // takes no pushes. Every pointer and `store` outlive this object.
  VirtualRepository(VirtualConfig config, std::vector<VirtualMember> members,
                    LocalRepository* deployment, const storage::BlobStore& store);

  const std::string& name() const { return config_.name; }
  const std::vector<VirtualMember>& members() const { return members_; }
  LocalRepository* deployment() const { return deployment_; }

  // The name that `member` is asked for when a client writes `name` after this repository's key.
  static std::string memberName(const VirtualMember& member, std::string_view name);

  // GET and HEAD of /v2/<name>/manifests/<reference>. `image.name` is the name after this
  // repository's key.
  void serveManifest(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                     const std::string& reference);
  // GET and HEAD of /v2/<name>/blobs/<digest>.
  void serveBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                 const Digest& digest);
  // GET and HEAD of /v2/<name>/referrers/<digest>: the referrers that the first member with any
  // sends, or an empty index when no member has one.
  void serveReferrers(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                      const Digest& subject);
  // GET of /v2/<name>/tags/list, paginated with n and last.
  void serveTagList(const std::shared_ptr<Exchange>& exchange, const ImageName& image);

  // Whether a GET of blob `digest` through this repository, for image `name`, is served from
  // storage: a local member's image contains the blob, or a member is a remote and the blob
  // is stored, because a remote serves every stored blob. Mounts from this repository and
  // manifest pushes through it rely on this. Safe on any thread.
  bool servesStoredBlob(std::string_view name, const Digest& digest) const;

 private:
  VirtualConfig config_;
  std::vector<VirtualMember> members_;
  LocalRepository* deployment_;
  const storage::BlobStore& store_;
};

}  // namespace outpost::proxy
