// Responses from the memory tier (cache::MemoryTier), and the steps that fill it, shared by
// remote and local repositories.
//
// What the tier contains is always verified content: a downloaded blob enters after its digest
// matched, a blob read from disk is hashed again before it enters, and a manifest enters with
// the bytes whose digest names it. So a copy stays correct whatever happens to the disk copy
// later (eviction, scrub, garbage collection, a deleted file). Repositories still check with
// the index whether an image contains the content before they serve it (memory_tier_test in
// the integration tests covers a local push and a deleted file). erase() after a scrub or
// garbage collection only frees memory sooner.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/digest.h"
#include "base/status.h"
#include "cache/memory_tier.h"
#include "proxy/event_loop.h"
#include "proxy/http_server.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::proxy {

// Sends a manifest from its shared buffer, with the headers of respondManifest (200, or the
// head alone for HEAD).
void respondManifestItem(Exchange& exchange, const Digest& digest,
                         const cache::MemoryItemRef& item);

// Sends a blob from its shared buffer, or the part a single Range names (206, or 416 when the
// range is unsatisfiable), with the headers of sendBlobFile. Finishes the exchange.
void sendBlobItem(const std::shared_ptr<Exchange>& exchange, const Digest& digest,
                  cache::MemoryItemRef item);

// Returns manifest `digest` from the memory tier, or reads its record from the index and keeps
// it in the tier as a promotion. Fails with the index's error, kNotFound when it has no record.
// The index read is a point lookup on the calling thread.
Expected<cache::MemoryItemRef> readManifest(cache::MemoryTier& memory, const storage::Index& index,
                                            const Digest& digest);

// Keeps a manifest whose bytes were just fetched or pushed, and whose digest the caller checked.
void keepManifest(cache::MemoryTier& memory, const Digest& digest, std::string media_type,
                  std::string body);

// After a blob of `size_bytes` was served from disk: when the tier would keep it, reads the
// file on the blocking work pool, checks its digest and keeps it as a promotion. At most one
// read per digest runs at a time, and none when kMaxPromotionsInFlight already run. A file that
// is gone or fails the check is left to the scrub, with a log line. Call on `loop`'s thread.
// `memory` and `store` must outlive the loop.
void promoteBlob(EventLoop& loop, cache::MemoryTier& memory, const storage::BlobStore& store,
                 const Digest& digest, uint64_t size_bytes);

// Reads the whole of `file` with pread(2). BLOCKING. Fails with an errno status, or with
// kCorruption when the file ends before file.size bytes.
Expected<std::string> readWholeBlob(const storage::BlobFile& file);

}  // namespace outpost::proxy
