#include "server/managed/cluster_parse.h"

#include <charconv>
#include <vector>

namespace mcm::server {

namespace {

bool to_u32(std::string_view s, uint32_t* v) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// (An epoch out of range once read as 0: from_chars leaves the value alone then.)
bool to_u64(std::string_view s, uint64_t* v) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

using Kind = ClusterCmd::Kind;

}  // namespace

bool parse_bucket_range(std::string_view s, uint32_t n, uint32_t* first, uint32_t* last) {
    if (s == "all") {
        *first = 0;
        *last = n - 1;
        return true;
    }
    size_t dash = s.find('-');
    if (dash == std::string_view::npos) {
        if (!to_u32(s, first)) return false;
        *last = *first;
    } else if (!to_u32(s.substr(0, dash), first) || !to_u32(s.substr(dash + 1), last)) {
        return false;
    }
    return *first <= *last && *last < n;
}

ClusterCmd parse_cluster_command(std::string_view args, uint32_t nbuckets,
                                 std::string_view node_id) {
    ClusterCmd c;
    std::vector<std::string_view> w = repl::split_words(args);
    std::string_view sub = w.empty() ? std::string_view{} : w[0];
    if (sub == "map" && w.size() == 1) {
        c.kind = Kind::Map;
        return c;
    }
    if (sub == "auth" && w.size() <= 2) {
        c.kind = w.size() == 1 ? Kind::AuthChallenge : Kind::AuthProof;
        if (w.size() == 2) c.word = w[1];
        return c;
    }
    const bool setmap = sub == "setmap" && w.size() == 2 && to_u32(w[1], &c.len);
    c.needs_auth = setmap || sub == "state" || sub == "drop" || sub == "reset" ||
                   sub == "peer" || sub == "repl" || sub == "dump" || sub == "hb" ||
                   sub == "lease" || sub == "listen" || sub == "unlisten" || sub == "steer" ||
                   sub == "handoff" || sub == "applied";
    if (setmap) {
        c.kind = Kind::SetMap;
        return c;
    }
    c.len = 0;
    uint32_t first = 0, last = 0;
    if (sub == "state" && w.size() == 3 && parse_bucket_range(w[1], nbuckets, &first, &last)) {
        c.kind = repl::parse_state(w[2], &c.state) ? Kind::State : Kind::BadState;
        c.first = first;
        c.last = last;
        return c;
    }
    if (sub == "drop" && w.size() == 2 && parse_bucket_range(w[1], nbuckets, &first, &last)) {
        c.kind = Kind::Drop;
        c.first = first;
        c.last = last;
        return c;
    }
    if (sub == "peer" && (w.size() == 1 || (w.size() == 2 && w[1] == "binary"))) {
        c.kind = Kind::Peer;
        c.binary = w.size() == 2;
        return c;
    }
    if (sub == "repl" && w.size() == 4 && w[3] != node_id) {
        c.kind = Kind::ReplElsewhere;
        c.word = w[3];
        return c;
    }
    if (sub == "repl" && (w.size() == 3 || w.size() == 4)) {
        c.kind = Kind::Repl;
        c.word = w[1];
        c.nonce = w[2];
        return c;
    }
    if (sub == "dump" && w.size() == 2 && parse_bucket_range(w[1], nbuckets, &first, &last) &&
        first == last) {
        c.kind = Kind::Dump;
        c.first = c.last = first;
        return c;
    }
    if ((sub == "hb" || sub == "lease") && w.size() == 4) {
        c.full = sub == "hb";
        auto r = std::from_chars(w[2].data(), w[2].data() + w[2].size(), c.token);
        if (!to_u32(w[1], &c.lease_ms) || !to_u32(w[3], &c.quiet_ms) || c.lease_ms > 60000 ||
            r.ec != std::errc() || r.ptr != w[2].data() + w[2].size()) {
            c.kind = Kind::BadHeartbeat;
            c.lease_ms = c.quiet_ms = 0;
            c.token = 0;
            return c;
        }
        c.kind = Kind::Heartbeat;
        return c;
    }
    if ((sub == "listen" || sub == "unlisten") && w.size() == 2) {
        c.kind = sub == "listen" ? Kind::Listen : Kind::Unlisten;
        c.word = w[1];
        return c;
    }
    if (sub == "handoff" && w.size() == 3 && w[2] == "cancel" &&
        parse_bucket_range(w[1], nbuckets, &first, &last)) {
        c.kind = Kind::HandoffCancel;
        c.first = first;
        c.last = last;
        return c;
    }
    uint64_t epoch = 0;
    if (sub == "handoff" && w.size() == 3 && to_u32(w[1], &first) && to_u64(w[2], &epoch)) {
        c.kind = Kind::Handoff;
        c.first = first;
        c.epoch = epoch;
        return c;
    }
    if (sub == "applied" && w.size() == 2 && to_u32(w[1], &first) && first < nbuckets) {
        c.kind = Kind::Applied;
        c.first = first;
        return c;
    }
    if (sub == "steer" && w.size() == 1) {
        c.kind = Kind::Steer;
        return c;
    }
    if (sub == "reset" && w.size() == 1) {
        c.kind = Kind::Reset;
        return c;
    }
    if (sub == "state" || sub == "drop" || sub == "dump") {
        c.kind = Kind::BadRange;
        return c;
    }
    return c;  // Unknown
}

std::string format_cluster_command(const ClusterCmd& c) {
    auto range = [&] {
        return std::to_string(c.first) + "-" + std::to_string(c.last);
    };
    switch (c.kind) {
        case Kind::Map: return "map";
        case Kind::AuthChallenge: return "auth";
        case Kind::AuthProof: return "auth " + std::string(c.word);
        case Kind::SetMap: return "setmap " + std::to_string(c.len);
        case Kind::State: return "state " + range() + " " + std::string(repl::state_name(c.state));
        case Kind::Drop: return "drop " + range();
        case Kind::Reset: return "reset";
        case Kind::Peer: return c.binary ? "peer binary" : "peer";
        case Kind::Repl: return "repl " + std::string(c.word) + " " + std::string(c.nonce);
        case Kind::Dump: return "dump " + std::to_string(c.first);
        case Kind::Heartbeat:
            return std::string(c.full ? "hb " : "lease ") + std::to_string(c.lease_ms) + " " +
                   std::to_string(c.token) + " " + std::to_string(c.quiet_ms);
        case Kind::Listen: return "listen " + std::string(c.word);
        case Kind::Unlisten: return "unlisten " + std::string(c.word);
        case Kind::Steer: return "steer";
        case Kind::Handoff:
            return "handoff " + std::to_string(c.first) + " " + std::to_string(c.epoch);
        case Kind::HandoffCancel: return "handoff " + range() + " cancel";
        case Kind::Applied: return "applied " + std::to_string(c.first);
        case Kind::Unknown:
        case Kind::BadState:
        case Kind::ReplElsewhere:
        case Kind::BadHeartbeat:
        case Kind::BadRange: break;
    }
    return "";
}

}  // namespace mcm::server
