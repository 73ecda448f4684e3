#pragma once

#include <string_view>

namespace loads::common {

// Compares two secrets (tokens) without an early exit, so that the time taken does not tell how
// much of a guess was right.
inline bool SameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace loads::common
