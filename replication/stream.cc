#include "replication/stream.h"

namespace mcm::repl {

namespace {

template <typename T>
void put(std::string* out, T v) {
    char b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) {
        b[i] = static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    }
    out->append(b, sizeof(T));
}

template <typename T>
T get(const char* p) noexcept {
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
    return static_cast<T>(v);
}

}  // namespace

void put_u16(std::string* out, uint16_t v) { put(out, v); }
void put_u32(std::string* out, uint32_t v) { put(out, v); }
void put_u64(std::string* out, uint64_t v) { put(out, v); }
uint16_t get_u16(const char* p) noexcept { return get<uint16_t>(p); }
uint32_t get_u32(const char* p) noexcept { return get<uint32_t>(p); }
uint64_t get_u64(const char* p) noexcept { return get<uint64_t>(p); }

void put_frame_header(char* h, FrameType t, size_t n) noexcept {
    const uint32_t len = static_cast<uint32_t>(n + 1);  // the type byte counts
    for (size_t i = 0; i < 4; ++i) h[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    h[4] = static_cast<char>(t);
}

size_t begin_frame(std::string* out, FrameType t) {
    size_t at = out->size();
    out->append(4, '\0');
    out->push_back(static_cast<char>(t));
    return at;
}

void end_frame(std::string* out, size_t at) noexcept {
    uint32_t len = static_cast<uint32_t>(out->size() - at - 4);
    for (size_t i = 0; i < 4; ++i) (*out)[at + i] = static_cast<char>((len >> (8 * i)) & 0xff);
}

size_t next_frame(std::string_view in, FrameType* type, std::string_view* payload,
                  uint32_t max_len) noexcept {
    if (in.size() < 4) return 0;
    uint32_t len = get_u32(in.data());
    if (len == 0 || len > max_len) return SIZE_MAX;
    if (in.size() < 4 + size_t{len}) return 0;
    *type = static_cast<FrameType>(static_cast<uint8_t>(in[4]));
    *payload = in.substr(kFrameHeader, len - 1);
    return 4 + size_t{len};
}

void frame_hello(std::string* out, std::string_view name, std::string_view proof) {
    size_t at = begin_frame(out, FrameType::Hello);
    put_u16(out, static_cast<uint16_t>(name.size()));
    out->append(name);
    out->append(proof);
    end_frame(out, at);
}

bool parse_hello(std::string_view p, std::string* name, std::string* proof) {
    if (p.size() < 2) return false;
    uint16_t n = get_u16(p.data());
    if (p.size() < 2 + size_t{n}) return false;
    name->assign(p.substr(2, n));
    proof->assign(p.substr(2 + n));
    return true;
}

void frame_sub(std::string* out, const SubMsg& m) {
    size_t at = begin_frame(out, FrameType::Sub);
    put_u32(out, m.bucket);
    put_u64(out, m.history);
    put_u64(out, m.seqno);
    end_frame(out, at);
}

bool parse_sub(std::string_view p, SubMsg* m) noexcept {
    if (p.size() != 20) return false;
    m->bucket = get_u32(p.data());
    m->history = get_u64(p.data() + 4);
    m->seqno = get_u64(p.data() + 12);
    return true;
}

void frame_bucket(std::string* out, FrameType t, uint32_t bucket) {
    size_t at = begin_frame(out, t);
    put_u32(out, bucket);
    end_frame(out, at);
}

bool parse_bucket(std::string_view p, uint32_t* bucket) noexcept {
    if (p.size() != 4) return false;
    *bucket = get_u32(p.data());
    return true;
}

void frame_stream(std::string* out, const StreamMsg& m) {
    size_t at = begin_frame(out, FrameType::Stream);
    put_u32(out, m.bucket);
    put_u64(out, m.history);
    put_u64(out, m.seqno);
    out->push_back(m.backfill ? 1 : 0);
    end_frame(out, at);
}

bool parse_stream(std::string_view p, StreamMsg* m) noexcept {
    if (p.size() != 21) return false;
    m->bucket = get_u32(p.data());
    m->history = get_u64(p.data() + 4);
    m->seqno = get_u64(p.data() + 12);
    m->backfill = p[20] != 0;
    return true;
}

void frame_backfill_end(std::string* out, const BackfillEndMsg& m) {
    size_t at = begin_frame(out, FrameType::BackfillEnd);
    put_u32(out, m.bucket);
    put_u64(out, m.seqno);
    put_u64(out, m.items);
    end_frame(out, at);
}

bool parse_backfill_end(std::string_view p, BackfillEndMsg* m) noexcept {
    if (p.size() != 20) return false;
    m->bucket = get_u32(p.data());
    m->seqno = get_u64(p.data() + 4);
    m->items = get_u64(p.data() + 12);
    return true;
}

void frame_u64(std::string* out, FrameType t, uint64_t v) {
    size_t at = begin_frame(out, t);
    put_u64(out, v);
    end_frame(out, at);
}

bool parse_u64(std::string_view p, uint64_t* v) noexcept {
    if (p.size() != 8) return false;
    *v = get_u64(p.data());
    return true;
}

void frame_coord(std::string* out, const CoordMsg& m) {
    size_t at = begin_frame(out, FrameType::Coord);
    put_u64(out, m.epoch);
    put_u32(out, m.silent_ms);
    end_frame(out, at);
}

bool parse_coord(std::string_view p, CoordMsg* m) noexcept {
    if (p.size() != 12) return false;
    m->epoch = get_u64(p.data());
    m->silent_ms = get_u32(p.data() + 8);
    return true;
}

void ack_add(std::string* payload, uint32_t bucket, uint64_t seqno) {
    put_u32(payload, bucket);
    put_u64(payload, seqno);
}

void frame_ack(std::string* out, std::string_view payload) {
    size_t at = begin_frame(out, FrameType::Ack);
    out->append(payload);
    end_frame(out, at);
}

}  // namespace mcm::repl
