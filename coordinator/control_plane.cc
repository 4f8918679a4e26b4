#include "coordinator/control_plane.h"

#include "coordinator/clock.h"
#include "coordinator/etcd/client.h"
#include "coordinator/etcd/election.h"
#include "replication/bucket_map.h"

namespace mcm::coord {

using nlohmann::json;

namespace {

constexpr int64_t kFollowerReadMs = 500;

// The stored state, read from etcd now (a follower's reads).
bool stored_state(const Supervisor& sup, State* st, std::string* err) {
    const etcd::Url& url = sup.elector()->config().url;  // parsed once, at the start
    etcd::Client client(url.endpoints, kFollowerReadMs, url.tls);
    std::optional<etcd::KeyValue> kv;
    if (!client.get(etcd::state_key(url.prefix), &kv, err)) return false;
    if (!kv) {
        *err = "no state in etcd yet";
        return false;
    }
    return FileStateStore::from_json(kv->value, st, err);
}

std::string status_of(const MemberState& m) {
    return m.joining ? "joining" : m.drain == "drain" ? "draining" : m.drain == "remove" ? "leaving"
                                                                                           : "member";
}

}  // namespace

json control_plane_json(const Supervisor& sup) {
    json j;
    const etcd::Elector* e = sup.elector();
    if (e == nullptr) {
        j["backend"] = "file";
        j["state"] = sup.options().state_path;
        j["role"] = "leader";
        return j;
    }
    const etcd::ElectionView v = e->view();
    j["backend"] = "etcd";
    j["prefix"] = e->config().url.prefix;
    j["id"] = v.id;
    j["admin"] = v.admin;
    // Leading means a coordinator built and answering: just after an election is won, while
    // the supervisor has not yet built it, calls are still answered as a follower's.
    const bool leads = sup.leader() != nullptr;
    j["role"] = leads ? "leader" : "follower";
    if (v.leader_id.empty()) {
        j["leader"] = nullptr;
    } else {
        j["leader"] = {{"id", v.leader_id},
                       {"admin", v.leader_admin},
                       {"since_unix_ms", v.leader_since_unix_ms}};
    }
    j["coordinators"] = json::array();
    for (const etcd::PeerInfo& p : v.coordinators) {
        j["coordinators"].push_back({{"id", p.id},
                                     {"admin", p.admin},
                                     {"role", p.id == v.leader_id && (leads || p.id != v.id)
                                                  ? "leader"
                                                  : "follower"},
                                     {"since_unix_ms", p.since_unix_ms}});
    }
    j["lease_ttl_s"] = v.ttl_s;
    j["elections_won"] = v.elections_won;
    j["leadership_lost"] = v.leadership_lost;
    j["last_error"] = v.last_error;
    j["etcd_ok_ms_ago"] = v.last_etcd_ok_ms_ago;
    j["stored_epoch"] = v.epoch < 0 ? json(nullptr) : json(v.epoch);
    j["etcd"] = json::array();
    for (const etcd::MemberHealth& h : v.etcd) {
        j["etcd"].push_back({{"endpoint", h.endpoint},
                             {"ok", h.ok},
                             {"version", h.version},
                             {"raft_leader", h.raft_leader},
                             {"raft_term", h.raft_term},
                             {"db_size", h.db_size},
                             {"error", h.error}});
    }
    return j;
}

std::string follower_status_json(const Supervisor& sup) {
    json j;
    j["role"] = "follower";
    j["control_plane"] = control_plane_json(sup);
    State st;
    std::string err;
    j["servers"] = json::array();
    if (stored_state(sup, &st, &err)) {
        j["epoch"] = st.epoch;
        j["buckets"] = st.buckets;
        j["replicas"] = st.replicas;
        for (const MemberState& m : st.members) {
            j["servers"].push_back({{"name", m.name}, {"addr", m.addr}, {"status", status_of(m)},
                                    {"health", "unknown"}});
        }
    } else {
        j["stored_state_error"] = err;
    }
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

bool follower_map_json(const Supervisor& sup, std::string* out, std::string* err) {
    State st;
    if (!stored_state(sup, &st, err)) return false;
    json j{{"epoch", st.epoch}, {"buckets", st.buckets}, {"text", st.map_text},
           {"from", "etcd (this coordinator follows)"}};
    *out = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    return true;
}

std::string control_plane_metrics(const Supervisor& sup) {
    std::string out;
    const etcd::Elector* e = sup.elector();
    bool leading = e == nullptr || e->leading(mono_ms());
    out += "# HELP mc_coordinator_leader 1 while this coordinator leads.\n";
    out += "# TYPE mc_coordinator_leader gauge\n";
    out += "mc_coordinator_leader " + std::string(leading ? "1" : "0") + "\n";
    if (e == nullptr) return out;
    const etcd::ElectionView v = e->view();
    out += "# HELP mc_coordinator_elections_won_total Elections this coordinator won.\n";
    out += "# TYPE mc_coordinator_elections_won_total counter\n";
    out += "mc_coordinator_elections_won_total " + std::to_string(v.elections_won) + "\n";
    out += "# HELP mc_coordinator_leadership_lost_total Leaderships this coordinator lost.\n";
    out += "# TYPE mc_coordinator_leadership_lost_total counter\n";
    out += "mc_coordinator_leadership_lost_total " + std::to_string(v.leadership_lost) + "\n";
    out += "# HELP mc_coordinator_etcd_member_up 1 when the etcd member answers with a leader.\n";
    out += "# TYPE mc_coordinator_etcd_member_up gauge\n";
    for (const etcd::MemberHealth& h : v.etcd) {
        out += "mc_coordinator_etcd_member_up{endpoint=\"" + h.endpoint + "\"} " +
               (h.ok ? "1" : "0") + "\n";
    }
    return out;
}

}  // namespace mcm::coord
