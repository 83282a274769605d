#include "tests/integration/outpost_server.h"

#include <signal.h>

#include <charconv>
#include <sstream>
#include <thread>

#include "tests/integration/http_client.h"

namespace outpost::integration {
namespace {

std::string yamlList(const std::vector<std::string>& items) {
  std::string text = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    text += (i == 0 ? "\"" : ", \"") + items[i] + "\"";
  }
  return text + "]";
}

}  // namespace

OutpostOptions optionsForUpstream(const std::string& url, const std::string& host_port) {
  OutpostRemote remote;
  remote.name = "upstream";
  remote.url = url;
  remote.hosts = {host_port};
  OutpostOptions options;
  options.remotes = {remote};
  return options;
}

OutpostServer::OutpostServer(PrivateTag, OutpostOptions options, TempDir dir)
    : options_(std::move(options)), dir_(std::move(dir)) {}

Expected<std::unique_ptr<OutpostServer>> OutpostServer::start(OutpostOptions options) {
  OUTPOST_ASSIGN_OR_RETURN(TempDir dir, TempDir::create("outpost"));
  auto server = std::make_unique<OutpostServer>(PrivateTag(), std::move(options), std::move(dir));
  server->config_path_ = server->dir_.file("outpost.yaml");
  server->data_dir_ =
      server->options_.data_dir.empty() ? server->dir_.file("data") : server->options_.data_dir;
  OUTPOST_ASSIGN_OR_RETURN(server->port_, freePort());

  const OutpostOptions& opts = server->options_;
  std::ostringstream yaml;
  yaml << "server:\n  listen_host: 127.0.0.1\n  port: " << server->port_
       << "\n  loops: " << opts.loops << "\n  shutdown_grace: 5s\n"
       << "upstream:\n  connect_timeout: 2s\n  response_timeout: 10s\n"
       << "  body_stall_timeout: " << opts.body_stall_timeout << "\n"
       << "  revalidate_timeout: " << opts.revalidate_timeout << "\n"
       << "  down_backoff: " << opts.down_backoff << "\n"
       << "  max_retries: " << opts.max_retries << "\n"
       << "storage:\n  data_dir: " << server->data_dir_ << "\n"
       << opts.storage_yaml << "log:\n  level: " << opts.log_level << "\n";
  if (!opts.default_repository.empty()) {
    yaml << "default_repository: " << opts.default_repository << "\n";
  }
  if (!opts.locals_yaml.empty()) {
    yaml << "locals:\n" << opts.locals_yaml;
  }
  if (!opts.virtuals_yaml.empty()) {
    yaml << "virtuals:\n" << opts.virtuals_yaml;
  }
  if (!opts.remotes.empty()) {
    yaml << "remotes:\n";
  }
  for (const OutpostRemote& remote : opts.remotes) {
    yaml << "  - name: " << remote.name << "\n    url: " << remote.url
         << "\n    hosts: " << yamlList(remote.hosts) << "\n    tag_ttl: " << remote.tag_ttl
         << "\n    library_prefix: " << (remote.library_prefix ? "true" : "false") << "\n";
    if (!remote.username.empty()) {
      yaml << "    username: " << remote.username << "\n    password: " << remote.password
           << "\n";
    }
    if (!remote.ca_file.empty()) {
      yaml << "    ca_file: " << remote.ca_file << "\n";
    }
  }
  OUTPOST_RETURN_IF_ERROR(writeFile(server->config_path_, yaml.str()));
  OUTPOST_RETURN_IF_ERROR(server->launch());
  return server;
}

Status OutpostServer::launch() {
  ProcessOptions process_options;
  process_options.argv = {OUTPOST_BINARY, "serve", "--config", config_path_};
  process_options.log_path = dir_.file("outpost.log");
  OUTPOST_ASSIGN_OR_RETURN(Process process, Process::start(std::move(process_options)));
  process_ = std::move(process);
  if (!waitForHttp(url() + "/healthz", 15'000, &*process_)) {
    return unavailable("outpost did not answer /healthz on " + hostPort() + " (" +
                       process_->exitDescription() + "); log:\n" + process_->logTail());
  }
  return Status::ok();
}

std::string OutpostServer::storedBlobPath(const std::string& digest) const {
  std::string hex = digest.substr(digest.find(':') + 1);
  return data_dir_ + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex;
}

std::string OutpostServer::hostPort() const { return "127.0.0.1:" + std::to_string(port_); }

RegistryEndpoint OutpostServer::endpoint() const {
  RegistryEndpoint endpoint;
  endpoint.host_port = hostPort();
  return endpoint;
}

std::string OutpostServer::stop() {
  if (!process_) {
    return "not started";
  }
  process_->stop(10'000);
  return process_->exitDescription();
}

void OutpostServer::kill() {
  if (process_ && process_->isRunning()) {
    ::kill(process_->pid(), SIGKILL);
    process_->stop(1000);
  }
}

Status OutpostServer::restart() {
  stop();
  return launch();
}

Expected<uint64_t> OutpostServer::metric(const std::string& name_with_labels) const {
  OUTPOST_ASSIGN_OR_RETURN(HttpResult result, httpGet(url() + "/metrics"));
  std::istringstream lines(result.body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > name_with_labels.size() && line.starts_with(name_with_labels) &&
        line[name_with_labels.size()] == ' ') {
      uint64_t value = 0;
      const char* begin = line.data() + name_with_labels.size() + 1;
      std::from_chars(begin, line.data() + line.size(), value);
      return value;
    }
  }
  return notFound("metric " + name_with_labels + " not in /metrics");
}

std::string OutpostServer::logTail(size_t max_bytes) const {
  return process_ ? process_->logTail(max_bytes) : std::string();
}

}  // namespace outpost::integration
