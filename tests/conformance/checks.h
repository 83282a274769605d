// The checks of each workflow category of the OCI distribution specification 1.1 (spec.md,
// "Workflow Categories"): pull, push, content discovery and content management.
//
// Each area pushes the content it needs itself, so any area can run alone (--only). Names of
// tags carry the run id, so a second run against the same registry does not trip over the
// first one's tags.
#pragma once

#include <string>

#include "tests/conformance/check_runner.h"
#include "tests/conformance/registry_client.h"
#include "tests/conformance/test_content.h"

namespace outpost::conformance {

struct Session {
  RegistryClient client;
  // The repository that the checks push to and pull from.
  std::string name;
  // A second repository, the source of cross-repository mounts.
  std::string mount_source_name;
  ContentFactory content;
  Runner runner;
};

// An image manifest with one configuration blob and two layers, all pushed.
struct PushedImage {
  Blob config;
  std::vector<Blob> layers;
  Manifest manifest;
};

// Makes an image, pushes its blobs to `name` and its manifest under `reference`, or under its
// own digest when `reference` is empty.
Expected<PushedImage> pushImage(Session& session, const std::string& name,
                                const std::string& reference);

// Returns a tag of this run: "<prefix>-<run id>".
std::string runTag(const Session& session, std::string_view prefix);

void runPullChecks(Session& session);
void runPushChecks(Session& session);
void runDiscoveryChecks(Session& session);
void runManagementChecks(Session& session);

}  // namespace outpost::conformance
