// The cluster secret's challenge-response, shared by the control commands, the replication
// links and the coordinator: a proof is the lowercase hex HMAC-SHA256, keyed with the secret,
// of the challenge text; the secret never crosses the wire.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mcm::repl {

std::string hmac_hex(std::string_view secret, std::string_view text);
// nbytes (at most 64) random bytes as lowercase hex (RAND_bytes); "" if the generator fails.
std::string random_hex(size_t nbytes);
inline std::string random_hex32() { return random_hex(32); }
// a == b in time that depends only on their lengths.
bool equal_ct(std::string_view a, std::string_view b) noexcept;
// proof_hex == hmac_hex(secret, text), compared in constant time.
bool proof_ok(std::string_view secret, std::string_view text, std::string_view proof_hex);
// The cluster secret as every program reads it: the file's bytes, a trailing newline
// ignored, at least 16 of them. False with *err (one line) otherwise.
bool read_secret_file(const std::string& path, std::string* secret, std::string* err);

}  // namespace mcm::repl
