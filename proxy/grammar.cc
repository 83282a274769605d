#include "proxy/grammar.h"

#include <string>

#include "base/digest.h"

namespace outpost::proxy {
namespace {

enum class NameProblem {
  kNone,
  kEmpty,
  kTooLong,
  kEmptyComponent,
  kUpperCase,
  kInvalidCharacter,
  kSeparatorAtEdge,
  kInvalidSeparator,
};

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool isUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool isSeparatorChar(char c) { return c == '.' || c == '_' || c == '-'; }

// A separator is ".", "_", "__" or a run of one or more "-".
bool isValidSeparator(std::string_view run) {
  if (run == "." || run == "_" || run == "__") {
    return true;
  }
  return run.find_first_not_of('-') == std::string_view::npos;
}

// Names the problem at `position`, where an alphanumeric run was expected but none starts.
NameProblem problemWhereAlnumExpected(std::string_view name, std::size_t position,
                                      bool is_component_start) {
  if (position == name.size() || name[position] == '/') {
    return is_component_start ? NameProblem::kEmptyComponent : NameProblem::kSeparatorAtEdge;
  }
  if (isSeparatorChar(name[position])) {
    return NameProblem::kSeparatorAtEdge;
  }
  return isUpper(name[position]) ? NameProblem::kUpperCase : NameProblem::kInvalidCharacter;
}

// Walks `name` once, component by component. Each component is an alphanumeric run followed by
// any number of (separator, alphanumeric run) pairs.
NameProblem findNameProblem(std::string_view name) {
  if (name.empty()) {
    return NameProblem::kEmpty;
  }
  if (name.size() > kMaxRepositoryNameLength) {
    return NameProblem::kTooLong;
  }

  std::size_t i = 0;
  const std::size_t size = name.size();
  while (true) {
    bool is_component_start = true;
    while (true) {
      const std::size_t run_start = i;
      while (i < size && isLowerAlnum(name[i])) {
        ++i;
      }
      if (i == run_start) {
        return problemWhereAlnumExpected(name, i, is_component_start);
      }
      is_component_start = false;
      if (i == size || name[i] == '/') {
        break;
      }

      const std::size_t separator_start = i;
      while (i < size && isSeparatorChar(name[i])) {
        ++i;
      }
      if (i == separator_start) {
        return isUpper(name[i]) ? NameProblem::kUpperCase : NameProblem::kInvalidCharacter;
      }
      if (!isValidSeparator(name.substr(separator_start, i - separator_start))) {
        return NameProblem::kInvalidSeparator;
      }
    }

    if (i == size) {
      return NameProblem::kNone;
    }
    ++i;  // The '/' between components.
  }
}

std::string inQuotes(std::string_view text) {
  std::string result;
  result.reserve(text.size() + 2);
  result += '"';
  result += text;
  result += '"';
  return result;
}

bool isTagStartChar(char c) {
  return (c >= 'a' && c <= 'z') || isUpper(c) || (c >= '0' && c <= '9') || c == '_';
}
bool isTagChar(char c) { return isTagStartChar(c) || c == '.' || c == '-'; }

bool endsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Splits "a/b/c" into "a/b" and "c". A path without '/' is all last component.
void splitLastComponent(std::string_view path, std::string_view* head, std::string_view* last) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) {
    *head = {};
    *last = path;
    return;
  }
  *head = path.substr(0, slash);
  *last = path.substr(slash + 1);
}

Status noRouteFor(std::string_view path) {
  return notFound("no registry API route matches /v2/" + std::string(path));
}

}  // namespace

bool isValidRepositoryName(std::string_view name) {
  return findNameProblem(name) == NameProblem::kNone;
}

Status validateRepositoryName(std::string_view name) {
  switch (findNameProblem(name)) {
    case NameProblem::kNone:
      return Status::ok();
    case NameProblem::kEmpty:
      return invalidArgument("NAME_INVALID: repository name is empty");
    case NameProblem::kTooLong:
      return invalidArgument("NAME_INVALID: repository name is " + std::to_string(name.size()) +
                             " characters long, more than the maximum of " +
                             std::to_string(kMaxRepositoryNameLength));
    case NameProblem::kEmptyComponent:
      return invalidArgument("NAME_INVALID: repository name " + inQuotes(name) +
                             " has an empty component (a leading, trailing or doubled '/')");
    case NameProblem::kUpperCase:
      return invalidArgument("NAME_INVALID: repository name " + inQuotes(name) +
                             " contains an upper-case letter, but names are lower-case");
    case NameProblem::kInvalidCharacter:
      return invalidArgument("NAME_INVALID: repository name " + inQuotes(name) +
                             " contains a character other than a-z, 0-9, '.', '_', '-' and '/'");
    case NameProblem::kSeparatorAtEdge:
      return invalidArgument("NAME_INVALID: repository name " + inQuotes(name) +
                             " has a component that starts or ends with '.', '_' or '-'");
    case NameProblem::kInvalidSeparator:
      return invalidArgument("NAME_INVALID: repository name " + inQuotes(name) +
                             " joins characters with an invalid separator; use '.', '_', '__' "
                             "or a run of '-'");
  }
  return internalError("unhandled repository name problem");
}

bool isValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagLength || !isTagStartChar(tag.front())) {
    return false;
  }
  for (char c : tag.substr(1)) {
    if (!isTagChar(c)) {
      return false;
    }
  }
  return true;
}

Expected<RegistryPath> parseRegistryPath(std::string_view path_after_v2) {
  using Kind = RegistryPath::Kind;
  if (path_after_v2.empty()) {
    return RegistryPath{Kind::kBase, {}, {}};
  }

  RegistryPath route;
  std::string_view name;
  constexpr std::string_view kTagsListSuffix = "/tags/list";
  if (endsWith(path_after_v2, kTagsListSuffix)) {
    route.kind = Kind::kTagsList;
    name = path_after_v2.substr(0, path_after_v2.size() - kTagsListSuffix.size());
  } else {
    // "<name>/<keyword>/<last>": the keyword is the component before the last one.
    std::string_view head;
    std::string_view keyword;
    splitLastComponent(path_after_v2, &head, &route.reference);
    splitLastComponent(head, &name, &keyword);

    if (keyword == "manifests" || keyword == "referrers") {
      route.kind = keyword == "manifests" ? Kind::kManifest : Kind::kReferrers;
      if (route.reference.empty()) {
        return noRouteFor(path_after_v2);
      }
    } else if (keyword == "blobs") {
      // "<name>/blobs/uploads" without the trailing slash starts an upload as well.
      route.kind = route.reference == "uploads" ? Kind::kBlobUploads : Kind::kBlob;
      if (route.kind == Kind::kBlobUploads) {
        route.reference = {};
      } else if (route.reference.empty()) {
        return noRouteFor(path_after_v2);
      }
    } else if (keyword == "uploads") {
      // "<name>/blobs/uploads/<id>", where <id> is empty for the POST that starts an upload.
      std::string_view blobs_keyword;
      splitLastComponent(std::string_view(name), &name, &blobs_keyword);
      if (blobs_keyword != "blobs") {
        return noRouteFor(path_after_v2);
      }
      route.kind = Kind::kBlobUploads;
    } else {
      return noRouteFor(path_after_v2);
    }
  }

  if (name.empty()) {
    return noRouteFor(path_after_v2);
  }
  OUTPOST_RETURN_IF_ERROR(validateRepositoryName(name));
  route.name = name;
  return route;
}

Expected<ReferenceKind> classifyReference(std::string_view reference) {
  if (reference.find(':') != std::string_view::npos) {
    Expected<Digest> digest = Digest::parse(reference);
    if (digest) {
      return ReferenceKind::kDigest;
    }
    Status status = digest.status();
    if (status.code() != StatusCode::kInvalidArgument) {
      return status;
    }
    return invalidArgument("DIGEST_INVALID: " + std::string(status.message()));
  }

  if (reference.size() > kMaxTagLength) {
    return invalidArgument("tag is " + std::to_string(reference.size()) +
                           " characters long, more than the maximum of " +
                           std::to_string(kMaxTagLength));
  }
  if (!isValidTag(reference)) {
    return invalidArgument("tag " + inQuotes(reference) +
                           " is invalid: a tag contains only a-z, A-Z, 0-9, '.', '_' and '-', "
                           "and does not start with '.' or '-'");
  }
  return ReferenceKind::kTag;
}

}  // namespace outpost::proxy
