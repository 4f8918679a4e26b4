// The coordinator's decisions about the map, as pure functions: BucketMap and what the last
// heartbeats said in, a new map out. No sockets, no clocks, no state; deterministic, so the
// unit tests (t/unit/planner_test.cc) can check every rule. Every step that changes the
// assignment returns a map with epoch + 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replication/bucket_map.h"

namespace mcm::coord {

using repl::BucketMap;

// One bucket as a server last reported it in an `R` heartbeat line.
struct ReplicaReport {
    uint64_t applied = 0;
    bool in_sync = false;
    bool reported = false;
    // When the server last reported it in sync (coordinator's monotonic ms; 0: never). A
    // replica's stream breaks when its active dies, so at failover time "in sync" means "in
    // sync when the active last answered" (coordinator.cc, failover_view).
    int64_t in_sync_ms = 0;
};

// What the planner knows about the servers, indexed like the map's nodes.
struct View {
    std::vector<bool> live;  // may hold buckets and be promoted (not dead, not resetting)
    std::vector<std::vector<ReplicaReport>> reports;  // per node: per bucket, or empty

    bool is_live(uint16_t n) const { return n < live.size() && live[n]; }
    ReplicaReport report(uint16_t n, uint32_t b) const {
        if (n >= reports.size() || b >= reports[n].size()) return {};
        return reports[n][b];
    }
    bool in_sync(uint16_t n, uint32_t b) const { return report(n, b).in_sync; }
};

// How many buckets each node holds.
struct Load {
    std::vector<uint32_t> actives;
    std::vector<uint32_t> replicas;
};
Load load_of(const BucketMap& m);

// The first map: contiguous blocks of actives (B/N each); the replicas of one node's block
// spread in sub-blocks over all other nodes, so when a node dies its buckets land evenly.
// replicas is capped at nodes - 1.
BucketMap first_map(const std::vector<BucketMap::Node>& nodes, uint32_t nbuckets,
                    uint32_t replicas, uint64_t epoch);

struct FailoverPlan {
    BucketMap map;
    bool changed = false;
    uint32_t moved = 0;  // buckets that were active on the dead node
    uint32_t cold = 0;   // of these, given to a server without an in-sync copy (empty)
};
// Takes `dead` out of the map: each bucket active there goes to its live in-sync replica with
// the highest applied seqno, else (cold) to the live server with the fewest actives; `dead`
// is dropped from every replica list. Nodes not live in `v` are never chosen.
FailoverPlan plan_failover(const BucketMap& m, uint16_t dead, const View& v);

// Gives each bucket without an active (every holder was lost at once) to the live node with
// the fewest actives, as an empty (cold) bucket. Returns how many, 0 when nothing changes.
uint32_t plan_orphans(const BucketMap& m, const View& v, BucketMap* out);

// Adds replicas where a bucket has fewer than r live ones, on live nodes that do not hold it,
// the least loaded first. False when nothing changes.
bool plan_restore(const BucketMap& m, const View& v, uint32_t r, BucketMap* out);

// A node back from a reset (or new) takes about r*B/N buckets as extra replicas, taken from
// the most loaded replica holders (plan_trim removes the surplus once it is in sync). It gets
// no actives. False when nothing changes.
bool plan_rejoin(const BucketMap& m, uint16_t node, const View& v, uint32_t r, BucketMap* out);

// For each bucket with more than r replicas, all of them live and in sync, drops one from the
// most loaded holder. Never drops an in-sync replica while a replacement is still catching up.
bool plan_trim(const BucketMap& m, const View& v, uint32_t r, BucketMap* out);

// The map with one more node (holding nothing), epoch + 1.
BucketMap with_node(const BucketMap& m, BucketMap::Node n);
// The map without `node`, which must hold nothing; epoch + 1.
bool without_node(const BucketMap& m, uint16_t node, BucketMap* out, std::string* err);

// Same actives and replicas (epoch and node list aside).
bool same_assignment(const BucketMap& a, const BucketMap& b);

// How many buckets have a different active or a different set of replicas in a and b (same
// node indexes; replica order does not count). The mover's work between a map and its target.
uint32_t buckets_differing(const BucketMap& a, const BucketMap& b);

// The map a planned rebalance converges to (issue 13): actives and replicas spread evenly over
// the nodes that may hold buckets (eligible[n]: live and not draining; a node past the end of
// `eligible` is not), changing as few buckets as possible. The epoch stays m.epoch: the caller
// moves toward the target bucket by bucket, each step a map of its own.
//
// Every bucket gets one active and r' = min(r, eligible - 1) distinct replicas, all eligible,
// never a replica on its own active; a node that is not eligible holds nothing. Each eligible
// node gets floor or ceil of B/E actives and of B*r'/E replicas, the ceils where they save
// the most change, so a balanced map is its own target and the target of a target is itself.
// Should the distinctness rule make the replica quotas unreachable (not met in the tests), the
// short buckets take the least loaded eligible node that does not hold them, above its quota:
// validity before evenness.
//
// Change, in order of preference: an active stays where it is while its node is within its
// quota (the most that can stay); an active that must move goes to a node already holding the
// bucket as a replica (a maximum flow: the most such handovers; the rest go to the node with
// the most room); an existing replica stays (a maximum flow: the most that can); the former
// active of a moved bucket stays on as a replica (it has the data); only then a new copy.
// The last two extend the replicas' flow, which they may reroute to place more buckets, so
// there the order is a preference (the order edges are tried in), not a minimum-cost flow.
// Deterministic. With no eligible node, m itself.
BucketMap plan_balance(const BucketMap& m, const std::vector<bool>& eligible, uint32_t r);

}  // namespace mcm::coord
