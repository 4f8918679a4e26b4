// Planned bucket moves (doc/coordinator.md, "Rebalance" and "Moving a bucket"): what a
// rebalance is doing, for the coordinator's mover (mover.cc) and the admin API's /status.
// Plain records; the decisions live in mover.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mcm::coord {

// One bucket on its way to its target holders:
//
//   copy    the target's new holders are added as replicas and backfilled (map + 1)
//   handoff the old active stops taking writes (`cluster handoff`) and reports its last
//           sequence number
//   switch  once the new active has applied it, the map makes it the active (map + 1); the
//           old one continues as a replica from the same history, parked writes go on
//   trim    holders the target does not want are dropped (map + 1, batched)
struct Move {
    enum class Phase { Copy, Handoff, Switch, Trim };
    uint64_t id = 0;
    uint32_t bucket = 0;
    std::string from;  // the active when the move began
    std::string to;    // the target's active (== from: only replicas change)
    std::vector<std::string> replicas;  // the target's replicas
    Phase phase = Phase::Copy;
    bool added = false;      // copy: the new holders are in the map
    bool copied = false;     // ... and there were some (the bucket's data was sent)
    uint64_t holders_epoch = 0;  // the map that gave the bucket its present holders
    bool in_flight = false;  // a command to a server is under way
    int64_t started_ms = 0;
    int64_t phase_ms = 0;    // when this phase began
    uint64_t seqno = 0;      // handoff: the old active's last write
    int64_t handoff_ms = 0;  // when the old active stopped taking writes
    uint64_t applied = 0;    // switch: what the new active last said it applied
    uint32_t polls = 0;
    bool caught_up = false;  // switch: the new active applied seqno; the next pass commits
    bool switching = false;  // in the map being committed by this pass
    int64_t deadline_ms = 0; // switch: the new active must have applied seqno by then
    uint32_t retries = 0;    // handoffs refused (a map changed meanwhile), tried again
    uint64_t bytes = 0;      // what the new holders hold of the bucket
};

const char* phase_name(Move::Phase p);

struct Rebalance {
    enum class St { Idle, Running, Done, Cancelled };
    St st = St::Idle;
    std::string reason;
    uint32_t total = 0;   // buckets to change when it began, plus any found on the way
    uint32_t done = 0;
    uint32_t failed = 0;  // moves given up (a server lost, a handoff that did not finish);
                          // a bucket is tried again, three times at most
    uint64_t bytes = 0;
    int64_t started_unix_ms = 0;
    int64_t started_ms = 0;
    int64_t ended_ms = 0;
    uint32_t parallel = 4;
};

const char* rebalance_state(Rebalance::St st);

}  // namespace mcm::coord
