#include "proxy/repository_router.h"

#include <gtest/gtest.h>

namespace outpost::proxy {
namespace {

Config twoRemotes() {
  Config config;
  RemoteConfig hub;
  hub.name = "dockerhub";
  hub.url = "https://registry-1.docker.io";
  hub.hosts = {"docker.io", "registry-1.docker.io"};
  hub.library_prefix = true;
  RemoteConfig office;
  office.name = "office";
  office.url = "http://127.0.0.1:5001";
  office.hosts = {"registry.office.example:5000"};
  config.remotes = {hub, office};
  config.default_repository = "dockerhub";
  return config;
}

TEST(RepositoryRouterTest, ResolvesByKeyNsAndDefault) {
  struct Case {
    std::string label;
    std::string name;
    std::optional<std::string> ns;
    size_t remote;
    std::string routed;
  };
  const std::vector<Case> cases = {
      {"default adds library/", "alpine", std::nullopt, 0, "library/alpine"},
      {"default keeps two components", "grafana/grafana", std::nullopt, 0, "grafana/grafana"},
      {"key selects remote", "office/team/app", std::nullopt, 1, "team/app"},
      {"key on library remote adds library/", "dockerhub/redis", std::nullopt, 0,
       "library/redis"},
      {"key wins over ns", "office/app", std::string("docker.io"), 1, "app"},
      {"ns selects remote", "team/app", std::string("registry.office.example:5000"), 1,
       "team/app"},
      {"ns is case-insensitive", "busybox", std::string("Docker.IO"), 0, "library/busybox"},
      {"ns with other remote host", "library/nginx", std::string("registry-1.docker.io"), 0,
       "library/nginx"},
      {"unknown first component is a name", "unknown/app", std::nullopt, 0, "unknown/app"},
      {"key alone is an image name", "office", std::nullopt, 0, "library/office"},
  };
  Config config = twoRemotes();
  RepositoryRouter router(config);
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.label);
    std::optional<std::string_view> ns;
    if (test_case.ns) {
      ns = *test_case.ns;
    }
    Expected<RoutedName> routed = router.resolve(test_case.name, ns);
    ASSERT_TRUE(routed.hasValue()) << routed.status().toString();
    EXPECT_EQ(routed->kind, RepositoryKind::kRemote);
    EXPECT_EQ(routed->index, test_case.remote);
    EXPECT_EQ(routed->name, test_case.routed);
  }
}

TEST(RepositoryRouterTest, ResolvesLocalRepositories) {
  Config config = twoRemotes();
  LocalConfig builds;
  builds.name = "builds";
  LocalConfig releases;
  releases.name = "releases";
  config.locals = {builds, releases};

  RepositoryRouter router(config);
  Expected<RoutedName> routed = router.resolve("releases/team/app", std::nullopt);
  ASSERT_TRUE(routed.hasValue()) << routed.status().toString();
  EXPECT_EQ(routed->kind, RepositoryKind::kLocal);
  EXPECT_EQ(routed->index, 1u);
  // A local repository never adds "library/".
  EXPECT_EQ(routed->name, "team/app");

  config.default_repository = "builds";
  Expected<RoutedName> by_default = router.resolve("alpine", std::nullopt);
  ASSERT_TRUE(by_default.hasValue()) << by_default.status().toString();
  EXPECT_EQ(by_default->kind, RepositoryKind::kLocal);
  EXPECT_EQ(by_default->index, 0u);
  EXPECT_EQ(by_default->name, "alpine");
}

// twoRemotes() with local repositories "builds" and "releases" and virtual repositories
// "all" (builds, inner, dockerhub) and "inner" (releases, office, builds).
Config withVirtuals() {
  Config config = twoRemotes();
  LocalConfig builds;
  builds.name = "builds";
  LocalConfig releases;
  releases.name = "releases";
  config.locals = {builds, releases};
  VirtualConfig all;
  all.name = "all";
  all.members = {"builds", "inner", "dockerhub"};
  all.deployment = "builds";
  VirtualConfig inner;
  inner.name = "inner";
  inner.members = {"releases", "office", "builds"};
  config.virtuals = {all, inner};
  return config;
}

TEST(RepositoryRouterTest, ResolvesVirtualRepositoriesWithoutPrefix) {
  Config config = withVirtuals();
  RepositoryRouter router(config);

  Expected<RoutedName> routed = router.resolve("all/alpine", std::nullopt);
  ASSERT_TRUE(routed.hasValue()) << routed.status().toString();
  EXPECT_EQ(routed->kind, RepositoryKind::kVirtual);
  EXPECT_EQ(routed->index, 0u);
  // The members add "library/" themselves, each as configured.
  EXPECT_EQ(routed->name, "alpine");

  Expected<RoutedName> nested = router.resolve("inner/team/app", std::nullopt);
  ASSERT_TRUE(nested.hasValue()) << nested.status().toString();
  EXPECT_EQ(nested->kind, RepositoryKind::kVirtual);
  EXPECT_EQ(nested->index, 1u);
  EXPECT_EQ(nested->name, "team/app");

  config.default_repository = "all";
  Expected<RoutedName> by_default = router.resolve("redis", std::nullopt);
  ASSERT_TRUE(by_default.hasValue()) << by_default.status().toString();
  EXPECT_EQ(by_default->kind, RepositoryKind::kVirtual);
  EXPECT_EQ(by_default->index, 0u);
  EXPECT_EQ(by_default->name, "redis");
}

TEST(RepositoryRouterTest, FlattensVirtualMembers) {
  Config config = withVirtuals();
  RepositoryRouter router(config);

  // all = builds, inner (releases, office, builds), dockerhub: builds comes once, first.
  std::vector<RoutedName> members = router.flattenedMembers(0);
  ASSERT_EQ(members.size(), 4u);
  EXPECT_EQ(members[0].kind, RepositoryKind::kLocal);
  EXPECT_EQ(members[0].index, 0u);
  EXPECT_EQ(members[1].kind, RepositoryKind::kLocal);
  EXPECT_EQ(members[1].index, 1u);
  EXPECT_EQ(members[2].kind, RepositoryKind::kRemote);
  EXPECT_EQ(members[2].index, 1u);
  EXPECT_EQ(members[3].kind, RepositoryKind::kRemote);
  EXPECT_EQ(members[3].index, 0u);

  std::vector<RoutedName> inner = router.flattenedMembers(1);
  ASSERT_EQ(inner.size(), 3u);
  EXPECT_EQ(inner[0].kind, RepositoryKind::kLocal);
  EXPECT_EQ(inner[0].index, 1u);
  EXPECT_EQ(inner[1].kind, RepositoryKind::kRemote);
  EXPECT_EQ(inner[1].index, 1u);
  EXPECT_EQ(inner[2].kind, RepositoryKind::kLocal);
  EXPECT_EQ(inner[2].index, 0u);
}

TEST(RepositoryRouterTest, NameInRemoteFollowsLibraryPrefix) {
  Config config = twoRemotes();
  EXPECT_EQ(nameInRemote(config.remotes[0], "alpine"), "library/alpine");
  EXPECT_EQ(nameInRemote(config.remotes[0], "grafana/grafana"), "grafana/grafana");
  EXPECT_EQ(nameInRemote(config.remotes[1], "alpine"), "alpine");
}

TEST(RepositoryRouterTest, RejectsUnknownNsWithoutFallingBack) {
  Config config = twoRemotes();
  RepositoryRouter router(config);
  Expected<RoutedName> routed = router.resolve("library/alpine", std::string_view("ghcr.io"));
  ASSERT_FALSE(routed.hasValue());
  EXPECT_EQ(routed.status().code(), StatusCode::kNotFound);
  EXPECT_NE(routed.status().message().find("ghcr.io"), std::string_view::npos);
}

TEST(RepositoryRouterTest, FailsWithoutDefaultRepository) {
  Config config = twoRemotes();
  config.default_repository = "";
  RepositoryRouter router(config);
  Expected<RoutedName> routed = router.resolve("alpine", std::nullopt);
  ASSERT_FALSE(routed.hasValue());
  EXPECT_EQ(routed.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace outpost::proxy
