#include "proxy/registry_error.h"

#include <cstdio>

namespace outpost::proxy {

void appendJsonEscaped(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out.append(escaped);
        } else {
          out.push_back(c);
        }
    }
  }
}

std::string registryErrorBody(std::string_view code, std::string_view message) {
  std::string body = R"({"errors":[{"code":")";
  body.append(code);
  body.append(R"(","message":")");
  appendJsonEscaped(body, message);
  body.append(R"("}]})");
  return body;
}

void respondRegistryError(Exchange& exchange, int status, std::string_view code,
                          std::string_view message, ResponseHead head) {
  head.setStatus(status);
  head.add("Content-Type", "application/json; charset=utf-8");
  head.add("Docker-Distribution-API-Version", "registry/2.0");
  exchange.respond(std::move(head), registryErrorBody(code, message));
}

std::optional<Digest> parseDigestOrRespond(Exchange& exchange, std::string_view text) {
  Expected<Digest> digest = Digest::parse(text);
  if (!digest) {
    respondRegistryError(
        exchange, 400, error_code::kDigestInvalid,
        "invalid digest " + std::string(text) + ": " + std::string(digest.status().message()));
    return std::nullopt;
  }
  return std::move(*digest);
}

}  // namespace outpost::proxy
