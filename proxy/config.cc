#include "proxy/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <set>
#include <system_error>

#include "base/ascii.h"
#include "base/unique_fd.h"
#include "proxy/grammar.h"
#include "storage/scrubber.h"

namespace outpost::proxy {
namespace {

// Upper bound of locals[].max_manifest_bytes. A manifest is kept in memory and in one index
// record. CNCF distribution accepts manifest pushes up to 4 MiB, so 64 MiB leaves room for very
// large indexes without letting one request take unbounded memory.
constexpr int64_t kMaxManifestBytesLimit = int64_t{64} << 20;

std::string inQuotes(std::string_view text) {
  std::string result = "\"";
  result += text;
  result += '"';
  return result;
}

std::string childPath(std::string_view parent, std::string_view key) {
  if (parent.empty()) {
    return std::string(key);
  }
  std::string path(parent);
  path += '.';
  path += key;
  return path;
}

// Whether `path` is `folder` or lies inside it, compared as written (both are absolute and
// normal here).
bool isSameOrInside(const std::filesystem::path& path, const std::filesystem::path& folder) {
  std::filesystem::path relative = path.lexically_relative(folder);
  return !relative.empty() && *relative.begin() != "..";
}

std::string indexPath(std::string_view parent, std::size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

Status invalidAt(std::string_view path, std::string_view problem) {
  std::string message(path);
  message += ": ";
  message += problem;
  return invalidArgument(std::move(message));
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || isDigit(c); }

// Parses a whole string of decimal digits, with no sign, into `*value`.
bool parseUnsigned(std::string_view text, int64_t* value) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), isDigit)) {
    return false;
  }
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

// Checks "host" or "host:port", where host is a DNS name, an IPv4 address or a bracketed IPv6
// address. Returns an empty string when valid, else the problem.
std::string findAuthorityProblem(std::string_view authority) {
  if (authority.empty()) {
    return "has no host";
  }
  if (authority.find('@') != std::string_view::npos) {
    return "contains user credentials; set username and password or password_env instead";
  }

  std::string_view host = authority;
  std::string_view port;
  if (authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return "has an unterminated IPv6 address";
    }
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      return "has text after the IPv6 address";
    }
    port = after.empty() ? after : after.substr(1);
    in6_addr address;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &address) != 1) {
      return "has an invalid IPv6 address";
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) {
        return "has an empty port";
      }
    }
    if (host.empty()) {
      return "has no host";
    }
    const bool is_host_text = std::all_of(host.begin(), host.end(), [](char c) {
      return isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '.';
    });
    if (!is_host_text) {
      return "has a host with characters other than letters, digits, '-' and '.'";
    }
  }

  if (!port.empty() || authority.back() == ':') {
    int64_t port_number = 0;
    if (!parseUnsigned(port, &port_number) || port_number < 1 || port_number > 65535) {
      return "has an invalid port (1 to 65535)";
    }
  }
  return {};
}

enum class KeyKind { kNone, kRemote, kLocal, kVirtual };

KeyKind findRepositoryKind(const Config& config, std::string_view key) {
  const auto has_key = [key](const auto& repository) { return repository.name == key; };
  if (std::any_of(config.remotes.begin(), config.remotes.end(), has_key)) {
    return KeyKind::kRemote;
  }
  if (std::any_of(config.locals.begin(), config.locals.end(), has_key)) {
    return KeyKind::kLocal;
  }
  if (std::any_of(config.virtuals.begin(), config.virtuals.end(), has_key)) {
    return KeyKind::kVirtual;
  }
  return KeyKind::kNone;
}

const VirtualConfig* findVirtual(const Config& config, std::string_view key) {
  for (const VirtualConfig& virtual_repository : config.virtuals) {
    if (virtual_repository.name == key) {
      return &virtual_repository;
    }
  }
  return nullptr;
}

// Every repository key, comma-separated, in the order remotes, locals, virtuals.
std::string listRepositoryNames(const Config& config) {
  std::string listed;
  const auto append = [&listed](const auto& repositories) {
    for (const auto& repository : repositories) {
      listed += listed.empty() ? "" : ", ";
      listed += repository.name;
    }
  };
  append(config.remotes);
  append(config.locals);
  append(config.virtuals);
  return listed;
}

std::string listLocalNames(const Config& config) {
  std::string listed;
  for (const LocalConfig& local : config.locals) {
    listed += listed.empty() ? "" : ", ";
    listed += local.name;
  }
  return listed.empty() ? "none" : listed;
}

// Appends the remote and local keys that `members` reach to `*flattened`, expanding each
// virtual member in place the first time it appears.
void appendFlattened(const Config& config, const std::vector<std::string>& members,
                     std::set<std::string, std::less<>>* expanded,
                     std::vector<std::string>* flattened) {
  for (const std::string& member : members) {
    if (const VirtualConfig* nested = findVirtual(config, member)) {
      if (expanded->insert(member).second) {
        appendFlattened(config, nested->members, expanded, flattened);
      }
      continue;
    }
    if (std::find(flattened->begin(), flattened->end(), member) == flattened->end()) {
      flattened->push_back(member);
    }
  }
}

// Reads values out of a parsed YAML tree into Config, one section at a time. Each method
// returns the first problem it finds, as a Status naming the key path.
class ConfigReader {
 public:
  explicit ConfigReader(const std::filesystem::path& base_dir) : base_dir_(base_dir) {}

  Expected<Config> read(const YAML::Node& root) {
    Config config;
    if (!root.IsNull() && !root.IsMap()) {
      return invalidArgument("the configuration must be a YAML mapping of keys to values");
    }
    OUTPOST_RETURN_IF_ERROR(checkKeys(root, "",
                                      {"server", "upstream", "storage", "log", "remotes", "locals",
                                       "virtuals", "default_repository"}));
    OUTPOST_RETURN_IF_ERROR(readServer(root["server"], &config.server));
    OUTPOST_RETURN_IF_ERROR(readUpstream(root["upstream"], &config.upstream));
    OUTPOST_RETURN_IF_ERROR(readStorage(root["storage"], &config.storage));
    OUTPOST_RETURN_IF_ERROR(readLog(root["log"], &config.log));
    OUTPOST_RETURN_IF_ERROR(readRemotes(root["remotes"], &config.remotes));
    OUTPOST_RETURN_IF_ERROR(readLocals(root["locals"], config.remotes, &config.locals));
    if (config.remotes.empty() && config.locals.empty()) {
      return invalidAt("remotes", "at least one remote or local repository is required");
    }
    OUTPOST_RETURN_IF_ERROR(readVirtuals(root["virtuals"], &config));
    OUTPOST_RETURN_IF_ERROR(readString(root, "", "default_repository", &config.default_repository));
    OUTPOST_RETURN_IF_ERROR(resolveDefaultRepository(&config));
    return config;
  }

 private:
  // Checks that `node` is absent, null or a mapping whose keys are all in `allowed`, each once.
  static Status checkKeys(const YAML::Node& node, std::string_view path,
                          std::initializer_list<std::string_view> allowed) {
    if (!node.IsDefined() || node.IsNull()) {
      return Status::ok();
    }
    if (!node.IsMap()) {
      return invalidAt(path, "must be a mapping of keys to values");
    }
    std::set<std::string, std::less<>> seen;
    for (const auto& entry : node) {
      if (!entry.first.IsScalar()) {
        return invalidAt(path, "has a key that is not a plain string");
      }
      const std::string& key = entry.first.Scalar();
      const std::string key_path = childPath(path, key);
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return invalidAt(key_path, "unknown key");
      }
      if (!seen.insert(key).second) {
        return invalidAt(key_path, "appears more than once");
      }
    }
    return Status::ok();
  }

  // Returns the scalar text of `map[key]` in `*text`, or leaves it unchanged when the key is
  // absent or null. Sets `*is_set` when a value was present.
  static Status readScalar(const YAML::Node& map, std::string_view path, const char* key,
                           std::string* text, bool* is_set = nullptr) {
    if (!map.IsDefined() || !map.IsMap()) {
      return Status::ok();
    }
    const YAML::Node value = map[key];
    if (!value.IsDefined() || value.IsNull()) {
      return Status::ok();
    }
    if (!value.IsScalar()) {
      return invalidAt(childPath(path, key), "must be a single value, not a list or mapping");
    }
    *text = value.Scalar();
    if (is_set != nullptr) {
      *is_set = true;
    }
    return Status::ok();
  }

  static Status readString(const YAML::Node& map, std::string_view path, const char* key,
                           std::string* out, bool* is_set = nullptr) {
    return readScalar(map, path, key, out, is_set);
  }

  static Status readBool(const YAML::Node& map, std::string_view path, const char* key,
                         bool* out) {
    std::string text;
    bool is_set = false;
    OUTPOST_RETURN_IF_ERROR(readScalar(map, path, key, &text, &is_set));
    if (!is_set) {
      return Status::ok();
    }
    const std::string lower = toLowerAscii(text);
    if (lower == "true") {
      *out = true;
    } else if (lower == "false") {
      *out = false;
    } else {
      return invalidAt(childPath(path, key),
                       inQuotes(text) + " is not a boolean; write true or false");
    }
    return Status::ok();
  }

  static Status readInteger(const YAML::Node& map, std::string_view path, const char* key,
                            int64_t min, int64_t max, int64_t* out) {
    std::string text;
    bool is_set = false;
    OUTPOST_RETURN_IF_ERROR(readScalar(map, path, key, &text, &is_set));
    if (!is_set) {
      return Status::ok();
    }
    int64_t value = 0;
    if (!parseUnsigned(text, &value) || value < min || value > max) {
      return invalidAt(childPath(path, key), inQuotes(text) + " is not a whole number from " +
                                                 std::to_string(min) + " to " +
                                                 std::to_string(max));
    }
    *out = value;
    return Status::ok();
  }

  template <typename T>
  static Status readIntegerAs(const YAML::Node& map, std::string_view path, const char* key,
                              int64_t min, int64_t max, T* out) {
    int64_t value = static_cast<int64_t>(*out);
    OUTPOST_RETURN_IF_ERROR(readInteger(map, path, key, min, max, &value));
    *out = static_cast<T>(value);
    return Status::ok();
  }

  // Reads a duration with a unit. `min_ms` is 0 for keys where zero has a meaning, else 1.
  static Status readDuration(const YAML::Node& map, std::string_view path, const char* key,
                             int64_t min_ms, int64_t* out_ms) {
    std::string text;
    bool is_set = false;
    OUTPOST_RETURN_IF_ERROR(readScalar(map, path, key, &text, &is_set));
    if (!is_set) {
      return Status::ok();
    }
    Expected<int64_t> duration_ms = parseDurationMs(text);
    if (!duration_ms) {
      return invalidAt(childPath(path, key), duration_ms.status().message());
    }
    if (*duration_ms < min_ms) {
      return invalidAt(childPath(path, key), inQuotes(text) + " must be more than zero");
    }
    *out_ms = *duration_ms;
    return Status::ok();
  }

  Status readPath(const YAML::Node& map, std::string_view path, const char* key,
                  std::string* out) const {
    OUTPOST_RETURN_IF_ERROR(readString(map, path, key, out));
    if (!out->empty()) {
      *out = (base_dir_ / *out).lexically_normal().string();
    }
    return Status::ok();
  }

  static Status readServer(const YAML::Node& node, ServerConfig* server) {
    constexpr std::string_view kPath = "server";
    OUTPOST_RETURN_IF_ERROR(checkKeys(node, kPath,
                                      {"listen_host", "port", "loops", "max_header_bytes",
                                       "header_timeout", "idle_timeout", "send_timeout",
                                       "max_connections", "shutdown_grace"}));

    OUTPOST_RETURN_IF_ERROR(readString(node, kPath, "listen_host", &server->listen_host));
    in_addr ipv4;
    in6_addr ipv6;
    if (inet_pton(AF_INET, server->listen_host.c_str(), &ipv4) != 1 &&
        inet_pton(AF_INET6, server->listen_host.c_str(), &ipv6) != 1) {
      return invalidAt("server.listen_host",
                       inQuotes(server->listen_host) + " is not an IPv4 or IPv6 address");
    }

    std::string port_text;
    bool has_port = false;
    OUTPOST_RETURN_IF_ERROR(readScalar(node, kPath, "port", &port_text, &has_port));
    if (has_port) {
      int64_t port = 0;
      if (!parseUnsigned(port_text, &port) || port > 65535) {
        return invalidAt("server.port",
                         inQuotes(port_text) + " is not a port number (0 to 65535)");
      }
      server->port = static_cast<uint16_t>(port);
    }

    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, kPath, "loops", 0, 1024, &server->loops));
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, kPath, "max_header_bytes", 1024,
                                          16 * 1024 * 1024, &server->max_header_bytes));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, kPath, "header_timeout", 1, &server->header_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(readDuration(node, kPath, "idle_timeout", 1, &server->idle_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(readDuration(node, kPath, "send_timeout", 1, &server->send_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, kPath, "max_connections", 1,
                                          std::numeric_limits<int>::max(),
                                          &server->max_connections));
    return readDuration(node, kPath, "shutdown_grace", 0, &server->shutdown_grace_ms);
  }

  static Status readUpstream(const YAML::Node& node, UpstreamConfig* upstream) {
    constexpr std::string_view kPath = "upstream";
    OUTPOST_RETURN_IF_ERROR(checkKeys(node, kPath,
                                      {"connect_timeout", "response_timeout",
                                       "body_stall_timeout", "revalidate_timeout", "down_backoff",
                                       "max_retries", "max_connections_per_host"}));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, kPath, "connect_timeout", 1, &upstream->connect_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, kPath, "response_timeout", 1, &upstream->response_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, kPath, "body_stall_timeout", 1, &upstream->body_stall_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, kPath, "revalidate_timeout", 1, &upstream->revalidate_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, kPath, "down_backoff", 0, &upstream->down_backoff_ms));
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, kPath, "max_retries", 0,
                                          std::numeric_limits<int>::max(),
                                          &upstream->max_retries));
    return readIntegerAs(node, kPath, "max_connections_per_host", 1,
                         std::numeric_limits<int>::max(), &upstream->max_connections_per_host);
  }

  Status readStorage(const YAML::Node& node, StorageConfig* storage) const {
    OUTPOST_RETURN_IF_ERROR(checkKeys(
        node, "storage",
        {"data_dir", "scrub_bytes_per_second", "scrub_interval", "disk_budget_bytes",
         "high_watermark_percent", "low_watermark_percent", "lower_tiers", "promote_after_hits",
         "space_wait_timeout", "upload_idle_timeout", "gc_interval", "gc_grace_period",
         "memory_cache_bytes", "memory_cache_max_item_bytes"}));
    bool is_set = false;
    std::string data_dir;
    OUTPOST_RETURN_IF_ERROR(readString(node, "storage", "data_dir", &data_dir, &is_set));
    if (is_set && data_dir.empty()) {
      return invalidAt("storage.data_dir", "must not be empty");
    }
    if (is_set) {
      storage->data_dir = data_dir;
    }
    storage->data_dir = (base_dir_ / storage->data_dir).lexically_normal().string();

    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, "storage", "scrub_bytes_per_second", 0,
                                          static_cast<int64_t>(storage::kMaxScrubBytesPerSecond),
                                          &storage->scrub_bytes_per_second));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, "storage", "scrub_interval", 0, &storage->scrub_interval_ms));

    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, "storage", "disk_budget_bytes", 0,
                                          std::numeric_limits<int64_t>::max(),
                                          &storage->disk_budget_bytes));
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, "storage", "high_watermark_percent", 2, 100,
                                          &storage->high_watermark_percent));
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, "storage", "low_watermark_percent", 1, 99,
                                          &storage->low_watermark_percent));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, "storage", "upload_idle_timeout", 1, &storage->upload_idle_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, "storage", "gc_interval", 0, &storage->gc_interval_ms));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, "storage", "gc_grace_period", 0, &storage->gc_grace_period_ms));
    OUTPOST_RETURN_IF_ERROR(checkWatermarks("storage", storage->high_watermark_percent,
                                            storage->low_watermark_percent));
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, "storage", "promote_after_hits", 0, 1'000'000,
                                          &storage->promote_after_hits));
    OUTPOST_RETURN_IF_ERROR(
        readDuration(node, "storage", "space_wait_timeout", 1, &storage->space_wait_timeout_ms));
    OUTPOST_RETURN_IF_ERROR(readMemoryCache(node, storage));
    return readLowerTiers(node.IsDefined() && node.IsMap() ? node["lower_tiers"] : YAML::Node(),
                          storage);
  }

  static Status checkWatermarks(std::string_view path, uint32_t high_percent,
                                uint32_t low_percent) {
    if (low_percent >= high_percent) {
      return invalidAt(childPath(path, "low_watermark_percent"),
                       std::to_string(low_percent) + " must be below " +
                           childPath(path, "high_watermark_percent") + " (" +
                           std::to_string(high_percent) + ")");
    }
    return Status::ok();
  }

  Status readLowerTiers(const YAML::Node& node, StorageConfig* storage) const {
    if (!node.IsDefined() || node.IsNull()) {
      return Status::ok();
    }
    if (!node.IsSequence()) {
      return invalidAt("storage.lower_tiers", "must be a list of disk tiers");
    }
    if (node.size() > 0 && storage->disk_budget_bytes == 0) {
      return invalidAt("storage.disk_budget_bytes",
                       "must be set when storage.lower_tiers is: blobs move down a tier when "
                       "the data folder is over its budget");
    }
    // The data folder is tier 0; BlobStore::kMaxTiers bounds the total.
    constexpr size_t kMaxLowerTiers = 7;
    if (node.size() > kMaxLowerTiers) {
      return invalidAt("storage.lower_tiers",
                       "has " + std::to_string(node.size()) + " tiers; at most " +
                           std::to_string(kMaxLowerTiers) + " are supported");
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string path = indexPath("storage.lower_tiers", i);
      const YAML::Node entry = node[i];
      if (!entry.IsMap()) {
        return invalidAt(path, "must be a mapping of keys to values");
      }
      OUTPOST_RETURN_IF_ERROR(
          checkKeys(entry, path,
                    {"path", "budget_bytes", "high_watermark_percent", "low_watermark_percent"}));
      DiskTierConfig tier;
      bool is_set = false;
      OUTPOST_RETURN_IF_ERROR(readString(entry, path, "path", &tier.path, &is_set));
      if (!is_set || tier.path.empty()) {
        return invalidAt(childPath(path, "path"), "is required: the folder of this tier");
      }
      std::filesystem::path resolved = (base_dir_ / tier.path).lexically_normal();
      if (!resolved.has_filename() && resolved.has_parent_path()) {
        resolved = resolved.parent_path();  // "/srv/slow/" names the folder "/srv/slow"
      }
      tier.path = resolved.string();
      if (!entry["budget_bytes"].IsDefined()) {
        return invalidAt(childPath(path, "budget_bytes"),
                         "is required: the byte budget of "
                         "this tier");
      }
      OUTPOST_RETURN_IF_ERROR(readIntegerAs(
          entry, path, "budget_bytes", 1, std::numeric_limits<int64_t>::max(), &tier.budget_bytes));
      OUTPOST_RETURN_IF_ERROR(readIntegerAs(entry, path, "high_watermark_percent", 2, 100,
                                            &tier.high_watermark_percent));
      OUTPOST_RETURN_IF_ERROR(
          readIntegerAs(entry, path, "low_watermark_percent", 1, 99, &tier.low_watermark_percent));
      OUTPOST_RETURN_IF_ERROR(
          checkWatermarks(path, tier.high_watermark_percent, tier.low_watermark_percent));
      std::vector<std::pair<std::string, std::filesystem::path>> taken{
          {"the data folder", std::filesystem::path(storage->data_dir)}};
      for (size_t other = 0; other < storage->lower_tiers.size(); ++other) {
        taken.emplace_back(indexPath("storage.lower_tiers", other),
                           std::filesystem::path(storage->lower_tiers[other].path));
      }
      for (const auto& [name, folder] : taken) {
        // Each tier removes leftovers in its tmp/ and owns everything under blobs/, so no tier
        // may hold another.
        if (isSameOrInside(resolved, folder) || isSameOrInside(folder, resolved)) {
          return invalidAt(childPath(path, "path"),
                           inQuotes(tier.path) + " overlaps " + name + " (" +
                               inQuotes(folder.string()) +
                               "); give each tier a folder of its own, outside the others");
        }
      }
      storage->lower_tiers.push_back(std::move(tier));
    }
    return Status::ok();
  }

  static Status readMemoryCache(const YAML::Node& node, StorageConfig* storage) {
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, "storage", "memory_cache_bytes", 0,
                                          std::numeric_limits<int64_t>::max(),
                                          &storage->memory_cache_bytes));
    OUTPOST_RETURN_IF_ERROR(readIntegerAs(node, "storage", "memory_cache_max_item_bytes", 1,
                                          std::numeric_limits<int64_t>::max(),
                                          &storage->memory_cache_max_item_bytes));
    if (storage->memory_cache_bytes > 0 &&
        storage->memory_cache_max_item_bytes > storage->memory_cache_bytes) {
      return invalidAt("storage.memory_cache_max_item_bytes",
                       std::to_string(storage->memory_cache_max_item_bytes) +
                           " is above storage.memory_cache_bytes (" +
                           std::to_string(storage->memory_cache_bytes) +
                           "); lower it, or raise the budget");
    }
    return Status::ok();
  }

  static Status readLog(const YAML::Node& node, LogConfig* log) {
    OUTPOST_RETURN_IF_ERROR(checkKeys(node, "log", {"level"}));
    OUTPOST_RETURN_IF_ERROR(readString(node, "log", "level", &log->level));
    constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn", "error"};
    if (std::find(std::begin(kLevels), std::end(kLevels), log->level) == std::end(kLevels)) {
      return invalidAt("log.level", inQuotes(log->level) +
                                        " is not a log level; use trace, debug, info, warn or "
                                        "error");
    }
    return Status::ok();
  }

  Status readRemotes(const YAML::Node& node, std::vector<RemoteConfig>* remotes) const {
    if (!node.IsDefined() || node.IsNull()) {
      return Status::ok();
    }
    if (!node.IsSequence()) {
      return invalidAt("remotes", "must be a list of remotes");
    }

    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string path = indexPath("remotes", i);
      RemoteConfig remote;
      OUTPOST_RETURN_IF_ERROR(readRemote(node[i], path, &remote));
      OUTPOST_RETURN_IF_ERROR(checkUniqueAcrossRemotes(remote, path, *remotes));
      remotes->push_back(std::move(remote));
    }
    return Status::ok();
  }

  static Status readLocals(const YAML::Node& node, const std::vector<RemoteConfig>& remotes,
                           std::vector<LocalConfig>* locals) {
    if (!node.IsDefined() || node.IsNull()) {
      return Status::ok();
    }
    if (!node.IsSequence()) {
      return invalidAt("locals", "must be a list of local repositories");
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string path = indexPath("locals", i);
      const YAML::Node entry = node[i];
      if (!entry.IsMap()) {
        return invalidAt(path, "must be a mapping of keys to values");
      }
      OUTPOST_RETURN_IF_ERROR(
          checkKeys(entry, path, {"name", "allow_delete", "immutable_tags", "max_manifest_bytes"}));
      LocalConfig local;
      OUTPOST_RETURN_IF_ERROR(readRepositoryKey(entry, path, &local.name));
      OUTPOST_RETURN_IF_ERROR(readAllowedDeletes(entry, path, &local));
      OUTPOST_RETURN_IF_ERROR(readBool(entry, path, "immutable_tags", &local.immutable_tags));
      OUTPOST_RETURN_IF_ERROR(readIntegerAs(entry, path, "max_manifest_bytes", 1024,
                                            kMaxManifestBytesLimit, &local.max_manifest_bytes));
      const std::string name_path = childPath(path, "name");
      for (const RemoteConfig& remote : remotes) {
        if (remote.name == local.name) {
          return invalidAt(name_path, inQuotes(local.name) + " is already the name of a remote");
        }
      }
      for (const LocalConfig& other : *locals) {
        if (other.name == local.name) {
          return invalidAt(name_path, inQuotes(local.name) +
                                          " is already the name of another local "
                                          "repository");
        }
      }
      locals->push_back(std::move(local));
    }
    return Status::ok();
  }

  static Status readVirtuals(const YAML::Node& node, Config* config) {
    if (!node.IsDefined() || node.IsNull()) {
      return Status::ok();
    }
    if (!node.IsSequence()) {
      return invalidAt("virtuals", "must be a list of virtual repositories");
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string path = indexPath("virtuals", i);
      const YAML::Node entry = node[i];
      if (!entry.IsMap()) {
        return invalidAt(path, "must be a mapping of keys to values");
      }
      OUTPOST_RETURN_IF_ERROR(checkKeys(entry, path, {"name", "members", "deployment"}));
      VirtualConfig virtual_repository;
      OUTPOST_RETURN_IF_ERROR(readRepositoryKey(entry, path, &virtual_repository.name));
      OUTPOST_RETURN_IF_ERROR(
          checkKeyIsNew(virtual_repository.name, childPath(path, "name"), *config));
      OUTPOST_RETURN_IF_ERROR(
          readMembers(entry["members"], childPath(path, "members"), &virtual_repository.members));
      OUTPOST_RETURN_IF_ERROR(
          readString(entry, path, "deployment", &virtual_repository.deployment));
      config->virtuals.push_back(std::move(virtual_repository));
    }

    // Members may name virtual repositories listed later, so they are checked once all are read.
    for (std::size_t i = 0; i < config->virtuals.size(); ++i) {
      OUTPOST_RETURN_IF_ERROR(checkMembersExist(*config, i));
    }
    for (std::size_t i = 0; i < config->virtuals.size(); ++i) {
      OUTPOST_RETURN_IF_ERROR(checkNoCycle(*config, i));
    }
    for (std::size_t i = 0; i < config->virtuals.size(); ++i) {
      OUTPOST_RETURN_IF_ERROR(checkDeployment(*config, i));
    }
    return Status::ok();
  }

  static Status checkKeyIsNew(const std::string& name, const std::string& name_path,
                              const Config& config) {
    const auto has_name = [&name](const auto& repository) { return repository.name == name; };
    if (std::any_of(config.remotes.begin(), config.remotes.end(), has_name)) {
      return invalidAt(name_path, inQuotes(name) + " is already the name of a remote");
    }
    if (std::any_of(config.locals.begin(), config.locals.end(), has_name)) {
      return invalidAt(name_path, inQuotes(name) + " is already the name of a local repository");
    }
    if (std::any_of(config.virtuals.begin(), config.virtuals.end(), has_name)) {
      return invalidAt(name_path,
                       inQuotes(name) + " is already the name of another virtual repository");
    }
    return Status::ok();
  }

  static Status readMembers(const YAML::Node& node, const std::string& path,
                            std::vector<std::string>* members) {
    if (!node.IsDefined() || node.IsNull()) {
      return invalidAt(path,
                       "is required; list the keys of the repositories to read from, in order");
    }
    if (!node.IsSequence()) {
      return invalidAt(path, "must be a list of repository keys");
    }
    if (node.size() == 0) {
      return invalidAt(path, "must list at least one repository");
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string member_path = indexPath(path, i);
      if (!node[i].IsScalar()) {
        return invalidAt(member_path, "must be a repository key");
      }
      const std::string& member = node[i].Scalar();
      if (std::find(members->begin(), members->end(), member) != members->end()) {
        return invalidAt(member_path, inQuotes(member) + " is listed twice");
      }
      members->push_back(member);
    }
    return Status::ok();
  }

  static Status checkMembersExist(const Config& config, std::size_t index) {
    const VirtualConfig& virtual_repository = config.virtuals[index];
    const std::string path = childPath(indexPath("virtuals", index), "members");
    for (std::size_t i = 0; i < virtual_repository.members.size(); ++i) {
      const std::string& member = virtual_repository.members[i];
      if (findRepositoryKind(config, member) == KeyKind::kNone) {
        return invalidAt(indexPath(path, i), inQuotes(member) +
                                                 " names no repository; the repositories are " +
                                                 listRepositoryNames(config));
      }
    }
    return Status::ok();
  }

  // Rejects a virtual repository that reaches itself through its virtual members.
  static Status checkNoCycle(const Config& config, std::size_t index) {
    const std::string& start = config.virtuals[index].name;
    std::vector<std::string> cycle = {start};
    std::set<std::string, std::less<>> visited;
    if (!findPathBack(config, start, start, &visited, &cycle)) {
      return Status::ok();
    }
    std::string listed;
    for (const std::string& key : cycle) {
      listed += listed.empty() ? "" : " -> ";
      listed += inQuotes(key);
    }
    return invalidAt(childPath(indexPath("virtuals", index), "members"),
                     listed +
                         " is a cycle; a virtual repository must not include itself, directly or "
                         "through another virtual repository");
  }

  // Depth-first search from virtual `current` for a virtual member named `target`. On success
  // `*path` ends with the keys that lead there, `target` last.
  static bool findPathBack(const Config& config, std::string_view current, std::string_view target,
                           std::set<std::string, std::less<>>* visited,
                           std::vector<std::string>* path) {
    const VirtualConfig* virtual_repository = findVirtual(config, current);
    for (const std::string& member : virtual_repository->members) {
      if (findVirtual(config, member) == nullptr) {
        continue;
      }
      path->push_back(member);
      if (member == target) {
        return true;
      }
      if (visited->insert(member).second && findPathBack(config, member, target, visited, path)) {
        return true;
      }
      path->pop_back();
    }
    return false;
  }

  static Status checkDeployment(const Config& config, std::size_t index) {
    const VirtualConfig& virtual_repository = config.virtuals[index];
    const std::string& deployment = virtual_repository.deployment;
    if (deployment.empty()) {
      return Status::ok();
    }
    const std::string path = childPath(indexPath("virtuals", index), "deployment");
    switch (findRepositoryKind(config, deployment)) {
      case KeyKind::kNone:
        return invalidAt(path, inQuotes(deployment) +
                                   " names no repository; the local repositories are " +
                                   listLocalNames(config));
      case KeyKind::kRemote:
      case KeyKind::kVirtual:
        return invalidAt(path, inQuotes(deployment) +
                                   " is not a local repository; only a local repository takes "
                                   "pushes");
      case KeyKind::kLocal:
        break;
    }
    const std::vector<std::string> members = flattenMembers(config, virtual_repository);
    if (std::find(members.begin(), members.end(), deployment) == members.end()) {
      return invalidAt(path, inQuotes(deployment) + " is not a member of " +
                                 inQuotes(virtual_repository.name) +
                                 "; add it to members, so that pushed images can be pulled back "
                                 "through the virtual repository");
    }
    return Status::ok();
  }

  // Reads `allow_delete`: true or false for every kind, or a list of the allowed kinds.
  static Status readAllowedDeletes(const YAML::Node& entry, const std::string& path,
                                   LocalConfig* local) {
    const YAML::Node node = entry["allow_delete"];
    if (!node.IsDefined() || node.IsNull() || node.IsScalar()) {
      bool allowed = true;
      OUTPOST_RETURN_IF_ERROR(readBool(entry, path, "allow_delete", &allowed));
      local->allow_manifest_delete = allowed;
      local->allow_tag_delete = allowed;
      local->allow_blob_delete = allowed;
      return Status::ok();
    }
    const std::string list_path = childPath(path, "allow_delete");
    if (!node.IsSequence()) {
      return invalidAt(list_path, "must be true, false or a list of manifests, tags and blobs");
    }
    local->allow_manifest_delete = false;
    local->allow_tag_delete = false;
    local->allow_blob_delete = false;
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string kind = node[i].IsScalar() ? node[i].Scalar() : std::string();
      if (kind == "manifests") {
        local->allow_manifest_delete = true;
      } else if (kind == "tags") {
        local->allow_tag_delete = true;
      } else if (kind == "blobs") {
        local->allow_blob_delete = true;
      } else {
        return invalidAt(indexPath(list_path, i),
                         inQuotes(kind) + " is not a kind of delete; use manifests, tags or blobs");
      }
    }
    return Status::ok();
  }

  Status readRemote(const YAML::Node& node, const std::string& path, RemoteConfig* remote) const {
    if (!node.IsMap()) {
      return invalidAt(path, "must be a mapping of keys to values");
    }
    OUTPOST_RETURN_IF_ERROR(checkKeys(node, path,
                                      {"name", "url", "hosts", "username", "password",
                                       "password_env", "ca_file", "insecure_skip_verify",
                                       "tag_ttl", "library_prefix"}));

    OUTPOST_RETURN_IF_ERROR(readRepositoryKey(node, path, &remote->name));
    OUTPOST_RETURN_IF_ERROR(readRemoteUrl(node, path, &remote->url));
    OUTPOST_RETURN_IF_ERROR(readHosts(node["hosts"], childPath(path, "hosts"), &remote->hosts));
    OUTPOST_RETURN_IF_ERROR(readCredentials(node, path, remote));
    OUTPOST_RETURN_IF_ERROR(readPath(node, path, "ca_file", &remote->ca_file));
    OUTPOST_RETURN_IF_ERROR(
        readBool(node, path, "insecure_skip_verify", &remote->insecure_skip_verify));
    OUTPOST_RETURN_IF_ERROR(readDuration(node, path, "tag_ttl", 0, &remote->tag_ttl_ms));
    OUTPOST_RETURN_IF_ERROR(readBool(node, path, "library_prefix", &remote->library_prefix));

    const bool is_plain_http = remote->url.starts_with("http://");
    if (is_plain_http && !remote->ca_file.empty()) {
      return invalidAt(childPath(path, "ca_file"), "is set, but the url uses plain http://");
    }
    if (is_plain_http && remote->insecure_skip_verify) {
      return invalidAt(childPath(path, "insecure_skip_verify"),
                       "is true, but the url uses plain http://");
    }
    return Status::ok();
  }

  // The name is the first path component of requests for this repository, so besides the key
  // pattern it must also be a valid repository name component ("a-" and "a..b" are not).
  static Status readRepositoryKey(const YAML::Node& node, const std::string& path,
                                  std::string* name) {
    OUTPOST_RETURN_IF_ERROR(readString(node, path, "name", name));
    const std::string name_path = childPath(path, "name");
    if (name->empty()) {
      return invalidAt(name_path, "is required");
    }
    const bool matches_pattern =
        isLowerAlnum(name->front()) && std::all_of(name->begin(), name->end(), [](char c) {
          return isLowerAlnum(c) || c == '_' || c == '-';
        });
    if (!matches_pattern || !isValidRepositoryName(*name)) {
      return invalidAt(name_path, inQuotes(*name) +
                                      " is not a valid repository name; use lower-case letters, "
                                      "digits, and '_' or '-' between them");
    }
    return Status::ok();
  }

  static Status readRemoteUrl(const YAML::Node& node, const std::string& path, std::string* url) {
    OUTPOST_RETURN_IF_ERROR(readString(node, path, "url", url));
    const std::string url_path = childPath(path, "url");
    if (url->empty()) {
      return invalidAt(url_path, "is required");
    }

    std::string_view rest;
    const std::string_view text = *url;
    if (text.starts_with("https://")) {
      rest = text.substr(8);
    } else if (text.starts_with("http://")) {
      rest = text.substr(7);
    } else {
      return invalidAt(url_path, inQuotes(text) + " must start with http:// or https://");
    }
    if (rest.find_first_of("?#") != std::string_view::npos) {
      return invalidAt(url_path, inQuotes(text) + " must not have a query or fragment");
    }
    const std::string_view authority = rest.substr(0, rest.find('/'));
    const std::string problem = findAuthorityProblem(authority);
    if (!problem.empty()) {
      return invalidAt(url_path, inQuotes(text) + " " + problem);
    }

    // Stored without a trailing '/', so that appending "/v2/…" gives a single slash.
    while (url->back() == '/') {
      url->pop_back();
    }
    return Status::ok();
  }

  static Status readHosts(const YAML::Node& node, const std::string& path,
                          std::vector<std::string>* hosts) {
    if (!node.IsDefined() || node.IsNull()) {
      return Status::ok();
    }
    if (!node.IsSequence()) {
      return invalidAt(path, "must be a list of host names");
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string host_path = indexPath(path, i);
      if (!node[i].IsScalar()) {
        return invalidAt(host_path, "must be a host name");
      }
      const std::string host = toLowerAscii(node[i].Scalar());
      const std::string problem = findAuthorityProblem(host);
      if (!problem.empty()) {
        return invalidAt(host_path, inQuotes(host) + " " + problem);
      }
      if (std::find(hosts->begin(), hosts->end(), host) != hosts->end()) {
        return invalidAt(host_path, inQuotes(host) + " is listed twice");
      }
      hosts->push_back(host);
    }
    return Status::ok();
  }

  static Status readCredentials(const YAML::Node& node, const std::string& path,
                                RemoteConfig* remote) {
    OUTPOST_RETURN_IF_ERROR(readString(node, path, "username", &remote->username));
    bool has_password = false;
    OUTPOST_RETURN_IF_ERROR(readString(node, path, "password", &remote->password, &has_password));
    std::string password_env;
    bool has_password_env = false;
    OUTPOST_RETURN_IF_ERROR(
        readString(node, path, "password_env", &password_env, &has_password_env));

    if (remote->username.find(':') != std::string::npos) {
      return invalidAt(childPath(path, "username"),
                       "must not contain ':', which Basic authentication cannot carry");
    }
    if (has_password && has_password_env) {
      return invalidAt(path, "set password or password_env, not both");
    }
    if (has_password_env) {
      OUTPOST_RETURN_IF_ERROR(readPasswordFromEnvironment(password_env, path, &remote->password));
      has_password = true;
    }
    if (has_password && remote->username.empty()) {
      return invalidAt(path, "a password is set, but username is not");
    }
    if (!has_password && !remote->username.empty()) {
      return invalidAt(path, "username is set, but neither password nor password_env is");
    }
    return Status::ok();
  }

  static Status readPasswordFromEnvironment(const std::string& variable, const std::string& path,
                                            std::string* password) {
    const std::string variable_path = childPath(path, "password_env");
    const bool is_valid_name =
        !variable.empty() && !isDigit(variable.front()) &&
        std::all_of(variable.begin(), variable.end(), [](char c) {
          return isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '_';
        });
    if (!is_valid_name) {
      return invalidAt(variable_path, inQuotes(variable) + " is not an environment variable name");
    }
    // Configuration loads once at start, before any thread could call setenv.
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) {
      return invalidAt(variable_path, "environment variable " + variable + " is not set");
    }
    *password = value;
    return Status::ok();
  }

  static Status checkUniqueAcrossRemotes(const RemoteConfig& remote, const std::string& path,
                                         const std::vector<RemoteConfig>& earlier) {
    for (const RemoteConfig& other : earlier) {
      if (other.name == remote.name) {
        return invalidAt(childPath(path, "name"),
                         inQuotes(remote.name) + " is already the name of another remote");
      }
      for (std::size_t i = 0; i < remote.hosts.size(); ++i) {
        const std::string& host = remote.hosts[i];
        if (std::find(other.hosts.begin(), other.hosts.end(), host) != other.hosts.end()) {
          return invalidAt(indexPath(childPath(path, "hosts"), i),
                           inQuotes(host) + " is already a host of remote " + inQuotes(other.name));
        }
      }
    }
    return Status::ok();
  }

  static Status resolveDefaultRepository(Config* config) {
    if (config->default_repository.empty()) {
      config->default_repository =
          config->remotes.empty() ? config->locals.front().name : config->remotes.front().name;
      return Status::ok();
    }
    if (findRepositoryKind(*config, config->default_repository) != KeyKind::kNone) {
      return Status::ok();
    }
    return invalidAt("default_repository", inQuotes(config->default_repository) +
                                               " names no repository; the repositories are " +
                                               listRepositoryNames(*config));
  }

  std::filesystem::path base_dir_;
};

Expected<std::string> readWholeFile(const std::filesystem::path& path) {
  UniqueFd fd(retryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd) {
    return errnoStatus("cannot open configuration file " + path.string(), errno);
  }
  std::string content;
  char buffer[16 * 1024];
  while (true) {
    const ssize_t count = retryOnEintr([&] { return ::read(fd.get(), buffer, sizeof(buffer)); });
    if (count < 0) {
      return errnoStatus("cannot read configuration file " + path.string(), errno);
    }
    if (count == 0) {
      return content;
    }
    content.append(buffer, static_cast<std::size_t>(count));
  }
}

}  // namespace

std::vector<std::string> flattenMembers(const Config& config,
                                        const VirtualConfig& virtual_repository) {
  std::set<std::string, std::less<>> expanded = {virtual_repository.name};
  std::vector<std::string> flattened;
  appendFlattened(config, virtual_repository.members, &expanded, &flattened);
  return flattened;
}

Expected<int64_t> parseDurationMs(std::string_view text) {
  const std::size_t unit_start = text.find_first_not_of("0123456789");
  if (unit_start == 0 || text.empty()) {
    return invalidArgument(inQuotes(text) +
                           " is not a duration; write a whole number and a unit: 500ms, 30s, "
                           "5m or 1h");
  }
  if (unit_start == std::string_view::npos) {
    return invalidArgument(inQuotes(text) + " has no unit; write it as " + std::string(text) +
                           "ms, " + std::string(text) + "s, " + std::string(text) + "m or " +
                           std::string(text) + "h");
  }

  const std::string_view unit = text.substr(unit_start);
  if (unit.front() == '.') {
    return invalidArgument(inQuotes(text) +
                           " has a fraction; write it in a smaller unit, such as 1500ms for 1.5s");
  }
  int64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 60 * 60 * 1000;
  } else {
    return invalidArgument(inQuotes(text) + " has an unknown unit; use ms, s, m or h");
  }

  int64_t count = 0;
  if (!parseUnsigned(text.substr(0, unit_start), &count) ||
      count > std::numeric_limits<int64_t>::max() / unit_ms) {
    return invalidArgument(inQuotes(text) + " is too long a duration");
  }
  return count * unit_ms;
}

Expected<Config> parseConfig(std::string_view yaml_text, const std::filesystem::path& base_dir) {
  try {
    const YAML::Node root = YAML::Load(std::string(yaml_text));
    return ConfigReader(base_dir).read(root);
  } catch (const YAML::Exception& error) {
    return invalidArgument("invalid YAML at line " + std::to_string(error.mark.line + 1) +
                           ", column " + std::to_string(error.mark.column + 1) + ": " +
                           error.msg);
  } catch (const std::exception& error) {
    return internalError(std::string("reading the configuration failed: ") + error.what());
  } catch (...) {
    return internalError("reading the configuration failed with an unknown exception");
  }
}

Expected<Config> loadConfig(const std::filesystem::path& path) {
  OUTPOST_ASSIGN_OR_RETURN(std::string text, readWholeFile(path));

  std::error_code error;
  const std::filesystem::path absolute_path = std::filesystem::absolute(path, error);
  if (error) {
    return ioError("cannot resolve the folder of configuration file " + path.string() + ": " +
                   error.message());
  }

  Expected<Config> config = parseConfig(text, absolute_path.parent_path());
  if (!config) {
    Status status = config.status();
    return Status(status.code(), path.string() + ": " + std::string(status.message()));
  }
  return config;
}

}  // namespace outpost::proxy
