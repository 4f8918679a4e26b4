// The replica side of a record, and the active side's record from a store mutation (issue 6).
// Applying a record makes the replica's item what the active's is, with the same CAS unique;
// a record whose sequence number the bucket has already seen changes nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replication/record.h"
#include "replication/stream.h"
#include "server/store/store.h"

namespace mcm::repl {

// A record for a store mutation; the exptime and a flush's delay become absolute unix time
// (clocks of different servers do not share a start).
Record from_mutation(const store::Mutation& m, const store::Clock& clock);
// The same record, encoded straight into *out as a Record frame (stream.h): the active's hot
// path, without the intermediate copies.
void frame_mutation(const store::Mutation& m, const store::Clock& clock, std::string* out);
// Just the frame's header and the record's (kMutationFrameHeader bytes into h): the key and
// value follow. For the hook, which copies the three parts straight into a backlog.
inline constexpr size_t kMutationFrameHeader = kFrameHeader + kRecordHeader;
void frame_header(const store::Mutation& m, const store::Clock& clock, char* h);
// A backfilled item as a Record frame: a Set with sequence number 0.
void frame_item(const store::Item& it, uint32_t bucket, const store::Clock& clock,
                std::string* out);

enum class Applied : uint8_t {
    Done,        // the replica now holds the record's state
    Duplicate,   // the bucket already has this sequence number: nothing changed
    NoMemory,    // the replica could not allocate the item (-M, or nothing evictable)
    Misfiled,    // the record names another bucket than its key's: refused (nothing
                 // changed), the stream is corrupt
};

class Applier {
public:
    Applier(store::Store& st, const store::Clock& clock, uint32_t nbuckets)
        : st_(st), clock_(clock), applied_(nbuckets, 0), flush_at_(nbuckets, 0) {}

    // Sequence number 0 is a backfilled item: applied whatever the bucket has seen.
    Applied apply(const RecordView& r);
    Applied apply(const Record& r);
    uint64_t applied_seqno(uint32_t bucket) const noexcept {
        return bucket < applied_.size() ? applied_[bucket] : 0;
    }
    // The bucket now holds the active's state up to seqno (a backfill starts from there).
    void reset(uint32_t bucket, uint64_t seqno) noexcept;
    // Runs the delayed flushes that are due (now: unix seconds). Returns how many ran.
    size_t run_due_flushes(int64_t now_unix) noexcept;
    // The unix time of the bucket's pending delayed flush, 0 if none.
    int64_t pending_flush(uint32_t bucket) const noexcept {
        return bucket < flush_at_.size() ? flush_at_[bucket] : 0;
    }

private:
    store::Store& st_;
    const store::Clock& clock_;
    std::vector<uint64_t> applied_;  // per bucket: the last sequence number applied
    // Per bucket: when a flush_all with a delay takes effect (unix seconds; 0 = none). As
    // memcached, a later flush_all replaces an earlier one.
    std::vector<int64_t> flush_at_;
    bool any_flush_due_ = false;  // some flush_at_ is set (spares the per-tick scan)
};

}  // namespace mcm::repl
