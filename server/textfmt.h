// Decimal formatting for reply lines, without snprintf's parsing of a format string.
#pragma once

#include <cstdint>

namespace mcm::server {

[[gnu::always_inline]] inline char* put_u64(char* p, uint64_t v) noexcept {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0) *p++ = tmp[--n];
    return p;
}

inline char* put_i64(char* p, int64_t v) noexcept {
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, 0 - static_cast<uint64_t>(v));
    }
    return put_u64(p, static_cast<uint64_t>(v));
}

}  // namespace mcm::server
