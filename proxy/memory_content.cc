#include "proxy/memory_content.h"

#include <unistd.h>

#include "base/log.h"
#include "base/unique_fd.h"
#include "proxy/blocking_work.h"
#include "proxy/content_response.h"

namespace outpost::proxy {
namespace {

constexpr std::string_view kApiVersionHeader = "Docker-Distribution-API-Version";
constexpr std::string_view kApiVersion = "registry/2.0";

}  // namespace

void respondManifestItem(Exchange& exchange, const Digest& digest,
                         const cache::MemoryItemRef& item) {
  ResponseHead head(200);
  head.add("Content-Type", item->media_type);
  head.add("Docker-Content-Digest", digest.str());
  head.add("ETag", "\"" + digest.str() + "\"");
  head.add(kApiVersionHeader, kApiVersion);
  exchange.startResponse(std::move(head), item->bytes.size());
  exchange.sendBuffer(item, item->bytes, nullptr);
  // The buffer keeps its place in the queue: the exchange completes once it is sent.
  exchange.finish();
}

void sendBlobItem(const std::shared_ptr<Exchange>& exchange, const Digest& digest,
                  cache::MemoryItemRef item) {
  std::optional<BlobRangePlan> plan = startBlobResponse(*exchange, digest, item->bytes.size());
  if (!plan) {
    return;
  }
  std::string_view bytes = std::string_view(item->bytes).substr(plan->first, plan->length);
  exchange->sendBuffer(std::move(item), bytes, nullptr);
  exchange->finish();
}

Expected<cache::MemoryItemRef> readManifest(cache::MemoryTier& memory, const storage::Index& index,
                                            const Digest& digest) {
  if (cache::MemoryItemRef item = memory.find(cache::ContentKind::kManifest, digest)) {
    return item;
  }
  OUTPOST_ASSIGN_OR_RETURN(storage::ManifestRecord record, index.getManifest(digest));
  auto item = std::make_shared<const cache::MemoryItem>(
      cache::MemoryItem{std::move(record.body), std::move(record.media_type)});
  memory.insert(cache::ContentKind::kManifest, digest, item, cache::InsertOrigin::kPromotion);
  return cache::MemoryItemRef(std::move(item));
}

void keepManifest(cache::MemoryTier& memory, const Digest& digest, std::string media_type,
                  std::string body) {
  if (!memory.admits(body.size())) {
    return;
  }
  memory.insert(cache::ContentKind::kManifest, digest,
                std::make_shared<const cache::MemoryItem>(
                    cache::MemoryItem{std::move(body), std::move(media_type)}),
                cache::InsertOrigin::kFill);
}

Expected<std::string> readWholeBlob(const storage::BlobFile& file) {
  std::string bytes;
  bytes.resize(file.size);
  uint64_t done = 0;
  while (done < file.size) {
    ssize_t read = retryOnEintr([&] {
      return ::pread(file.fd.get(), bytes.data() + done, file.size - done,
                     static_cast<off_t>(done));
    });
    if (read < 0) {
      return errnoStatus("pread", errno);
    }
    if (read == 0) {
      return corruption("blob file ended after " + std::to_string(done) + " of " +
                        std::to_string(file.size) + " bytes");
    }
    done += static_cast<uint64_t>(read);
  }
  return bytes;
}

void promoteBlob(EventLoop& loop, cache::MemoryTier& memory, const storage::BlobStore& store,
                 const Digest& digest, uint64_t size_bytes) {
  cache::MemoryTier::PromotionClaim claim =
      memory.claimPromotion(cache::ContentKind::kBlob, digest, size_bytes);
  if (!claim) {
    return;
  }
  // std::function needs a copyable callable, and the claim moves only.
  auto shared_claim = std::make_shared<cache::MemoryTier::PromotionClaim>(std::move(claim));
  runBlocking(
      loop.uv(),
      [&memory, &store, digest, shared_claim] {
        Expected<storage::BlobFile> file = store.openBlob(digest);
        Expected<std::string> bytes =
            file ? readWholeBlob(*file) : Expected<std::string>(file.status());
        if (!bytes) {
          log::cache().debug("blob not promoted to memory digest={} error=\"{}\"", digest.str(),
                             bytes.status().toString());
          return;
        }
        DigestHasher hasher(digest.algorithm());
        hasher.update(*bytes);
        if (Digest actual = hasher.finish(); actual != digest) {
          log::storage().error(
              "blob file does not match its digest, not promoted to memory digest={} actual={}",
              digest.str(), actual.str());
          return;
        }
        memory.insert(cache::ContentKind::kBlob, digest,
                      std::make_shared<const cache::MemoryItem>(
                          cache::MemoryItem{std::move(*bytes), std::string()}),
                      cache::InsertOrigin::kPromotion);
      },
      [] {});
}

}  // namespace outpost::proxy
