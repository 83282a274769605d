// Request parsing and routing for typical registry pulls: the server's RequestParser (llhttp)
// into a reused HttpRequest, then parseRegistryPath and RepositoryRouter::resolve on the parsed
// path. Each step is its own benchmark, swept over the three requests in kRequests.
#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/config.h"
#include "proxy/grammar.h"
#include "proxy/http_message.h"
#include "proxy/http_server.h"
#include "proxy/repository_router.h"
#include "proxy/request_parser.h"

namespace outpost::proxy {
namespace {

// Minimum measured time per benchmark. Results settle well within it, and it keeps the default
// run of the whole binary well under a minute on 2 cores.
constexpr double kMinTimeSeconds = 0.2;

struct SampleRequest {
  std::string_view label;
  std::string_view text;
  size_t header_count;
};

// containerd with Outpost as a hosts.toml mirror: a manifest HEAD with one long Accept line and
// the ?ns= parameter, resolved through the remote that mirrors docker.io.
constexpr std::string_view kContainerdManifestHead =
    "HEAD /v2/library/alpine/manifests/3.19?ns=docker.io HTTP/1.1\r\n"
    "Host: 127.0.0.1:5000\r\n"
    "User-Agent: containerd/1.7.13\r\n"
    "Accept: application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*\r\n"
    "Accept-Encoding: gzip\r\n"
    "\r\n";

// podman with a mirror location that names the repository key: a manifest GET with one Accept
// line per media type.
constexpr std::string_view kPodmanManifestGet =
    "GET /v2/dockerhub/library/nginx/manifests/1.25 HTTP/1.1\r\n"
    "Host: 127.0.0.1:5000\r\n"
    "User-Agent: containers/5.29.1 (github.com/containers/image)\r\n"
    "Accept: application/vnd.oci.image.manifest.v1+json\r\n"
    "Accept: application/vnd.docker.distribution.manifest.v2+json\r\n"
    "Accept: application/vnd.docker.distribution.manifest.v1+prettyjws\r\n"
    "Accept: application/vnd.docker.distribution.manifest.v1+json\r\n"
    "Accept: application/vnd.docker.distribution.manifest.list.v2+json\r\n"
    "Accept: application/vnd.oci.image.index.v1+json\r\n"
    "Docker-Distribution-Api-Version: registry/2.0\r\n"
    "Accept-Encoding: gzip\r\n"
    "\r\n";

// A Docker daemon with registry-mirrors resuming a layer download: a blob GET with Range,
// resolved through the default repository.
constexpr std::string_view kDockerBlobRangeGet =
    "GET /v2/library/redis/blobs/"
    "sha256:8a1e25ce7c4f75e372e9884f8f7b1bedcfe4a7a7d452eb4b0a1c7477c9a90345 HTTP/1.1\r\n"
    "Host: 127.0.0.1:5000\r\n"
    "User-Agent: docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.1.0 os/linux "
    "arch/amd64 UpstreamClient(Docker-Client/24.0.7 \\(linux\\))\r\n"
    "Range: bytes=1048576-\r\n"
    "Accept-Encoding: identity\r\n"
    "\r\n";

constexpr std::array<SampleRequest, 3> kRequests = {{
    {"containerd manifest HEAD", kContainerdManifestHead, 4},
    {"podman manifest GET", kPodmanManifestGet, 10},
    {"docker blob GET with Range", kDockerBlobRangeGet, 4},
}};

// The server's parser for one connection: every piece is appended to one reused HttpRequest,
// and parsing stops after each request, as in Connection::processInput.
struct ParseContext {
  HttpRequest request;
  ServerOptions options;
  RequestParser parser{&request, options.max_header_bytes, options.max_body_bytes};
};

// Parses one whole request held in `bytes`, as the server does when a read returned it
// complete, and leaves the parser ready for the next request on the connection.
bool parseOne(ParseContext& context, std::string_view bytes) {
  size_t consumed = 0;
  return context.parser.parse(bytes, &consumed) == RequestParser::Result::kComplete &&
         consumed == bytes.size();
}

// Returns an empty string when the parsed request is what kRequests[index] describes, else what
// differs. Run once before timing so that a broken parse fails the benchmark instead of timing
// an early error exit.
std::string checkParsed(const HttpRequest& request, size_t index) {
  const SampleRequest& sample = kRequests[index];
  if (request.headerCount() != sample.header_count) {
    return "parsed " + std::to_string(request.headerCount()) + " headers, expected " +
           std::to_string(sample.header_count);
  }
  if (!request.path().starts_with("/v2/")) {
    return "parsed path " + std::string(request.path()) + " does not start with /v2/";
  }
  return "";
}

// Outpost's routing configuration for the samples. No benchmark sends a request to these
// upstream URLs: the router only compares keys and host names.
Config sampleConfig() {
  Config config;
  RemoteConfig hub;
  hub.name = "dockerhub";
  hub.url = "http://127.0.0.1:5001";
  hub.hosts = {"docker.io", "registry-1.docker.io"};
  hub.library_prefix = true;
  RemoteConfig github;
  github.name = "ghcr";
  github.url = "http://127.0.0.1:5002";
  github.hosts = {"ghcr.io"};
  RemoteConfig quay;
  quay.name = "quay";
  quay.url = "http://127.0.0.1:5003";
  quay.hosts = {"quay.io"};
  config.remotes = {hub, github, quay};
  config.default_repository = "dockerhub";
  return config;
}

// Parses the sample into `context` once, outside any timing. Returns false and skips the
// benchmark when the sample does not parse as expected.
bool prepareSample(benchmark::State& state, ParseContext& context) {
  auto index = static_cast<size_t>(state.range(0));
  state.SetLabel(std::string(kRequests[index].label));
  if (!parseOne(context, kRequests[index].text)) {
    state.SkipWithError(std::string(context.parser.errorReason()).c_str());
    return false;
  }
  std::string mismatch = checkParsed(context.request, index);
  if (!mismatch.empty()) {
    state.SkipWithError(mismatch.c_str());
    return false;
  }
  return true;
}

void BM_ParseRequest(benchmark::State& state) {
  ParseContext context;
  if (!prepareSample(state, context)) {
    return;
  }
  std::string_view bytes = kRequests[static_cast<size_t>(state.range(0))].text;

  for (auto _ : state) {
    bool is_parsed = parseOne(context, bytes);
    benchmark::DoNotOptimize(context.request);
    if (!is_parsed) {
      state.SkipWithError(std::string(context.parser.errorReason()).c_str());
      break;
    }
  }

  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_ParseRequest)
    ->DenseRange(0, kRequests.size() - 1)
    ->ArgName("request")
    ->MinTime(kMinTimeSeconds);

void BM_ParseRegistryPath(benchmark::State& state) {
  ParseContext context;
  if (!prepareSample(state, context)) {
    return;
  }
  std::string_view path_after_v2 = context.request.path().substr(4);

  for (auto _ : state) {
    Expected<RegistryPath> parsed = parseRegistryPath(path_after_v2);
    benchmark::DoNotOptimize(parsed);
  }

  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseRegistryPath)
    ->DenseRange(0, kRequests.size() - 1)
    ->ArgName("request")
    ->MinTime(kMinTimeSeconds);

void BM_ResolveRepository(benchmark::State& state) {
  ParseContext context;
  if (!prepareSample(state, context)) {
    return;
  }
  Expected<RegistryPath> parsed = parseRegistryPath(context.request.path().substr(4));
  if (!parsed) {
    state.SkipWithError(parsed.status().toString().c_str());
    return;
  }
  // RegistryService reads ns the same way before it calls the router.
  std::optional<std::string> ns;
  if (context.request.hasQueryParam("ns")) {
    ns = context.request.queryParam("ns");
  }
  Config config = sampleConfig();
  RepositoryRouter router(config);
  Expected<RoutedName> first = router.resolve(parsed->name, ns);
  if (!first) {
    state.SkipWithError(first.status().toString().c_str());
    return;
  }

  for (auto _ : state) {
    Expected<RoutedName> routed = router.resolve(parsed->name, ns);
    benchmark::DoNotOptimize(routed);
  }

  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResolveRepository)
    ->DenseRange(0, kRequests.size() - 1)
    ->ArgName("request")
    ->MinTime(kMinTimeSeconds);

}  // namespace
}  // namespace outpost::proxy
