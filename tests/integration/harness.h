// The integration-test harness: real registries, real clients and test images, all on
// 127.0.0.1.
//
// Pieces, each in its own header:
//   temp_dir.h              TempDir, removed at the end unless OUTPOST_KEEP_TEST_DIRS is set
//   process.h               Process for peers, run() for one-shot commands, CommandResult
//   http_client.h           freePort(), waitForHttp(), httpGet()/httpHead()/httpRequest()
//   certificates.h          a test CA with a server certificate, token signing keys
//   token_issuer.h          TokenIssuer, the bearer-token realm (token_issuer.py)
//   distribution_registry.h DistributionRegistry: plain, htpasswd, token, TLS, proxy modes
//   registry_endpoint.h     RegistryEndpoint: address, TLS and credentials of a registry
//   skopeo.h                Skopeo with a private configuration
//   image_builder.h         ImageBuilder (umoci + skopeo) and PushedImage with every digest
//   containerd.h            Containerd with a private daemon, writeHostsDir() for mirrors
//
// Fixtures start with a static start() or create() that returns Expected<std::unique_ptr<T>>
// and own a temporary folder with their config and logs. Destroying a fixture stops its
// processes by pid (SIGTERM, then SIGKILL) and removes the folder. For example:
//
//   TEST(PullTest, ThroughMirror) {
//     OUTPOST_ASSERT_OK_AND_ASSIGN(auto registry, DistributionRegistry::start());
//     OUTPOST_ASSERT_OK_AND_ASSIGN(auto skopeo, Skopeo::create());
//     OUTPOST_ASSERT_OK_AND_ASSIGN(auto builder, ImageBuilder::create(*skopeo));
//     OUTPOST_ASSERT_OK_AND_ASSIGN(PushedImage image,
//                                  builder->pushImage(registry->endpoint(), "library/app:v1"));
//     ...
//   }
//
// Every request any piece makes goes to 127.0.0.1: the HTTP client rejects other hosts,
// children start without proxy variables, and containerd pulls only through hosts folders
// whose fallback server is a closed loopback port.
#pragma once

#include <gtest/gtest.h>

#include "base/status.h"
#include "tests/integration/certificates.h"
#include "tests/integration/containerd.h"
#include "tests/integration/distribution_registry.h"
#include "tests/integration/http_client.h"
#include "tests/integration/image_builder.h"
#include "tests/integration/process.h"
#include "tests/integration/registry_endpoint.h"
#include "tests/integration/skopeo.h"
#include "tests/integration/temp_dir.h"
#include "tests/integration/token_issuer.h"

// Asserts that a Status is OK, printing the expression and the Status otherwise.
#define OUTPOST_ASSERT_OK(expr)                                       \
  do {                                                                \
    ::outpost::Status outpost_assert_status_ = (expr);                \
    ASSERT_TRUE(outpost_assert_status_.isOk())                        \
        << #expr << " failed: " << outpost_assert_status_.toString(); \
  } while (false)

// Like OUTPOST_ASSERT_OK, but the test goes on after a failure.
#define OUTPOST_EXPECT_OK(expr)                                       \
  do {                                                                \
    ::outpost::Status outpost_expect_status_ = (expr);                \
    EXPECT_TRUE(outpost_expect_status_.isOk())                        \
        << #expr << " failed: " << outpost_expect_status_.toString(); \
  } while (false)

// Declares `lhs` from an Expected-returning `expr`, or fails the test with its Status. Usable
// only in functions that return void, as ASSERT_* are.
#define OUTPOST_ASSERT_OK_AND_ASSIGN(lhs, expr)                                                 \
  auto OUTPOST_CONCAT(outpost_assert_expected_, __LINE__) = (expr);                             \
  ASSERT_TRUE(OUTPOST_CONCAT(outpost_assert_expected_, __LINE__).hasValue())                    \
      << #expr                                                                                  \
      << " failed: " << OUTPOST_CONCAT(outpost_assert_expected_, __LINE__).status().toString(); \
  lhs = std::move(OUTPOST_CONCAT(outpost_assert_expected_, __LINE__)).value()
