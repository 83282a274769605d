// addIndexedBlob: stores a blob the way the server does, for tests of what reads the store.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string_view>

#include "base/digest.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::storage::testing {

// Commits `content` through `store` and indexes it in `index` with fixed creation and access
// times (1000 and 2000 ms). A failing step fails the test.
inline Digest addIndexedBlob(BlobStore& store, Index& index, std::string_view content) {
  Digest digest = sha256Of(content);
  Expected<std::unique_ptr<BlobWriter>> writer = store.createWriter();
  EXPECT_TRUE(writer) << writer.status().toString();
  if (!writer) {
    return digest;
  }
  Status appended = (*writer)->append(content);
  EXPECT_TRUE(appended.isOk()) << appended.toString();
  Status committed = store.commit(**writer, digest);
  EXPECT_TRUE(committed.isOk()) << committed.toString();
  Status put = index.putBlob(digest, BlobRecord{content.size(), 1000, 2000});
  EXPECT_TRUE(put.isOk()) << put.toString();
  return digest;
}

}  // namespace outpost::storage::testing
