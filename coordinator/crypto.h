// The coordinator's few uses of OpenSSL: HMAC-SHA256 proofs in lowercase hex (the same proof
// the servers check, doc/managed.md), random hex ids, and a constant-time compare.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mcm::coord {

// Lowercase hex HMAC-SHA256 of msg keyed with secret ("" only if OpenSSL fails).
std::string hmac_hex(std::string_view secret, std::string_view msg);
// nbytes random bytes as 2*nbytes lowercase hex digits ("" if the RNG fails).
std::string random_hex(size_t nbytes);
bool equal_ct(std::string_view a, std::string_view b) noexcept;

// Monotonic and wall clocks in milliseconds.
int64_t mono_ms() noexcept;
int64_t unix_ms() noexcept;
int64_t mono_us() noexcept;

}  // namespace mcm::coord
