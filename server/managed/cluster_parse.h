// The arguments of the `cluster` admin commands (cluster_cmd.cc lists them), parsed without
// touching any state: what Dispatcher::cluster acts on, and what fuzz/cluster_cmd_fuzz.cc and
// the unit tests feed arbitrary bytes. No sockets, no store, no locks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "replication/bucket_map.h"

namespace mcm::server {

struct ClusterCmd {
    enum class Kind : uint8_t {
        Unknown,        // ERROR
        Map,            // cluster map
        AuthChallenge,  // cluster auth
        AuthProof,      // cluster auth <hex>: word
        SetMap,         // cluster setmap <bytes>: len
        State,          // cluster state <range> <state>: first, last, state
        BadState,       // cluster state <range> <not a state>
        Drop,           // cluster drop <range>: first, last
        Reset,          // cluster reset
        Peer,           // cluster peer [binary]: binary
        Repl,           // cluster repl <node> <nonce> [<to>]: word (node), nonce
        ReplElsewhere,  // cluster repl <node> <nonce> <to>, <to> not this node: word (to)
        Dump,           // cluster dump <bucket>: first (== last)
        Heartbeat,      // cluster hb|lease <lease_ms> <token> <quiet_ms>: full (hb), ...
        BadHeartbeat,   // the same with bad numbers: full
        Listen,         // cluster listen <host>:<port>: word
        Unlisten,       // cluster unlisten <host>:<port>: word
        Steer,          // cluster steer
        Handoff,        // cluster handoff <bucket> <epoch>: first, epoch
        HandoffCancel,  // cluster handoff <range> cancel: first, last
        Applied,        // cluster applied <bucket>: first
        BadRange,       // state, drop or dump with a bad bucket range
    };
    Kind kind = Kind::Unknown;
    // The command is one that needs an authenticated connection (checked before any other
    // outcome but Map, AuthChallenge and AuthProof).
    bool needs_auth = false;
    uint32_t first = 0, last = 0;
    repl::BucketState state = repl::BucketState::Dead;
    uint32_t len = 0;        // SetMap: the map text's length
    bool binary = false;     // Peer
    bool full = false;       // Heartbeat, BadHeartbeat: hb (true) or lease
    uint32_t lease_ms = 0, quiet_ms = 0;
    uint64_t token = 0;
    uint64_t epoch = 0;      // Handoff
    std::string_view word;   // AuthProof, Repl, ReplElsewhere, Listen, Unlisten (in args)
    std::string_view nonce;  // Repl (in args)
    bool operator==(const ClusterCmd&) const = default;
};

// "all", "<b>" or "<first>-<last>", within [0, n).
bool parse_bucket_range(std::string_view s, uint32_t n, uint32_t* first, uint32_t* last);

// The words after "cluster": nbuckets is the server's bucket count (at least 1), node_id
// its name (cluster repl's <to> is checked against it).
ClusterCmd parse_cluster_command(std::string_view args, uint32_t nbuckets,
                                 std::string_view node_id);

// The canonical text of a parsed command (the words after "cluster"): parsing it again gives
// the same command. Unknown gives "". For tests and the fuzzer.
std::string format_cluster_command(const ClusterCmd& c);

}  // namespace mcm::server
