// Replication records (issue 6): what an active server ships to a bucket's replicas. A record
// carries the state a write left, not the command, so applying one twice changes nothing, and
// it carries the active's CAS unique, so a client's gets/cas works the same after failover.
// Plain data and a byte encoding; no sockets, no store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mcm::repl {

enum class RecordKind : uint8_t {
    Set = 1,     // key, flags, exptime, cas, value (and the stale / binary-key marks)
    Touch = 2,   // key, exptime (cas unchanged)
    Delete = 3,  // key
    Flush = 4,   // flush_all barrier: flush_delay
};

// A record's fixed fields: everything but its key and value.
struct RecordHead {
    RecordKind kind = RecordKind::Set;
    uint32_t bucket = 0;
    uint64_t seqno = 0;
    uint64_t cas = 0;
    uint32_t flags = 0;
    int64_t exptime_unix = 0;  // absolute unix time; 0 = never
    uint8_t marks = 0;         // bit 0: stale, bit 1: binary key
    int64_t flush_delay = 0;   // Flush: unix time it takes effect (0 = at once)
};

struct Record : RecordHead {
    std::string key;
    std::string value;
};

// A decoded record whose key and value still lie in the bytes it was read from.
struct RecordView : RecordHead {
    std::string_view key;
    std::string_view value;
};

inline constexpr uint8_t kMarkStale = 1;
inline constexpr uint8_t kMarkBinaryKey = 2;
inline constexpr size_t kRecordHeader = 48;

// Appends the record's bytes to *out: a 48-byte little-endian header (kind, bucket, seqno,
// cas, flags, exptime, marks, key length, value length, flush delay), then key and value.
void encode(const Record& r, std::string* out);
// Just the 48-byte header, for a record whose key and value are elsewhere.
void encode_header(const RecordHead& r, size_t key_len, size_t value_len, char* header);
// Decodes one record from the front of in. Returns the bytes used, 0 if in holds less than a
// whole record, SIZE_MAX if the bytes are not a record (unknown kind, key over 250 bytes).
size_t decode(std::string_view in, RecordView* r);
size_t decode(std::string_view in, Record* r);  // the same, copying key and value
// A frame's payload that must be exactly one record: false for anything else, an empty
// payload included (decode() reads that as "need more", 0 bytes, which equals its size).
bool decode_whole(std::string_view payload, RecordView* r);

// One bucket's recent records, encoded, for replicas that reconnect: bounded in bytes; when
// full the oldest go. A replica that asks for records after a sequence number the backlog no
// longer holds must be backfilled instead.
//
// The bytes live in one ring, written back to back (a record may wrap around its end), so an
// append copies the record in and allocates nothing once the ring exists, and a link copies a
// run of records out with at most two memcpy. A small index ring holds each record's start and
// write time; the record with sequence number s sits at index s - first_seqno(), because a
// bucket's sequence numbers are consecutive.
class Backlog {
public:
    explicit Backlog(size_t max_bytes = 0) noexcept : max_bytes_(max_bytes) {}
    // The byte budget; the ring is sized to it when it is next allocated (after release()),
    // rounded up to a power of two: a budget that is one wastes nothing.
    void set_max_bytes(size_t n) noexcept { max_bytes_ = n; }
    size_t max_bytes() const noexcept { return max_bytes_; }
    // Appends the record made of parts, written back to back. t_us is the write's time (steady
    // clock, microseconds), for lag figures. Sequence numbers should follow on one from the
    // next: the first record after clear() (unless it is number 1) or after a gap marks every
    // earlier sequence number as gone. A record larger than the budget is not kept: it and
    // everything before it count as gone. Throws std::bad_alloc (nothing changed) if the ring
    // or its index cannot be allocated.
    void append(uint64_t seqno, uint64_t t_us, std::initializer_list<std::string_view> parts);
    void append(uint64_t seqno, std::string_view bytes, uint64_t t_us = 0) {
        append(seqno, t_us, {bytes});
    }
    // Forget everything; keeps the memory. The next record is start + 1 and a reader at
    // start or later is up to date (a backlog begun for a bucket that already has history).
    void clear(uint64_t start = 0) noexcept;
    // Forget everything and give the memory back.
    void release() noexcept;
    // The write time of the record with this sequence number, 0 if the backlog lacks it.
    uint64_t time_of(uint64_t seqno) const noexcept;
    // Appends the bytes of the records after `after`, oldest first, to *out and sets *records
    // to how many. False if some of them are gone (the caller must backfill; nothing copied).
    bool copy_since(uint64_t after, std::string* out, size_t* records) const;
    // Whether every record after `after` is still here (copy_since() would return true).
    bool holds_after(uint64_t after) const noexcept { return after >= last_ || after >= evicted_; }
    uint64_t first_seqno() const noexcept { return count_ == 0 ? 0 : first_; }
    uint64_t last_seqno() const noexcept { return last_; }
    size_t bytes() const noexcept { return static_cast<size_t>(tail_ - head_); }
    size_t records() const noexcept { return count_; }
    uint64_t dropped() const noexcept { return dropped_; }  // records pushed out when full
    // Memory held: the ring and the index (16 bytes per record slot).
    size_t footprint() const noexcept { return ring_cap_ + idx_.size() * sizeof(Entry); }

private:
    struct Entry {
        uint64_t pos;   // where the record starts, in bytes since the ring was allocated
        uint64_t t_us;  // its write time
    };
    const Entry& entry(uint64_t seqno) const noexcept {
        return idx_[(idx_first_ + static_cast<size_t>(seqno - first_)) & (idx_.size() - 1)];
    }
    void drop_all(uint64_t gone_through) noexcept;  // every record up to gone_through is gone
    void grow_index();
    void evict(size_t len) noexcept;  // push out the oldest records to make room
    size_t max_bytes_;
    std::unique_ptr<char[]> ring_;
    size_t ring_cap_ = 0;  // a power of two, at least max_bytes_
    uint64_t head_ = 0;    // bytes [head_, tail_) of the stream are held
    uint64_t tail_ = 0;
    std::vector<Entry> idx_;  // a ring; its size is a power of two
    size_t idx_first_ = 0;    // the slot of the oldest record
    size_t count_ = 0;
    uint64_t first_ = 0;    // the oldest record's sequence number (when count_ > 0)
    uint64_t last_ = 0;     // the newest sequence number ever appended
    uint64_t evicted_ = 0;  // the newest sequence number known gone (0: none)
    uint64_t dropped_ = 0;
};

}  // namespace mcm::repl
