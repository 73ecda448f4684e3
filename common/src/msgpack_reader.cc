#include "common/src/msgpack_reader.h"

namespace loads::common {
namespace {
// Bounds a decoder enforces before allocating anything.
constexpr size_t kMaxContainer = 1 << 20;
constexpr size_t kMaxString = 1 << 20;   // a declarative scenario's text
constexpr size_t kMaxBinary = 64 << 20;  // a test library shipped in an assignment
constexpr size_t kMaxDepth = 8;
}  // namespace

bool UnpackBounded(std::string_view bytes, msgpack::object_handle* handle, std::string* error) {
  Reader r(error);
  try {
    size_t offset = 0;
    const msgpack::unpack_limit limit(kMaxContainer, kMaxContainer, kMaxString, kMaxBinary, 0,
                                      kMaxDepth);
    *handle = msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limit);
    if (offset != bytes.size()) return r.Fail("(message)", "trailing bytes after the map");
  } catch (const std::exception& e) {
    return r.Fail("(message)", std::string("not a msgpack document: ") + e.what());
  }
  return true;
}

}  // namespace loads::common
