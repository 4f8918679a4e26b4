// The reply of `cluster hb` (doc/coordinator.md, contract), parsed from its lines. Pure: no
// sockets, no clocks.
#pragma once

#include <cstdint>
#include <string>
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
    };
    std::vector<Active> actives;
    std::vector<Replica> replicas;
};

// lines: the HB line and the A/H/R lines (END already taken off). False with *err on any
// malformed line.
bool parse_hb(const std::vector<std::string>& lines, HbReply* out, std::string* err);

}  // namespace mcm::coord
