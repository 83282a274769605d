// ScriptedBlobTest: a fixture with one random blob served by a ScriptedUpstream and an Outpost
// in front of it, for tests of what Outpost does with that blob's download.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <string>

#include "base/digest.h"
#include "tests/integration/harness.h"
#include "tests/integration/outpost_server.h"
#include "tests/integration/scripted_upstream.h"

namespace outpost::integration {

class ScriptedBlobTest : public ::testing::Test {
 protected:
  // Starts the upstream with `size` random bytes from `seed` as the blob, then Outpost with
  // optionsForUpstream(), changed first by `configure` when given.
  void startWithBlob(size_t size, uint64_t seed,
                     const std::function<void(OutpostOptions&)>& configure = {}) {
    ASSERT_TRUE(upstream_.start().isOk());
    blob_ = randomBytes(size, seed);
    digest_ = sha256Of(blob_).str();
    upstream_path_ = "/v2/team/app/blobs/" + digest_;
    upstream_.setResource(upstream_path_, blob_);

    OutpostOptions options = optionsForUpstream(upstream_.url(), upstream_.hostPort());
    if (configure) {
      configure(options);
    }
    OUTPOST_ASSERT_OK_AND_ASSIGN(outpost_, OutpostServer::start(options));
    outpost_path_ = "/v2/upstream/team/app/blobs/" + digest_;
    blob_url_ = outpost_->url() + outpost_path_;
  }

  void TearDown() override {
    if (HasFailure() && outpost_) {
      std::cerr << "--- outpost log ---\n" << outpost_->logTail() << "\n";
    }
  }

  std::string storedPath() const { return outpost_->storedBlobPath(digest_); }

  ScriptedUpstream upstream_;
  std::unique_ptr<OutpostServer> outpost_;
  std::string blob_;
  std::string digest_;
  // The blob's path on the upstream, and its path and URL through Outpost.
  std::string upstream_path_;
  std::string outpost_path_;
  std::string blob_url_;
};

}  // namespace outpost::integration
