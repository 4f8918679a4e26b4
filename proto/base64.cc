#include "proto/base64.h"

#include <cstdint>

namespace mcm::proto {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0-63 for alphabet characters, 64 for '=', 255 for anything else.
struct DecodeTable {
    uint8_t v[256];
    constexpr DecodeTable() : v() {
        for (auto& x : v) x = 255;
        for (int i = 0; i < 64; ++i) v[static_cast<uint8_t>(kAlphabet[i])] = static_cast<uint8_t>(i);
        v[static_cast<uint8_t>('=')] = 64;
    }
};
constexpr DecodeTable kDecode;

}  // namespace

size_t base64_decode(std::string_view in, char* out) noexcept {
    if (in.empty() || in.size() % 4 != 0) return 0;
    size_t n = 0;
    for (size_t i = 0; i < in.size(); i += 4) {
        uint8_t a = kDecode.v[static_cast<uint8_t>(in[i])];
        uint8_t b = kDecode.v[static_cast<uint8_t>(in[i + 1])];
        uint8_t c = kDecode.v[static_cast<uint8_t>(in[i + 2])];
        uint8_t d = kDecode.v[static_cast<uint8_t>(in[i + 3])];
        bool last = i + 4 == in.size();
        if (a > 63 || b > 63) return 0;
        if (c == 64 && d != 64) return 0;          // "x=" must end the group
        if ((c == 64 || d == 64) && !last) return 0;  // padding only at the very end
        if (c > 64 || d > 64) return 0;
        uint32_t bits = (uint32_t{a} << 18) | (uint32_t{b} << 12);
        out[n++] = static_cast<char>(bits >> 16);
        if (c == 64) break;
        bits |= uint32_t{c} << 6;
        out[n++] = static_cast<char>((bits >> 8) & 0xff);
        if (d == 64) break;
        bits |= d;
        out[n++] = static_cast<char>(bits & 0xff);
    }
    return n;
}

size_t base64_encode(std::string_view in, char* out) noexcept {
    size_t n = 0;
    size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        uint32_t bits = (uint32_t{static_cast<uint8_t>(in[i])} << 16) |
                        (uint32_t{static_cast<uint8_t>(in[i + 1])} << 8) |
                        static_cast<uint8_t>(in[i + 2]);
        out[n++] = kAlphabet[bits >> 18];
        out[n++] = kAlphabet[(bits >> 12) & 63];
        out[n++] = kAlphabet[(bits >> 6) & 63];
        out[n++] = kAlphabet[bits & 63];
    }
    size_t rest = in.size() - i;
    if (rest > 0) {
        uint32_t bits = uint32_t{static_cast<uint8_t>(in[i])} << 16;
        if (rest == 2) bits |= uint32_t{static_cast<uint8_t>(in[i + 1])} << 8;
        out[n++] = kAlphabet[bits >> 18];
        out[n++] = kAlphabet[(bits >> 12) & 63];
        out[n++] = rest == 2 ? kAlphabet[(bits >> 6) & 63] : '=';
        out[n++] = '=';
    }
    return n;
}

}  // namespace mcm::proto
