// outpost: the command-line entry point.
//
//   outpost serve --config FILE     run the registry until SIGTERM or SIGINT
//   outpost check-config --config FILE
//   outpost fsck --config FILE [--repair] [--verify-digests]
//   outpost gc [--dry-run] [--server URL]
//   outpost version
#include <signal.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <cstdio>
#include <filesystem>
#include <future>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "cache/cache_stats.h"
#include "proxy/admin_client.h"
#include "proxy/config.h"
#include "proxy/event_loop.h"
#include "proxy/http_server.h"
#include "proxy/registry_service.h"
#include "storage/blob_store.h"
#include "storage/fsck.h"
#include "storage/index.h"
#include "storage/scrubber.h"
#include "storage/upload_store.h"

namespace outpost {
namespace {

constexpr const char* kVersion = "0.1.0";

int loopCount(const proxy::Config& config) {
  if (config.server.loops > 0) {
    return config.server.loops;
  }
  unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

// Blocks SIGTERM and SIGINT in this thread and every thread it starts afterwards, so that
// only waitForStopSignal() receives them.
sigset_t blockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A client that disconnects mid-write must not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  return signals;
}

int waitForStopSignal(const sigset_t& signals) {
  int received = 0;
  while (sigwait(&signals, &received) != 0) {
  }
  return received;
}

int serve(const std::string& config_path, const std::string& log_level_override) {
  sigset_t stop_signals = blockStopSignals();

  Expected<proxy::Config> config = proxy::loadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "outpost: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  std::string level = log_level_override.empty() ? config->log.level : log_level_override;
  if (!log::setup(level)) {
    std::fprintf(stderr,
                 "outpost: unknown log level \"%s\"; use trace, debug, info, warn or error\n",
                 level.c_str());
    return 2;
  }

  // The index is opened first: RocksDB locks its folder, so a second server on the same
  // data_dir stops here, before BlobStore::open removes the first one's temporary files.
  std::filesystem::path data_dir = config->storage.data_dir;
  std::error_code dir_error;
  std::filesystem::create_directories(data_dir, dir_error);
  if (dir_error) {
    log::storage().critical("data folder cannot be created path={} error=\"{}\"",
                            data_dir.string(), dir_error.message());
    return 1;
  }
  Expected<std::unique_ptr<storage::Index>> index = storage::Index::open(data_dir / "index");
  if (!index) {
    log::storage().critical(
        "index failed to open path={} error=\"{}\" hint=\"is another outpost using this "
        "storage.data_dir?\"",
        (data_dir / "index").string(), index.status().toString());
    return 1;
  }
  Expected<std::unique_ptr<storage::BlobStore>> store =
      storage::BlobStore::open(proxy::blobTierRoots(config->storage));
  if (!store) {
    log::storage().critical("blob store failed to open error=\"{}\"", store.status().toString());
    return 1;
  }

  Expected<std::unique_ptr<storage::UploadStore>> uploads = storage::UploadStore::open(data_dir);
  if (!uploads) {
    log::storage().critical("upload sessions failed to open path={} error=\"{}\"",
                            (data_dir / "uploads").string(), uploads.status().toString());
    return 1;
  }

  // Declared before the service, whose /metrics reads its counters, so that it outlives it. It
  // reads the index and the store, so it is stopped before they close.
  std::unique_ptr<storage::Scrubber> scrubber;
  if (config->storage.scrub_bytes_per_second > 0) {
    storage::ScrubOptions scrub_options;
    scrub_options.bytes_per_second = config->storage.scrub_bytes_per_second;
    scrub_options.pass_interval_ms = config->storage.scrub_interval_ms;
    scrubber = std::make_unique<storage::Scrubber>(**index, **store, scrub_options);
  }

  int loop_count = loopCount(*config);
  std::vector<std::unique_ptr<proxy::EventLoop>> loops;
  std::vector<proxy::EventLoop*> loop_pointers;
  for (int i = 0; i < loop_count; ++i) {
    loops.push_back(std::make_unique<proxy::EventLoop>(static_cast<uint32_t>(i)));
    loop_pointers.push_back(loops.back().get());
  }

  proxy::RegistryService service(*config, **store, **index, **uploads, SystemClock::instance(),
                                 loops.size());
  proxy::ServerOptions options;
  options.host = config->server.listen_host;
  options.port = config->server.port;
  options.max_header_bytes = config->server.max_header_bytes;
  options.header_timeout_ms = config->server.header_timeout_ms;
  options.idle_timeout_ms = config->server.idle_timeout_ms;
  options.send_timeout_ms = config->server.send_timeout_ms;
  options.max_connections = static_cast<uint32_t>(config->server.max_connections);
  options.streams_body = &proxy::RegistryService::streamsBody;
  proxy::HttpServer server(loop_pointers, options,
                           [&service](const std::shared_ptr<proxy::Exchange>& exchange) {
                             service.handle(exchange);
                           });
  server.setCompletionObserver(
      [&service](const proxy::Exchange& exchange) { service.onExchangeComplete(exchange); });
  service.setServerCounters(&server.counters());
  if (scrubber) {
    service.metrics().setScrubCounters(&scrubber->counters());
    cache::DiskBudget* budget = &service.diskBudget();
    cache::MemoryTier* memory = &service.memoryTier();
    scrubber->setOnRemoved([budget, memory](const Digest& digest) {
      budget->forget(digest);
      // The memory copy was verified when it entered, so this only frees its memory sooner.
      memory->erase(digest);
    });
  }
  if (Status status = server.bind(); !status.isOk()) {
    log::proxy().critical("listen failed address={}:{} error=\"{}\"", options.host, options.port,
                          status.toString());
    return 1;
  }

  for (auto& loop : loops) {
    proxy::EventLoop* raw = loop.get();
    raw->start([&service, raw] { service.startLoop(*raw); });
  }
  // Started before the listener, so that the first POST /api/v1/gc finds it running.
  if (Status status = service.garbageCollection().start(); !status.isOk()) {
    log::storage().error("garbage collection failed to start error=\"{}\"", status.toString());
  } else if (config->storage.gc_interval_ms > 0) {
    log::storage().info("garbage collection scheduled interval_ms={} grace_period_ms={}",
                        config->storage.gc_interval_ms, config->storage.gc_grace_period_ms);
  } else {
    log::storage().info(
        "garbage collection runs on request only because storage.gc_interval is 0s "
        "grace_period_ms={}",
        config->storage.gc_grace_period_ms);
  }
  server.start();
  if (Status status = service.diskBudget().start(); !status.isOk()) {
    log::cache().error("disk budget failed to start error=\"{}\"", status.toString());
  }
  if (scrubber) {
    if (Status status = scrubber->start(); !status.isOk()) {
      log::storage().error("scrub failed to start error=\"{}\"", status.toString());
    }
  } else {
    log::storage().info("scrub off because storage.scrub_bytes_per_second is 0");
  }
  log::proxy().info(
      "outpost listening address={}:{} loops={} data_dir={} remotes={} locals={} virtuals={}",
      options.host, server.port(), loop_count, data_dir.string(), config->remotes.size(),
      config->locals.size(), config->virtuals.size());

  int signal_number = waitForStopSignal(stop_signals);
  log::proxy().info("stopping signal={} grace_ms={}", signal_number,
                    config->server.shutdown_grace_ms);
  if (scrubber) {
    scrubber->stop();
  }
  service.garbageCollection().stop();
  service.diskBudget().stop();

  std::promise<void> drained;
  server.shutdown(config->server.shutdown_grace_ms, [&drained] { drained.set_value(); });
  drained.get_future().wait();

  std::vector<std::future<void>> closed;
  for (auto& loop : loops) {
    auto done = std::make_shared<std::promise<void>>();
    closed.push_back(done->get_future());
    proxy::EventLoop* raw = loop.get();
    raw->post([&service, raw, done] { service.stopLoop(*raw, [done] { done->set_value(); }); });
  }
  for (auto& future : closed) {
    future.wait();
  }
  for (auto& loop : loops) {
    loop->requestStop();
    loop->join();
  }
  if (Status status = (*index)->flushAccessTimes(); !status.isOk()) {
    log::storage().warn("access times not written error=\"{}\"", status.toString());
  }
  log::proxy().info("stopped");
  return 0;
}

int checkConfig(const std::string& config_path) {
  Expected<proxy::Config> config = proxy::loadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "outpost: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  std::printf("%s: ok (%zu remotes, %zu locals, %zu virtuals, default %s, data in %s)\n",
              config_path.c_str(), config->remotes.size(), config->locals.size(),
              config->virtuals.size(), config->default_repository.c_str(),
              config->storage.data_dir.c_str());
  return 0;
}

// Exit status of `outpost fsck`, also listed in its --help.
constexpr int kFsckClean = 0;
constexpr int kFsckFindingsRemain = 1;
constexpr int kFsckCannotRun = 2;

int fsck(const std::string& config_path, bool repair, bool verify_digests) {
  Expected<proxy::Config> config = proxy::loadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "outpost: %s\n", std::string(config.status().message()).c_str());
    return kFsckCannotRun;
  }
  // Only warnings and errors go to standard error, so the report on standard output stays alone.
  if (!log::setup("warn")) {
    std::fprintf(stderr, "outpost: logging setup failed\n");
    return kFsckCannotRun;
  }

  storage::FsckOptions options;
  options.repair = repair;
  options.verify_digests = verify_digests;
  for (const proxy::DiskTierConfig& tier : config->storage.lower_tiers) {
    options.lower_tier_roots.emplace_back(tier.path);
  }
  Expected<storage::FsckReport> report =
      storage::runFsck(config->storage.data_dir, options, [](const storage::FsckFinding& finding) {
        std::printf("%s\n", storage::formatFsckFinding(finding).c_str());
      });
  if (!report) {
    std::fflush(stdout);
    std::fprintf(stderr, "outpost: fsck of %s failed: %s\n", config->storage.data_dir.c_str(),
                 report.status().toString().c_str());
    return kFsckCannotRun;
  }
  std::printf("%s\n", storage::formatFsckSummary(*report).c_str());
  return report->isClean() ? kFsckClean : kFsckFindingsRemain;
}

int cacheStats(const std::string& config_path, size_t top, const std::string& server_url) {
  Expected<proxy::Config> config = proxy::loadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "outpost: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (!log::setup("warn")) {
    std::fprintf(stderr, "outpost: logging setup failed\n");
    return 2;
  }

  // Read-only, without the index's lock, so that it runs beside a serving server.
  std::filesystem::path index_dir = std::filesystem::path(config->storage.data_dir) / "index";
  Expected<std::unique_ptr<storage::Index>> index =
      storage::Index::open(index_dir, storage::Index::OpenMode::kReadOnly);
  if (!index) {
    std::fprintf(stderr, "outpost: cannot read the index in %s: %s; check storage.data_dir\n",
                 index_dir.c_str(), index.status().toString().c_str());
    return 2;
  }

  Expected<cache::CacheStats> stats = cache::collectCacheStats(**index, top);
  if (!stats) {
    std::fprintf(stderr, "outpost: reading the index in %s failed: %s\n", index_dir.c_str(),
                 stats.status().toString().c_str());
    return 2;
  }

  std::vector<cache::CacheLimits> limits{cache::CacheLimits{
      config->storage.data_dir, config->storage.disk_budget_bytes,
      config->storage.high_watermark_percent, config->storage.low_watermark_percent}};
  for (const proxy::DiskTierConfig& tier : config->storage.lower_tiers) {
    limits.push_back(cache::CacheLimits{tier.path, tier.budget_bytes, tier.high_watermark_percent,
                                        tier.low_watermark_percent});
  }

  std::vector<cache::TierActivity> activity;
  if (!server_url.empty()) {
    Expected<proxy::AdminResponse> metrics =
        proxy::sendAdminRequest(server_url, "GET", "/metrics", "", 10'000);
    if (!metrics || metrics->status != 200) {
      std::fprintf(stderr, "outpost: reading %s/metrics failed: %s\n", server_url.c_str(),
                   metrics ? ("status " + std::to_string(metrics->status)).c_str()
                           : metrics.status().toString().c_str());
      return 2;
    }
    activity = cache::parseTierActivity(metrics->body);
  }
  std::printf(
      "%s",
      cache::formatCacheStats(*stats, limits, activity, SystemClock::instance().nowMs()).c_str());
  return 0;
}

// An image tag as the tag commands take it: "<repository key>/<image name>:<tag>".
struct TagReference {
  std::string key;
  std::string name;
  std::string tag;

  std::string adminPath(std::string_view action) const {
    return "/api/v1/repositories/" + key + "/images/" + name + "/tags/" + tag + "/" +
           std::string(action);
  }
};

std::optional<TagReference> parseTagReference(const std::string& text) {
  size_t slash = text.find('/');
  size_t colon = text.rfind(':');
  if (slash == std::string::npos || colon == std::string::npos || colon < slash + 2 ||
      colon + 1 == text.size() || slash == 0) {
    std::fprintf(stderr,
                 "outpost: \"%s\" is not a tag reference; write <repository>/<image>:<tag>, "
                 "for example local/team/app:1.0\n",
                 text.c_str());
    return std::nullopt;
  }
  return TagReference{text.substr(0, slash), text.substr(slash + 1, colon - slash - 1),
                      text.substr(colon + 1)};
}

// Prints the server's error message for a failed admin request and returns the exit status.
int reportAdminFailure(const Expected<proxy::AdminResponse>& response) {
  if (!response) {
    std::fprintf(stderr, "outpost: %s\n", response.status().toString().c_str());
    return 1;
  }
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  std::string message = response->body;
  if (body.is_object() && body.contains("errors") && body["errors"].is_array() &&
      !body["errors"].empty() && body["errors"][0].is_object()) {
    message = body["errors"][0].value("message", message);
  }
  std::fprintf(stderr, "outpost: the server returned %d: %s\n", response->status,
               message.c_str());
  return 1;
}

std::string jsonText(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : std::string("-");
}

int tagHistory(const std::string& server, const std::string& reference_text, size_t limit) {
  std::optional<TagReference> reference = parseTagReference(reference_text);
  if (!reference) {
    return 2;
  }
  Expected<proxy::AdminResponse> response = proxy::sendAdminRequest(
      server, "GET", reference->adminPath("history") + "?n=" + std::to_string(limit), "");
  if (!response || response->status != 200) {
    return reportAdminFailure(response);
  }
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  if (!body.is_object() || !body.contains("changes") || !body["changes"].is_array()) {
    std::fprintf(stderr, "outpost: the server sent a history that is not valid JSON\n");
    return 1;
  }
  std::printf("%s\ncurrent: %s\n", reference_text.c_str(), jsonText(body["current"]).c_str());
  if (body.contains("pinned")) {
    std::printf("pinned:  %s\n", jsonText(body["pinned"]).c_str());
  }
  std::printf("%-24s  %-8s  %-71s  %s\n", "time (UTC)", "cause", "old digest", "new digest");
  for (const nlohmann::json& change : body["changes"]) {
    std::printf("%-24s  %-8s  %-71s  %s\n", jsonText(change["time"]).c_str(),
                jsonText(change["cause"]).c_str(), jsonText(change["old_digest"]).c_str(),
                jsonText(change["new_digest"]).c_str());
  }
  return 0;
}

int tagRollback(const std::string& server, const std::string& reference_text,
                const std::string& digest) {
  std::optional<TagReference> reference = parseTagReference(reference_text);
  if (!reference) {
    return 2;
  }
  nlohmann::json request{{"digest", digest}};
  Expected<proxy::AdminResponse> response =
      proxy::sendAdminRequest(server, "POST", reference->adminPath("rollback"), request.dump());
  if (!response || response->status != 200) {
    return reportAdminFailure(response);
  }
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  bool pinned = body.is_object() && body.value("pinned", false);
  std::printf("%s now points to %s%s\n", reference_text.c_str(), digest.c_str(),
              pinned ? " (pinned: not revalidated until `outpost tag unpin`)" : "");
  return 0;
}

int tagUnpin(const std::string& server, const std::string& reference_text) {
  std::optional<TagReference> reference = parseTagReference(reference_text);
  if (!reference) {
    return 2;
  }
  Expected<proxy::AdminResponse> response =
      proxy::sendAdminRequest(server, "DELETE", reference->adminPath("pin"), "");
  if (!response || response->status != 200) {
    return reportAdminFailure(response);
  }
  std::printf("%s is no longer pinned; the upstream's digest applies again\n",
              reference_text.c_str());
  return 0;
}

// Maximum wait for the report of `outpost gc`, because the server sends it when the run ends.
constexpr int kGcTimeoutMs = 60 * 60 * 1000;

// Prints a garbage collection report. A dry run also lists the digests it would remove.
void printGcReport(const nlohmann::json& report, bool dry_run) {
  auto count = [&report](const char* key) {
    return std::to_string(report.value(key, uint64_t{0}));
  };
  const char* verb = dry_run ? "to remove" : "removed";
  if (dry_run) {
    std::printf("dry run: nothing was removed\n");
  }
  std::printf("blobs %s:      %s (%s bytes)\n", verb, count("blobs_removed").c_str(),
              count("bytes_removed").c_str());
  std::printf("manifests %s:  %s\n", verb, count("manifests_removed").c_str());
  std::printf("referrers %s:  %s\n", verb, count("referrers_removed").c_str());
  std::printf("holds without a blob %s: %s\n", verb, count("holds_removed").c_str());
  std::printf("blobs kept by the grace period: %s\n", count("blobs_in_grace").c_str());
  std::printf("manifests read: %s, blobs referenced: %s, duration: %s ms\n",
              count("manifests_marked").c_str(), count("blobs_marked").c_str(),
              count("duration_ms").c_str());
  if (!dry_run) {
    return;
  }

  const std::pair<const char*, const char*> lists[] = {{"removed_blobs", "blob"},
                                                       {"removed_manifests", "manifest"}};
  for (const auto& [key, kind] : lists) {
    for (const nlohmann::json& digest : report.value(key, nlohmann::json::array())) {
      std::printf("%s %s\n", kind, jsonText(digest).c_str());
    }
  }
}

int collectGarbage(const std::string& server, bool dry_run) {
  Expected<proxy::AdminResponse> response = proxy::sendAdminRequest(
      server, "POST", dry_run ? "/api/v1/gc?dry_run=true" : "/api/v1/gc", "", kGcTimeoutMs);
  if (!response || response->status != 200) {
    return reportAdminFailure(response);
  }
  nlohmann::json report = nlohmann::json::parse(response->body, nullptr, false);
  if (!report.is_object() || !report.contains("blobs_removed")) {
    std::fprintf(stderr, "outpost: the server sent a report that is not valid JSON\n");
    return 1;
  }
  printGcReport(report, dry_run);
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) {
  CLI::App app{"Outpost: a pull-through caching registry for Docker and OCI images"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("outpost ") + outpost::kVersion);

  std::string config_path = "conf/outpost.yaml";
  std::string log_level;
  CLI::App* serve = app.add_subcommand("serve", "Run the registry until SIGTERM or SIGINT");
  serve->add_option("-c,--config", config_path, "Configuration file (YAML)")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  serve->add_option("--log-level", log_level,
                    "Log level, overriding log.level: trace, debug, info, warn, error");

  CLI::App* check = app.add_subcommand("check-config", "Validate a configuration file and exit");
  check->add_option("-c,--config", config_path, "Configuration file (YAML)")
      ->capture_default_str()
      ->check(CLI::ExistingFile);

  bool repair = false;
  bool verify_digests = false;
  CLI::App* fsck = app.add_subcommand(
      "fsck",
      "Check that the blob index matches the blob files in storage.data_dir and every "
      "storage.lower_tiers folder, and print one line per finding. Stop the server on that "
      "data_dir first: fsck cannot open a locked index");
  fsck->add_option("-c,--config", config_path, "Configuration file (YAML)")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  fsck->add_flag("--repair", repair,
                 "Repair the findings: delete index entries without files, index valid unindexed "
                 "files, record the tier of a blob found in another tier, move damaged and stray "
                 "files to quarantine/ in their tier's folder, and remove a second copy of a blob "
                 "left by an interrupted move once the copy the index names is verified");
  fsck->add_flag("--verify-digests", verify_digests,
                 "Also hash every indexed blob file and compare it with its digest. Reads every "
                 "byte of the store, so it is slow on a large one");
  fsck->footer(
      "Exit status: 0 when nothing was found or everything found was repaired, 1 when findings "
      "remain or a file could not be read, 2 on a usage or configuration error or when the "
      "index cannot be opened.");

  size_t top = 10;
  CLI::App* cache = app.add_subcommand("cache", "Inspect the blob cache");
  cache->require_subcommand(1);
  CLI::App* cache_stats = cache->add_subcommand(
      "stats",
      "Print the cache's size, its disk budget, and the largest and least recently used images "
      "and blobs, read from the index (safe while the server runs)");
  cache_stats->add_option("-c,--config", config_path, "Configuration file (YAML)")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  cache_stats->add_option("--top", top, "Entries in each list")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  std::string stats_server_url;
  cache_stats->add_option("-s,--server", stats_server_url,
                          "Also print each tier's hits, promotions, demotions and evictions "
                          "from this running server's /metrics, http://host:port");

  std::string server_url = "http://127.0.0.1:5000";
  std::string tag_reference;
  std::string rollback_digest;
  size_t history_limit = 20;
  CLI::App* tag = app.add_subcommand(
      "tag", "Show a tag's history, roll it back, or unpin it, through a running server's admin API");
  tag->require_subcommand(1);
  auto add_tag_options = [&](CLI::App* command) {
    command->add_option("reference", tag_reference, "<repository>/<image>:<tag>")->required();
    command->add_option("-s,--server", server_url, "The server's address, http://host:port")
        ->capture_default_str();
  };
  CLI::App* tag_history = tag->add_subcommand(
      "history", "Print the tag's changes, newest first: time, cause, old and new digest");
  add_tag_options(tag_history);
  tag_history->add_option("-n,--limit", history_limit, "Changes to print")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  CLI::App* tag_rollback = tag->add_subcommand(
      "rollback",
      "Point the tag back to a digest from its history. In a local repository this moves the "
      "tag; in a remote one it pins the tag to that digest until `outpost tag unpin`");
  add_tag_options(tag_rollback);
  tag_rollback->add_option("-d,--digest", rollback_digest, "The digest, sha256:<hex>")
      ->required();
  CLI::App* tag_unpin = tag->add_subcommand(
      "unpin", "Remove a remote tag's pin, so that the upstream's digest applies again");
  add_tag_options(tag_unpin);
  tag->footer("Exit status: 0 on success, 1 when the server failed or rejected the request, 2 on "
              "a usage error.");

  bool gc_dry_run = false;
  CLI::App* gc = app.add_subcommand(
      "gc",
      "Remove the blobs and manifests that no image of a local repository references any more, "
      "through a running server's admin API, and print what was removed. Content added within "
      "storage.gc_grace_period stays. Waits up to an hour for the run to end");
  gc->add_flag("--dry-run", gc_dry_run,
               "Report what a run would remove, with the digests, and remove nothing");
  gc->add_option("-s,--server", server_url, "The server's address, http://host:port")
      ->capture_default_str();
  gc->footer(
      "Exit status: 0 on success, 1 when the server failed, rejected the request or is "
      "already collecting, 2 on a usage error.");

  CLI::App* version = app.add_subcommand("version", "Print the version and exit");

  bool is_known_command = false;
  for (const CLI::App* command : app.get_subcommands({})) {
    is_known_command = is_known_command || (argc > 1 && command->get_name() == argv[1]);
  }
  if (argc > 1 && argv[1][0] != '-' && !is_known_command) {
    std::fprintf(stderr, "outpost: unknown command \"%s\"; run outpost --help for the list\n",
                 argv[1]);
    return 2;
  }
  // A usage error exits with 2, like the unknown command above. --help and --version exit 0.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }

  if (serve->parsed()) {
    return outpost::serve(config_path, log_level);
  }
  if (check->parsed()) {
    return outpost::checkConfig(config_path);
  }
  if (fsck->parsed()) {
    return outpost::fsck(config_path, repair, verify_digests);
  }
  if (cache_stats->parsed()) {
    return outpost::cacheStats(config_path, top, stats_server_url);
  }
  if (tag_history->parsed()) {
    return outpost::tagHistory(server_url, tag_reference, history_limit);
  }
  if (tag_rollback->parsed()) {
    return outpost::tagRollback(server_url, tag_reference, rollback_digest);
  }
  if (tag_unpin->parsed()) {
    return outpost::tagUnpin(server_url, tag_reference);
  }
  if (gc->parsed()) {
    return outpost::collectGarbage(server_url, gc_dry_run);
  }
  if (version->parsed()) {
    std::printf("outpost %s\n", outpost::kVersion);
  }
  return 0;
}
