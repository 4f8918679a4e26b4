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
        !num(w[5], &h.lease_left_ms) || !flag(w[6], &h.fenced)) {
        *err = "bad heartbeat line: " + lines[0];
        return false;
    }
    h.node_id = std::string(w[1]);
    h.boot_id = std::string(w[3]);
    for (size_t i = 1; i < lines.size(); ++i) {
        auto x = repl::split_words(lines[i]);
        bool ok = x.size() == 4;
        if (ok && (x[0] == "A" || x[0] == "H")) {
            HbReply::Active a{};
            a.handoff = x[0] == "H";
            ok = num(x[1], &a.bucket) && num(x[2], &a.seqno) && num(x[3], &a.replicas_in_sync);
            if (ok) h.actives.push_back(a);
        } else if (ok && x[0] == "R") {
            HbReply::Replica r{};
            ok = num(x[1], &r.bucket) && num(x[2], &r.applied) && flag(x[3], &r.in_sync);
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

}  // namespace mcm::coord
