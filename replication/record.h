// Replication records (issue 6): what an active server ships to a bucket's replicas. A record
// carries the state a write left, not the command, so applying one twice changes nothing, and
// it carries the active's CAS unique, so a client's gets/cas works the same after failover.
// Plain data and a byte encoding; no sockets, no store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
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

struct Record {
    RecordKind kind = RecordKind::Set;
    uint32_t bucket = 0;
    uint64_t seqno = 0;
    uint64_t cas = 0;
    uint32_t flags = 0;
    int64_t exptime_unix = 0;  // absolute unix time; 0 = never
    uint8_t marks = 0;         // bit 0: stale, bit 1: binary key
    int64_t flush_delay = 0;   // Flush: unix time it takes effect (0 = at once)
    std::string key;
    std::string value;
};

inline constexpr uint8_t kMarkStale = 1;
inline constexpr uint8_t kMarkBinaryKey = 2;
inline constexpr size_t kRecordHeader = 48;

// Appends the record's bytes to *out: a 48-byte little-endian header (kind, bucket, seqno,
// cas, flags, exptime, marks, key length, value length, flush delay), then key and value.
void encode(const Record& r, std::string* out);
// Just the 48-byte header, for a record whose key and value are elsewhere.
void encode_header(const Record& r, size_t key_len, size_t value_len, char* header);
// Decodes one record from the front of in. Returns the bytes used, 0 if in holds less than a
// whole record, SIZE_MAX if the bytes are not a record (unknown kind, key over 250 bytes).
size_t decode(std::string_view in, Record* r);

// One bucket's recent records, encoded, for replicas that reconnect: bounded in bytes; when
// full the oldest go. A replica that asks for records after a sequence number the backlog no
// longer holds must be backfilled instead.
class Backlog {
public:
    explicit Backlog(size_t max_bytes = 0) noexcept : max_bytes_(max_bytes) {}
    void set_max_bytes(size_t n) noexcept { max_bytes_ = n; }
    size_t max_bytes() const noexcept { return max_bytes_; }
    // Records must arrive with growing sequence numbers. A backlog holds nothing from before
    // its first record: the first append also marks every earlier sequence number as gone.
    // t_us is the write's time (steady clock, microseconds), for lag figures.
    void append(uint64_t seqno, std::string encoded, uint64_t t_us = 0);
    // Forget everything (a new history starts).
    void clear() noexcept;
    // The write time of the record with this sequence number, 0 if the backlog lacks it.
    uint64_t time_of(uint64_t seqno) const noexcept;
    // fn(t_us) for each record held with a sequence number in [from, to], oldest first.
    template <typename Fn>
    void for_each_time(uint64_t from, uint64_t to, Fn&& fn) const {
        for (size_t i = index_after(from == 0 ? 0 : from - 1);
             i < entries_.size() && entries_[i].seqno <= to; ++i) {
            fn(entries_[i].t_us);
        }
    }
    // The records after `after`, oldest first, into *out. False if some of them are gone
    // (the caller must backfill), true otherwise (possibly none).
    bool since(uint64_t after, std::vector<std::string_view>* out) const;
    // Whether every record after `after` is still here (since() would return true).
    bool holds_after(uint64_t after) const noexcept { return after >= last_ || after >= evicted_; }
    uint64_t first_seqno() const noexcept { return entries_.empty() ? 0 : entries_.front().seqno; }
    uint64_t last_seqno() const noexcept { return last_; }
    size_t bytes() const noexcept { return bytes_; }
    size_t records() const noexcept { return entries_.size(); }
    uint64_t dropped() const noexcept { return dropped_; }  // records pushed out when full

private:
    struct Entry {
        uint64_t seqno;
        uint64_t t_us;
        std::string bytes;
    };
    size_t index_after(uint64_t after) const noexcept;  // first entry with seqno > after
    size_t max_bytes_;
    size_t bytes_ = 0;
    uint64_t last_ = 0;     // the newest sequence number ever appended
    uint64_t evicted_ = 0;  // the newest sequence number pushed out (0: none)
    uint64_t dropped_ = 0;
    std::deque<Entry> entries_;
};

}  // namespace mcm::repl
