#include "bench/load/driver/response_head.h"

#include <charconv>

#include "base/ascii.h"

namespace outpost::load {

std::string_view ResponseHead::header(std::string_view name) const {
  std::string_view text(text_);
  for (const Field& field : fields_) {
    if (equalsIgnoreCase(text.substr(field.name_offset, field.name_size), name)) {
      return trimOws(text.substr(field.value_offset, field.value_size));
    }
  }
  return {};
}

std::optional<uint64_t> ResponseHead::contentLength() const {
  std::string_view value = header("Content-Length");
  if (value.empty()) {
    return std::nullopt;
  }
  uint64_t length = 0;
  auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), length);
  if (error != std::errc() || end != value.data() + value.size()) {
    return std::nullopt;
  }
  return length;
}

void ResponseHead::clear() {
  status_ = 0;
  text_.clear();
  fields_.clear();
  is_in_name_ = false;
}

bool ResponseHead::appendNamePiece(std::string_view piece) {
  if (text_.size() + piece.size() > kMaxHeaderBytes) {
    return false;
  }
  if (!is_in_name_) {
    Field field;
    field.name_offset = static_cast<uint32_t>(text_.size());
    fields_.push_back(field);
    is_in_name_ = true;
  }
  fields_.back().name_size += static_cast<uint32_t>(piece.size());
  text_.append(piece);
  return true;
}

bool ResponseHead::appendValuePiece(std::string_view piece) {
  if (text_.size() + piece.size() > kMaxHeaderBytes || fields_.empty()) {
    return false;
  }
  Field& field = fields_.back();
  if (field.value_size == 0) {
    field.value_offset = static_cast<uint32_t>(text_.size());
  }
  field.value_size += static_cast<uint32_t>(piece.size());
  text_.append(piece);
  return true;
}

}  // namespace outpost::load
