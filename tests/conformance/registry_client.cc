#include "tests/conformance/registry_client.h"

#include <cctype>
#include <nlohmann/json.hpp>

namespace outpost::conformance {
namespace {

constexpr int kRequestTimeoutMs = 30'000;
constexpr size_t kBodyExcerptBytes = 100;

// Returns the length of "scheme://authority" at the start of `url`, or 0 without a scheme.
size_t originLength(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return 0;
  }
  size_t path_start = url.find_first_of("/?#", scheme_end + 3);
  return path_start == std::string_view::npos ? url.size() : path_start;
}

bool hasScheme(std::string_view reference) {
  size_t colon = reference.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  // RFC 3986 section 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), before any "/", "?", "#".
  for (size_t i = 0; i < colon; ++i) {
    char c = reference[i];
    bool is_scheme_char = std::isalpha(static_cast<unsigned char>(c)) ||
                          (i > 0 && (std::isdigit(static_cast<unsigned char>(c)) || c == '+' ||
                                     c == '-' || c == '.'));
    if (!is_scheme_char) {
      return false;
    }
  }
  return true;
}

std::string_view trimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// Returns whether the link-param list `params` (";rel=next; title=…") has a rel whose
// space-separated relation types include "next".
bool hasNextRelation(std::string_view params) {
  while (!params.empty()) {
    size_t separator = params.find(';');
    std::string_view param = trimSpaces(params.substr(0, separator));
    params =
        separator == std::string_view::npos ? std::string_view() : params.substr(separator + 1);

    size_t equals = param.find('=');
    if (equals == std::string_view::npos) {
      continue;
    }
    std::string key(trimSpaces(param.substr(0, equals)));
    for (char& c : key) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (key != "rel") {
      continue;
    }
    std::string_view value = trimSpaces(param.substr(equals + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    while (!value.empty()) {
      size_t space = value.find(' ');
      if (value.substr(0, space) == "next") {
        return true;
      }
      value = space == std::string_view::npos ? std::string_view() : value.substr(space + 1);
    }
  }
  return false;
}

}  // namespace

std::string Exchange::describeRequest() const {
  return method + " " + url.substr(originLength(url));
}

std::string Exchange::describeResponse() const {
  std::string text = std::to_string(response.status);
  std::vector<std::string> codes = errorCodes(response.body);
  if (!codes.empty()) {
    for (size_t i = 0; i < codes.size(); ++i) {
      text += (i == 0 ? " " : ",") + codes[i];
    }
    return text;
  }
  if (response.body.empty()) {
    return text;
  }
  std::string excerpt = response.body.substr(0, kBodyExcerptBytes);
  for (char& c : excerpt) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  excerpt = std::string(trimSpaces(excerpt));
  return text + " (body: " + excerpt + (response.body.size() > kBodyExcerptBytes ? "…)" : ")");
}

std::vector<std::string> errorCodes(std::string_view body) {
  nlohmann::json document = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object() || !document.contains("errors") || !document["errors"].is_array()) {
    return {};
  }
  std::vector<std::string> codes;
  for (const nlohmann::json& error : document["errors"]) {
    if (error.is_object() && error.contains("code") && error["code"].is_string()) {
      codes.push_back(error["code"].get<std::string>());
    }
  }
  return codes;
}

std::string encodeQueryValue(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (char c : value) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded += c;
    } else {
      encoded += '%';
      encoded += kHex[byte >> 4];
      encoded += kHex[byte & 0xf];
    }
  }
  return encoded;
}

std::string appendQuery(const std::string& url, std::string_view key, std::string_view value) {
  char separator = url.find('?') == std::string::npos ? '?' : '&';
  return url + separator + std::string(key) + "=" + encodeQueryValue(value);
}

std::string resolveReference(const std::string& request_url, std::string_view reference) {
  if (hasScheme(reference)) {
    return std::string(reference);
  }
  size_t origin_length = originLength(request_url);
  if (reference.starts_with("//")) {
    return request_url.substr(0, request_url.find("://") + 1) + std::string(reference);
  }
  if (reference.starts_with('/')) {
    return request_url.substr(0, origin_length) + std::string(reference);
  }

  std::string path = request_url.substr(0, request_url.find_first_of("?#", origin_length));
  if (reference.empty()) {
    return request_url;
  }
  if (reference.starts_with('?')) {
    return path + std::string(reference);
  }
  // NOTE: "." and ".." segments are kept as they are; no registry is known to send them.
  size_t last_slash = path.rfind('/');
  if (last_slash == std::string::npos || last_slash < origin_length) {
    return path + "/" + std::string(reference);
  }
  return path.substr(0, last_slash + 1) + std::string(reference);
}

std::optional<std::string> nextLinkTarget(std::string_view link_value) {
  while (!link_value.empty()) {
    link_value = trimSpaces(link_value);
    if (link_value.empty() || link_value.front() != '<') {
      return std::nullopt;
    }
    size_t close = link_value.find('>');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view target = link_value.substr(1, close - 1);
    std::string_view rest = link_value.substr(close + 1);
    size_t next_entry = rest.find(",");
    if (hasNextRelation(rest.substr(0, next_entry))) {
      return std::string(target);
    }
    link_value =
        next_entry == std::string_view::npos ? std::string_view() : rest.substr(next_entry + 1);
  }
  return std::nullopt;
}

std::string RegistryClient::repositoryUrl(std::string_view name) const {
  return base_url_ + "/v2/" + std::string(name);
}

std::string RegistryClient::manifestUrl(std::string_view name, std::string_view reference) const {
  return repositoryUrl(name) + "/manifests/" + std::string(reference);
}

std::string RegistryClient::blobUrl(std::string_view name, std::string_view digest) const {
  return repositoryUrl(name) + "/blobs/" + std::string(digest);
}

std::string RegistryClient::uploadsUrl(std::string_view name) const {
  return repositoryUrl(name) + "/blobs/uploads/";
}

std::string RegistryClient::tagsUrl(std::string_view name) const {
  return repositoryUrl(name) + "/tags/list";
}

std::string RegistryClient::referrersUrl(std::string_view name, std::string_view digest) const {
  return repositoryUrl(name) + "/referrers/" + std::string(digest);
}

Expected<Exchange> RegistryClient::send(std::string method, std::string url,
                                        std::vector<HttpHeader> headers, std::string body) const {
  integration::HttpRequest request;
  request.method = method;
  request.url = url;
  request.headers = std::move(headers);
  request.body = std::move(body);
  request.timeout_ms = kRequestTimeoutMs;
  Expected<HttpResult> response = integration::httpRequest(request);
  if (!response) {
    return Status(response.status().code(), method + " " + url + " got no response: " +
                                                std::string(response.status().message()));
  }
  return Exchange{std::move(method), std::move(url), std::move(*response)};
}

Status RegistryClient::pushBlob(std::string_view name, std::string_view bytes,
                                std::string_view digest) const {
  OUTPOST_ASSIGN_OR_RETURN(Exchange start, send("POST", uploadsUrl(name)));
  std::optional<std::string> location = start.response.header("Location");
  if (start.response.status != 202 || !location.has_value()) {
    return internalError(start.describeRequest() + " returned " + start.describeResponse() +
                         ", expected 202 with a Location");
  }

  std::string put_url = appendQuery(resolveReference(start.url, *location), "digest", digest);
  OUTPOST_ASSIGN_OR_RETURN(Exchange finish,
                           send("PUT", std::move(put_url),
                                {{"Content-Type", std::string(kOctetStream)}}, std::string(bytes)));
  if (finish.response.status != 201) {
    return internalError(finish.describeRequest() + " returned " + finish.describeResponse() +
                         ", expected 201");
  }
  return Status::ok();
}

Status RegistryClient::pushManifest(std::string_view name, std::string_view reference,
                                    std::string_view bytes, std::string_view media_type) const {
  OUTPOST_ASSIGN_OR_RETURN(Exchange put,
                           send("PUT", manifestUrl(name, reference),
                                {{"Content-Type", std::string(media_type)}}, std::string(bytes)));
  if (put.response.status != 201) {
    return internalError(put.describeRequest() + " returned " + put.describeResponse() +
                         ", expected 201");
  }
  return Status::ok();
}

}  // namespace outpost::conformance
