// The replica side of a record, and the active side's record from a store mutation (issue 6).
// Applying a record makes the replica's item what the active's is, with the same CAS unique;
// a record whose sequence number the bucket has already seen changes nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replication/record.h"
#include "server/store/store.h"

namespace mcm::repl {

// A record for a store mutation; the exptime becomes absolute unix time (clocks of different
// servers do not share a start).
Record from_mutation(const store::Mutation& m, const store::Clock& clock);

enum class Applied : uint8_t {
    Done,        // the replica now holds the record's state
    Duplicate,   // the bucket already has this sequence number: nothing changed
    NoMemory,    // the replica could not allocate the item (-M, or nothing evictable)
    Unsupported, // a flush with a delay: not replicated yet
};

class Applier {
public:
    Applier(store::Store& st, const store::Clock& clock, uint32_t nbuckets)
        : st_(st), clock_(clock), applied_(nbuckets, 0) {}

    Applied apply(const Record& r);
    uint64_t applied_seqno(uint32_t bucket) const noexcept {
        return bucket < applied_.size() ? applied_[bucket] : 0;
    }

private:
    store::Store& st_;
    const store::Clock& clock_;
    std::vector<uint64_t> applied_;  // per bucket: the last sequence number applied
};

}  // namespace mcm::repl
