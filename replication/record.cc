#include "replication/record.h"

#include "replication/stream.h"

#include <algorithm>
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

void encode_header(const RecordHead& r, size_t key_len, size_t value_len, char* h) {
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

size_t decode(std::string_view in, RecordView* r) {
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
    r->key = std::string_view(p + kRecordHeader, klen);
    r->value = std::string_view(p + kRecordHeader + klen, vlen);
    return total;
}

size_t decode(std::string_view in, Record* r) {
    RecordView v;
    size_t used = decode(in, &v);
    if (used == 0 || used == SIZE_MAX) return used;
    static_cast<RecordHead&>(*r) = v;
    r->key.assign(v.key);
    r->value.assign(v.value);
    return used;
}

bool decode_whole(std::string_view payload, RecordView* r) {
    const size_t used = decode(payload, r);
    return used != 0 && used == payload.size();
}

void Backlog::drop_all(uint64_t gone_through) noexcept {
    dropped_ += count_;
    count_ = 0;
    idx_first_ = 0;
    head_ = tail_;
    evicted_ = gone_through;
}

void Backlog::grow_index() {
    std::vector<Entry> bigger(idx_.empty() ? 64 : idx_.size() * 2);
    for (size_t i = 0; i < count_; ++i) bigger[i] = idx_[(idx_first_ + i) & (idx_.size() - 1)];
    idx_.swap(bigger);
    idx_first_ = 0;
}

// Makes room for len more bytes, and then some: at least an eighth of the budget goes at once,
// found by a binary search of the index, so a full backlog reads a few index entries per batch
// of records pushed out rather than one (mostly out of cache) per record.
void Backlog::evict(size_t len) noexcept {
    const size_t need = static_cast<size_t>(tail_ - head_) + len - max_bytes_;
    const uint64_t target = head_ + std::max(need, max_bytes_ / 8);
    const size_t mask = idx_.size() - 1;
    size_t lo = 1, hi = count_;  // the first kept record is in [lo, hi]; hi: none kept
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (idx_[(idx_first_ + mid) & mask].pos >= target) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    first_ += lo;
    evicted_ = first_ - 1;
    idx_first_ = (idx_first_ + lo) & mask;
    count_ -= lo;
    dropped_ += lo;
    head_ = count_ > 0 ? idx_[idx_first_].pos : tail_;
}

void Backlog::append(uint64_t seqno, uint64_t t_us, std::initializer_list<std::string_view> parts) {
    size_t len = 0;
    for (std::string_view p : parts) len += p.size();
    if (len > max_bytes_) {  // can never be held
        drop_all(seqno);
        last_ = seqno;
        return;
    }
    if (!ring_) {
        size_t cap = 1;
        while (cap < max_bytes_) cap <<= 1;
        ring_.reset(new char[cap]);  // not value-initialised: pages are touched as used
        ring_cap_ = cap;
    }
    if (count_ == idx_.size()) grow_index();
    // Past the allocations: nothing below throws.
    if (seqno != last_ + 1) drop_all(seqno - 1);  // a gap, or a backlog started mid-way
    if (count_ > 0 && static_cast<size_t>(tail_ - head_) + len > max_bytes_) evict(len);
    const uint64_t start = tail_;
    const size_t mask = ring_cap_ - 1;
    for (std::string_view p : parts) {
        if (p.empty()) continue;  // (an empty view's data() may be null: no memcpy from it)
        size_t at = static_cast<size_t>(tail_) & mask;
        size_t n1 = std::min(p.size(), ring_cap_ - at);
        std::memcpy(ring_.get() + at, p.data(), n1);
        if (n1 < p.size()) std::memcpy(ring_.get(), p.data() + n1, p.size() - n1);
        tail_ += p.size();
    }
    if (count_ == 0) {
        first_ = seqno;
        idx_first_ = 0;
        head_ = start;
    }
    idx_[(idx_first_ + count_) & (idx_.size() - 1)] = Entry{start, t_us};
    ++count_;
    last_ = seqno;
    // The next record goes after this one. Its lines were last written a whole ring ago and
    // are out of cache by now: ask for them while the bucket is idle, rather than have the
    // next writer stall on them (under the store's lock).
    for (size_t off = 0; off < 256; off += 64) {
        __builtin_prefetch(ring_.get() + ((static_cast<size_t>(tail_) + off) & mask), 1, 3);
    }
}

void Backlog::clear(uint64_t start) noexcept {
    count_ = 0;
    idx_first_ = 0;
    head_ = tail_ = 0;
    last_ = start;
    evicted_ = start;
}

void Backlog::release() noexcept {
    clear();
    ring_.reset();
    ring_cap_ = 0;
    std::vector<Entry>().swap(idx_);
}

uint64_t Backlog::time_of(uint64_t seqno) const noexcept {
    if (count_ == 0 || seqno < first_ || seqno > last_) return 0;
    return entry(seqno).t_us;
}

bool Backlog::copy_since(uint64_t after, std::string* out, size_t* records) const {
    *records = 0;
    if (after >= last_) return true;         // nothing newer
    if (!holds_after(after)) return false;  // some of what follows `after` is gone
    const uint64_t from = entry(after + 1).pos;
    const size_t n = static_cast<size_t>(tail_ - from);
    const size_t at = static_cast<size_t>(from) & (ring_cap_ - 1);
    const size_t n1 = std::min(n, ring_cap_ - at);
    out->append(ring_.get() + at, n1);
    if (n1 < n) out->append(ring_.get(), n - n1);
    *records = static_cast<size_t>(last_ - after);
    return true;
}

}  // namespace mcm::repl
