#include "proxy/virtual_repository.h"

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/log.h"
#include "proxy/content_response.h"
#include "proxy/grammar.h"
#include "proxy/registry_error.h"
#include "proxy/repository_router.h"

namespace outpost::proxy {
namespace {

// One read through a virtual repository, which tries the members in order until one
// responds. It lives as long as a member keeps the MissHandler it was given.
class MemberWalk : public std::enable_shared_from_this<MemberWalk> {
 public:
  // Asks `member` for the reference under `image`, its name in that member. The member either
  // responds or calls `on_miss`.
  using Attempt =
      std::function<void(const VirtualMember& member, const ImageName& image, MissHandler on_miss)>;

  // `unknown_code` and `unknown_message` make the 404 sent when every member lacks the
  // reference.
  MemberWalk(const VirtualRepository& repository, std::shared_ptr<Exchange> exchange,
             ImageName image, std::string_view unknown_code, std::string unknown_message,
             Attempt attempt)
      : repository_(repository),
        exchange_(std::move(exchange)),
        image_(std::move(image)),
        unknown_code_(unknown_code),
        unknown_message_(std::move(unknown_message)),
        attempt_(std::move(attempt)) {}

  // Replaces the error response sent after the last member missed.
  void setOnExhausted(std::function<void(Exchange&)> on_exhausted) {
    on_exhausted_ = std::move(on_exhausted);
  }

  // Asks the next member, or responds when none is left.
  void next() {
    const std::vector<VirtualMember>& members = repository_.members();
    if (position_ == members.size()) {
      respondExhausted();
      return;
    }
    size_t position = position_++;
    const VirtualMember& member = members[position];
    // The access log shows what the member that responds did, not what an earlier one did.
    exchange_->setOutcome(CacheOutcome::kNone);
    ImageName member_image{VirtualRepository::memberName(member, image_.name), image_.path_name};
    attempt_(member, member_image, [self = shared_from_this(), position](const Status& failure) {
      self->onMiss(position, failure);
    });
  }

 private:
  void onMiss(size_t position, const Status& failure) {
    const VirtualMember& member = repository_.members()[position];
    if (failure.code() == StatusCode::kNotFound) {
      log::proxy().debug(
          "virtual repository member lacks the reference req={} repo={} member={} path={}",
          exchange_->requestId(), repository_.name(), member.key(), exchange_->request().path());
    } else {
      log::proxy().warn("virtual repository member failed req={} repo={} member={} error=\"{}\"",
                        exchange_->requestId(), repository_.name(), member.key(),
                        failure.toString());
      if (!first_failure_) {
        first_failure_ = position;
        first_failure_status_ = failure;
      }
    }
    next();
  }

  void respondExhausted() {
    if (on_exhausted_) {
      on_exhausted_(*exchange_);
      return;
    }
    if (!first_failure_) {
      respondRegistryError(*exchange_, 404, unknown_code_, unknown_message_);
      return;
    }
    const VirtualMember& member = repository_.members()[*first_failure_];
    if (member.remote != nullptr) {
      member.remote->respondUpstreamFailure(*exchange_, first_failure_status_, unknown_code_);
      return;
    }
    // Local members report only kNotFound, so this is a safeguard.
    respondRegistryError(
        *exchange_, 500, error_code::kUnknown,
        "repository " + member.key() + " failed: " + std::string(first_failure_status_.message()));
  }

  const VirtualRepository& repository_;
  std::shared_ptr<Exchange> exchange_;
  ImageName image_;
  std::string_view unknown_code_;
  std::string unknown_message_;
  Attempt attempt_;
  std::function<void(Exchange&)> on_exhausted_;
  size_t position_ = 0;
  // The member whose failure is sent when no member responds, and its failure.
  std::optional<size_t> first_failure_;
  Status first_failure_status_;
};

// The tags of a name gathered from every member of a virtual repository at once.
struct TagUnion {
  std::vector<std::string> tags;
  size_t pending = 0;
  size_t answered = 0;
};

}  // namespace

VirtualRepository::VirtualRepository(VirtualConfig config, std::vector<VirtualMember> members,
                                     LocalRepository* deployment, const storage::BlobStore& store)
    : config_(std::move(config)),
      members_(std::move(members)),
      deployment_(deployment),
      store_(store) {}

std::string VirtualRepository::memberName(const VirtualMember& member, std::string_view name) {
  return member.remote != nullptr ? nameInRemote(member.remote->config(), name) : std::string(name);
}

void VirtualRepository::serveManifest(const std::shared_ptr<Exchange>& exchange,
                                      const ImageName& image, const std::string& reference) {
  if (Expected<ReferenceKind> kind = classifyReference(reference); !kind) {
    bool is_digest = reference.find(':') != std::string::npos;
    respondRegistryError(*exchange, 400,
                         is_digest ? error_code::kDigestInvalid : error_code::kTagInvalid,
                         std::string(kind.status().message()));
    return;
  }
  auto walk = std::make_shared<MemberWalk>(
      *this, exchange, image, error_code::kManifestUnknown,
      "manifest " + reference + " of " + image.path_name + " is unknown to every member of " +
          config_.name,
      [exchange, reference](const VirtualMember& member, const ImageName& member_image,
                            MissHandler on_miss) {
        if (member.remote != nullptr) {
          member.remote->serveManifest(exchange, member_image.name, reference, std::move(on_miss));
        } else {
          member.local->serveManifest(exchange, member_image, reference, on_miss);
        }
      });
  walk->next();
}

void VirtualRepository::serveBlob(const std::shared_ptr<Exchange>& exchange, const ImageName& image,
                                  const Digest& digest) {
  auto walk = std::make_shared<MemberWalk>(
      *this, exchange, image, error_code::kBlobUnknown,
      "blob " + digest.str() + " of " + image.path_name + " is unknown to every member of " +
          config_.name,
      [exchange, digest](const VirtualMember& member, const ImageName& member_image,
                         MissHandler on_miss) {
        if (member.remote != nullptr) {
          member.remote->serveBlob(exchange, member_image.name, digest, std::move(on_miss));
        } else {
          member.local->serveBlob(exchange, member_image, digest, on_miss);
        }
      });
  walk->next();
}

void VirtualRepository::serveReferrers(const std::shared_ptr<Exchange>& exchange,
                                       const ImageName& image, const Digest& subject) {
  auto walk = std::make_shared<MemberWalk>(
      *this, exchange, image, error_code::kManifestUnknown, "",
      [exchange, subject](const VirtualMember& member, const ImageName& member_image,
                          MissHandler on_miss) {
        if (member.remote != nullptr) {
          member.remote->serveReferrers(exchange, member_image.name, subject.str(),
                                        std::move(on_miss));
        } else {
          member.local->serveReferrers(exchange, member_image, subject.str(), on_miss);
        }
      });
  // The OCI distribution specification (v1.1, "Listing Referrers") has the referrers API
  // return 200 with an empty index, never 404, for a subject without referrers.
  walk->setOnExhausted([](Exchange& target) {
    respondReferrerIndex(target, nlohmann::json::array(),
                         target.request().queryParam("artifactType"));
  });
  walk->next();
}

void VirtualRepository::serveTagList(const std::shared_ptr<Exchange>& exchange,
                                     const ImageName& image) {
  std::optional<PageRequest> page = readPageRequest(*exchange);
  if (!page) {
    return;
  }
  auto gathered = std::make_shared<TagUnion>();
  gathered->pending = members_.size();

  // Runs once per member, on the loop thread; the last one responds.
  auto add = [this, exchange, image, page = *page, gathered](
                 const VirtualMember& member, Expected<std::vector<std::string>> tags) {
    if (tags) {
      ++gathered->answered;
      gathered->tags.insert(gathered->tags.end(), tags->begin(), tags->end());
    } else if (tags.status().code() != StatusCode::kNotFound) {
      log::proxy().warn(
          "virtual member tag list failed, left out req={} repo={} member={} "
          "error=\"{}\"",
          exchange->requestId(), config_.name, member.key(), tags.status().toString());
    }
    if (--gathered->pending > 0) {
      return;
    }
    if (gathered->answered == 0) {
      respondRegistryError(
          *exchange, 404, error_code::kNameUnknown,
          "repository " + image.path_name + " is unknown to every member of " + config_.name);
      return;
    }
    std::vector<std::string>& all = gathered->tags;
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    nlohmann::json body;
    body["name"] = image.path_name;
    respondListPage(*exchange, "/v2/" + image.path_name + "/tags/list", std::move(body), "tags",
                    all, page);
  };

  // Remote members fetch their lists at the same time, and local ones return theirs at once.
  for (const VirtualMember& member : members_) {
    std::string member_name = memberName(member, image.name);
    if (member.remote != nullptr) {
      member.remote->collectTags(exchange, std::move(member_name),
                                 [add, &member](Expected<std::vector<std::string>> tags) {
                                   add(member, std::move(tags));
                                 });
    } else {
      add(member, member.local->listTags(ImageName{std::move(member_name), image.path_name}));
    }
  }
}

bool VirtualRepository::servesStoredBlob(std::string_view name, const Digest& digest) const {
  bool has_remote = false;
  for (const VirtualMember& member : members_) {
    if (member.local != nullptr && member.local->containsBlob(name, digest)) {
      return true;
    }
    has_remote = has_remote || member.remote != nullptr;
  }
  return has_remote && store_.contains(digest);
}

}  // namespace outpost::proxy
