// outpost_index_fill: fills an Outpost index with generated records, so that the load benchmark
// can measure start-up time and manifest lookups over a large index.
//
//   outpost_index_fill --data-dir DIR --remote NAME --repository REPO --count N [--seed S]
//                      [--sample-out FILE --sample-count M]
//
// It creates DIR/index, the folder that `outpost serve` opens under storage.data_dir, and writes
// for each image number i in [0, N):
//   - the blob record of blob i,
//   - the manifest record of image i: an OCI image manifest of about 500 bytes whose config is
//     blob i and whose layer is blob i+1 (blob 0 for the last image). It is indented with three
//     spaces, as CNCF distribution's manifest packages write manifests,
//   - a link from remote NAME to that manifest, the record that
//     GET /v2/NAME/REPO/manifests/<digest> checks before it serves the manifest from the index,
//   - for every 1,000th image, a tag "fill-<i / 1000>" of REPO under NAME.
//
// Blob i stands for the bytes "outpost_index_fill seed=S blob=i\n". Every digest is the true
// sha256 of its bytes, and every size their true length, but no blob file is written: start-up
// must not read blob files, and the benchmark measures exactly that. A GET of a blob therefore
// fails, and `outpost fsck` reports every blob record as missing its file.
//
// Records go in unsynced batches of about kBatchPuts puts. At the end the memtables are flushed
// into table files, so that the index is durable and the server's start-up replays no
// write-ahead log. Then the index is compacted, so that no compaction left over from the fill
// runs inside the server while it is measured.
//
// The server must run with the scrub off (storage.scrub_bytes_per_second: 0), or the scrub
// deletes every blob record, since its file is missing.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/log.h"
#include "base/status.h"
#include "proxy/grammar.h"
#include "storage/index.h"
#include "storage/index_record.h"

namespace outpost {
namespace {

constexpr std::string_view kManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kConfigMediaType = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kLayerMediaType = "application/vnd.oci.image.layer.v1.tar+gzip";

// Puts per unsynced batch. Each image takes three puts, four with a tag.
constexpr size_t kBatchPuts = 10'000;
constexpr uint64_t kImagesPerTag = 1'000;
// Upper limit of --count. It keeps count * k in sampleImages below 2^64, and at about 400 bytes
// of index per image it allows an index of about 400 GB.
constexpr uint64_t kMaxImages = 1'000'000'000;

struct FillOptions {
  std::filesystem::path data_dir;
  std::string remote;
  std::string repository;
  uint64_t count = 0;
  uint64_t seed = 1;
  std::filesystem::path sample_out;
  uint64_t sample_count = 0;
};

struct FillTotals {
  uint64_t images = 0;
  uint64_t tags = 0;
  double write_seconds = 0;
  double flush_seconds = 0;
  double compact_seconds = 0;
};

struct Descriptor {
  Digest digest;
  uint64_t size = 0;
};

Descriptor blobDescriptor(uint64_t seed, uint64_t blob_number) {
  std::string content = "outpost_index_fill seed=" + std::to_string(seed) +
                        " blob=" + std::to_string(blob_number) + "\n";
  return Descriptor{sha256Of(content), content.size()};
}

void appendDescriptor(std::string& out, std::string_view media_type, const Descriptor& blob,
                      std::string_view indent) {
  out.append(indent).append("\"mediaType\": \"").append(media_type).append("\",\n");
  out.append(indent).append("\"size\": ").append(std::to_string(blob.size)).append(",\n");
  out.append(indent).append("\"digest\": \"").append(blob.digest.str()).append("\"\n");
}

// Returns an OCI image manifest with one config and one layer.
std::string manifestBody(const Descriptor& config, const Descriptor& layer) {
  std::string body;
  body.reserve(512);
  body.append("{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"")
      .append(kManifestMediaType)
      .append("\",\n   \"config\": {\n");
  appendDescriptor(body, kConfigMediaType, config, "      ");
  body.append("   },\n   \"layers\": [\n      {\n");
  appendDescriptor(body, kLayerMediaType, layer, "         ");
  body.append("      }\n   ]\n}");
  return body;
}

// Returns the images whose manifest digests go to the sample file: `sample_count` numbers spread
// evenly over [0, count), in increasing order.
std::vector<uint64_t> sampleImages(uint64_t count, uint64_t sample_count) {
  std::vector<uint64_t> images;
  images.reserve(sample_count);
  for (uint64_t k = 0; k < sample_count; ++k) {
    images.push_back(count * k / sample_count);
  }
  return images;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Puts the records of image `image` into `batch`. Returns the manifest digest.
Digest putImage(storage::Index::Batch& batch, const FillOptions& options, uint64_t image,
                int64_t now_ms, uint64_t* tag_count) {
  Descriptor config = blobDescriptor(options.seed, image);
  Descriptor layer = blobDescriptor(options.seed, (image + 1) % options.count);
  std::string body = manifestBody(config, layer);
  Digest manifest = sha256Of(body);

  batch.putBlob(config.digest, storage::BlobRecord{config.size, now_ms, now_ms});
  batch.putManifest(
      manifest, storage::ManifestRecord{std::string(kManifestMediaType), std::move(body), now_ms});
  batch.putLink(options.remote, manifest);
  if (image % kImagesPerTag == 0) {
    batch.putTag(options.remote, options.repository,
                 "fill-" + std::to_string(image / kImagesPerTag),
                 storage::TagRecord{manifest.str(), std::string(kManifestMediaType), now_ms});
    ++*tag_count;
  }
  return manifest;
}

// Writes every image into `index` and appends the sampled manifest digests to `samples`.
Status fillIndex(storage::Index& index, const FillOptions& options,
                 std::vector<std::string>* samples, FillTotals* totals) {
  const int64_t now_ms = SystemClock::instance().nowMs();
  std::vector<uint64_t> sampled = sampleImages(options.count, options.sample_count);
  size_t next_sample = 0;

  auto start = std::chrono::steady_clock::now();
  storage::Index::Batch batch;
  for (uint64_t image = 0; image < options.count; ++image) {
    Digest manifest = putImage(batch, options, image, now_ms, &totals->tags);
    if (next_sample < sampled.size() && sampled[next_sample] == image) {
      samples->push_back(manifest.str());
      ++next_sample;
    }
    if (batch.size() >= kBatchPuts || image + 1 == options.count) {
      OUTPOST_RETURN_IF_ERROR(index.write(std::move(batch), storage::Index::WriteMode::kUnsynced));
    }
  }
  totals->images = options.count;
  totals->write_seconds = secondsSince(start);

  start = std::chrono::steady_clock::now();
  OUTPOST_RETURN_IF_ERROR(index.flushMemtables());
  totals->flush_seconds = secondsSince(start);

  start = std::chrono::steady_clock::now();
  OUTPOST_RETURN_IF_ERROR(index.compactAll());
  totals->compact_seconds = secondsSince(start);
  return Status::ok();
}

Status writeSamples(const std::filesystem::path& path, const std::vector<std::string>& samples) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  for (const std::string& digest : samples) {
    out << digest << '\n';
  }
  out.close();
  if (!out) {
    return ioError("writing sample digests to " + path.string() + " failed");
  }
  return Status::ok();
}

// Returns the total size of the regular files under `folder`, or 0 when it cannot be listed.
uint64_t folderBytes(const std::filesystem::path& folder) {
  std::error_code error;
  uint64_t total = 0;
  for (std::filesystem::recursive_directory_iterator it(folder, error), end; !error && it != end;
       it.increment(error)) {
    std::error_code size_error;
    if (it->is_regular_file(size_error)) {
      uint64_t size = it->file_size(size_error);
      total += size_error ? 0 : size;
    }
  }
  return total;
}

Status checkOptions(const FillOptions& options) {
  if (options.count == 0 || options.count > kMaxImages) {
    return invalidArgument("--count must be between 1 and " + std::to_string(kMaxImages));
  }
  if (!proxy::isValidRepositoryName(options.remote + "/" + options.repository)) {
    return invalidArgument("\"" + options.remote + "/" + options.repository +
                           "\" is not a valid repository name; --remote takes a remote name such "
                           "as upstream and --repository an image name such as bench/app");
  }
  if (options.sample_out.empty() != (options.sample_count == 0)) {
    return invalidArgument(
        "--sample-out and --sample-count go together, with a count of 1 or more");
  }
  if (options.sample_count > options.count) {
    return invalidArgument("--sample-count " + std::to_string(options.sample_count) +
                           " is more than --count " + std::to_string(options.count));
  }
  std::error_code error;
  if (std::filesystem::exists(options.data_dir / "index", error)) {
    return invalidArgument((options.data_dir / "index").string() +
                           " exists already; remove it or choose another --data-dir");
  }
  return Status::ok();
}

// Fills the index that `options` name and prints what it wrote. Returns the exit status.
int run(const FillOptions& options) {
  if (Status checked = checkOptions(options); !checked.isOk()) {
    std::fprintf(stderr, "outpost_index_fill: %s\n", std::string(checked.message()).c_str());
    return 2;
  }
  const std::filesystem::path index_dir = options.data_dir / "index";
  Expected<std::unique_ptr<storage::Index>> index = storage::Index::open(index_dir);
  if (!index) {
    std::fprintf(stderr, "outpost_index_fill: %s\n", index.status().toString().c_str());
    return 1;
  }

  std::vector<std::string> samples;
  FillTotals totals;
  Status filled = fillIndex(**index, options, &samples, &totals);
  index->reset();
  if (!filled.isOk()) {
    std::fprintf(stderr, "outpost_index_fill: filling %s failed: %s\n", index_dir.c_str(),
                 filled.toString().c_str());
    return 1;
  }
  if (!options.sample_out.empty()) {
    if (Status written = writeSamples(options.sample_out, samples); !written.isOk()) {
      std::fprintf(stderr, "outpost_index_fill: %s\n", written.toString().c_str());
      return 1;
    }
  }

  std::printf(
      "wrote %" PRIu64 " blobs, %" PRIu64 " manifests, %" PRIu64 " links and %" PRIu64
      " tags to %s in %.2f s (batched writes %.2f s, final flush %.2f s, compaction %.2f s); "
      "index size %.1f MiB\n",
      totals.images, totals.images, totals.images, totals.tags, index_dir.c_str(),
      totals.write_seconds + totals.flush_seconds + totals.compact_seconds, totals.write_seconds,
      totals.flush_seconds, totals.compact_seconds,
      static_cast<double>(folderBytes(index_dir)) / (1 << 20));
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) {
  CLI::App app{"Fill an Outpost index with generated blob, manifest, link and tag records"};
  outpost::FillOptions options;
  std::string data_dir;
  std::string sample_out;
  app.add_option("--data-dir", data_dir,
                 "Data folder of the server (storage.data_dir). The index goes into its index/ "
                 "subfolder, which must not exist yet")
      ->required();
  app.add_option("--remote", options.remote, "Remote name that the manifests are linked to")
      ->required();
  app.add_option("--repository", options.repository, "Image name of the tags, e.g. bench/app")
      ->required();
  app.add_option("--count", options.count, "Number of images: one blob and one manifest each")
      ->required();
  app.add_option("--seed", options.seed,
                 "Number mixed into the generated blob bytes, so that two seeds give different "
                 "digests")
      ->capture_default_str();
  app.add_option("--sample-out", sample_out,
                 "File to write manifest digests to, one per line, spread evenly over all images");
  app.add_option("--sample-count", options.sample_count,
                 "Number of manifest digests written to --sample-out");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  options.data_dir = data_dir;
  options.sample_out = sample_out;

  // Index::open logs at info level, which would only repeat the folder printed at the end.
  if (!outpost::log::setup("warn")) {
    std::fprintf(stderr, "outpost_index_fill: logging setup failed\n");
    return 1;
  }
  return outpost::run(options);
}
