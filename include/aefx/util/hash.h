#pragma once
// A cheap fingerprint of text (FNV-1a, 64 bits): what aefx compares to know that inputs it saw
// before are the same (a resumed extraction's inputs and model, an image cache's files). Not a
// security measure.
#include <cstdint>
#include <string>

namespace aefx::util {

/// FNV-1a of `text`, continuing from `h` (chain calls to hash several pieces).
inline uint64_t fnv1a(const std::string& text, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// `h` as 16 hex digits.
inline std::string hex64(uint64_t h) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) s[static_cast<size_t>(i)] = digits[h & 15];
  return s;
}

}  // namespace aefx::util
