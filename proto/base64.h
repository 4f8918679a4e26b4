// Standard base64 (RFC 4648 alphabet, '=' padding) for meta commands' binary keys (flag b).
// Decoding is strict, as memcached's: the length must be a multiple of 4, only the alphabet,
// and '=' only as the last one or two characters.
#pragma once

#include <cstddef>
#include <string_view>

namespace mcm::proto {

// Decodes in into out (room for in.size() / 4 * 3 bytes). Returns the decoded length, or 0 if
// in is not valid base64 or decodes to nothing.
size_t base64_decode(std::string_view in, char* out) noexcept;

// Encodes in into out (room for (in.size() + 2) / 3 * 4 bytes); returns the length written.
size_t base64_encode(std::string_view in, char* out) noexcept;

constexpr size_t base64_encoded_size(size_t n) noexcept { return (n + 2) / 3 * 4; }

}  // namespace mcm::proto
