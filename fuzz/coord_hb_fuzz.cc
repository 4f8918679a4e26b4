// libFuzzer target: what the coordinator reads from a server's control connection
// (coordinator/hb_reply.cc): the `cluster hb` reply block (parse_hb) and the one-line replies
// of handoff, applied and lease. The bytes are cut into lines as the link cuts them
// (evbuffer_readln with EVBUFFER_EOL_CRLF: "\n" with an optional "\r" before it); a block
// ends at END. Nothing proves that the process at a server's address is that server, so
// these are untrusted bytes.
// Checks:
//   - a reply that parses formats back (format_hb) to lines that parse to the same reply,
//     and those lines are the canonical text;
//   - what a heartbeat puts into the state file (its boot id, kept per member) saves and
//     loads again unchanged (the state is JSON: this is where a server's bytes reach it);
//   - the one-line parsers only accept what their words say.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/hb_reply.h"
#include "coordinator/state.h"

using namespace mcm::coord;

namespace {

bool same(const HbReply& a, const HbReply& b) {
    if (a.node_id != b.node_id || a.epoch != b.epoch || a.boot_id != b.boot_id ||
        a.token != b.token || a.lease_left_ms != b.lease_left_ms || a.fenced != b.fenced ||
        a.actives.size() != b.actives.size() || a.replicas.size() != b.replicas.size()) {
        return false;
    }
    for (size_t i = 0; i < a.actives.size(); ++i) {
        const auto &x = a.actives[i], &y = b.actives[i];
        if (x.bucket != y.bucket || x.seqno != y.seqno ||
            x.replicas_in_sync != y.replicas_in_sync || x.handoff != y.handoff) {
            return false;
        }
    }
    for (size_t i = 0; i < a.replicas.size(); ++i) {
        const auto &x = a.replicas[i], &y = b.replicas[i];
        if (x.bucket != y.bucket || x.applied != y.applied || x.in_sync != y.in_sync) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> block;
    bool ended = false;
    while (!in.empty() && !ended) {
        size_t nl = in.find('\n');
        if (nl == std::string_view::npos) break;  // the link waits for the rest
        std::string_view line = in.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        in.remove_prefix(nl + 1);
        if (line == "END") {
            ended = true;
        } else {
            block.emplace_back(line);
        }
    }
    // Every line as a one-line reply.
    for (const std::string& line : block) {
        uint64_t v = 0;
        if (parse_handoff_reply(line, &v) && line.find("HANDOFF") == std::string::npos) {
            std::abort();
        }
        if (parse_lease_reply(line, &v) && line.find("LEASE") == std::string::npos) std::abort();
        AppliedReply a = parse_applied_reply(line);
        if (!a.seven && (a.applied || a.has_seqno || a.has_bytes || !a.state.empty())) {
            std::abort();
        }
    }
    if (!ended) return 0;
    HbReply h;
    std::string err;
    if (!parse_hb(block, &h, &err)) {
        if (err.empty()) std::abort();
        return 0;
    }
    const std::vector<std::string> lines = format_hb(h);
    HbReply h2;
    if (!parse_hb(lines, &h2, &err)) std::abort();
    if (!same(h, h2)) std::abort();
    if (format_hb(h2) != lines) std::abort();
    // The coordinator keeps the boot id in its state file (Coordinator::save_state).
    State s;
    s.members.push_back({h.node_id, "127.0.0.1:11211", false, "", h.boot_id});
    State back;
    if (!FileStateStore::from_json(FileStateStore::to_json(s), &back, &err)) std::abort();
    if (!(back == s)) std::abort();
    return 0;
}
