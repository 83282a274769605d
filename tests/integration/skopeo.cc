#include "tests/integration/skopeo.h"

#include <utility>

namespace outpost::integration {
namespace {

constexpr const char* kPolicyJson = R"({"default": [{"type": "insecureAcceptAnything"}]})"
                                    "\n";

// No short names are resolved, so every reference must name its registry.
constexpr const char* kRegistriesConf = "unqualified-search-registries = []\n";

// Returns the TLS and credential flags for one side of a command. `prefix` is "--src-",
// "--dest-" or "--".
std::vector<std::string> endpointFlags(const RegistryEndpoint& endpoint, std::string_view prefix) {
  std::string flag_prefix(prefix);
  std::vector<std::string> flags;
  if (!endpoint.use_tls) {
    flags.push_back(flag_prefix + "tls-verify=false");
  } else if (!endpoint.ca_dir.empty()) {
    flags.push_back(flag_prefix + "cert-dir");
    flags.push_back(endpoint.ca_dir);
  }
  if (endpoint.hasCredentials()) {
    flags.push_back(flag_prefix + "creds");
    flags.push_back(endpoint.credentials());
  }
  return flags;
}

}  // namespace

Expected<std::unique_ptr<Skopeo>> Skopeo::create() {
  OUTPOST_ASSIGN_OR_RETURN(TempDir dir, TempDir::create("skopeo"));
  for (const char* folder : {"home", "data", "config", "run", "tmp", "registries.d"}) {
    OUTPOST_RETURN_IF_ERROR(dir.makeSubdir(folder).status());
  }
  OUTPOST_RETURN_IF_ERROR(writeFile(dir.file("policy.json"), kPolicyJson));
  OUTPOST_RETURN_IF_ERROR(writeFile(dir.file("registries.conf"), kRegistriesConf));
  OUTPOST_RETURN_IF_ERROR(writeFile(dir.file("auth.json"), "{}\n", 0600));
  return std::make_unique<Skopeo>(PrivateTag{}, std::move(dir));
}

Skopeo::Skopeo(PrivateTag, TempDir dir) : dir_(std::move(dir)) {}

EnvChanges Skopeo::environment() const {
  EnvChanges env;
  env.set = {
      {"HOME", dir_.file("home")},
      {"XDG_DATA_HOME", dir_.file("data")},
      {"XDG_CONFIG_HOME", dir_.file("config")},
      {"XDG_RUNTIME_DIR", dir_.file("run")},
      {"TMPDIR", dir_.file("tmp")},
      {"REGISTRY_AUTH_FILE", dir_.file("auth.json")},
  };
  env.unset = {"DOCKER_CONFIG", "CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF",
               "REGISTRIES_CONFIG_PATH"};
  return env;
}

Expected<CommandResult> Skopeo::run(std::vector<std::string> arguments, int timeout_ms) const {
  std::vector<std::string> argv = {"skopeo",
                                   "--policy",
                                   dir_.file("policy.json"),
                                   "--registries-conf",
                                   dir_.file("registries.conf"),
                                   "--registries.d",
                                   dir_.file("registries.d"),
                                   "--tmpdir",
                                   dir_.file("tmp")};
  argv.insert(argv.end(), std::make_move_iterator(arguments.begin()),
              std::make_move_iterator(arguments.end()));
  RunOptions options;
  options.env = environment();
  options.timeout_ms = timeout_ms;
  return integration::run(std::move(argv), options);
}

Expected<CommandResult> Skopeo::copy(const std::string& source, const std::string& destination,
                                     const std::vector<std::string>& extra_args) const {
  std::vector<std::string> arguments = {"copy"};
  arguments.insert(arguments.end(), extra_args.begin(), extra_args.end());
  arguments.push_back(source);
  arguments.push_back(destination);
  return run(std::move(arguments));
}

Expected<CommandResult> Skopeo::inspect(const std::string& image,
                                        const std::vector<std::string>& extra_args) const {
  std::vector<std::string> arguments = {"inspect"};
  arguments.insert(arguments.end(), extra_args.begin(), extra_args.end());
  arguments.push_back(image);
  return run(std::move(arguments));
}

Expected<std::string> Skopeo::inspectRaw(const RegistryEndpoint& endpoint,
                                         std::string_view repository_reference) const {
  std::vector<std::string> flags = imageFlags(endpoint);
  flags.push_back("--raw");
  OUTPOST_ASSIGN_OR_RETURN(CommandResult result,
                           inspect(dockerReference(endpoint, repository_reference), flags));
  OUTPOST_RETURN_IF_ERROR(result.toStatus());
  return std::move(result.stdout_text);
}

std::string Skopeo::dockerReference(const RegistryEndpoint& endpoint,
                                    std::string_view repository_reference) {
  return "docker://" + endpoint.host_port + "/" + std::string(repository_reference);
}

std::vector<std::string> Skopeo::sourceFlags(const RegistryEndpoint& endpoint) {
  return endpointFlags(endpoint, "--src-");
}

std::vector<std::string> Skopeo::destinationFlags(const RegistryEndpoint& endpoint) {
  return endpointFlags(endpoint, "--dest-");
}

std::vector<std::string> Skopeo::imageFlags(const RegistryEndpoint& endpoint) {
  return endpointFlags(endpoint, "--");
}

}  // namespace outpost::integration
