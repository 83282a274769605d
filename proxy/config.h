// The configuration file (YAML, read with yaml-cpp) and its validation.
//
// conf/outpost.yaml documents every key with its default and unit. Conventions:
// - Durations are strings with a unit: "500ms", "30s", "5m", "1h". A bare number is rejected,
//   so that no value is read in a unit its author did not mean.
// - Sizes are plain integers, in the unit the key name carries (max_header_bytes).
// - Relative paths (storage.data_dir, remotes[].ca_file) resolve against the folder of the
//   configuration file, not the working directory.
// - Unknown and repeated keys are errors, so that a misspelt key does not silently keep its
//   default.
// Every error message starts with the key path, for example
// `server.port: "70000" is not a port number (0 to 65535)`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace outpost::proxy {

// One upstream registry that a remote repository caches.
struct RemoteConfig {
  // Repository key: the first path component that selects this remote (/v2/<name>/…).
  // NOTE: A key equal to the first component of an upstream repository name, such as "library",
  // captures requests meant for that repository through the default remote.
  std::string name;
  // Base URL of the upstream, "http://" or "https://" and a host, without a trailing '/'.
  std::string url;
  // Registry host names, lower-cased, that select this remote through containerd's ?ns=
  // parameter (with ":port" when the host has one).
  std::vector<std::string> hosts;
  std::string username;
  // From `password`, or read at load time from the environment variable `password_env` names.
  std::string password;
  // CA bundle that verifies the upstream's certificate, absolute. Empty means the system store.
  std::string ca_file;
  bool insecure_skip_verify = false;
  // How long a tag keeps its cached digest before the remote revalidates it upstream.
  int64_t tag_ttl_ms = 5 * 60 * 1000;
  // Whether a one-component name gets the "library/" prefix, as Docker Hub requires.
  bool library_prefix = false;
};

// A repository of images pushed to Outpost itself.
struct LocalConfig {
  // Repository key: the first path component that selects this repository (/v2/<name>/…).
  std::string name;
  // Whether DELETE of manifests (by digest), of tags and of blobs is allowed. The `allow_delete`
  // key sets all three with a boolean, or lists the allowed kinds.
  bool allow_manifest_delete = true;
  bool allow_tag_delete = true;
  bool allow_blob_delete = true;
  // Whether a tag, once pushed, keeps its digest: a push of the same tag with another digest is
  // rejected, and so is its deletion.
  bool immutable_tags = false;
  // Maximum size of a pushed manifest.
  uint64_t max_manifest_bytes = 4 * 1024 * 1024;
};

// One repository key over an ordered list of other repositories. The first member that has
// the reference serves a read, and a push goes to the deployment repository.
struct VirtualConfig {
  // Repository key: the first path component that selects this repository (/v2/<name>/…).
  std::string name;
  // Keys of remote, local and other virtual repositories, in the order they are asked. Never
  // empty, every key names a repository, and no virtual reaches itself through them.
  std::vector<std::string> members;
  // Key of the local repository that takes pushes made through this repository, or empty
  // when it takes none. When set, it is among the members, directly or through a nested
  // virtual repository.
  std::string deployment;
};

struct ServerConfig {
  std::string listen_host = "127.0.0.1";
  // 0 lets the kernel pick a free port.
  uint16_t port = 5000;
  // Number of event loop threads. 0 means one per CPU core.
  int loops = 0;
  // Maximum size of a request's start line and headers together.
  uint64_t max_header_bytes = 64 * 1024;
  // Time allowed to receive a request's headers once its first byte arrived.
  int64_t header_timeout_ms = 30 * 1000;
  // Time an idle keep-alive connection stays open.
  int64_t idle_timeout_ms = 60 * 1000;
  // Time a response may wait for the client to accept more bytes before the connection closes.
  int64_t send_timeout_ms = 60 * 1000;
  // Maximum open client connections over all loops.
  int max_connections = 4096;
  // Time that running requests get to finish after a stop signal.
  int64_t shutdown_grace_ms = 30 * 1000;
};

struct UpstreamConfig {
  // Time allowed for TCP connect and TLS handshake together.
  int64_t connect_timeout_ms = 10 * 1000;
  // Time from a sent request to the upstream's response headers.
  int64_t response_timeout_ms = 60 * 1000;
  // Maximum wait for the next bytes of a response body.
  int64_t body_stall_timeout_ms = 60 * 1000;
  // Time a tag revalidation may take before the cached digest is served stale.
  int64_t revalidate_timeout_ms = 5 * 1000;
  // Time an upstream that failed repeatedly counts as down before it is tried again.
  int64_t down_backoff_ms = 30 * 1000;
  // Retries of an idempotent request after a connection failure or a 5xx response.
  int max_retries = 2;
  int max_connections_per_host = 16;
};

// A disk tier below the data folder: a folder on a slower, larger disk.
struct DiskTierConfig {
  // Absolute after loading, like storage.data_dir.
  std::string path;
  uint64_t budget_bytes = 0;
  uint32_t high_watermark_percent = 90;
  uint32_t low_watermark_percent = 80;
};

struct StorageConfig {
  // Folder of blobs, the index and upload sessions. loadConfig makes it absolute, and
  // parseConfig resolves it against its `base_dir` argument.
  std::string data_dir = "data";
  // Read rate of the background scrub, which re-hashes every stored blob to find damage on
  // disk. 0 turns the scrub off.
  uint64_t scrub_bytes_per_second = uint64_t{8} << 20;
  // Wait between the end of one scrub pass and the start of the next.
  int64_t scrub_interval_ms = int64_t{24} * 60 * 60 * 1000;
  // Bytes of cached blobs the data folder may hold; 0 means no limit. Above
  // high_watermark_percent of it, the least recently used blobs are evicted until the usage
  // is at or under low_watermark_percent.
  uint64_t disk_budget_bytes = 0;
  uint32_t high_watermark_percent = 90;
  uint32_t low_watermark_percent = 80;
  // Tiers below the data folder, in order. Least recently used blobs move down one tier, and
  // leave the cache from the last one. Each needs a budget, and so does the data folder then.
  std::vector<DiskTierConfig> lower_tiers;
  // Hits on a lower tier that move a blob back to the data folder; 0 never moves it back.
  uint32_t promote_after_hits = 2;
  // How long a new download waits for room in a full data folder before it fails with 503.
  int64_t space_wait_timeout_ms = 30 * 1000;
  // Bytes of manifests and small blobs kept in memory, so that a hit is sent without touching
  // the disk. 0 turns the memory tier off.
  uint64_t memory_cache_bytes = uint64_t{256} << 20;
  // Largest manifest or blob, in bytes, that the memory tier keeps. At least 1, and at most
  // memory_cache_bytes when that is above 0. Above about 32 KiB, sendfile(2) from a warm page
  // cache costs less CPU than sending from memory, as bench/MEMORY_TIER.md measured.
  uint64_t memory_cache_max_item_bytes = uint64_t{32} << 10;
  // Time an upload session may go without a request before it is removed with its bytes.
  int64_t upload_idle_timeout_ms = int64_t{24} * 60 * 60 * 1000;
  // Time between scheduled garbage collections of local repository content, from the end of
  // one to the start of the next. 0 runs it only on request (POST /api/v1/gc).
  int64_t gc_interval_ms = 0;
  // Unreferenced local content younger than this stays, so that an upload whose manifest is
  // not pushed yet survives a garbage collection.
  int64_t gc_grace_period_ms = int64_t{60} * 60 * 1000;
};

struct LogConfig {
  // One of trace, debug, info, warn, error.
  std::string level = "info";
};

struct Config {
  ServerConfig server;
  UpstreamConfig upstream;
  StorageConfig storage;
  LogConfig log;
  std::vector<RemoteConfig> remotes;
  std::vector<LocalConfig> locals;
  std::vector<VirtualConfig> virtuals;
  // Name of the repository that serves requests whose path names no repository key, which is
  // what a Docker daemon configured with registry-mirrors sends. Any kind of repository may
  // serve them. Defaults to the first remote, or to the first local repository when there is
  // no remote.
  std::string default_repository;
};

// Reads and validates the configuration file at `path`. Relative paths in it resolve against
// the file's folder made absolute. Fails with kNotFound or kIOError when the file cannot be
// read, and with kInvalidArgument, naming the file and key, when its content is invalid.
Expected<Config> loadConfig(const std::filesystem::path& path);

// Parses and validates YAML text. Relative paths resolve against `base_dir`. Fails with
// kInvalidArgument naming the key. Never throws, because any exception inside, such as a yaml-cpp
// parse error, becomes a Status.
Expected<Config> parseConfig(std::string_view yaml_text, const std::filesystem::path& base_dir);

// Returns the keys of the remote and local repositories that `virtual_repository` reads from,
// in the order they are asked. Each virtual member is replaced by its own members, depth
// first, and a key that comes again is kept at its first position only. `config` must contain
// every member key, as a loaded configuration does. A virtual repository that reaches itself
// is expanded once.
std::vector<std::string> flattenMembers(const Config& config,
                                        const VirtualConfig& virtual_repository);

// Parses a duration with a unit ("500ms", "30s", "5m", "1h") into milliseconds. Fails with
// kInvalidArgument for a missing or unknown unit, a sign, a fraction, or a value above about
// 292 million years (INT64_MAX milliseconds).
Expected<int64_t> parseDurationMs(std::string_view text);

}  // namespace outpost::proxy
