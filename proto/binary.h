// memcached's binary protocol: the 24-byte request header and what follows it. Bytes in, a
// BinRequest out; no sockets. The value (bodylen - extlen - keylen bytes) is not parsed here:
// the caller reads it straight into the item, as for the text protocol's storage commands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "proto/text_parser.h"

namespace mcm::proto::bin {

inline constexpr uint8_t kReqMagic = 0x80;
inline constexpr uint8_t kResMagic = 0x81;
inline constexpr size_t kHeaderLen = 24;
inline constexpr size_t kMaxExtLen = 20;  // the longest extras any opcode takes (incr/decr)

enum Opcode : uint8_t {
    Get = 0x00, Set = 0x01, Add = 0x02, Replace = 0x03, Delete = 0x04, Increment = 0x05,
    Decrement = 0x06, Quit = 0x07, Flush = 0x08, GetQ = 0x09, Noop = 0x0a, Version = 0x0b,
    GetK = 0x0c, GetKQ = 0x0d, Append = 0x0e, Prepend = 0x0f, Stat = 0x10, SetQ = 0x11,
    AddQ = 0x12, ReplaceQ = 0x13, DeleteQ = 0x14, IncrementQ = 0x15, DecrementQ = 0x16,
    QuitQ = 0x17, FlushQ = 0x18, AppendQ = 0x19, PrependQ = 0x1a, Verbosity = 0x1b,
    Touch = 0x1c, Gat = 0x1d, GatQ = 0x1e, SaslListMechs = 0x20, SaslAuth = 0x21,
    SaslStep = 0x22, GatK = 0x23, GatKQ = 0x24,
};

enum Status : uint16_t {
    Ok = 0x00, KeyNotFound = 0x01, KeyExists = 0x02, TooBig = 0x03, Invalid = 0x04,
    NotStored = 0x05, DeltaBadValue = 0x06, AuthError = 0x20, UnknownCommand = 0x81,
    NoMemory = 0x82,
};

// The error text memcached sends in the body of each error status.
constexpr std::string_view status_text(uint16_t s) noexcept {
    switch (s) {
        case NoMemory: return "Out of memory";
        case UnknownCommand: return "Unknown command";
        case KeyNotFound: return "Not found";
        case Invalid: return "Invalid arguments";
        case KeyExists: return "Data exists for key.";
        case TooBig: return "Too large.";
        case DeltaBadValue: return "Non-numeric server-side value for incr or decr";
        case NotStored: return "Not stored.";
        case AuthError: return "Auth failure.";
        default: return "";
    }
}

// One request's header (host byte order), extras and key. The views point into the caller's
// buffer; ext holds min(extlen, kMaxExtLen) bytes.
struct BinRequest {
    uint8_t opcode = 0;
    uint8_t extlen = 0;
    uint16_t keylen = 0;
    uint32_t bodylen = 0;
    uint32_t opaque = 0;  // echoed as sent (no byte swapping needed)
    uint64_t cas = 0;
    std::string_view ext;
    std::string_view key;
    std::string_view raw;  // header, extras and key as received
    // Bytes of the body after extras and key (0 if the lengths are inconsistent).
    uint32_t value_len() const noexcept {
        uint32_t used = uint32_t{extlen} + keylen;
        return bodylen >= used ? bodylen - used : 0;
    }
};

// Ok: *req is filled and *consumed = 24 + extlen + keylen. NeedMore: not all of that is here.
// Close: the first byte is not the request magic (memcached hangs up).
[[nodiscard]] ParseStatus parse_binary(std::string_view in, BinRequest* req,
                                       size_t* consumed) noexcept;

// Big-endian helpers for extras.
inline uint32_t load_be32(const char* p) noexcept {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
inline uint64_t load_be64(const char* p) noexcept {
    return (uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}
inline void store_be16(char* p, uint16_t v) noexcept {
    p[0] = static_cast<char>(v >> 8);
    p[1] = static_cast<char>(v);
}
inline void store_be32(char* p, uint32_t v) noexcept {
    store_be16(p, static_cast<uint16_t>(v >> 16));
    store_be16(p + 2, static_cast<uint16_t>(v));
}
inline void store_be64(char* p, uint64_t v) noexcept {
    store_be32(p, static_cast<uint32_t>(v >> 32));
    store_be32(p + 4, static_cast<uint32_t>(v));
}

// A response header: magic, the request's opcode and opaque, lengths, status, cas.
inline void write_header(char* p, uint8_t opcode, uint16_t status, uint8_t extlen,
                         uint16_t keylen, uint32_t bodylen, uint32_t opaque,
                         uint64_t cas) noexcept {
    p[0] = static_cast<char>(kResMagic);
    p[1] = static_cast<char>(opcode);
    store_be16(p + 2, keylen);
    p[4] = static_cast<char>(extlen);
    p[5] = 0;  // datatype: raw bytes
    store_be16(p + 6, status);
    store_be32(p + 8, bodylen);
    std::memcpy(p + 12, &opaque, 4);
    store_be64(p + 16, cas);
}

}  // namespace mcm::proto::bin
