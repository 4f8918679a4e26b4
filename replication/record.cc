#include "replication/record.h"

#include <cstring>

namespace mcm::repl {

namespace {

template <typename T>
void put(std::string* out, T v) {
    char b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    out->append(b, sizeof(T));
}

template <typename T>
T get(const char* p) {
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
    return static_cast<T>(v);
}

}  // namespace

void encode(const Record& r, std::string* out) {
    out->reserve(out->size() + kRecordHeader + r.key.size() + r.value.size());
    put<uint8_t>(out, static_cast<uint8_t>(r.kind));
    put<uint32_t>(out, r.bucket);
    put<uint64_t>(out, r.seqno);
    put<uint64_t>(out, r.cas);
    put<uint32_t>(out, r.flags);
    put<int64_t>(out, r.exptime_unix);
    put<uint8_t>(out, r.marks);
    put<uint16_t>(out, static_cast<uint16_t>(r.key.size()));
    put<uint32_t>(out, static_cast<uint32_t>(r.value.size()));
    put<int64_t>(out, r.flush_delay);
    out->append(r.key);
    out->append(r.value);
}

size_t decode(std::string_view in, Record* r) {
    if (in.size() < kRecordHeader) return 0;
    const char* p = in.data();
    uint8_t kind = get<uint8_t>(p);
    if (kind < 1 || kind > 4) return SIZE_MAX;
    uint16_t klen = get<uint16_t>(p + 34);
    uint32_t vlen = get<uint32_t>(p + 36);
    if (klen > 250) return SIZE_MAX;
    size_t total = kRecordHeader + klen + size_t{vlen};
    if (in.size() < total) return 0;
    r->kind = static_cast<RecordKind>(kind);
    r->bucket = get<uint32_t>(p + 1);
    r->seqno = get<uint64_t>(p + 5);
    r->cas = get<uint64_t>(p + 13);
    r->flags = get<uint32_t>(p + 21);
    r->exptime_unix = get<int64_t>(p + 25);
    r->marks = get<uint8_t>(p + 33);
    r->flush_delay = get<int64_t>(p + 40);
    r->key.assign(p + kRecordHeader, klen);
    r->value.assign(p + kRecordHeader + klen, vlen);
    return total;
}

void Backlog::append(uint64_t seqno, std::string encoded) {
    bytes_ += encoded.size();
    entries_.push_back(Entry{seqno, std::move(encoded)});
    last_ = seqno;
    while (bytes_ > max_bytes_ && !entries_.empty()) {
        bytes_ -= entries_.front().bytes.size();
        evicted_ = entries_.front().seqno;
        entries_.pop_front();
        ++dropped_;
    }
}

bool Backlog::since(uint64_t after, std::vector<std::string_view>* out) const {
    if (after >= last_) return true;  // nothing newer
    if (after < evicted_) return false;  // some of what follows `after` is gone
    // Sequence numbers grow: find the first entry past `after`.
    size_t lo = 0, hi = entries_.size();
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (entries_[mid].seqno <= after) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i < entries_.size(); ++i) out->emplace_back(entries_[i].bytes);
    return true;
}

}  // namespace mcm::repl
