#include "replication/record.h"

#include "replication/stream.h"

#include <cstring>

namespace mcm::repl {

namespace {

template <typename T>
void put_at(char* b, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) {
        b[i] = static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    }
}


}  // namespace

void encode_header(const Record& r, size_t key_len, size_t value_len, char* h) {
    h[0] = static_cast<char>(r.kind);
    put_at<uint32_t>(h + 1, r.bucket);
    put_at<uint64_t>(h + 5, r.seqno);
    put_at<uint64_t>(h + 13, r.cas);
    put_at<uint32_t>(h + 21, r.flags);
    put_at<int64_t>(h + 25, r.exptime_unix);
    h[33] = static_cast<char>(r.marks);
    put_at<uint16_t>(h + 34, static_cast<uint16_t>(key_len));
    put_at<uint32_t>(h + 36, static_cast<uint32_t>(value_len));
    put_at<int64_t>(h + 40, r.flush_delay);
}

void encode(const Record& r, std::string* out) {
    char h[kRecordHeader];
    encode_header(r, r.key.size(), r.value.size(), h);
    out->reserve(out->size() + kRecordHeader + r.key.size() + r.value.size());
    out->append(h, kRecordHeader);
    out->append(r.key);
    out->append(r.value);
}

size_t decode(std::string_view in, Record* r) {
    if (in.size() < kRecordHeader) return 0;
    const char* p = in.data();
    uint8_t kind = static_cast<uint8_t>(p[0]);
    if (kind < 1 || kind > 4) return SIZE_MAX;
    uint16_t klen = get_u16(p + 34);
    uint32_t vlen = get_u32(p + 36);
    if (klen > 250) return SIZE_MAX;
    size_t total = kRecordHeader + klen + size_t{vlen};
    if (in.size() < total) return 0;
    r->kind = static_cast<RecordKind>(kind);
    r->bucket = get_u32(p + 1);
    r->seqno = get_u64(p + 5);
    r->cas = get_u64(p + 13);
    r->flags = get_u32(p + 21);
    r->exptime_unix = static_cast<int64_t>(get_u64(p + 25));
    r->marks = static_cast<uint8_t>(p[33]);
    r->flush_delay = static_cast<int64_t>(get_u64(p + 40));
    r->key.assign(p + kRecordHeader, klen);
    r->value.assign(p + kRecordHeader + klen, vlen);
    return total;
}

void Backlog::append(uint64_t seqno, std::string encoded, uint64_t t_us) {
    if (entries_.empty() && seqno > 0 && evicted_ < seqno - 1 && last_ < seqno - 1) {
        evicted_ = seqno - 1;  // nothing before the first record is held
    }
    bytes_ += encoded.size();
    entries_.push_back(Entry{seqno, t_us, std::move(encoded)});
    last_ = seqno;
    while (bytes_ > max_bytes_ && !entries_.empty()) {
        bytes_ -= entries_.front().bytes.size();
        evicted_ = entries_.front().seqno;
        entries_.pop_front();
        ++dropped_;
    }
}

void Backlog::clear() noexcept {
    entries_.clear();
    bytes_ = 0;
    last_ = 0;
    evicted_ = 0;
}

size_t Backlog::index_after(uint64_t after) const noexcept {
    if (entries_.empty() || after < entries_.front().seqno) return 0;
    // A bucket's sequence numbers are consecutive, so the place is usually known at once.
    size_t guess = static_cast<size_t>(after - entries_.front().seqno) + 1;
    if (guess >= entries_.size()) {
        if (entries_.back().seqno <= after) return entries_.size();
    } else if (entries_[guess - 1].seqno <= after && entries_[guess].seqno > after) {
        return guess;
    }
    // Otherwise (a gap): binary search for the first entry past `after`.
    size_t lo = 0, hi = entries_.size();
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (entries_[mid].seqno <= after) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

uint64_t Backlog::time_of(uint64_t seqno) const noexcept {
    if (seqno == 0) return 0;
    size_t i = index_after(seqno - 1);
    return i < entries_.size() && entries_[i].seqno == seqno ? entries_[i].t_us : 0;
}

bool Backlog::since(uint64_t after, std::vector<std::string_view>* out) const {
    if (after >= last_) return true;  // nothing newer
    if (!holds_after(after)) return false;  // some of what follows `after` is gone
    for (size_t i = index_after(after); i < entries_.size(); ++i) {
        out->emplace_back(entries_[i].bytes);
    }
    return true;
}

}  // namespace mcm::repl
