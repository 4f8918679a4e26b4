// The replication stream's framing (issue 6; doc/replication.md, section The stream): after a
// text handshake on the client port, both peers exchange length-prefixed frames. Plain bytes
// in and out; no sockets.
//
//   frame   = u32 length (of type and payload, little-endian) | u8 type | payload
//
//   Hello      name length u16, name, proof (hex): the acceptor proves it knows the secret
//   Sub        bucket u32, history u64, seqno u64: "I replicate this bucket, and hold it up
//              to seqno of that history" (history 0: nothing)
//   Unsub      bucket u32
//   Record     an encoded record (record.h); seqno 0 marks a backfilled item
//   Stream     bucket u32, history u64, seqno u64, backfill u8: records of the bucket after
//              seqno follow; with backfill set, the bucket's items come first (drop yours)
//   BackfillEnd bucket u32, seqno u64, items u64: the backfill is complete
//   Ack        (bucket u32, seqno u64)*: applied up to seqno
//   Ping/Pong  u64 microseconds (the sender's clock, echoed back)
//   NotActive  bucket u32: the sender does not serve this bucket to you (yet): ask again later
//   Coord      epoch u64, silent ms u32: the sender's view of the coordinator
//   Hints      (table hash u64)*: items being read on the active (hints.h); no sequence
//              number, never kept in a backlog
//
// A frame of a type the reader does not know is skipped: a later version may add some.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mcm::repl {

enum class FrameType : uint8_t {
    Hello = 1,
    Sub = 2,
    Unsub = 3,
    Record = 4,
    Stream = 5,
    BackfillEnd = 6,
    Ack = 7,
    Ping = 8,
    Pong = 9,
    NotActive = 10,
    Coord = 11,
    Hints = 12,
};

inline constexpr size_t kFrameHeader = 5;
inline constexpr uint32_t kMaxFrame = 1u << 30;

void put_u16(std::string* out, uint16_t v);
void put_u32(std::string* out, uint32_t v);
void put_u64(std::string* out, uint64_t v);
uint16_t get_u16(const char* p) noexcept;
uint32_t get_u32(const char* p) noexcept;
uint64_t get_u64(const char* p) noexcept;

// A frame's 5-byte header (length, type) for a payload of n bytes, written at h: for frames
// assembled from parts rather than in a string.
void put_frame_header(char* h, FrameType t, size_t n) noexcept;
// Starts a frame at the end of *out; returns where, for end_frame to write its length.
size_t begin_frame(std::string* out, FrameType t);
void end_frame(std::string* out, size_t at) noexcept;

// The frame at the front of in: returns the bytes it takes, 0 if in holds less than a whole
// frame, SIZE_MAX if the bytes cannot be a frame (length 0 or above max_len).
size_t next_frame(std::string_view in, FrameType* type, std::string_view* payload,
                  uint32_t max_len = kMaxFrame) noexcept;

struct SubMsg {
    uint32_t bucket = 0;
    uint64_t history = 0;
    uint64_t seqno = 0;
};
struct StreamMsg {
    uint32_t bucket = 0;
    uint64_t history = 0;
    uint64_t seqno = 0;
    bool backfill = false;
};
// With every Ping: the sender's map epoch and how long it has not heard the coordinator
// (UINT32_MAX: it never had a lease). Fencing's "coordinator is gone" rule counts these.
struct CoordMsg {
    uint64_t epoch = 0;
    uint32_t silent_ms = 0;
};
struct BackfillEndMsg {
    uint32_t bucket = 0;
    uint64_t seqno = 0;
    uint64_t items = 0;
};

void frame_hello(std::string* out, std::string_view name, std::string_view proof);
bool parse_hello(std::string_view p, std::string* name, std::string* proof);
void frame_sub(std::string* out, const SubMsg& m);
bool parse_sub(std::string_view p, SubMsg* m) noexcept;
void frame_bucket(std::string* out, FrameType t, uint32_t bucket);  // Unsub, NotActive
bool parse_bucket(std::string_view p, uint32_t* bucket) noexcept;
void frame_stream(std::string* out, const StreamMsg& m);
bool parse_stream(std::string_view p, StreamMsg* m) noexcept;
void frame_backfill_end(std::string* out, const BackfillEndMsg& m);
bool parse_backfill_end(std::string_view p, BackfillEndMsg* m) noexcept;
void frame_u64(std::string* out, FrameType t, uint64_t v);  // Ping, Pong
bool parse_u64(std::string_view p, uint64_t* v) noexcept;
void frame_coord(std::string* out, const CoordMsg& m);
bool parse_coord(std::string_view p, CoordMsg* m) noexcept;
// Ack payload: 12 bytes per bucket.
void ack_add(std::string* payload, uint32_t bucket, uint64_t seqno);
void frame_ack(std::string* out, std::string_view payload);
// Reads an Ack payload: fn(bucket, seqno) for each entry, in order, while fn returns true.
// False if the payload is not a whole number of entries (nothing called) or fn said stop.
template <typename F>
bool parse_ack(std::string_view p, F&& fn) {
    if (p.size() % 12 != 0) return false;
    for (size_t i = 0; i < p.size(); i += 12) {
        if (!fn(get_u32(p.data() + i), get_u64(p.data() + i + 4))) return false;
    }
    return true;
}

}  // namespace mcm::repl
