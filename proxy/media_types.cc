#include "proxy/media_types.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/ascii.h"

namespace outpost::proxy {
namespace {

// Splits `text` at each `delimiter` outside quoted strings, so that a parameter value such as
// "a,b" stays whole. A backslash inside quotes escapes the next character.
std::vector<std::string_view> splitOutsideQuotes(std::string_view text, char delimiter) {
  std::vector<std::string_view> parts;
  bool is_quoted = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (is_quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        is_quoted = false;
      }
    } else if (c == '"') {
      is_quoted = true;
    } else if (c == delimiter) {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(text.substr(std::min(start, text.size())));
  return parts;
}

// Returns whether a qvalue is zero: "0" followed by an optional "." and up to three zeros
// (RFC 9110 section 12.4.2).
bool isZeroWeight(std::string_view qvalue) {
  if (qvalue.empty() || qvalue.front() != '0') {
    return false;
  }
  qvalue.remove_prefix(1);
  if (qvalue.empty()) {
    return true;
  }
  if (qvalue.front() != '.' || qvalue.size() > 4) {
    return false;
  }
  return qvalue.substr(1).find_first_not_of('0') == std::string_view::npos;
}

bool isTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool isToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), isTokenChar);
}

// Splits "type/subtype;params" into lower-cased type and subtype. Returns false when the text
// before the first ';' is not two tokens joined by '/'.
bool splitMediaType(std::string_view text, std::string* type, std::string* subtype) {
  const std::string_view bare = trimOws(text.substr(0, text.find(';')));
  const std::size_t slash = bare.find('/');
  if (slash == std::string_view::npos) {
    return false;
  }
  const std::string_view type_text = bare.substr(0, slash);
  const std::string_view subtype_text = bare.substr(slash + 1);
  if (!isToken(type_text) || !isToken(subtype_text)) {
    return false;
  }
  *type = toLowerAscii(type_text);
  *subtype = toLowerAscii(subtype_text);
  return true;
}

}  // namespace

bool isManifestMediaType(std::string_view media_type) {
  return std::find(kManifestMediaTypes.begin(), kManifestMediaTypes.end(), media_type) !=
         kManifestMediaTypes.end();
}

AcceptList AcceptList::fromHeaderLines(const std::vector<std::string_view>& lines) {
  AcceptList list;
  for (std::string_view line : lines) {
    list.addHeaderLine(line);
  }
  return list;
}

void AcceptList::addHeaderLine(std::string_view line) {
  for (std::string_view element : splitOutsideQuotes(line, ',')) {
    element = trimOws(element);
    if (element.empty()) {
      continue;
    }

    MediaRange range;
    if (!splitMediaType(element, &range.type, &range.subtype)) {
      continue;
    }
    // "*/json" is not a media range: only the whole type or the subtype may be a wildcard.
    if (range.type == "*" && range.subtype != "*") {
      continue;
    }

    const std::vector<std::string_view> parameters = splitOutsideQuotes(element, ';');
    for (std::size_t i = 1; i < parameters.size(); ++i) {
      const std::string_view parameter = parameters[i];
      const std::size_t equals = parameter.find('=');
      if (equals == std::string_view::npos) {
        continue;
      }
      const std::string_view name = trimOws(parameter.substr(0, equals));
      if ((name == "q" || name == "Q") && isZeroWeight(trimOws(parameter.substr(equals + 1)))) {
        range.is_excluded = true;
      }
    }

    range.text = std::string(element);
    ranges_.push_back(std::move(range));
  }
}

bool AcceptList::accepts(std::string_view media_type) const {
  if (ranges_.empty()) {
    return true;
  }
  std::string type;
  std::string subtype;
  if (!splitMediaType(media_type, &type, &subtype)) {
    return false;
  }

  // Specificity: 3 for type/subtype, 2 for type/*, 1 for */*. Among equally specific ranges
  // that match, any one that is not excluded accepts.
  int best_specificity = 0;
  bool is_accepted = false;
  for (const MediaRange& range : ranges_) {
    int specificity = 0;
    if (range.type == type && range.subtype == subtype) {
      specificity = 3;
    } else if (range.type == type && range.subtype == "*") {
      specificity = 2;
    } else if (range.type == "*" && range.subtype == "*") {
      specificity = 1;
    } else {
      continue;
    }

    if (specificity > best_specificity) {
      best_specificity = specificity;
      is_accepted = !range.is_excluded;
    } else if (specificity == best_specificity && !range.is_excluded) {
      is_accepted = true;
    }
  }
  return is_accepted;
}

bool AcceptList::acceptsExplicitly(std::string_view media_type) const {
  std::string type;
  std::string subtype;
  if (!splitMediaType(media_type, &type, &subtype)) {
    return false;
  }
  return std::any_of(ranges_.begin(), ranges_.end(), [&](const MediaRange& range) {
    return range.type == type && range.subtype == subtype && !range.is_excluded;
  });
}

std::string AcceptList::joined() const {
  std::string result;
  for (const MediaRange& range : ranges_) {
    if (!result.empty()) {
      result += ", ";
    }
    result += range.text;
  }
  return result;
}

std::string_view detectManifestMediaType(std::string_view body) {
  // Parsing without exceptions: a malformed body yields a "discarded" value.
  const nlohmann::json document =
      nlohmann::json::parse(body.begin(), body.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!document.is_object()) {
    return {};
  }

  const auto media_type = document.find("mediaType");
  if (media_type != document.end()) {
    if (!media_type->is_string()) {
      return {};
    }
    const std::string& declared = media_type->get_ref<const std::string&>();
    const auto known = std::find(kManifestMediaTypes.begin(), kManifestMediaTypes.end(), declared);
    return known == kManifestMediaTypes.end() ? std::string_view() : *known;
  }

  const auto schema_version = document.find("schemaVersion");
  if (schema_version != document.end() && schema_version->is_number_integer() &&
      *schema_version == 1) {
    return document.contains("signatures") ? kDockerManifestV1Signed : kDockerManifestV1;
  }

  const auto manifests = document.find("manifests");
  if (manifests != document.end() && manifests->is_array()) {
    return kOciImageIndex;
  }

  const auto config = document.find("config");
  const auto layers = document.find("layers");
  if (config != document.end() && config->is_object() && layers != document.end() &&
      layers->is_array()) {
    return kOciImageManifest;
  }
  return {};
}

}  // namespace outpost::proxy
