// Number parsing with memcached's exact acceptance rules (its safe_strtoul/strtol/strtoull
// wrappers around the C library): optional leading whitespace and sign, decimal digits, then the
// token must end or continue with whitespace; out-of-range 64-bit values are refused; 32-bit
// results are truncated the way memcached's casts truncate them. Pure functions on a token.
#pragma once

#include <cstdint>
#include <string_view>

namespace mcm::proto {

namespace detail {

constexpr bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// strtoull/strtoll-like scan of tok. Sets *neg, *mag (saturating; *overflow when the magnitude
// exceeds 2^64-1) and returns the number of bytes consumed, or 0 if no digit was found.
constexpr size_t scan(std::string_view tok, bool* neg, uint64_t* mag, bool* overflow) noexcept {
    size_t i = 0;
    while (i < tok.size() && is_space(tok[i])) ++i;
    *neg = false;
    if (i < tok.size() && (tok[i] == '+' || tok[i] == '-')) {
        *neg = tok[i] == '-';
        ++i;
    }
    size_t start = i;
    uint64_t v = 0;
    *overflow = false;
    while (i < tok.size() && tok[i] >= '0' && tok[i] <= '9') {
        uint64_t d = static_cast<uint64_t>(tok[i] - '0');
        if (v > (UINT64_MAX - d) / 10) *overflow = true;
        v = v * 10 + d;
        ++i;
    }
    if (i == start) return 0;
    *mag = v;
    return i;
}

// memcached accepts the number only if what follows it is whitespace or the token's end.
constexpr bool tail_ok(std::string_view tok, size_t end) noexcept {
    return end == tok.size() || is_space(tok[end]) || tok[end] == '\0';
}

}  // namespace detail

// safe_strtoull: unsigned 64-bit. A '-' sign is refused unless the value is small enough to be
// non-negative as a signed number (so "-0" is 0, as in memcached).
constexpr bool parse_u64(std::string_view tok, uint64_t* out) noexcept {
    bool neg, ovf;
    uint64_t mag = 0;
    size_t end = detail::scan(tok, &neg, &mag, &ovf);
    if (end == 0 || ovf || !detail::tail_ok(tok, end)) return false;
    uint64_t v = neg ? (~mag + 1) : mag;  // strtoull negates in unsigned arithmetic
    if (static_cast<int64_t>(v) < 0 && neg) return false;
    *out = v;
    return true;
}

// safe_strtoul into a uint32_t: parsed as unsigned long (64-bit) and truncated.
constexpr bool parse_u32(std::string_view tok, uint32_t* out) noexcept {
    uint64_t v = 0;
    if (!parse_u64(tok, &v)) return false;
    *out = static_cast<uint32_t>(v);
    return true;
}

// safe_strtoll: signed 64-bit with ERANGE outside [INT64_MIN, INT64_MAX].
constexpr bool parse_i64(std::string_view tok, int64_t* out) noexcept {
    bool neg, ovf;
    uint64_t mag = 0;
    size_t end = detail::scan(tok, &neg, &mag, &ovf);
    if (end == 0 || ovf || !detail::tail_ok(tok, end)) return false;
    if (neg) {
        if (mag > static_cast<uint64_t>(INT64_MAX) + 1) return false;
        *out = static_cast<int64_t>(~mag + 1);
    } else {
        if (mag > static_cast<uint64_t>(INT64_MAX)) return false;
        *out = static_cast<int64_t>(mag);
    }
    return true;
}

// safe_strtol into an int32_t: parsed as long (64-bit) and truncated.
constexpr bool parse_i32(std::string_view tok, int32_t* out) noexcept {
    int64_t v = 0;
    if (!parse_i64(tok, &v)) return false;
    *out = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v)));
    return true;
}

}  // namespace mcm::proto
