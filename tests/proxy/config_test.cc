#include "proxy/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace outpost::proxy {
namespace {

namespace fs = std::filesystem;

// A minimal valid configuration. Tests append sections to it.
constexpr std::string_view kMinimalRemote =
    "remotes:\n"
    "  - name: hub\n"
    "    url: http://127.0.0.1:5101\n";

Expected<Config> parse(std::string_view yaml) { return parseConfig(yaml, "/etc/outpost"); }

// A temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "outpost-config-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) {
      path_ = pattern;
    }
  }
  ~TempDir() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

  fs::path writeFile(const std::string& name, std::string_view content) const {
    const fs::path file = path_ / name;
    std::ofstream(file) << content;
    return file;
  }

 private:
  fs::path path_;
};

TEST(ConfigTest, DefaultsWithMinimalConfig) {
  const Expected<Config> config = parse(kMinimalRemote);
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  EXPECT_EQ(config->server.listen_host, "127.0.0.1");
  EXPECT_EQ(config->server.port, 5000);
  EXPECT_EQ(config->server.loops, 0);
  EXPECT_EQ(config->server.max_header_bytes, 65536u);
  EXPECT_EQ(config->server.header_timeout_ms, 30000);
  EXPECT_EQ(config->server.idle_timeout_ms, 60000);
  EXPECT_EQ(config->server.send_timeout_ms, 60000);
  EXPECT_EQ(config->server.max_connections, 4096);
  EXPECT_EQ(config->server.shutdown_grace_ms, 30000);

  EXPECT_EQ(config->upstream.connect_timeout_ms, 10000);
  EXPECT_EQ(config->upstream.response_timeout_ms, 60000);
  EXPECT_EQ(config->upstream.body_stall_timeout_ms, 60000);
  EXPECT_EQ(config->upstream.revalidate_timeout_ms, 5000);
  EXPECT_EQ(config->upstream.down_backoff_ms, 30000);
  EXPECT_EQ(config->upstream.max_retries, 2);
  EXPECT_EQ(config->upstream.max_connections_per_host, 16);

  EXPECT_EQ(config->storage.data_dir, "/etc/outpost/data");
  EXPECT_EQ(config->storage.scrub_bytes_per_second, 8388608u);
  EXPECT_EQ(config->storage.scrub_interval_ms, 86400000);
  EXPECT_EQ(config->storage.gc_interval_ms, 0);
  EXPECT_EQ(config->storage.gc_grace_period_ms, 3600000);
  EXPECT_EQ(config->storage.memory_cache_bytes, 268435456u);
  EXPECT_EQ(config->storage.memory_cache_max_item_bytes, 32768u);
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->default_repository, "hub");

  ASSERT_EQ(config->remotes.size(), 1u);
  const RemoteConfig& remote = config->remotes[0];
  EXPECT_EQ(remote.name, "hub");
  EXPECT_EQ(remote.url, "http://127.0.0.1:5101");
  EXPECT_TRUE(remote.hosts.empty());
  EXPECT_EQ(remote.username, "");
  EXPECT_EQ(remote.password, "");
  EXPECT_EQ(remote.ca_file, "");
  EXPECT_FALSE(remote.insecure_skip_verify);
  EXPECT_EQ(remote.tag_ttl_ms, 300000);
  EXPECT_FALSE(remote.library_prefix);
}

TEST(ConfigTest, ReadsEveryKey) {
  const Expected<Config> config = parse(R"(
server:
  listen_host: "::1"
  port: 0
  loops: 3
  max_header_bytes: 2048
  header_timeout: 1s
  idle_timeout: 2m
  send_timeout: 1h
  max_connections: 7
  shutdown_grace: 0s
upstream:
  connect_timeout: 250ms
  response_timeout: 3s
  body_stall_timeout: 4s
  revalidate_timeout: 5s
  down_backoff: 0s
  max_retries: 0
  max_connections_per_host: 1
storage:
  data_dir: /var/lib/outpost
  scrub_bytes_per_second: 1048576
  scrub_interval: 90m
  disk_budget_bytes: 10737418240
  high_watermark_percent: 95
  low_watermark_percent: 60
  lower_tiers:
    - path: /srv/slow/
      budget_bytes: 1000000
      high_watermark_percent: 85
      low_watermark_percent: 70
    - path: colder
      budget_bytes: 2000000
  promote_after_hits: 3
  space_wait_timeout: 5s
  memory_cache_bytes: 67108864
  memory_cache_max_item_bytes: 65536
log:
  level: debug
default_repository: second
remotes:
  - name: first
    url: https://127.0.0.1:5443/
    hosts: [Registry.Example, "127.0.0.1:5101"]
    username: alice
    password: "s3cret: with colon"
    ca_file: certs/ca.pem
    insecure_skip_verify: true
    tag_ttl: 0s
    library_prefix: true
  - name: second
    url: http://[::1]:5102/prefix
)");
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  EXPECT_EQ(config->server.listen_host, "::1");
  EXPECT_EQ(config->server.port, 0);
  EXPECT_EQ(config->server.loops, 3);
  EXPECT_EQ(config->server.max_header_bytes, 2048u);
  EXPECT_EQ(config->server.header_timeout_ms, 1000);
  EXPECT_EQ(config->server.idle_timeout_ms, 120000);
  EXPECT_EQ(config->server.send_timeout_ms, 3600000);
  EXPECT_EQ(config->server.max_connections, 7);
  EXPECT_EQ(config->server.shutdown_grace_ms, 0);

  EXPECT_EQ(config->upstream.connect_timeout_ms, 250);
  EXPECT_EQ(config->upstream.response_timeout_ms, 3000);
  EXPECT_EQ(config->upstream.body_stall_timeout_ms, 4000);
  EXPECT_EQ(config->upstream.revalidate_timeout_ms, 5000);
  EXPECT_EQ(config->upstream.down_backoff_ms, 0);
  EXPECT_EQ(config->upstream.max_retries, 0);
  EXPECT_EQ(config->upstream.max_connections_per_host, 1);

  EXPECT_EQ(config->storage.data_dir, "/var/lib/outpost");
  EXPECT_EQ(config->storage.scrub_bytes_per_second, 1048576u);
  EXPECT_EQ(config->storage.scrub_interval_ms, 5400000);
  EXPECT_EQ(config->storage.disk_budget_bytes, 10737418240u);
  EXPECT_EQ(config->storage.high_watermark_percent, 95u);
  EXPECT_EQ(config->storage.low_watermark_percent, 60u);
  ASSERT_EQ(config->storage.lower_tiers.size(), 2u);
  EXPECT_EQ(config->storage.lower_tiers[0].path, "/srv/slow");
  EXPECT_EQ(config->storage.lower_tiers[0].budget_bytes, 1000000u);
  EXPECT_EQ(config->storage.lower_tiers[0].high_watermark_percent, 85u);
  EXPECT_EQ(config->storage.lower_tiers[0].low_watermark_percent, 70u);
  EXPECT_TRUE(std::filesystem::path(config->storage.lower_tiers[1].path).is_absolute());
  EXPECT_EQ(std::filesystem::path(config->storage.lower_tiers[1].path).filename(), "colder");
  EXPECT_EQ(config->storage.lower_tiers[1].high_watermark_percent, 90u);
  EXPECT_EQ(config->storage.promote_after_hits, 3u);
  EXPECT_EQ(config->storage.space_wait_timeout_ms, 5000);
  EXPECT_EQ(config->storage.memory_cache_bytes, 67108864u);
  EXPECT_EQ(config->storage.memory_cache_max_item_bytes, 65536u);
  EXPECT_EQ(config->log.level, "debug");
  EXPECT_EQ(config->default_repository, "second");

  ASSERT_EQ(config->remotes.size(), 2u);
  const RemoteConfig& first = config->remotes[0];
  EXPECT_EQ(first.name, "first");
  EXPECT_EQ(first.url, "https://127.0.0.1:5443");
  EXPECT_EQ(first.hosts, (std::vector<std::string>{"registry.example", "127.0.0.1:5101"}));
  EXPECT_EQ(first.username, "alice");
  EXPECT_EQ(first.password, "s3cret: with colon");
  EXPECT_EQ(first.ca_file, "/etc/outpost/certs/ca.pem");
  EXPECT_TRUE(first.insecure_skip_verify);
  EXPECT_EQ(first.tag_ttl_ms, 0);
  EXPECT_TRUE(first.library_prefix);
  EXPECT_EQ(config->remotes[1].url, "http://[::1]:5102/prefix");
}

struct DurationCase {
  std::string name;
  std::string input;
  bool is_valid;
  int64_t expected_ms;
};

TEST(ConfigTest, ParsesDurations) {
  const std::vector<DurationCase> cases = {
      {"milliseconds", "500ms", true, 500},
      {"seconds", "30s", true, 30000},
      {"minutes", "5m", true, 300000},
      {"hours", "1h", true, 3600000},
      {"zero", "0s", true, 0},
      {"leading zeros", "007s", true, 7000},
      {"largest milliseconds", "9223372036854775807ms", true, INT64_MAX},
      {"no unit", "30", false, 0},
      {"empty", "", false, 0},
      {"unit only", "s", false, 0},
      {"unknown unit", "2d", false, 0},
      {"upper-case unit", "5S", false, 0},
      {"fraction", "1.5s", false, 0},
      {"negative", "-1s", false, 0},
      {"plus sign", "+1s", false, 0},
      {"space before unit", "1 s", false, 0},
      {"two units", "1h30m", false, 0},
      {"overflow after scaling", "9223372036854775807h", false, 0},
      {"overflow of the number", "99999999999999999999ms", false, 0},
  };
  for (const DurationCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<int64_t> duration = parseDurationMs(test_case.input);
    ASSERT_EQ(duration.hasValue(), test_case.is_valid) << duration.status().toString();
    if (duration.hasValue()) {
      EXPECT_EQ(*duration, test_case.expected_ms);
    } else {
      EXPECT_EQ(duration.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(ConfigTest, DurationMessagesSuggestFix) {
  const Expected<int64_t> no_unit = parseDurationMs("30");
  EXPECT_NE(no_unit.status().message().find("30s"), std::string_view::npos)
      << no_unit.status().message();
  const Expected<int64_t> fraction = parseDurationMs("1.5s");
  EXPECT_NE(fraction.status().message().find("1500ms"), std::string_view::npos)
      << fraction.status().message();
}

struct InvalidCase {
  std::string name;
  std::string yaml;
  // The message must start with this text, which names the key.
  std::string expected_message_start;
};

// Builds a configuration from the minimal remote plus `extra` top-level YAML.
std::string withRemote(std::string_view extra) {
  return std::string(kMinimalRemote) + std::string(extra);
}

// Builds a configuration with one remote whose keys are `remote_keys` (indented 4 spaces).
std::string withRemoteKeys(std::string_view remote_keys) {
  return "remotes:\n  - name: hub\n" + std::string(remote_keys);
}

TEST(ConfigTest, RejectsInvalidValues) {
  const std::vector<InvalidCase> cases = {
      // Shape of the document.
      {"empty document", "", "remotes: at least one remote or local repository is required"},
      {"document is a list", "- a\n- b\n", "the configuration must be a YAML mapping"},
      {"document is a scalar", "hello\n", "the configuration must be a YAML mapping"},
      {"unknown top-level key", withRemote("servr:\n  port: 1\n"), "servr: unknown key"},
      {"unknown server key", withRemote("server:\n  prot: 1\n"), "server.prot: unknown key"},
      {"unknown upstream key", withRemote("upstream:\n  retries: 1\n"),
       "upstream.retries: unknown key"},
      {"unknown remote key", withRemoteKeys("    url: http://127.0.0.1:1\n    passwrod: x\n"),
       "remotes[0].passwrod: unknown key"},
      {"repeated key", withRemote("server:\n  port: 1\n  port: 2\n"),
       "server.port: appears more than once"},
      {"section is a scalar", withRemote("server: 5\n"), "server: must be a mapping"},
      {"value is a list", withRemote("upstream:\n  response_timeout: [1s]\n"),
       "upstream.response_timeout: must be a single value"},
      {"value is a mapping", withRemote("log:\n  level: {a: b}\n"),
       "log.level: must be a single value"},

      // server
      {"port too large", withRemote("server:\n  port: \"70000\"\n"),
       R"(server.port: "70000" is not a port number (0 to 65535))"},
      {"port negative", withRemote("server:\n  port: -1\n"), R"(server.port: "-1" is not a port)"},
      {"port not a number", withRemote("server:\n  port: http\n"),
       R"(server.port: "http" is not a port)"},
      {"port with fraction", withRemote("server:\n  port: 5000.0\n"),
       R"(server.port: "5000.0" is not a port)"},
      {"listen host name", withRemote("server:\n  listen_host: localhost\n"),
       R"(server.listen_host: "localhost" is not an IPv4 or IPv6 address)"},
      {"listen host empty", withRemote("server:\n  listen_host: \"\"\n"),
       R"(server.listen_host: "" is not an IPv4 or IPv6 address)"},
      {"too many loops", withRemote("server:\n  loops: 2000\n"),
       R"(server.loops: "2000" is not a whole number from 0 to 1024)"},
      {"header limit too small", withRemote("server:\n  max_header_bytes: 100\n"),
       R"(server.max_header_bytes: "100" is not a whole number from 1024 to 16777216)"},
      {"zero connections", withRemote("server:\n  max_connections: 0\n"),
       R"(server.max_connections: "0" is not a whole number from 1)"},
      {"timeout without unit", withRemote("server:\n  header_timeout: 30\n"),
       R"(server.header_timeout: "30" has no unit)"},
      {"zero timeout", withRemote("server:\n  idle_timeout: 0s\n"),
       R"(server.idle_timeout: "0s" must be more than zero)"},
      {"fractional timeout", withRemote("server:\n  send_timeout: 1.5s\n"),
       R"(server.send_timeout: "1.5s" has a fraction)"},
      {"negative grace", withRemote("server:\n  shutdown_grace: -1s\n"),
       R"(server.shutdown_grace: "-1s" is not a duration)"},

      // upstream
      {"unknown unit", withRemote("upstream:\n  connect_timeout: 10d\n"),
       R"(upstream.connect_timeout: "10d" has an unknown unit)"},
      {"zero revalidate timeout", withRemote("upstream:\n  revalidate_timeout: 0ms\n"),
       R"(upstream.revalidate_timeout: "0ms" must be more than zero)"},
      {"negative retries", withRemote("upstream:\n  max_retries: -1\n"),
       R"(upstream.max_retries: "-1" is not a whole number)"},
      {"zero connections per host", withRemote("upstream:\n  max_connections_per_host: 0\n"),
       R"(upstream.max_connections_per_host: "0" is not a whole number from 1)"},

      // storage and log
      {"empty data dir", withRemote("storage:\n  data_dir: \"\"\n"),
       "storage.data_dir: must not be empty"},
      {"unknown storage key", withRemote("storage:\n  scrub_rate: 1\n"),
       "storage.scrub_rate: unknown key"},
      {"negative scrub rate", withRemote("storage:\n  scrub_bytes_per_second: -1\n"),
       R"(storage.scrub_bytes_per_second: "-1" is not a whole number from 0 to 1099511627776)"},
      {"scrub rate above maximum",
       withRemote("storage:\n  scrub_bytes_per_second: 1099511627777\n"),
       R"(storage.scrub_bytes_per_second: "1099511627777" is not a whole number)"},
      {"scrub rate with unit", withRemote("storage:\n  scrub_bytes_per_second: 8MiB\n"),
       R"(storage.scrub_bytes_per_second: "8MiB" is not a whole number)"},
      {"scrub interval without unit", withRemote("storage:\n  scrub_interval: 24\n"),
       R"(storage.scrub_interval: "24" has no unit)"},
      {"scrub interval in days", withRemote("storage:\n  scrub_interval: 1d\n"),
       R"(storage.scrub_interval: "1d" has an unknown unit)"},
      {"negative scrub interval", withRemote("storage:\n  scrub_interval: -1h\n"),
       R"(storage.scrub_interval: "-1h" is not a duration)"},
      {"negative disk budget", withRemote("storage:\n  disk_budget_bytes: -1\n"),
       R"(storage.disk_budget_bytes: "-1" is not a whole number from 0)"},
      {"disk budget with unit", withRemote("storage:\n  disk_budget_bytes: 10GiB\n"),
       R"(storage.disk_budget_bytes: "10GiB" is not a whole number)"},
      {"high watermark above 100", withRemote("storage:\n  high_watermark_percent: 101\n"),
       R"(storage.high_watermark_percent: "101" is not a whole number from 2 to 100)"},
      {"low watermark zero", withRemote("storage:\n  low_watermark_percent: 0\n"),
       R"(storage.low_watermark_percent: "0" is not a whole number from 1 to 99)"},
      {"low watermark not below high",
       withRemote("storage:\n  high_watermark_percent: 70\n  low_watermark_percent: 70\n"),
       "storage.low_watermark_percent: 70 must be below storage.high_watermark_percent (70)"},
      {"lower tiers without a budget",
       withRemote("storage:\n  lower_tiers:\n    - path: /srv/slow\n      budget_bytes: 10\n"),
       "storage.disk_budget_bytes: must be set when storage.lower_tiers is"},
      {"lower tiers not a list",
       withRemote("storage:\n  disk_budget_bytes: 10\n  lower_tiers: /srv/slow\n"),
       "storage.lower_tiers: must be a list of disk tiers"},
      {"lower tier without path",
       withRemote("storage:\n  disk_budget_bytes: 10\n  lower_tiers:\n    - budget_bytes: 10\n"),
       "storage.lower_tiers[0].path: is required"},
      {"lower tier without budget",
       withRemote("storage:\n  disk_budget_bytes: 10\n  lower_tiers:\n    - path: /srv/slow\n"),
       "storage.lower_tiers[0].budget_bytes: is required"},
      {"lower tier budget zero",
       withRemote("storage:\n  disk_budget_bytes: 10\n  lower_tiers:\n    - path: /srv/slow\n"
                  "      budget_bytes: 0\n"),
       "storage.lower_tiers[0].budget_bytes:"},
      {"lower tier unknown key",
       withRemote("storage:\n  disk_budget_bytes: 10\n  lower_tiers:\n    - path: /srv/slow\n"
                  "      budget_bytes: 10\n      size: 1\n"),
       "storage.lower_tiers[0].size: unknown key"},
      {"lower tier watermarks out of order",
       withRemote("storage:\n  disk_budget_bytes: 10\n  lower_tiers:\n    - path: /srv/slow\n"
                  "      budget_bytes: 10\n      high_watermark_percent: 50\n"
                  "      low_watermark_percent: 60\n"),
       "storage.lower_tiers[0].low_watermark_percent: 60 must be below "
       "storage.lower_tiers[0].high_watermark_percent (50)"},
      {"lower tier same as data folder",
       withRemote("storage:\n  data_dir: /srv/data\n  disk_budget_bytes: 10\n  lower_tiers:\n"
                  "    - path: /srv/data/\n      budget_bytes: 10\n"),
       "storage.lower_tiers[0].path: \"/srv/data\" overlaps the data folder (\"/srv/data\")"},
      {"lower tier inside the data folder",
       withRemote("storage:\n  data_dir: /srv/data\n  disk_budget_bytes: 10\n  lower_tiers:\n"
                  "    - path: /srv/data/tmp\n      budget_bytes: 10\n"),
       "storage.lower_tiers[0].path: \"/srv/data/tmp\" overlaps the data folder"},
      {"data folder inside a lower tier",
       withRemote("storage:\n  data_dir: /srv/hdd/data\n  disk_budget_bytes: 10\n  lower_tiers:\n"
                  "    - path: /srv/hdd\n      budget_bytes: 10\n"),
       "storage.lower_tiers[0].path: \"/srv/hdd\" overlaps the data folder"},
      {"lower tier inside another",
       withRemote("storage:\n  data_dir: /srv/data\n  disk_budget_bytes: 10\n  lower_tiers:\n"
                  "    - path: /srv/hdd\n      budget_bytes: 10\n    - path: /srv/hdd/cold\n"
                  "      budget_bytes: 10\n"),
       "storage.lower_tiers[1].path: \"/srv/hdd/cold\" overlaps storage.lower_tiers[0]"},
      {"negative promote hits", withRemote("storage:\n  promote_after_hits: -1\n"),
       "storage.promote_after_hits:"},
      {"space wait zero", withRemote("storage:\n  space_wait_timeout: 0s\n"),
       "storage.space_wait_timeout:"},
      {"negative memory cache", withRemote("storage:\n  memory_cache_bytes: -1\n"),
       R"(storage.memory_cache_bytes: "-1" is not a whole number from 0)"},
      {"memory cache with unit", withRemote("storage:\n  memory_cache_bytes: 256MiB\n"),
       R"(storage.memory_cache_bytes: "256MiB" is not a whole number)"},
      {"memory cache not a number", withRemote("storage:\n  memory_cache_bytes: lots\n"),
       R"(storage.memory_cache_bytes: "lots" is not a whole number)"},
      {"memory item size zero", withRemote("storage:\n  memory_cache_max_item_bytes: 0\n"),
       R"(storage.memory_cache_max_item_bytes: "0" is not a whole number from 1)"},
      {"negative memory item size", withRemote("storage:\n  memory_cache_max_item_bytes: -4096\n"),
       R"(storage.memory_cache_max_item_bytes: "-4096" is not a whole number from 1)"},
      {"memory item size fractional", withRemote("storage:\n  memory_cache_max_item_bytes: 1.5\n"),
       R"(storage.memory_cache_max_item_bytes: "1.5" is not a whole number)"},
      {"memory item above budget",
       withRemote("storage:\n  memory_cache_bytes: 1048576\n"
                  "  memory_cache_max_item_bytes: 1048577\n"),
       "storage.memory_cache_max_item_bytes: 1048577 is above storage.memory_cache_bytes "
       "(1048576); lower it, or raise the budget"},
      {"default memory item above small budget",
       withRemote("storage:\n  memory_cache_bytes: 16384\n"),
       "storage.memory_cache_max_item_bytes: 32768 is above storage.memory_cache_bytes "
       "(16384)"},
      {"unknown log level", withRemote("log:\n  level: verbose\n"),
       R"(log.level: "verbose" is not a log level)"},

      // remotes
      {"remotes missing", "server:\n  port: 1\n",
       "remotes: at least one remote or local repository is required"},
      {"remotes empty", "remotes: []\n",
       "remotes: at least one remote or local repository is required"},
      {"remotes a mapping", "remotes:\n  name: hub\n", "remotes: must be a list"},
      {"remote a scalar", "remotes: [hub]\n", "remotes[0]: must be a mapping"},
      {"name missing", "remotes:\n  - url: http://127.0.0.1:1\n", "remotes[0].name: is required"},
      {"name upper case", "remotes:\n  - name: Hub\n    url: http://127.0.0.1:1\n",
       R"(remotes[0].name: "Hub" is not a valid repository name)"},
      {"name leading dash", "remotes:\n  - name: -hub\n    url: http://127.0.0.1:1\n",
       R"(remotes[0].name: "-hub" is not a valid repository name)"},
      {"name trailing dash", "remotes:\n  - name: hub-\n    url: http://127.0.0.1:1\n",
       R"(remotes[0].name: "hub-" is not a valid repository name)"},
      {"name with triple underscore", "remotes:\n  - name: a___b\n    url: http://127.0.0.1:1\n",
       R"(remotes[0].name: "a___b" is not a valid repository name)"},
      {"name with dot", "remotes:\n  - name: a.b\n    url: http://127.0.0.1:1\n",
       R"(remotes[0].name: "a.b" is not a valid repository name)"},
      {"name with slash", "remotes:\n  - name: a/b\n    url: http://127.0.0.1:1\n",
       R"(remotes[0].name: "a/b" is not a valid repository name)"},
      {"duplicate name", withRemote("  - name: hub\n    url: http://127.0.0.1:5102\n"),
       R"(remotes[1].name: "hub" is already the name of another remote)"},
      {"url missing", withRemoteKeys(""), "remotes[0].url: is required"},
      {"url other scheme", withRemoteKeys("    url: ftp://127.0.0.1\n"),
       R"(remotes[0].url: "ftp://127.0.0.1" must start with http:// or https://)"},
      {"url upper-case scheme", withRemoteKeys("    url: HTTP://127.0.0.1\n"),
       R"(remotes[0].url: "HTTP://127.0.0.1" must start with http:// or https://)"},
      {"url without scheme", withRemoteKeys("    url: 127.0.0.1:5000\n"),
       R"(remotes[0].url: "127.0.0.1:5000" must start with)"},
      {"url without host", withRemoteKeys("    url: https://\n"),
       R"(remotes[0].url: "https://" has no host)"},
      {"url with only port", withRemoteKeys("    url: https://:443\n"),
       R"(remotes[0].url: "https://:443" has no host)"},
      {"url with path but no host", withRemoteKeys("    url: https:///v2\n"),
       R"(remotes[0].url: "https:///v2" has no host)"},
      {"url with credentials", withRemoteKeys("    url: https://u:p@127.0.0.1\n"),
       R"(remotes[0].url: "https://u:p@127.0.0.1" contains user credentials)"},
      {"url with bad port", withRemoteKeys("    url: https://127.0.0.1:99999\n"),
       R"(remotes[0].url: "https://127.0.0.1:99999" has an invalid port)"},
      {"url with zero port", withRemoteKeys("    url: https://127.0.0.1:0\n"),
       R"(remotes[0].url: "https://127.0.0.1:0" has an invalid port)"},
      {"url with empty port", withRemoteKeys("    url: \"https://127.0.0.1:\"\n"),
       R"(remotes[0].url: "https://127.0.0.1:" has an empty port)"},
      {"url with query", withRemoteKeys("    url: https://127.0.0.1/?a=b\n"),
       R"(remotes[0].url: "https://127.0.0.1/?a=b" must not have a query or fragment)"},
      {"url with space in host", withRemoteKeys("    url: https://a b\n"),
       R"(remotes[0].url: "https://a b" has a host with characters other than)"},
      {"url with unterminated ipv6", withRemoteKeys("    url: https://[::1\n"),
       R"(remotes[0].url: "https://[::1" has an unterminated IPv6 address)"},
      {"url with invalid ipv6", withRemoteKeys("    url: https://[zz]:80\n"),
       R"(remotes[0].url: "https://[zz]:80" has an invalid IPv6 address)"},
      {"hosts a scalar", withRemoteKeys("    url: http://127.0.0.1:1\n    hosts: docker.io\n"),
       "remotes[0].hosts: must be a list of host names"},
      {"host a mapping", withRemoteKeys("    url: http://127.0.0.1:1\n    hosts: [{a: b}]\n"),
       "remotes[0].hosts[0]: must be a host name"},
      {"host with path",
       withRemoteKeys("    url: http://127.0.0.1:1\n    hosts: [docker.io/library]\n"),
       R"(remotes[0].hosts[0]: "docker.io/library" has a host with characters other than)"},
      {"host repeated in remote",
       withRemoteKeys("    url: http://127.0.0.1:1\n    hosts: [a.example, A.Example]\n"),
       R"(remotes[0].hosts[1]: "a.example" is listed twice)"},
      {"host in two remotes",
       "remotes:\n"
       "  - name: one\n    url: http://127.0.0.1:1\n    hosts: [a.example]\n"
       "  - name: two\n    url: http://127.0.0.1:2\n    hosts: [b.example, A.example]\n",
       R"(remotes[1].hosts[1]: "a.example" is already a host of remote "one")"},
      {"username with colon",
       withRemoteKeys("    url: http://127.0.0.1:1\n    username: a:b\n    password: x\n"),
       "remotes[0].username: must not contain ':'"},
      {"password and password_env",
       withRemoteKeys("    url: http://127.0.0.1:1\n    username: a\n    password: x\n"
                      "    password_env: HOME\n"),
       "remotes[0]: set password or password_env, not both"},
      {"password without username",
       withRemoteKeys("    url: http://127.0.0.1:1\n    password: x\n"),
       "remotes[0]: a password is set, but username is not"},
      {"username without password",
       withRemoteKeys("    url: http://127.0.0.1:1\n    username: a\n"),
       "remotes[0]: username is set, but neither password nor password_env is"},
      {"password_env invalid name",
       withRemoteKeys("    url: http://127.0.0.1:1\n    username: a\n    password_env: 1ABC\n"),
       R"(remotes[0].password_env: "1ABC" is not an environment variable name)"},
      {"password_env with equals sign",
       withRemoteKeys("    url: http://127.0.0.1:1\n    username: a\n    password_env: A=B\n"),
       R"(remotes[0].password_env: "A=B" is not an environment variable name)"},
      {"ca_file on plain http",
       withRemoteKeys("    url: http://127.0.0.1:1\n    ca_file: ca.pem\n"),
       "remotes[0].ca_file: is set, but the url uses plain http://"},
      {"insecure on plain http",
       withRemoteKeys("    url: http://127.0.0.1:1\n    insecure_skip_verify: true\n"),
       "remotes[0].insecure_skip_verify: is true, but the url uses plain http://"},
      {"boolean spelt yes",
       withRemoteKeys("    url: https://127.0.0.1:1\n    insecure_skip_verify: yes\n"),
       R"(remotes[0].insecure_skip_verify: "yes" is not a boolean; write true or false)"},
      {"library_prefix a number",
       withRemoteKeys("    url: https://127.0.0.1:1\n    library_prefix: 1\n"),
       R"(remotes[0].library_prefix: "1" is not a boolean)"},
      {"tag ttl without unit", withRemoteKeys("    url: http://127.0.0.1:1\n    tag_ttl: 300\n"),
       R"(remotes[0].tag_ttl: "300" has no unit)"},
      {"default repository unknown", withRemote("default_repository: quay\n"),
       R"(default_repository: "quay" names no repository; the repositories are hub)"},

      // Local repositories.
      {"locals not a list", withRemote("locals: builds\n"),
       "locals: must be a list of local repositories"},
      {"local without name", withRemote("locals:\n  - allow_delete: true\n"),
       "locals[0].name: is required"},
      {"local name invalid", withRemote("locals:\n  - name: Builds\n"),
       R"(locals[0].name: "Builds" is not a valid repository name)"},
      {"local name of a remote", withRemote("locals:\n  - name: hub\n"),
       R"(locals[0].name: "hub" is already the name of a remote)"},
      {"local name repeated", withRemote("locals:\n  - name: a\n  - name: a\n"),
       R"(locals[1].name: "a" is already the name of another local repository)"},
      {"allow_delete unknown kind",
       withRemote("locals:\n  - name: a\n    allow_delete: [tags, images]\n"),
       R"(locals[0].allow_delete[1]: "images" is not a kind of delete; use manifests, tags or blobs)"},
      {"allow_delete a mapping",
       withRemote("locals:\n  - name: a\n    allow_delete: {tags: true}\n"),
       "locals[0].allow_delete: must be true, false or a list of manifests, tags and blobs"},
      {"allow_delete not a boolean", withRemote("locals:\n  - name: a\n    allow_delete: maybe\n"),
       R"(locals[0].allow_delete: "maybe" is not a boolean)"},
      {"local unknown key", withRemote("locals:\n  - name: a\n    delete: true\n"),
       "locals[0].delete: unknown key"},
      {"manifest limit too small", withRemote("locals:\n  - name: a\n    max_manifest_bytes: 10\n"),
       R"(locals[0].max_manifest_bytes: "10" is not a whole number from 1024 to 67108864)"},
      {"upload idle timeout zero", withRemote("storage:\n  upload_idle_timeout: 0s\n"),
       R"(storage.upload_idle_timeout: "0s" must be more than zero)"},
      {"gc interval without unit", withRemote("storage:\n  gc_interval: 3600\n"),
       R"(storage.gc_interval: "3600" has no unit)"},
      {"gc interval negative", withRemote("storage:\n  gc_interval: -1h\n"),
       R"(storage.gc_interval: "-1h" is not a duration)"},
      {"gc grace period in days", withRemote("storage:\n  gc_grace_period: 2d\n"),
       R"(storage.gc_grace_period: "2d" has an unknown unit)"},
      {"gc grace period a list", withRemote("storage:\n  gc_grace_period: [1h]\n"),
       "storage.gc_grace_period: must be a single value"},
      {"gc key misspelt", withRemote("storage:\n  gc_grace: 1h\n"),
       "storage.gc_grace: unknown key"},

      // YAML syntax.
      {"unterminated flow sequence", withRemote("log: [a, b\n"), "invalid YAML at line"},
      {"bad indentation", "server:\n  port: 1\n bad: 2\n", "invalid YAML at line"},
  };
  for (const InvalidCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<Config> config = parse(test_case.yaml);
    ASSERT_FALSE(config.hasValue()) << test_case.yaml;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(config.status().message().starts_with(test_case.expected_message_start))
        << "message: " << config.status().message()
        << "\nexpected start: " << test_case.expected_message_start;
  }
}

TEST(ConfigTest, AcceptsAnyItemSizeWithMemoryTierOff) {
  const Expected<Config> config = parse(
      withRemote("storage:\n  memory_cache_bytes: 0\n  memory_cache_max_item_bytes: 1073741824\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->storage.memory_cache_bytes, 0u);
  EXPECT_EQ(config->storage.memory_cache_max_item_bytes, 1073741824u);
}

TEST(ConfigTest, ReadsLocalRepositories) {
  const Expected<Config> config = parse(
      "locals:\n"
      "  - name: builds\n"
      "  - name: releases\n"
      "    allow_delete: false\n"
      "    immutable_tags: true\n"
      "    max_manifest_bytes: 1048576\n"
      "storage:\n"
      "  upload_idle_timeout: 2h\n");
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  EXPECT_TRUE(config->remotes.empty());
  ASSERT_EQ(config->locals.size(), 2u);
  EXPECT_EQ(config->locals[0].name, "builds");
  EXPECT_TRUE(config->locals[0].allow_manifest_delete);
  EXPECT_TRUE(config->locals[0].allow_tag_delete);
  EXPECT_TRUE(config->locals[0].allow_blob_delete);
  EXPECT_FALSE(config->locals[0].immutable_tags);
  EXPECT_EQ(config->locals[0].max_manifest_bytes, 4u << 20);
  EXPECT_EQ(config->locals[1].name, "releases");
  EXPECT_FALSE(config->locals[1].allow_manifest_delete);
  EXPECT_FALSE(config->locals[1].allow_tag_delete);
  EXPECT_FALSE(config->locals[1].allow_blob_delete);
  EXPECT_TRUE(config->locals[1].immutable_tags);
  EXPECT_EQ(config->locals[1].max_manifest_bytes, 1u << 20);
  EXPECT_EQ(config->storage.upload_idle_timeout_ms, 2 * 60 * 60 * 1000);
  // Without a remote, the first local repository serves paths without a repository key.
  EXPECT_EQ(config->default_repository, "builds");
}

TEST(ConfigTest, AllowDeleteListsKinds) {
  const Expected<Config> config = parse(withRemote(
      "locals:\n  - name: a\n    allow_delete: [tags]\n  - name: b\n    allow_delete: []\n"
      "  - name: c\n    allow_delete: [blobs, manifests]\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  ASSERT_EQ(config->locals.size(), 3u);

  EXPECT_FALSE(config->locals[0].allow_manifest_delete);
  EXPECT_TRUE(config->locals[0].allow_tag_delete);
  EXPECT_FALSE(config->locals[0].allow_blob_delete);
  EXPECT_FALSE(config->locals[1].allow_manifest_delete);
  EXPECT_FALSE(config->locals[1].allow_tag_delete);
  EXPECT_FALSE(config->locals[1].allow_blob_delete);
  EXPECT_TRUE(config->locals[2].allow_manifest_delete);
  EXPECT_FALSE(config->locals[2].allow_tag_delete);
  EXPECT_TRUE(config->locals[2].allow_blob_delete);
}

TEST(ConfigTest, DefaultRepositoryMayBeLocal) {
  const Expected<Config> config =
      parse(withRemote("locals:\n  - name: builds\ndefault_repository: builds\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->default_repository, "builds");
}

// A remote "hub" and local repositories "builds" and "releases", with `virtuals` appended.
std::string withVirtuals(std::string_view virtuals) {
  return withRemote("locals:\n  - name: builds\n  - name: releases\nvirtuals:\n") +
         std::string(virtuals);
}

TEST(ConfigTest, ReadsVirtualRepositories) {
  const Expected<Config> config =
      parse(withVirtuals("  - name: all\n"
                         "    members: [builds, inner]\n"
                         "    deployment: builds\n"
                         "  - name: inner\n"
                         "    members:\n"
                         "      - releases\n"
                         "      - hub\n"
                         "default_repository: all\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  ASSERT_EQ(config->virtuals.size(), 2u);
  EXPECT_EQ(config->virtuals[0].name, "all");
  EXPECT_EQ(config->virtuals[0].members, (std::vector<std::string>{"builds", "inner"}));
  EXPECT_EQ(config->virtuals[0].deployment, "builds");
  EXPECT_EQ(config->virtuals[1].name, "inner");
  EXPECT_EQ(config->virtuals[1].members, (std::vector<std::string>{"releases", "hub"}));
  // Without the key, pushes through the repository are rejected.
  EXPECT_EQ(config->virtuals[1].deployment, "");
  EXPECT_EQ(config->default_repository, "all");
}

TEST(ConfigTest, DeploymentMayBeReachedThroughNestedVirtual) {
  const Expected<Config> config =
      parse(withVirtuals("  - name: outer\n"
                         "    members: [hub, inner]\n"
                         "    deployment: releases\n"
                         "  - name: inner\n"
                         "    members: [releases]\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->virtuals[0].deployment, "releases");
}

TEST(ConfigTest, RejectsInvalidVirtualRepositories) {
  const std::vector<InvalidCase> cases = {
      {"virtuals not a list", withRemote("virtuals: all\n"),
       "virtuals: must be a list of virtual repositories"},
      {"entry not a mapping", withVirtuals("  - all\n"),
       "virtuals[0]: must be a mapping of keys to values"},
      {"unknown key", withVirtuals("  - name: all\n    members: [hub]\n    deploy: builds\n"),
       "virtuals[0].deploy: unknown key"},
      {"without name", withVirtuals("  - members: [hub]\n"), "virtuals[0].name: is required"},
      {"name invalid", withVirtuals("  - name: All\n    members: [hub]\n"),
       R"(virtuals[0].name: "All" is not a valid repository name)"},
      {"name of a remote", withVirtuals("  - name: hub\n    members: [builds]\n"),
       R"(virtuals[0].name: "hub" is already the name of a remote)"},
      {"name of a local repository", withVirtuals("  - name: builds\n    members: [hub]\n"),
       R"(virtuals[0].name: "builds" is already the name of a local repository)"},
      {"name repeated",
       withVirtuals("  - name: all\n    members: [hub]\n  - name: all\n    members: [builds]\n"),
       R"(virtuals[1].name: "all" is already the name of another virtual repository)"},
      {"without members", withVirtuals("  - name: all\n"),
       "virtuals[0].members: is required; list the keys of the repositories to read from"},
      {"members empty", withVirtuals("  - name: all\n    members: []\n"),
       "virtuals[0].members: must list at least one repository"},
      {"members a scalar", withVirtuals("  - name: all\n    members: hub\n"),
       "virtuals[0].members: must be a list of repository keys"},
      {"member a mapping", withVirtuals("  - name: all\n    members: [hub, {a: b}]\n"),
       "virtuals[0].members[1]: must be a repository key"},
      {"member listed twice", withVirtuals("  - name: all\n    members: [hub, builds, hub]\n"),
       R"(virtuals[0].members[2]: "hub" is listed twice)"},
      {"unknown member", withVirtuals("  - name: all\n    members: [hub, builds, nope]\n"),
       R"(virtuals[0].members[2]: "nope" names no repository; the repositories are hub, )"
       R"(builds, releases, all)"},
      {"unknown member of a later virtual",
       withVirtuals("  - name: all\n    members: [inner]\n  - name: inner\n    members: [nope]\n"),
       R"(virtuals[1].members[0]: "nope" names no repository)"},
      {"member of itself", withVirtuals("  - name: all\n    members: [hub, all]\n"),
       R"(virtuals[0].members: "all" -> "all" is a cycle)"},
      {"cycle of two",
       withVirtuals("  - name: a\n    members: [b]\n  - name: b\n    members: [hub, a]\n"),
       R"(virtuals[0].members: "a" -> "b" -> "a" is a cycle)"},
      {"cycle below a virtual outside it",
       withVirtuals("  - name: a\n    members: [hub, b]\n"
                    "  - name: b\n    members: [c]\n"
                    "  - name: c\n    members: [builds, b]\n"),
       R"(virtuals[1].members: "b" -> "c" -> "b" is a cycle)"},
      {"cycle of three found past a branch",
       withVirtuals("  - name: a\n    members: [d, b]\n"
                    "  - name: b\n    members: [c]\n"
                    "  - name: c\n    members: [a]\n"
                    "  - name: d\n    members: [hub]\n"),
       R"(virtuals[0].members: "a" -> "b" -> "c" -> "a" is a cycle)"},
      {"deployment unknown",
       withVirtuals("  - name: all\n    members: [builds]\n    deployment: nope\n"),
       R"(virtuals[0].deployment: "nope" names no repository; the local repositories are )"
       R"(builds, releases)"},
      {"deployment a remote",
       withVirtuals("  - name: all\n    members: [hub]\n    deployment: hub\n"),
       R"(virtuals[0].deployment: "hub" is not a local repository)"},
      {"deployment a virtual",
       withVirtuals("  - name: all\n    members: [inner]\n    deployment: inner\n"
                    "  - name: inner\n    members: [builds]\n"),
       R"(virtuals[0].deployment: "inner" is not a local repository)"},
      {"deployment not a member",
       withVirtuals("  - name: all\n    members: [hub, builds]\n    deployment: releases\n"),
       R"(virtuals[0].deployment: "releases" is not a member of "all"; add it to members)"},
      {"deployment a list",
       withVirtuals("  - name: all\n    members: [builds]\n    deployment: [builds]\n"),
       "virtuals[0].deployment: must be a single value"},
      {"default repository unknown with virtuals",
       withVirtuals("  - name: all\n    members: [hub]\ndefault_repository: quay\n"),
       R"(default_repository: "quay" names no repository; the repositories are hub, builds, )"
       R"(releases, all)"},
  };
  for (const InvalidCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<Config> config = parse(test_case.yaml);
    ASSERT_FALSE(config.hasValue()) << test_case.yaml;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(config.status().message().starts_with(test_case.expected_message_start))
        << "message: " << config.status().message()
        << "\nexpected start: " << test_case.expected_message_start;
  }
}

TEST(ConfigTest, NameClashReportedOnVirtual) {
  // Virtual repositories are read after local ones, whatever the order in the file.
  const Expected<Config> config =
      parse(withRemote("virtuals:\n  - name: builds\n    members: [hub]\n"
                       "locals:\n  - name: builds\n"));
  ASSERT_FALSE(config.hasValue());
  EXPECT_EQ(config.status().message(),
            R"(virtuals[0].name: "builds" is already the name of a local repository)");
}

TEST(ConfigTest, FlattensMembersInOrder) {
  struct Case {
    std::string name;
    std::string virtuals;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"direct members keep their order",
       "  - name: all\n    members: [releases, hub, builds]\n",
       {"releases", "hub", "builds"}},
      {"nested virtual expands in place",
       "  - name: all\n    members: [builds, inner, hub]\n"
       "  - name: inner\n    members: [releases]\n",
       {"builds", "releases", "hub"}},
      {"duplicate kept at first position",
       "  - name: all\n    members: [hub, inner]\n"
       "  - name: inner\n    members: [releases, hub, builds]\n",
       {"hub", "releases", "builds"}},
      {"two levels of nesting",
       "  - name: all\n    members: [mid]\n"
       "  - name: mid\n    members: [low, hub]\n"
       "  - name: low\n    members: [builds, releases]\n",
       {"builds", "releases", "hub"}},
      {"virtual listed through two paths",
       "  - name: all\n    members: [left, right]\n"
       "  - name: left\n    members: [low]\n"
       "  - name: right\n    members: [hub, low]\n"
       "  - name: low\n    members: [builds]\n",
       {"builds", "hub"}},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<Config> config = parse(withVirtuals(test_case.virtuals));
    ASSERT_TRUE(config.hasValue()) << config.status().toString();
    EXPECT_EQ(flattenMembers(*config, config->virtuals[0]), test_case.expected);
  }
}

TEST(ConfigTest, ZeroScrubValuesAccepted) {
  // A rate of 0 turns the scrub off, and an interval of 0s starts the next pass without a wait.
  const Expected<Config> config =
      parse(withRemote("storage:\n  scrub_bytes_per_second: 0\n  scrub_interval: 0s\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  EXPECT_EQ(config->storage.scrub_bytes_per_second, 0u);
  EXPECT_EQ(config->storage.scrub_interval_ms, 0);
}

TEST(ConfigTest, ReadsGcSchedule) {
  const Expected<Config> config =
      parse(withRemote("storage:\n  gc_interval: 6h\n  gc_grace_period: 90m\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  EXPECT_EQ(config->storage.gc_interval_ms, 6 * 60 * 60 * 1000);
  EXPECT_EQ(config->storage.gc_grace_period_ms, 90 * 60 * 1000);
}

TEST(ConfigTest, ZeroGcValuesAccepted) {
  // An interval of 0s runs garbage collection only on request; a grace period of 0s keeps nothing
  // back.
  const Expected<Config> config =
      parse(withRemote("storage:\n  gc_interval: 0s\n  gc_grace_period: 0s\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  EXPECT_EQ(config->storage.gc_interval_ms, 0);
  EXPECT_EQ(config->storage.gc_grace_period_ms, 0);
}

TEST(ConfigTest, AcceptsBooleanSpellings) {
  for (const std::string spelling : {"true", "True", "TRUE"}) {
    SCOPED_TRACE(spelling);
    const Expected<Config> config = parse(
        withRemoteKeys("    url: http://127.0.0.1:1\n    library_prefix: " + spelling + "\n"));
    ASSERT_TRUE(config.hasValue()) << config.status().toString();
    EXPECT_TRUE(config->remotes[0].library_prefix);
  }
}

TEST(ConfigTest, NullValuesKeepDefaults) {
  const Expected<Config> config = parse(withRemote("server:\nlog:\n  level:\nstorage:\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->server.port, 5000);
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->storage.data_dir, "/etc/outpost/data");
}

TEST(ConfigTest, AcceptsIpv6ListenHostAndUrl) {
  const Expected<Config> config = parse(
      "server:\n  listen_host: \"::1\"\n"
      "remotes:\n  - name: hub\n    url: http://[::1]:5101\n    hosts: [\"[::1]:5101\"]\n");
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->remotes[0].hosts[0], "[::1]:5101");
}

TEST(ConfigTest, PasswordFromEnvironment) {
  constexpr const char* kVariable = "OUTPOST_CONFIG_TEST_PASSWORD";
  ASSERT_EQ(setenv(kVariable, "from-environment", 1), 0);
  const Expected<Config> config = parse(withRemoteKeys(
      "    url: https://127.0.0.1:1\n    username: alice\n    password_env: " +
      std::string(kVariable) + "\n"));
  ASSERT_EQ(unsetenv(kVariable), 0);
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->remotes[0].username, "alice");
  EXPECT_EQ(config->remotes[0].password, "from-environment");
}

TEST(ConfigTest, PasswordFromUnsetEnvironmentVariable) {
  constexpr const char* kVariable = "OUTPOST_CONFIG_TEST_UNSET_PASSWORD";
  ASSERT_EQ(unsetenv(kVariable), 0);
  const Expected<Config> config = parse(withRemoteKeys(
      "    url: https://127.0.0.1:1\n    username: alice\n    password_env: " +
      std::string(kVariable) + "\n"));
  ASSERT_FALSE(config.hasValue());
  EXPECT_EQ(config.status().message(),
            "remotes[0].password_env: environment variable OUTPOST_CONFIG_TEST_UNSET_PASSWORD "
            "is not set");
}

TEST(ConfigTest, EmptyPasswordIsAllowed) {
  const Expected<Config> config = parse(
      withRemoteKeys("    url: https://127.0.0.1:1\n    username: alice\n    password: \"\"\n"));
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->remotes[0].password, "");
}

struct PathCase {
  std::string name;
  std::string base_dir;
  std::string data_dir;
  std::string expected;
};

TEST(ConfigTest, ResolvesRelativePaths) {
  const std::vector<PathCase> cases = {
      {"relative", "/etc/outpost", "cache", "/etc/outpost/cache"},
      {"parent folder", "/srv/outpost/conf", "../data", "/srv/outpost/data"},
      {"dot segments", "/srv/outpost", "./a/../b", "/srv/outpost/b"},
      {"absolute stays", "/etc/outpost", "/var/lib/outpost", "/var/lib/outpost"},
      {"relative base", "conf", "data", "conf/data"},
  };
  for (const PathCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Expected<Config> config = parseConfig(
        withRemote("storage:\n  data_dir: " + test_case.data_dir + "\n"), test_case.base_dir);
    ASSERT_TRUE(config.hasValue()) << config.status().toString();
    EXPECT_EQ(config->storage.data_dir, test_case.expected);
  }
}

TEST(ConfigTest, ResolvesCaFileAgainstBaseDir) {
  const std::string remote_keys = "    url: https://127.0.0.1:1\n    ca_file: ";
  const Expected<Config> relative =
      parseConfig(withRemoteKeys(remote_keys + "certs/ca.pem\n"), "/etc/outpost");
  ASSERT_TRUE(relative.hasValue()) << relative.status().toString();
  EXPECT_EQ(relative->remotes[0].ca_file, "/etc/outpost/certs/ca.pem");

  const Expected<Config> absolute =
      parseConfig(withRemoteKeys(remote_keys + "/etc/ssl/ca.pem\n"), "/etc/outpost");
  ASSERT_TRUE(absolute.hasValue()) << absolute.status().toString();
  EXPECT_EQ(absolute->remotes[0].ca_file, "/etc/ssl/ca.pem");
}

TEST(ConfigTest, LoadsFileAndResolvesAgainstItsFolder) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const fs::path file = dir.writeFile("outpost.yaml", withRemote("storage:\n  data_dir: blobs\n"));

  const Expected<Config> config = loadConfig(file);
  ASSERT_TRUE(config.hasValue()) << config.status().toString();
  EXPECT_EQ(config->storage.data_dir, (dir.path() / "blobs").string());
}

TEST(ConfigTest, LoadReportsFileAndKey) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const fs::path file = dir.writeFile("bad.yaml", withRemote("server:\n  port: \"70000\"\n"));

  const Expected<Config> config = loadConfig(file);
  ASSERT_FALSE(config.hasValue());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(),
            file.string() + R"(: server.port: "70000" is not a port number (0 to 65535))");
}

TEST(ConfigTest, LoadMissingFile) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const fs::path file = dir.path() / "missing.yaml";

  const Expected<Config> config = loadConfig(file);
  ASSERT_FALSE(config.hasValue());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);
  EXPECT_NE(config.status().message().find(file.string()), std::string_view::npos)
      << config.status().message();
}

TEST(ConfigTest, LoadFolderInsteadOfFile) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());

  const Expected<Config> config = loadConfig(dir.path());
  ASSERT_FALSE(config.hasValue());
  EXPECT_EQ(config.status().code(), StatusCode::kIOError) << config.status().toString();
}

TEST(ConfigTest, ShippedConfigLoads) {
  const fs::path source_dir = OUTPOST_SOURCE_DIR;
  const Expected<Config> config = loadConfig(source_dir / "conf" / "outpost.yaml");
  ASSERT_TRUE(config.hasValue()) << config.status().toString();

  EXPECT_EQ(config->server.listen_host, "127.0.0.1");
  EXPECT_EQ(config->server.port, 5000);
  EXPECT_EQ(config->storage.data_dir, (source_dir / "data").lexically_normal().string());
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->default_repository, "dockerhub");

  ASSERT_EQ(config->remotes.size(), 1u);
  const RemoteConfig& remote = config->remotes[0];
  EXPECT_EQ(remote.name, "dockerhub");
  EXPECT_EQ(remote.url, "https://registry-1.docker.io");
  EXPECT_EQ(remote.hosts, (std::vector<std::string>{"docker.io", "registry-1.docker.io"}));
  EXPECT_TRUE(remote.library_prefix);
  EXPECT_EQ(remote.tag_ttl_ms, 5 * 60 * 1000);
  EXPECT_FALSE(remote.insecure_skip_verify);
  EXPECT_EQ(remote.username, "");

  ASSERT_EQ(config->locals.size(), 1u);
  EXPECT_EQ(config->locals[0].name, "local");

  ASSERT_EQ(config->virtuals.size(), 1u);
  EXPECT_EQ(config->virtuals[0].name, "all");
  EXPECT_EQ(config->virtuals[0].members, (std::vector<std::string>{"local", "dockerhub"}));
  EXPECT_EQ(config->virtuals[0].deployment, "local");
}

TEST(ConfigTest, ShippedConfigStatesDefaults) {
  // Every value in conf/outpost.yaml is documented as the default, apart from the ones its
  // comments name, so it must match a configuration that sets only those.
  const fs::path source_dir = OUTPOST_SOURCE_DIR;
  const Expected<Config> shipped = loadConfig(source_dir / "conf" / "outpost.yaml");
  ASSERT_TRUE(shipped.hasValue()) << shipped.status().toString();
  const Expected<Config> defaults = parseConfig(
      "storage:\n  data_dir: ../data\n"
      "remotes:\n  - name: dockerhub\n    url: https://registry-1.docker.io\n"
      "    hosts: [docker.io, registry-1.docker.io]\n    library_prefix: true\n"
      "locals:\n  - name: local\n"
      "virtuals:\n  - name: all\n    members: [local, dockerhub]\n    deployment: local\n",
      source_dir / "conf");
  ASSERT_TRUE(defaults.hasValue()) << defaults.status().toString();

  EXPECT_EQ(shipped->server.listen_host, defaults->server.listen_host);
  EXPECT_EQ(shipped->server.port, defaults->server.port);
  EXPECT_EQ(shipped->server.loops, defaults->server.loops);
  EXPECT_EQ(shipped->server.max_header_bytes, defaults->server.max_header_bytes);
  EXPECT_EQ(shipped->server.header_timeout_ms, defaults->server.header_timeout_ms);
  EXPECT_EQ(shipped->server.idle_timeout_ms, defaults->server.idle_timeout_ms);
  EXPECT_EQ(shipped->server.send_timeout_ms, defaults->server.send_timeout_ms);
  EXPECT_EQ(shipped->server.max_connections, defaults->server.max_connections);
  EXPECT_EQ(shipped->server.shutdown_grace_ms, defaults->server.shutdown_grace_ms);
  EXPECT_EQ(shipped->upstream.connect_timeout_ms, defaults->upstream.connect_timeout_ms);
  EXPECT_EQ(shipped->upstream.response_timeout_ms, defaults->upstream.response_timeout_ms);
  EXPECT_EQ(shipped->upstream.body_stall_timeout_ms, defaults->upstream.body_stall_timeout_ms);
  EXPECT_EQ(shipped->upstream.revalidate_timeout_ms, defaults->upstream.revalidate_timeout_ms);
  EXPECT_EQ(shipped->upstream.down_backoff_ms, defaults->upstream.down_backoff_ms);
  EXPECT_EQ(shipped->upstream.max_retries, defaults->upstream.max_retries);
  EXPECT_EQ(shipped->upstream.max_connections_per_host,
            defaults->upstream.max_connections_per_host);
  EXPECT_EQ(shipped->storage.data_dir, defaults->storage.data_dir);
  EXPECT_EQ(shipped->storage.scrub_bytes_per_second, defaults->storage.scrub_bytes_per_second);
  EXPECT_EQ(shipped->storage.scrub_interval_ms, defaults->storage.scrub_interval_ms);
  EXPECT_EQ(shipped->storage.disk_budget_bytes, defaults->storage.disk_budget_bytes);
  EXPECT_EQ(shipped->storage.high_watermark_percent, defaults->storage.high_watermark_percent);
  EXPECT_EQ(shipped->storage.low_watermark_percent, defaults->storage.low_watermark_percent);
  EXPECT_EQ(shipped->storage.memory_cache_bytes, defaults->storage.memory_cache_bytes);
  EXPECT_EQ(shipped->storage.memory_cache_max_item_bytes,
            defaults->storage.memory_cache_max_item_bytes);
  EXPECT_EQ(shipped->storage.upload_idle_timeout_ms, defaults->storage.upload_idle_timeout_ms);
  EXPECT_EQ(shipped->storage.gc_interval_ms, defaults->storage.gc_interval_ms);
  EXPECT_EQ(shipped->storage.gc_grace_period_ms, defaults->storage.gc_grace_period_ms);
  ASSERT_EQ(shipped->locals.size(), 1u);
  EXPECT_EQ(shipped->locals[0].allow_manifest_delete, defaults->locals[0].allow_manifest_delete);
  EXPECT_EQ(shipped->locals[0].allow_tag_delete, defaults->locals[0].allow_tag_delete);
  EXPECT_EQ(shipped->locals[0].allow_blob_delete, defaults->locals[0].allow_blob_delete);
  EXPECT_EQ(shipped->locals[0].immutable_tags, defaults->locals[0].immutable_tags);
  EXPECT_EQ(shipped->locals[0].max_manifest_bytes, defaults->locals[0].max_manifest_bytes);
  EXPECT_EQ(shipped->log.level, defaults->log.level);
  EXPECT_EQ(shipped->default_repository, defaults->default_repository);
  EXPECT_EQ(shipped->remotes[0].tag_ttl_ms, defaults->remotes[0].tag_ttl_ms);
  EXPECT_EQ(shipped->remotes[0].insecure_skip_verify, defaults->remotes[0].insecure_skip_verify);
}

}  // namespace
}  // namespace outpost::proxy
