// The reply of `cluster hb` (doc/coordinator.md, contract), parsed from its lines. Pure: no
// sockets, no clocks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mcm::coord {

struct HbReply {
    std::string node_id;
    uint64_t epoch = 0;
    std::string boot_id;
    uint64_t token = 0;
    uint64_t lease_left_ms = 0;
    bool fenced = false;
    struct Active {
        uint32_t bucket;
        uint64_t seqno;
        uint32_t replicas_in_sync;
        bool handoff;  // an H line: pending for a planned handover (writes parked)
    };
    struct Replica {
        uint32_t bucket;
        uint64_t applied;
        bool in_sync;
        // Not in sync because its active's stream ended: how long ago it was (the fifth
        // word of the R line; -1 when absent).
        int64_t synced_ago_ms = -1;
    };
    std::vector<Active> actives;
    std::vector<Replica> replicas;
};

// lines: the HB line and the A/H/R lines (END already taken off). False with *err on any
// malformed line, or a node id or boot id that is not a valid_node_name (boot ids are hex).
bool parse_hb(const std::vector<std::string>& lines, HbReply* out, std::string* err);

// The server's HB and A/H/R lines for a reply (what Dispatcher::write_heartbeat and
// Replicator::heartbeat_line send, END not included): parse_hb of them gives h back. For
// tests and the fuzzer.
std::vector<std::string> format_hb(const HbReply& h);

// The one-line replies the mover and the lease renewal read (coordinator/mover.cc,
// coordinator.cc).
// "HANDOFF <bucket> <seqno>": *seqno.
bool parse_handoff_reply(std::string_view line, uint64_t* seqno);
// "APPLIED <bucket> <state> <seqno> <in_sync> <items> <bytes>", read field by field as the
// mover uses it: a seventh-word byte count is taken from any seven-word line.
struct AppliedReply {
    bool seven = false;    // seven words
    bool applied = false;  // seven words, the first APPLIED
    std::string state;     // the third word (seven words only)
    bool has_seqno = false;
    uint64_t seqno = 0;
    bool has_bytes = false;
    uint64_t bytes = 0;
};
AppliedReply parse_applied_reply(std::string_view line);
// "LEASE <token> <lease_left_ms>": *token (its leading digits).
bool parse_lease_reply(std::string_view line, uint64_t* token);

}  // namespace mcm::coord
