#include "coordinator/hb_reply.h"

#include <charconv>

#include "replication/bucket_map.h"

namespace mcm::coord {

namespace {

template <typename T>
bool num(std::string_view s, T* v) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool flag(std::string_view s, bool* v) {
    if (s != "0" && s != "1") return false;
    *v = s == "1";
    return true;
}

}  // namespace

bool parse_hb(const std::vector<std::string>& lines, HbReply* out, std::string* err) {
    if (lines.empty()) {
        *err = "empty heartbeat reply";
        return false;
    }
    HbReply h;
    auto w = repl::split_words(lines[0]);
    if (w.size() != 7 || w[0] != "HB" || !num(w[2], &h.epoch) || !num(w[4], &h.token) ||
        !num(w[5], &h.lease_left_ms) || !flag(w[6], &h.fenced) ||
        !repl::valid_node_name(w[1]) || !repl::valid_node_name(w[3])) {
        // (The node and boot ids go into the state file and /status, both JSON: bytes that
        // are not UTF-8 made the coordinator throw and die. Found by fuzz/coord_hb_fuzz.)
        *err = "bad heartbeat line: " + lines[0];
        return false;
    }
    h.node_id = std::string(w[1]);
    h.boot_id = std::string(w[3]);
    for (size_t i = 1; i < lines.size(); ++i) {
        auto x = repl::split_words(lines[i]);
        bool ok = x.size() == 4 || (x.size() == 5 && x[0] == "R");
        if (ok && (x[0] == "A" || x[0] == "H")) {
            HbReply::Active a{};
            a.handoff = x[0] == "H";
            ok = num(x[1], &a.bucket) && num(x[2], &a.seqno) && num(x[3], &a.replicas_in_sync);
            if (ok) h.actives.push_back(a);
        } else if (ok && x[0] == "R") {
            HbReply::Replica r{};
            ok = num(x[1], &r.bucket) && num(x[2], &r.applied) && flag(x[3], &r.in_sync);
            uint64_t ago = 0;
            if (ok && x.size() == 5) {
                // Only beside "not in sync", and within a day (a mono-ms difference).
                ok = !r.in_sync && num(x[4], &ago) && ago <= 86400000;
                r.synced_ago_ms = static_cast<int64_t>(ago);
            }
            if (ok) h.replicas.push_back(r);
        } else {
            ok = false;
        }
        if (!ok) {
            *err = "bad heartbeat line: " + lines[i];
            return false;
        }
    }
    *out = std::move(h);
    return true;
}

std::vector<std::string> format_hb(const HbReply& h) {
    std::vector<std::string> lines;
    lines.push_back("HB " + h.node_id + " " + std::to_string(h.epoch) + " " + h.boot_id + " " +
                    std::to_string(h.token) + " " + std::to_string(h.lease_left_ms) + " " +
                    (h.fenced ? "1" : "0"));
    for (const HbReply::Active& a : h.actives) {
        lines.push_back(std::string(a.handoff ? "H " : "A ") + std::to_string(a.bucket) + " " +
                        std::to_string(a.seqno) + " " + std::to_string(a.replicas_in_sync));
    }
    for (const HbReply::Replica& r : h.replicas) {
        lines.push_back("R " + std::to_string(r.bucket) + " " + std::to_string(r.applied) + " " +
                        (r.in_sync ? "1" : "0") +
                        (r.synced_ago_ms >= 0 ? " " + std::to_string(r.synced_ago_ms) : ""));
    }
    return lines;
}

bool parse_handoff_reply(std::string_view line, uint64_t* seqno) {
    auto w = repl::split_words(line);
    uint64_t v = 0;
    if (w.size() != 3 || w[0] != "HANDOFF" || !num(w[2], &v)) return false;
    *seqno = v;
    return true;
}

AppliedReply parse_applied_reply(std::string_view line) {
    AppliedReply r;
    auto w = repl::split_words(line);
    if (w.size() != 7) return r;
    r.seven = true;
    r.applied = w[0] == "APPLIED";
    r.state = std::string(w[2]);
    r.has_seqno = num(w[3], &r.seqno);
    if (!r.has_seqno) r.seqno = 0;
    r.has_bytes = num(w[6], &r.bytes);
    if (!r.has_bytes) r.bytes = 0;
    return r;
}

bool parse_lease_reply(std::string_view line, uint64_t* token) {
    std::vector<std::string_view> w = repl::split_words(line);
    uint64_t tok = 0;
    if (w.size() == 3 && w[0] == "LEASE" &&
        std::from_chars(w[1].data(), w[1].data() + w[1].size(), tok).ec == std::errc()) {
        *token = tok;
        return true;
    }
    return false;
}

}  // namespace mcm::coord
