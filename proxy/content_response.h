// Responses that remote and local repositories send alike: a stored manifest, a committed blob
// file, and one page of a sorted list (tags, catalog) with the OCI pagination parameters.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "cache/disk_budget.h"
#include "proxy/http_server.h"
#include "storage/blob_store.h"
#include "storage/index.h"

namespace outpost::proxy {

// Receives the failure of a read in place of its error response, so that a virtual repository
// can ask its next member. kNotFound means that the repository does not have the reference. Any
// other code is a failure that the repository would have sent, such as an upstream that cannot
// be reached. It runs on the exchange's loop thread, at most once, possibly before the call
// that was given it returns. The exchange may have closed by then, and every response call on
// it is then a no-op.
using MissHandler = std::function<void(const Status& failure)>;

// Sends a manifest with its media type and digest (200, or the head alone for HEAD).
void respondManifest(Exchange& exchange, const Digest& digest, std::string_view media_type,
                     std::string_view body);

// The bytes of a blob that one response sends.
struct BlobRangePlan {
  uint64_t first = 0;
  uint64_t length = 0;
};

// Writes the head of a blob response of `size` bytes, honouring a single Range. Returns the
// byte range to send, or nothing when the response was sent already (416).
std::optional<BlobRangePlan> startBlobResponse(Exchange& exchange, const Digest& digest,
                                               uint64_t size);

// Sends a committed blob with sendfile(2), or the part a single Range names (206, or 416
// when the range is unsatisfiable). `pin`, empty or not, lives until the bytes are sent, so the
// disk budget does not choose the blob meanwhile. Finishes the exchange.
void sendBlobFile(const std::shared_ptr<Exchange>& exchange, const Digest& digest,
                  storage::BlobFile file, cache::DiskBudget::Pin pin);

// The "n" and "last" query parameters of a list request.
struct PageRequest {
  std::optional<uint64_t> limit;
  std::string last;
};

// Reads "n" and "last". For an "n" that is not a non-negative integer, sends 400
// PAGINATION_NUMBER_INVALID and returns nothing.
std::optional<PageRequest> readPageRequest(Exchange& exchange);

// Sends `body` with `field` set to the items of `sorted_items` after `page.last`, at most
// `page.limit` of them, and a Link header to the next page of `path` while more remain.
void respondListPage(Exchange& exchange, std::string_view path, nlohmann::json body,
                     const char* field, const std::vector<std::string>& sorted_items,
                     const PageRequest& page);

// Returns the descriptors of the referrers of a subject: one per manifest of `referrers` found
// in `index`, with its artifact type and annotations. A non-empty `artifact_type` keeps only
// the referrers of that type.
nlohmann::json referrerDescriptors(const Exchange& exchange, const storage::Index& index,
                                   const std::vector<Digest>& referrers,
                                   std::string_view artifact_type);

// Sends `descriptors` (from referrerDescriptors) as an OCI image index (200, also when there are
// none). A non-empty `artifact_type` adds OCI-Filters-Applied.
void respondReferrerIndex(Exchange& exchange, nlohmann::json descriptors,
                          std::string_view artifact_type);

// Sends the referrers of a subject: respondReferrerIndex over referrerDescriptors.
void respondReferrers(Exchange& exchange, const storage::Index& index,
                      const std::vector<Digest>& referrers, std::string_view artifact_type);

}  // namespace outpost::proxy
