#include "tests/integration/distribution_registry.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "tests/integration/http_client.h"

namespace outpost::integration {
namespace {

constexpr int kStartTimeoutMs = 15'000;
constexpr int kPortAttempts = 3;

// Returns `text` as a double-quoted YAML scalar.
std::string yamlQuoted(std::string_view text) {
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
    }
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

}  // namespace

Expected<std::unique_ptr<DistributionRegistry>> DistributionRegistry::start(
    RegistryOptions options) {
  if (options.proxy.has_value()) {
    OUTPOST_RETURN_IF_ERROR(parseUrl(options.proxy->remote_url).status());
  }
  OUTPOST_ASSIGN_OR_RETURN(TempDir dir, TempDir::create("registry"));
  auto registry =
      std::make_unique<DistributionRegistry>(PrivateTag{}, std::move(options), std::move(dir));
  OUTPOST_RETURN_IF_ERROR(registry->prepareFiles());

  Status last_status;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    OUTPOST_ASSIGN_OR_RETURN(registry->port_, freePort());
    last_status = registry->launch();
    if (last_status.isOk()) {
      return registry;
    }
    if (last_status.code() != StatusCode::kAlreadyExists) {
      return last_status;
    }
  }
  return last_status;
}

DistributionRegistry::DistributionRegistry(PrivateTag, RegistryOptions options, TempDir dir)
    : options_(std::move(options)), dir_(std::move(dir)) {}

DistributionRegistry::~DistributionRegistry() = default;

Status DistributionRegistry::prepareFiles() {
  OUTPOST_ASSIGN_OR_RETURN(storage_dir_, dir_.makeSubdir("storage"));
  config_path_ = dir_.file("config.yml");

  if (options_.use_tls) {
    OUTPOST_ASSIGN_OR_RETURN(std::string tls_dir, dir_.makeSubdir("tls"));
    OUTPOST_ASSIGN_OR_RETURN(certificates_, makeTestCertificates(tls_dir));
  }

  switch (options_.auth) {
    case RegistryAuth::kNone:
      break;
    case RegistryAuth::kHtpasswd: {
      // distribution 2.8.2 accepts bcrypt entries only.
      OUTPOST_ASSIGN_OR_RETURN(CommandResult result,
                               run({"htpasswd", "-Bbn", options_.username, options_.password}));
      OUTPOST_RETURN_IF_ERROR(result.toStatus());
      htpasswd_path_ = dir_.file("htpasswd");
      OUTPOST_RETURN_IF_ERROR(writeFile(htpasswd_path_, result.stdout_text, 0600));
      break;
    }
    case RegistryAuth::kToken: {
      TokenIssuerOptions issuer_options;
      issuer_options.service = options_.service;
      issuer_options.username = options_.username;
      issuer_options.password = options_.password;
      OUTPOST_ASSIGN_OR_RETURN(token_issuer_, TokenIssuer::start(std::move(issuer_options)));
      break;
    }
  }
  return Status::ok();
}

std::string DistributionRegistry::configYaml() const {
  std::string yaml = "version: 0.1\nlog:\n  level: info\n";
  yaml += "storage:\n  filesystem:\n    rootdirectory: " + yamlQuoted(storage_dir_) + "\n";
  yaml += "  delete:\n    enabled: true\n";
  yaml += "  maintenance:\n    uploadpurging:\n      enabled: false\n";
  yaml += "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n";

  if (options_.use_tls) {
    yaml += "  tls:\n";
    yaml += "    certificate: " + yamlQuoted(certificates_.certificate_file) + "\n";
    yaml += "    key: " + yamlQuoted(certificates_.key_file) + "\n";
  }

  if (options_.auth == RegistryAuth::kHtpasswd) {
    yaml += "auth:\n  htpasswd:\n    realm: outpost-test\n";
    yaml += "    path: " + yamlQuoted(htpasswd_path_) + "\n";
  } else if (options_.auth == RegistryAuth::kToken) {
    yaml += "auth:\n  token:\n";
    yaml += "    realm: " + yamlQuoted(token_issuer_->realm()) + "\n";
    yaml += "    service: " + yamlQuoted(token_issuer_->options().service) + "\n";
    yaml += "    issuer: " + yamlQuoted(token_issuer_->options().issuer) + "\n";
    yaml += "    rootcertbundle: " + yamlQuoted(token_issuer_->certificateFile()) + "\n";
  }

  if (options_.proxy.has_value()) {
    yaml += "proxy:\n";
    yaml += "  remoteurl: " + yamlQuoted(options_.proxy->remote_url) + "\n";
    if (!options_.proxy->username.empty()) {
      yaml += "  username: " + yamlQuoted(options_.proxy->username) + "\n";
      yaml += "  password: " + yamlQuoted(options_.proxy->password) + "\n";
    }
  }
  return yaml;
}

Status DistributionRegistry::launch() {
  OUTPOST_RETURN_IF_ERROR(writeFile(config_path_, configYaml(), 0600));

  // The log is appended across restarts, so only the part after this offset is about this run.
  std::string log_path = dir_.file("registry.log");
  Expected<std::string> earlier_log = readFile(log_path);
  size_t log_offset = earlier_log ? earlier_log->size() : 0;

  ProcessOptions process_options;
  process_options.argv = {"docker-registry", "serve", config_path_};
  process_options.env.unset_prefixes = {"REGISTRY_"};
  if (options_.proxy.has_value() && !options_.proxy->ca_file.empty()) {
    process_options.env.set.emplace_back("SSL_CERT_FILE", options_.proxy->ca_file);
  }
  process_options.log_path = log_path;
  OUTPOST_ASSIGN_OR_RETURN(process_, Process::start(std::move(process_options)));

  // Another server may own the port if ours lost the race for it, so an HTTP response alone
  // proves nothing. distribution logs "listening on ADDRESS" once it has bound the port.
  std::string listening = "listening on " + hostPort();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartTimeoutMs);
  std::string log;
  while (process_->isRunning() && std::chrono::steady_clock::now() < deadline) {
    Expected<std::string> full_log = readFile(log_path);
    log = full_log ? full_log->substr(std::min(log_offset, full_log->size())) : std::string();
    if (log.find(listening) != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  bool is_listening = log.find(listening) != std::string::npos;
  if (is_listening && waitForHttp(url() + "/v2/", kStartTimeoutMs, &*process_)) {
    return Status::ok();
  }

  std::string exit_description = process_->exitDescription();
  process_->stop();
  if (log.find("address already in use") != std::string::npos) {
    return Status(StatusCode::kAlreadyExists, "port " + std::to_string(port_) + " is taken");
  }
  return unavailable("docker-registry did not start on " + hostPort() + " (" + exit_description +
                     "): " + process_->logTail());
}

std::string DistributionRegistry::url() const {
  return (options_.use_tls ? "https://" : "http://") + hostPort();
}

std::string DistributionRegistry::hostPort() const { return "127.0.0.1:" + std::to_string(port_); }

RegistryEndpoint DistributionRegistry::endpoint() const {
  RegistryEndpoint endpoint = anonymousEndpoint();
  if (options_.auth != RegistryAuth::kNone) {
    endpoint.username = options_.username;
    endpoint.password = options_.password;
  }
  return endpoint;
}

RegistryEndpoint DistributionRegistry::anonymousEndpoint() const {
  RegistryEndpoint endpoint;
  endpoint.host_port = hostPort();
  endpoint.use_tls = options_.use_tls;
  endpoint.ca_dir = certificates_.ca_dir;
  endpoint.ca_file = certificates_.ca_file;
  return endpoint;
}

void DistributionRegistry::stop() {
  if (process_.has_value()) {
    process_->stop();
  }
}

Status DistributionRegistry::restart() {
  if (isRunning()) {
    return Status(StatusCode::kAlreadyExists, "registry on " + hostPort() + " is running");
  }
  return launch();
}

bool DistributionRegistry::isRunning() { return process_.has_value() && process_->isRunning(); }

std::string DistributionRegistry::logTail(size_t max_bytes) const {
  return process_.has_value() ? process_->logTail(max_bytes) : std::string();
}

}  // namespace outpost::integration
