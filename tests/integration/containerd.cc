#include "tests/integration/containerd.h"

#include <chrono>
#include <filesystem>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "tests/integration/http_client.h"

namespace outpost::integration {
namespace {

constexpr int kStartTimeoutMs = 20'000;

std::string configToml(const TempDir& dir, const std::string& socket_path) {
  std::string toml = "version = 2\n";
  toml += "root = \"" + dir.file("root") + "\"\n";
  toml += "state = \"" + dir.file("state") + "\"\n";
  toml += "temp = \"" + dir.file("tmp") + "\"\n";
  toml +=
      "disabled_plugins = [\n"
      "  \"io.containerd.grpc.v1.cri\",\n"
      "  \"io.containerd.snapshotter.v1.aufs\",\n"
      "  \"io.containerd.snapshotter.v1.btrfs\",\n"
      "  \"io.containerd.snapshotter.v1.devmapper\",\n"
      "  \"io.containerd.snapshotter.v1.zfs\",\n"
      "  \"io.containerd.tracing.processor.v1.otlp\",\n"
      "  \"io.containerd.internal.v1.tracing\",\n"
      "]\n\n";
  toml += "[grpc]\n  address = \"" + socket_path + "\"\n\n";
  toml += "[ttrpc]\n  address = \"" + socket_path + ".ttrpc\"\n\n";
  toml += "[debug]\n  address = \"\"\n\n";
  toml += "[metrics]\n  address = \"\"\n\n";
  toml += "[plugins]\n  [plugins.\"io.containerd.internal.v1.opt\"]\n";
  toml += "    path = \"" + dir.file("opt") + "\"\n";
  return toml;
}

// One `[host."URL"]` table. containerd 1.6.20 fails to decode a hosts.toml without any host
// table ("invalid `host` tree") and then falls back to the registry's default host, so every
// file written here has at least one.
std::string hostTable(const std::string& url, const std::vector<std::string>& capabilities,
                      const std::string& ca_file) {
  std::string table = "[host.\"" + url + "\"]\n  capabilities = [";
  for (size_t i = 0; i < capabilities.size(); ++i) {
    table += (i == 0 ? "\"" : ", \"") + capabilities[i] + "\"";
  }
  table += "]\n";
  if (!ca_file.empty()) {
    table += "  ca = \"" + ca_file + "\"\n";
  }
  return table + "\n";
}

// The folder names containerd tries for a host: "host_port_" and "host:port" for a host with
// a port, else the host itself.
std::vector<std::string> hostFolderNames(std::string_view registry_host) {
  std::string host(registry_host);
  size_t colon = host.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return {host};
  }
  return {host.substr(0, colon) + "_" + host.substr(colon + 1) + "_", host};
}

// True when `path` is a hosts.toml that containerd 1.6.20 can decode.
bool hasHostTable(const std::string& path) {
  Expected<std::string> contents = readFile(path);
  return contents.hasValue() && contents->find("[host.\"") != std::string::npos;
}

}  // namespace

Status writeHostsDir(const std::string& hosts_dir, std::string_view registry_host,
                     const std::vector<MirrorHost>& mirrors) {
  std::string closed_server(kClosedServerUrl);
  std::string host_file = "server = \"" + closed_server + "\"\n\n";
  for (const MirrorHost& mirror : mirrors) {
    OUTPOST_RETURN_IF_ERROR(parseUrl(mirror.url).status());
    host_file += hostTable(mirror.url, mirror.capabilities, mirror.ca_file);
  }
  if (mirrors.empty()) {
    host_file += hostTable(closed_server, {"pull", "resolve"}, "");
  }
  std::string default_file =
      "server = \"" + closed_server + "\"\n\n" + hostTable(closed_server, {"pull", "resolve"}, "");

  std::string host_folder = hosts_dir + "/" + hostFolderNames(registry_host).front();
  std::string default_folder = hosts_dir + "/_default";
  for (const std::string& folder : {host_folder, default_folder}) {
    std::error_code error;
    std::filesystem::create_directories(folder, error);
    if (error) {
      return ioError("creating folder " + folder + " failed: " + error.message());
    }
  }
  OUTPOST_RETURN_IF_ERROR(writeFile(host_folder + "/hosts.toml", host_file));
  return writeFile(default_folder + "/hosts.toml", default_file);
}

std::string registryHostOf(std::string_view reference) {
  size_t slash = reference.find('/');
  if (slash == std::string_view::npos) {
    return "docker.io";
  }
  std::string_view first = reference.substr(0, slash);
  if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
      first == "localhost") {
    return std::string(first);
  }
  return "docker.io";
}

Expected<std::unique_ptr<Containerd>> Containerd::start() {
  OUTPOST_ASSIGN_OR_RETURN(TempDir dir, TempDir::create("containerd"));
  for (const char* folder : {"root", "state", "tmp", "opt"}) {
    OUTPOST_RETURN_IF_ERROR(dir.makeSubdir(folder).status());
  }
  std::string socket_path = dir.file("containerd.sock");
  std::string config_path = dir.file("config.toml");
  OUTPOST_RETURN_IF_ERROR(writeFile(config_path, configToml(dir, socket_path)));

  ProcessOptions options;
  options.argv = {"containerd", "--config", config_path};
  options.log_path = dir.file("containerd.log");
  OUTPOST_ASSIGN_OR_RETURN(Process process, Process::start(std::move(options)));
  auto containerd = std::make_unique<Containerd>(PrivateTag{}, std::move(dir), std::move(process));

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartTimeoutMs);
  std::string last_error;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!containerd->process_.isRunning()) {
      return unavailable("containerd " + containerd->process_.exitDescription() + ": " +
                         containerd->logTail());
    }
    Expected<CommandResult> version = containerd->ctr({"version"}, 5000);
    if (version && version->succeeded()) {
      return containerd;
    }
    last_error = version ? version->describe() : version.status().toString();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status(StatusCode::kTimedOut, "containerd did not answer within 20 s: " + last_error +
                                           "\n" + containerd->logTail());
}

Containerd::Containerd(PrivateTag, TempDir dir, Process process)
    : dir_(std::move(dir)),
      socket_path_(dir_.file("containerd.sock")),
      process_(std::move(process)) {}

Expected<CommandResult> Containerd::ctr(std::vector<std::string> arguments, int timeout_ms) const {
  std::vector<std::string> argv = {"ctr", "--address", socket_path_, "--namespace",
                                   std::string(kNamespace)};
  argv.insert(argv.end(), std::make_move_iterator(arguments.begin()),
              std::make_move_iterator(arguments.end()));
  RunOptions options;
  options.timeout_ms = timeout_ms;
  // ctr reads CONTAINERD_* variables as defaults for its flags (snapshotter, namespace).
  options.env.unset_prefixes = {"CONTAINERD_"};
  return run(std::move(argv), options);
}

Expected<CommandResult> Containerd::pull(const std::string& reference, const std::string& hosts_dir,
                                         const std::vector<std::string>& extra_args) const {
  std::string registry_host = registryHostOf(reference);
  bool has_host_file = false;
  for (const std::string& folder : hostFolderNames(registry_host)) {
    has_host_file = has_host_file || hasHostTable(hosts_dir + "/" + folder + "/hosts.toml");
  }
  if (!has_host_file || !hasHostTable(hosts_dir + "/_default/hosts.toml")) {
    return invalidArgument("hosts folder " + hosts_dir + " lacks a hosts.toml with a [host] " +
                           "table for " + registry_host + " or for _default; write it with " +
                           "writeHostsDir() so that the pull stays on 127.0.0.1");
  }

  std::vector<std::string> arguments = {"images", "pull", "--hosts-dir", hosts_dir};
  arguments.insert(arguments.end(), extra_args.begin(), extra_args.end());
  arguments.push_back(reference);
  return ctr(std::move(arguments));
}

Expected<std::string> Containerd::imageDigest(const std::string& reference) const {
  OUTPOST_ASSIGN_OR_RETURN(CommandResult result, ctr({"images", "ls"}, 30'000));
  OUTPOST_RETURN_IF_ERROR(result.toStatus());

  // Columns: REF TYPE DIGEST SIZE PLATFORMS LABELS.
  std::istringstream lines(result.stdout_text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream columns(line);
    std::string name;
    std::string type;
    std::string digest;
    columns >> name >> type >> digest;
    if (name == reference) {
      return digest;
    }
  }
  return notFound("image " + reference + " is not in containerd: " + result.stdout_text);
}

Status Containerd::removeImage(const std::string& reference) const {
  OUTPOST_ASSIGN_OR_RETURN(CommandResult result,
                           ctr({"images", "rm", "--sync", reference}, 60'000));
  return result.toStatus();
}

}  // namespace outpost::integration
