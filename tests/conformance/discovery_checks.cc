// Content discovery: the tag list with `n`, `last` and Link pagination, and the referrers API
// with its artifactType filter (spec.md, "Content Discovery").
#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>

#include "tests/conformance/checks.h"

namespace outpost::conformance {
namespace {

using nlohmann::json;

constexpr std::string_view kArea = "discovery";
constexpr size_t kPageSize = 2;
// Bounds the pages a check follows, so a Link that never ends cannot keep the run going.
constexpr size_t kMaxPages = 1000;
constexpr std::string_view kSbomType = "application/vnd.outpost.conformance.sbom.v1";
constexpr std::string_view kSignatureConfigType =
    "application/vnd.outpost.conformance.signature.config.v1+json";
constexpr std::string_view kRunAnnotation = "org.opencontainers.conformance.run";

struct TagPage {
  std::vector<std::string> tags;
  // The target of a Link rel="next", resolved against the request URL.
  std::optional<std::string> next_url;
};

// Fetches one page of a tag list and checks its shape: 200, {"name": <name>, "tags": [...]}.
std::optional<TagPage> fetchTagPage(Check& check, const std::string& url, const std::string& name) {
  std::optional<Exchange> get = check.send("GET", url);
  if (!get || !check.expectStatus(*get, 200)) {
    return std::nullopt;
  }
  json body = json::parse(get->response.body, nullptr, /*allow_exceptions=*/false);
  if (!check.expect(body.is_object() && body.contains("tags") && body["tags"].is_array(),
                    get->describeRequest() +
                        ": expected a JSON object with a \"tags\" array, got " +
                        get->describeResponse())) {
    return std::nullopt;
  }
  bool has_name = body.contains("name") && body["name"] == name;
  if (!check.expect(has_name, get->describeRequest() + ": expected \"name\": \"" + name +
                                  "\", got " + body.value("name", json()).dump())) {
    return std::nullopt;
  }

  TagPage page;
  for (const json& tag : body["tags"]) {
    if (!check.expect(tag.is_string(),
                      get->describeRequest() + ": a tag is not a string: " + tag.dump())) {
      return std::nullopt;
    }
    page.tags.push_back(tag.get<std::string>());
  }
  std::optional<std::string> link = get->response.header("Link");
  if (link.has_value()) {
    std::optional<std::string> target = nextLinkTarget(*link);
    if (!check.expect(target.has_value(),
                      get->describeRequest() + ": a Link header without rel=\"next\": " + *link)) {
      return std::nullopt;
    }
    page.next_url = resolveReference(get->url, *target);
  }
  return page;
}

std::string lowered(std::string_view text) {
  std::string result(text);
  for (char& c : result) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return result;
}

bool isByteOrder(const std::vector<std::string>& tags) {
  return std::is_sorted(tags.begin(), tags.end());
}

bool isCaseInsensitiveOrder(const std::vector<std::string>& tags) {
  return std::is_sorted(tags.begin(), tags.end(), [](const std::string& a, const std::string& b) {
    return lowered(a) < lowered(b);
  });
}

// Returns "[a, b, …]" with at most kMaxListedTags tags, for failure messages.
std::string joinedTags(const std::vector<std::string>& tags) {
  constexpr size_t kMaxListedTags = 20;
  std::string text = "[";
  for (size_t i = 0; i < tags.size() && i < kMaxListedTags; ++i) {
    text += (i == 0 ? "" : ", ") + tags[i];
  }
  if (tags.size() > kMaxListedTags) {
    text += ", … " + std::to_string(tags.size() - kMaxListedTags) + " more";
  }
  return text + "]";
}

// Expects `page` to hold the tags of `expected` from its start: all `limit` of them, or fewer
// only when the registry sent a Link to the rest (spec.md, "Listing Tags").
void expectTagPrefix(Check& check, const std::string& request, const TagPage& page,
                     const std::vector<std::string>& expected, size_t limit) {
  size_t expected_count = std::min(limit, expected.size());
  std::vector<std::string> head(expected.begin(),
                                expected.begin() + static_cast<std::ptrdiff_t>(expected_count));
  if (page.next_url.has_value() && page.tags.size() < expected_count) {
    head.resize(page.tags.size());
  }
  check.expect(page.tags == head,
               request + ": expected " + joinedTags(head) + ", got " + joinedTags(page.tags));
}

struct TagFixture {
  std::vector<std::string> pushed_tags;
  // The whole list as discovery/tags-list read it, in the registry's order.
  std::vector<std::string> full_list;
};

void checkTagList(Session& session, TagFixture& fixture) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  // Byte order and case-insensitive order put "<run>-B" apart from "<run>-a" and "<run>-b".
  session.runner.run(kArea, "tags-list", [&](Check& check) {
    std::optional<TagPage> page = fetchTagPage(check, client.tagsUrl(name), name);
    if (!page.has_value()) {
      return;
    }
    for (const std::string& tag : fixture.pushed_tags) {
      check.expect(std::find(page->tags.begin(), page->tags.end(), tag) != page->tags.end(),
                   "GET tags/list: the pushed tag " + tag + " is missing");
    }
    // The checks of `n`, `last` and Link below compare pages with this list, in the registry's
    // own order, so that they report their own findings even when the order is wrong.
    fixture.full_list = page->tags;
    bool is_byte_order = isByteOrder(page->tags);
    bool is_case_insensitive = isCaseInsensitiveOrder(page->tags);
    if (!check.expect(
            is_byte_order || is_case_insensitive,
            "GET tags/list: expected the tags in lexical order, got " + joinedTags(page->tags))) {
      return;
    }
    if (is_byte_order != is_case_insensitive) {
      check.note(is_byte_order ? "byte order" : "case-insensitive order");
    }
    if (page->next_url.has_value()) {
      check.note("the full list came with a Link to more");
    }
  });

  session.runner.run(kArea, "tags-list-n", [&](Check& check) {
    if (fixture.full_list.size() <= kPageSize) {
      check.skip("needs the full list of discovery/tags-list");
      return;
    }
    std::string url = appendQuery(client.tagsUrl(name), "n", std::to_string(kPageSize));
    std::optional<TagPage> page = fetchTagPage(check, url, name);
    if (page.has_value()) {
      expectTagPrefix(check, "GET tags/list?n=2", *page, fixture.full_list, kPageSize);
    }
  });

  // spec.md, "Listing Tags": a Link header MAY point to the next page, and when present it
  // follows RFC 5988 with rel="next".
  session.runner.run(kArea, "tags-list-link", [&](Check& check) {
    if (fixture.full_list.size() <= kPageSize) {
      check.skip("needs the full list of discovery/tags-list");
      return;
    }
    std::vector<std::string> collected;
    std::optional<std::string> url =
        appendQuery(client.tagsUrl(name), "n", std::to_string(kPageSize));
    size_t pages = 0;
    while (url.has_value() && pages < kMaxPages) {
      std::optional<TagPage> page = fetchTagPage(check, *url, name);
      if (!page.has_value()) {
        return;
      }
      if (pages == 0 && !page->next_url.has_value()) {
        check.skip("no Link header while more tags remain, which the specification allows");
        return;
      }
      collected.insert(collected.end(), page->tags.begin(), page->tags.end());
      url = page->next_url;
      ++pages;
    }
    check.expect(!url.has_value(),
                 "Link headers still pointed on after " + std::to_string(kMaxPages) + " pages");
    check.expect(collected == fixture.full_list,
                 "following Link rel=\"next\" from ?n=2: expected " +
                     joinedTags(fixture.full_list) + ", got " + joinedTags(collected));
    check.note(std::to_string(pages) + " pages");
  });

  session.runner.run(kArea, "tags-list-last", [&](Check& check) {
    // The second of this run's tags in the registry's order, so that several tags follow it
    // even in a repository that contains nothing else.
    auto isOurs = [&](const std::string& tag) {
      return std::find(fixture.pushed_tags.begin(), fixture.pushed_tags.end(), tag) !=
             fixture.pushed_tags.end();
    };
    auto first_ours = std::find_if(fixture.full_list.begin(), fixture.full_list.end(), isOurs);
    auto second_ours = first_ours == fixture.full_list.end()
                           ? first_ours
                           : std::find_if(first_ours + 1, fixture.full_list.end(), isOurs);
    if (second_ours == fixture.full_list.end()) {
      check.skip("needs the full list of discovery/tags-list");
      return;
    }
    std::string last = *second_ours;
    std::vector<std::string> after(second_ours + 1, fixture.full_list.end());

    std::string url = appendQuery(appendQuery(client.tagsUrl(name), "n", std::to_string(kPageSize)),
                                  "last", last);
    std::optional<TagPage> page = fetchTagPage(check, url, name);
    if (page.has_value()) {
      expectTagPrefix(check, "GET tags/list?n=2&last=" + last, *page, after, kPageSize);
    }

    // `n` is optional with `last`.
    std::optional<TagPage> rest =
        fetchTagPage(check, appendQuery(client.tagsUrl(name), "last", last), name);
    if (rest.has_value()) {
      expectTagPrefix(check, "GET tags/list?last=" + last, *rest, after, after.size());
    }
  });

  session.runner.run(kArea, "tags-list-n-zero", [&](Check& check) {
    std::string url = appendQuery(client.tagsUrl(name), "n", "0");
    std::optional<Exchange> get = check.send("GET", url);
    if (!get || !check.expectStatus(*get, 200)) {
      return;
    }
    json body = json::parse(get->response.body, nullptr, /*allow_exceptions=*/false);
    bool is_empty_list = body.is_object() && body.contains("tags") && body["tags"].is_array() &&
                         body["tags"].empty();
    check.expect(is_empty_list, get->describeRequest() + ": expected an empty \"tags\" list, got " +
                                    get->response.body.substr(0, 200));
    check.expect(!get->response.header("Link").has_value(),
                 get->describeRequest() + ": expected no Link header, got " +
                     get->response.header("Link").value_or(""));
  });

  session.runner.run(kArea, "tags-list-unknown-repository", [&](Check& check) {
    std::optional<Exchange> get =
        check.send("GET", client.tagsUrl(name + "/" + runTag(session, "never-pushed")));
    if (get) {
      check.expectError(*get, 404, "NAME_UNKNOWN");
    }
  });
}

struct ReferrersFixture {
  Manifest subject;
  // The artifact with an artifactType, and the one whose type comes from its config.
  Manifest sbom;
  Manifest signature;
  std::map<std::string, std::string> sbom_annotations;
  std::map<std::string, std::string> signature_annotations;
};

Status pushReferrers(Session& session, ReferrersFixture& fixture) {
  const RegistryClient& client = session.client;
  OUTPOST_ASSIGN_OR_RETURN(PushedImage subject,
                           pushImage(session, session.name, runTag(session, "subject")));
  fixture.subject = subject.manifest;

  Blob empty = emptyJsonBlob();
  OUTPOST_RETURN_IF_ERROR(client.pushBlob(session.name, empty.bytes, empty.digest));

  ImageManifestFields sbom;
  sbom.artifact_type = std::string(kSbomType);
  sbom.config = describe(empty, std::string(kOciEmptyType));
  sbom.layers = {describe(empty, std::string(kOciEmptyType))};
  sbom.subject = fixture.subject.descriptor();
  sbom.annotations = {{std::string(kRunAnnotation), session.content.runId()},
                      {"org.opencontainers.conformance.kind", "sbom"}};
  fixture.sbom = ContentFactory::imageManifest(sbom);
  fixture.sbom_annotations = sbom.annotations;

  // spec.md, "Listing Referrers": without an artifactType, the config's media type is the
  // artifact type.
  ImageManifestFields signature;
  signature.config = describe(empty, std::string(kSignatureConfigType));
  signature.layers = {describe(empty, std::string(kOciEmptyType))};
  signature.subject = fixture.subject.descriptor();
  signature.annotations = {{std::string(kRunAnnotation), session.content.runId()},
                           {"org.opencontainers.conformance.kind", "signature"}};
  fixture.signature = ContentFactory::imageManifest(signature);
  fixture.signature_annotations = signature.annotations;

  for (const Manifest* manifest : {&fixture.sbom, &fixture.signature}) {
    OUTPOST_RETURN_IF_ERROR(
        client.pushManifest(session.name, manifest->digest, manifest->bytes, manifest->media_type));
  }
  return Status::ok();
}

// Fetches a referrers list, following Link rel="next" pages, and returns its descriptors. Fails
// the check unless each page is a 200 image index.
std::optional<std::vector<json>> fetchReferrers(Check& check, const std::string& url,
                                                bool expect_filtered) {
  std::vector<json> descriptors;
  std::optional<std::string> next = url;
  for (size_t pages = 0; next.has_value() && pages < kMaxPages; ++pages) {
    std::optional<Exchange> get = check.send("GET", *next);
    if (!get || !check.expectStatus(*get, 200) ||
        !check.expectHeader(*get, "Content-Type", kOciIndexType)) {
      return std::nullopt;
    }
    json index = json::parse(get->response.body, nullptr, /*allow_exceptions=*/false);
    bool is_index = index.is_object() && index.value("schemaVersion", 0) == 2 &&
                    index.value("mediaType", "") == kOciIndexType && index.contains("manifests") &&
                    index["manifests"].is_array();
    if (!check.expect(is_index, get->describeRequest() +
                                    ": expected an image index with a manifests array, got " +
                                    get->response.body.substr(0, 200))) {
      return std::nullopt;
    }
    if (expect_filtered) {
      std::string applied = get->response.header("OCI-Filters-Applied").value_or("");
      if (!check.expect(applied.find("artifactType") != std::string::npos,
                        get->describeRequest() +
                            ": expected OCI-Filters-Applied: artifactType, got \"" + applied +
                            "\" (filtering on artifactType is a SHOULD)")) {
        return std::nullopt;
      }
    }
    for (const json& descriptor : index["manifests"]) {
      descriptors.push_back(descriptor);
    }
    next.reset();
    std::optional<std::string> link = get->response.header("Link");
    if (link.has_value()) {
      std::optional<std::string> target = nextLinkTarget(*link);
      if (target.has_value()) {
        next = resolveReference(get->url, *target);
      }
    }
  }
  return descriptors;
}

// Expects `descriptors` to list `manifest` with its size, media type, artifact type and
// annotations.
void expectReferrer(Check& check, const std::vector<json>& descriptors, const Manifest& manifest,
                    std::string_view artifact_type,
                    const std::map<std::string, std::string>& annotations) {
  auto entry = std::find_if(descriptors.begin(), descriptors.end(), [&](const json& descriptor) {
    return descriptor.is_object() && descriptor.value("digest", "") == manifest.digest;
  });
  if (!check.expect(entry != descriptors.end(), "the referrers list lacks " + manifest.digest)) {
    return;
  }
  check.expect(entry->value("mediaType", "") == manifest.media_type &&
                   entry->value("size", uint64_t{0}) == manifest.bytes.size(),
               "the descriptor of " + manifest.digest +
                   " has the wrong mediaType or size: " + entry->dump());
  check.expect(entry->value("artifactType", "") == artifact_type,
               "the descriptor of " + manifest.digest + " should have artifactType " +
                   std::string(artifact_type) + ": " + entry->dump());
  bool has_annotations =
      entry->contains("annotations") && (*entry)["annotations"] == json(annotations);
  check.expect(has_annotations, "the descriptor of " + manifest.digest +
                                    " should carry the manifest's annotations: " + entry->dump());
}

void checkReferrers(Session& session) {
  const RegistryClient& client = session.client;
  const std::string& name = session.name;

  ReferrersFixture fixture;
  bool is_set_up = session.runner.run(kArea, "referrers-setup", [&](Check& check) {
    check.expectOk(pushReferrers(session, fixture));
  });
  if (!is_set_up) {
    session.runner.blockArea(kArea, "discovery/referrers-setup could not push the referrers");
  }

  session.runner.run(kArea, "referrers-list", [&](Check& check) {
    std::optional<std::vector<json>> descriptors =
        fetchReferrers(check, client.referrersUrl(name, fixture.subject.digest), false);
    if (!descriptors.has_value()) {
      return;
    }
    check.expect(descriptors->size() == 2,
                 "expected 2 referrers, got " + std::to_string(descriptors->size()));
    expectReferrer(check, *descriptors, fixture.sbom, kSbomType, fixture.sbom_annotations);
    expectReferrer(check, *descriptors, fixture.signature, kSignatureConfigType,
                   fixture.signature_annotations);
  });

  session.runner.run(kArea, "referrers-filter", [&](Check& check) {
    std::string url =
        appendQuery(client.referrersUrl(name, fixture.subject.digest), "artifactType", kSbomType);
    std::optional<std::vector<json>> descriptors = fetchReferrers(check, url, true);
    if (!descriptors.has_value()) {
      return;
    }
    check.expect(descriptors->size() == 1, "expected only the " + std::string(kSbomType) +
                                               " referrer, got " +
                                               std::to_string(descriptors->size()));
    expectReferrer(check, *descriptors, fixture.sbom, kSbomType, fixture.sbom_annotations);
  });

  session.runner.run(kArea, "referrers-none", [&](Check& check) {
    std::optional<std::vector<json>> descriptors =
        fetchReferrers(check, client.referrersUrl(name, session.content.unknownDigest()), false);
    if (descriptors.has_value()) {
      check.expect(descriptors->empty(), "expected an empty manifests list, got " +
                                             std::to_string(descriptors->size()) + " entries");
    }
  });

  session.runner.run(kArea, "referrers-invalid-digest", [&](Check& check) {
    std::optional<Exchange> get = check.send("GET", client.referrersUrl(name, "sha256:not-hex"));
    if (get) {
      check.expectStatus(*get, 400);
    }
  });
}

}  // namespace

void runDiscoveryChecks(Session& session) {
  TagFixture fixture;
  // Pushed out of order. "B" sorts before "a" in byte order and after it without case.
  for (std::string_view suffix : {"b", "a.1", "10", "B", "a", "a-1", "9", "a_1"}) {
    fixture.pushed_tags.push_back(session.content.runId() + "-" + std::string(suffix));
  }
  bool is_set_up = session.runner.run(kArea, "setup", [&](Check& check) {
    Expected<PushedImage> image = pushImage(session, session.name, fixture.pushed_tags[0]);
    if (!check.expectOk(image.status())) {
      return;
    }
    for (size_t i = 1; i < fixture.pushed_tags.size(); ++i) {
      const Manifest& manifest = image->manifest;
      if (!check.expectOk(session.client.pushManifest(session.name, fixture.pushed_tags[i],
                                                      manifest.bytes, manifest.media_type))) {
        return;
      }
    }
  });
  if (!is_set_up) {
    session.runner.blockArea(kArea, "discovery/setup could not push the tagged image");
  }

  checkTagList(session, fixture);
  checkReferrers(session);
}

}  // namespace outpost::conformance
