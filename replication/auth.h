// The cluster secret's challenge-response, shared by the control commands, the replication
// links and the coordinator: a proof is the lowercase hex HMAC-SHA256, keyed with the secret,
// of the challenge text; the secret never crosses the wire.
#pragma once

#include <string>
#include <string_view>

namespace mcm::repl {

std::string hmac_hex(std::string_view secret, std::string_view text);
// 64 random hex digits (RAND_bytes); "" if the generator fails.
std::string random_hex32();
// proof_hex == hmac_hex(secret, text), compared in constant time.
bool proof_ok(std::string_view secret, std::string_view text, std::string_view proof_hex);

}  // namespace mcm::repl
