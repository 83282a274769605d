// ResponseHead: the status and header fields of one HTTP response, kept in one reused buffer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::load {

class ResponseHead {
 public:
  // Largest total of header name and value bytes accepted in one response.
  static constexpr size_t kMaxHeaderBytes = 64 * 1024;

  int status() const { return status_; }

  // Returns the value of the first field named `name` (compared without case), without its
  // leading and trailing white space, or an empty view when there is none. The view points
  // into this object and is valid until clear().
  std::string_view header(std::string_view name) const;

  // Returns the Content-Length value, or std::nullopt when the field is absent or not a
  // decimal number that fits in 64 bits.
  std::optional<uint64_t> contentLength() const;

  // Forgets the previous response while keeping the allocated capacity, so that a connection
  // allocates nothing per header once its buffers have grown.
  void clear();

  void setStatus(int status) { status_ = status; }

  // Append one piece of a field name or value as the parser delivers them. A field may arrive
  // in several pieces when it spans two reads. Both return false once kMaxHeaderBytes is
  // exceeded.
  bool appendNamePiece(std::string_view piece);
  bool appendValuePiece(std::string_view piece);
  // Marks the end of the current name, so that the next name piece starts a new field.
  void endName() { is_in_name_ = false; }

 private:
  // Offsets into text_; views are made on lookup because text_ may move as it grows.
  struct Field {
    uint32_t name_offset = 0;
    uint32_t name_size = 0;
    uint32_t value_offset = 0;
    uint32_t value_size = 0;
  };

  int status_ = 0;
  std::string text_;
  std::vector<Field> fields_;
  bool is_in_name_ = false;
};

}  // namespace outpost::load
