#include "proxy/tag_admin.h"

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "proxy/blocking_work.h"
#include "proxy/grammar.h"
#include "proxy/registry_error.h"

namespace outpost::proxy {
namespace {

constexpr std::string_view kRepositoriesPrefix = "repositories/";
constexpr size_t kDefaultHistoryLength = 100;
constexpr size_t kMaxHistoryLength = 10'000;
// How far back a rollback looks for the digest in the tag's history.
constexpr size_t kRollbackHistoryLength = 100'000;

// "2026-12-05T01:02:03.456Z" for a time in milliseconds since the epoch.
std::string isoTime(int64_t time_ms) {
  std::time_t seconds = static_cast<std::time_t>(time_ms / 1000);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[64];
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900,
                parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec,
                static_cast<int>(time_ms % 1000));
  return text;
}

nlohmann::json digestOrNull(std::string_view digest) {
  return digest.empty() ? nlohmann::json(nullptr) : nlohmann::json(digest);
}

void respondJson(Exchange& exchange, const nlohmann::json& body) {
  ResponseHead head(200);
  head.add("Content-Type", "application/json");
  exchange.respond(std::move(head), body.dump());
}

void respondFailure(Exchange& exchange, const Status& failure) {
  switch (failure.code()) {
    case StatusCode::kInvalidArgument:
      respondRegistryError(exchange, 400, error_code::kUnsupported, failure.message());
      return;
    case StatusCode::kNotFound:
      respondRegistryError(exchange, 404, error_code::kManifestUnknown, failure.message());
      return;
    case StatusCode::kPermissionDenied:
      respondRegistryError(exchange, 403, error_code::kDenied, failure.message());
      return;
    default:
      respondRegistryError(exchange, 500, error_code::kUnknown, failure.message());
      return;
  }
}

}  // namespace

TagAdmin::TagAdmin(const Config& config, storage::Index& index, const Clock& clock,
                   const std::vector<std::unique_ptr<LocalRepository>>& locals)
    : config_(config), index_(index), clock_(clock), locals_(locals) {}

void TagAdmin::handle(const std::shared_ptr<Exchange>& exchange, std::string_view path) {
  auto not_found = [&] {
    respondRegistryError(*exchange, 404, error_code::kNameUnknown,
                         "no admin route for /api/v1/" + std::string(path) +
                             "; use /api/v1/repositories/<key>/images/<name>/tags/<tag>/"
                             "history, rollback or pin");
  };
  if (!path.starts_with(kRepositoriesPrefix)) {
    not_found();
    return;
  }
  std::string_view rest = path.substr(kRepositoriesPrefix.size());
  size_t key_end = rest.find('/');
  std::string_view key = rest.substr(0, key_end);
  rest = key_end == std::string_view::npos ? std::string_view() : rest.substr(key_end + 1);
  size_t tags_at = rest.rfind("/tags/");
  if (!rest.starts_with("images/") || tags_at == std::string_view::npos || tags_at < 7) {
    not_found();
    return;
  }
  std::string_view name = rest.substr(7, tags_at - 7);
  std::string_view tag_and_action = rest.substr(tags_at + 6);
  size_t slash = tag_and_action.find('/');
  if (slash == std::string_view::npos) {
    not_found();
    return;
  }
  std::string_view tag = tag_and_action.substr(0, slash);
  std::string_view action = tag_and_action.substr(slash + 1);

  TagTarget target;
  for (const RemoteConfig& remote : config_.remotes) {
    if (remote.name == key) {
      target.repository = remote.name;
      bool adds_library = remote.library_prefix && name.find('/') == std::string_view::npos;
      target.name = adds_library ? "library/" + std::string(name) : std::string(name);
    }
  }
  for (const auto& local : locals_) {
    if (local->name() == key) {
      target.repository = local->name();
      target.local = local.get();
      target.name = std::string(name);
    }
  }
  if (target.repository.empty()) {
    respondRegistryError(*exchange, 404, error_code::kNameUnknown,
                         "no remote or local repository has the key " + std::string(key));
    return;
  }
  if (!isValidRepositoryName(name)) {
    respondRegistryError(*exchange, 400, error_code::kNameInvalid,
                         "invalid image name " + std::string(name));
    return;
  }
  if (!isValidTag(tag)) {
    respondRegistryError(*exchange, 400, error_code::kTagInvalid,
                         "invalid tag " + std::string(tag));
    return;
  }
  target.tag = std::string(tag);

  HttpMethod method = exchange->request().method();
  if (action == "history" && (method == HttpMethod::kGet || method == HttpMethod::kHead)) {
    serveHistory(exchange, target);
  } else if (action == "rollback" && method == HttpMethod::kPost) {
    rollback(exchange, std::move(target));
  } else if (action == "pin" && method == HttpMethod::kDelete) {
    unpin(exchange, std::move(target));
  } else if (action == "history" || action == "rollback" || action == "pin") {
    ResponseHead head;
    std::string_view allowed = "DELETE";
    if (action == "history") {
      allowed = "GET, HEAD";
    } else if (action == "rollback") {
      allowed = "POST";
    }
    head.add("Allow", allowed);
    respondRegistryError(
        *exchange, 405, error_code::kUnsupported,
        std::string(action) + " does not answer " + std::string(exchange->request().methodName()),
        std::move(head));
  } else {
    not_found();
  }
}

void TagAdmin::serveHistory(const std::shared_ptr<Exchange>& exchange, const TagTarget& target) {
  size_t limit = kDefaultHistoryLength;
  if (exchange->request().hasQueryParam("n")) {
    std::string text = exchange->request().queryParam("n");
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() ||
        limit > kMaxHistoryLength) {
      respondRegistryError(
          *exchange, 400, error_code::kPaginationNumberInvalid,
          "n must be a whole number from 0 to " + std::to_string(kMaxHistoryLength));
      return;
    }
  }
  Expected<std::vector<storage::TagChangeRecord>> changes =
      index_.listTagChanges(target.repository, target.name, target.tag, limit);
  if (!changes) {
    log::storage().error("tag history failed req={} repo={} name={} tag={} error=\"{}\"",
                         exchange->requestId(), target.repository, target.name, target.tag,
                         changes.status().toString());
    respondRegistryError(*exchange, 500, error_code::kUnknown, "reading the tag history failed");
    return;
  }
  Expected<storage::TagRecord> current = index_.getTag(target.repository, target.name, target.tag);
  nlohmann::json body{{"repository", target.repository},
                      {"name", target.name},
                      {"tag", target.tag},
                      {"current", digestOrNull(current ? current->digest : "")}};
  if (target.local == nullptr) {
    Expected<storage::TagRecord> pin =
        index_.getPinnedTag(target.repository, target.name, target.tag);
    body["pinned"] = digestOrNull(pin ? pin->digest : "");
  }
  nlohmann::json list = nlohmann::json::array();
  for (const storage::TagChangeRecord& change : *changes) {
    list.push_back({{"time", isoTime(change.time_ms)},
                    {"time_ms", change.time_ms},
                    {"old_digest", digestOrNull(change.old_digest)},
                    {"new_digest", digestOrNull(change.new_digest)},
                    {"cause", change.cause}});
  }
  body["changes"] = std::move(list);
  respondJson(*exchange, body);
}

void TagAdmin::rollback(const std::shared_ptr<Exchange>& exchange, TagTarget target) {
  nlohmann::json request = nlohmann::json::parse(exchange->request().body(), nullptr, false);
  if (!request.is_object() || !request.contains("digest") || !request["digest"].is_string()) {
    respondRegistryError(*exchange, 400, error_code::kDigestInvalid,
                         R"(the body must be a JSON object {"digest":"sha256:..."})");
    return;
  }
  std::string text = request["digest"].get<std::string>();
  std::optional<Digest> digest = parseDigestOrRespond(*exchange, text);
  if (!digest) {
    return;
  }

  auto failure = std::make_shared<Status>();
  runBlocking(
      exchange->loop().uv(),
      [this, failure, target, digest = *digest] {
        // Only a digest that the tag pointed to before, so that a rollback cannot point a tag
        // at an unrelated manifest.
        Expected<std::vector<storage::TagChangeRecord>> changes = index_.listTagChanges(
            target.repository, target.name, target.tag, kRollbackHistoryLength);
        if (!changes) {
          *failure = changes.status();
          return;
        }
        bool was_digest = false;
        for (const storage::TagChangeRecord& change : *changes) {
          was_digest = was_digest || change.new_digest == digest.str();
        }
        if (!was_digest) {
          *failure =
              invalidArgument("tag " + target.tag + " of " + target.name + " never pointed to " +
                              digest.str() + "; pick a digest from its history");
          return;
        }
        *failure = target.local != nullptr
                       ? target.local->rollbackTag(target.name, target.tag, digest)
                       : pinRemoteTag(target, digest);
      },
      [exchange, failure, target, digest = *digest] {
        if (!failure->isOk()) {
          log::proxy().warn(
              "tag rollback failed req={} repo={} name={} tag={} digest={} "
              "error=\"{}\"",
              exchange->requestId(), target.repository, target.name, target.tag, digest.str(),
              failure->toString());
          respondFailure(*exchange, *failure);
          return;
        }
        bool is_pin = target.local == nullptr;
        log::proxy().info("tag rolled back req={} repo={} name={} tag={} digest={} pinned={}",
                          exchange->requestId(), target.repository, target.name, target.tag,
                          digest.str(), is_pin);
        respondJson(*exchange, {{"repository", target.repository},
                                {"name", target.name},
                                {"tag", target.tag},
                                {"digest", digest.str()},
                                {"pinned", is_pin}});
      });
}

Status TagAdmin::pinRemoteTag(const TagTarget& target, const Digest& digest) {
  if (!index_.hasLink(target.repository, digest)) {
    return notFound("manifest " + digest.str() + " is not cached for " + target.repository);
  }
  OUTPOST_ASSIGN_OR_RETURN(storage::ManifestRecord manifest, index_.getManifest(digest));
  Expected<storage::TagRecord> pin =
      index_.getPinnedTag(target.repository, target.name, target.tag);
  Expected<storage::TagRecord> current = index_.getTag(target.repository, target.name, target.tag);
  std::string previous;
  if (pin) {
    previous = pin->digest;
  } else if (current) {
    previous = current->digest;
  }
  int64_t now_ms = clock_.nowMs();
  storage::Index::Batch batch;
  batch.putPinnedTag(
      target.repository, target.name, target.tag,
      storage::TagRecord{
          .digest = digest.str(), .media_type = manifest.media_type, .confirmed_ms = now_ms});
  batch.putTagChange(
      target.repository, target.name, target.tag,
      {.time_ms = now_ms, .old_digest = previous, .new_digest = digest.str(), .cause = "pin"});
  return index_.write(std::move(batch), storage::Index::WriteMode::kSynced);
}

void TagAdmin::unpin(const std::shared_ptr<Exchange>& exchange, TagTarget target) {
  if (target.local != nullptr) {
    respondRegistryError(*exchange, 400, error_code::kUnsupported,
                         "tags of local repositories are not pinned; roll them back instead");
    return;
  }
  auto failure = std::make_shared<Status>();
  runBlocking(
      exchange->loop().uv(), [this, failure, target] { *failure = unpinRemoteTag(target); },
      [exchange, failure, target] {
        if (!failure->isOk()) {
          respondFailure(*exchange, *failure);
          return;
        }
        log::proxy().info("tag unpinned req={} repo={} name={} tag={}", exchange->requestId(),
                          target.repository, target.name, target.tag);
        respondJson(*exchange, {{"repository", target.repository},
                                {"name", target.name},
                                {"tag", target.tag},
                                {"pinned", false}});
      });
}

Status TagAdmin::unpinRemoteTag(const TagTarget& target) {
  Expected<storage::TagRecord> pin =
      index_.getPinnedTag(target.repository, target.name, target.tag);
  if (!pin) {
    return pin.status().code() == StatusCode::kNotFound
               ? notFound("tag " + target.tag + " of " + target.name + " is not pinned")
               : pin.status();
  }
  Expected<storage::TagRecord> current = index_.getTag(target.repository, target.name, target.tag);
  storage::Index::Batch batch;
  batch.deletePinnedTag(target.repository, target.name, target.tag);
  batch.putTagChange(target.repository, target.name, target.tag,
                     {.time_ms = clock_.nowMs(),
                      .old_digest = pin->digest,
                      .new_digest = current ? current->digest : std::string(),
                      .cause = "unpin"});
  return index_.write(std::move(batch), storage::Index::WriteMode::kSynced);
}

}  // namespace outpost::proxy
