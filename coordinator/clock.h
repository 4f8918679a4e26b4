// The coordinator's clocks, in milliseconds and microseconds, and the cluster secret's
// HMAC helpers it shares with the servers (replication/auth.h).
#pragma once

#include <cstdint>

#include "replication/auth.h"

namespace mcm::coord {

using repl::equal_ct;
using repl::hmac_hex;
using repl::random_hex;

// Monotonic and wall clocks.
int64_t mono_ms() noexcept;
int64_t unix_ms() noexcept;
int64_t mono_us() noexcept;

}  // namespace mcm::coord
