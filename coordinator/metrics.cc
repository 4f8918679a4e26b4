#include "coordinator/metrics.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "coordinator/clock.h"

namespace mcm::coord {

using nlohmann::json;

namespace {

const char* const kHealths[] = {"up", "suspect", "dead", "resetting", "catching_up"};

json server_json(const Coordinator& c, const Server& s, const Load& l, int64_t now) {
    const Options& o = c.options();
    int idx = c.map().node_index(s.name);
    json j;
    j["name"] = s.name;
    j["addr"] = s.host + ":" + std::to_string(s.port);
    j["health"] = s.health(now, o.heartbeat_ms, c.start_ms());
    j["last_heartbeat_ms"] = s.answered ? json(now - s.last_answer_ms) : json(nullptr);
    j["epoch"] = s.epoch;
    j["boot_id"] = s.boot_id;
    j["fenced"] = s.fenced;
    j["lease_left_ms"] = s.lease_left_ms;
    j["joining"] = s.joining;
    j["draining"] = s.drain != Server::Drain::None;
    j["actives"] = idx >= 0 ? l.actives[idx] : 0;
    j["replicas"] = idx >= 0 ? l.replicas[idx] : 0;
    uint32_t in_sync = 0;  // of the replicas the map gives it (not a dead server's last report)
    if (idx >= 0 && s.phase != Phase::Dead) {
        const BucketMap& m = c.map();
        for (uint32_t b = 0; b < m.nbuckets && b < s.replicas.size(); ++b) {
            for (uint16_t r : m.replicas[b]) in_sync += r == idx && s.replicas[b].in_sync;
        }
    }
    j["replicas_in_sync"] = in_sync;
    j["max_lag"] = c.max_lag(s);
    return j;
}

}  // namespace

std::string status_json(const Coordinator& c) {
    const BucketMap& m = c.map();
    const FailoverRecord& f = c.last_failover();
    int64_t now = mono_ms();
    json j;
    j["epoch"] = m.epoch;
    j["buckets"] = m.nbuckets == 0 ? c.options().buckets : m.nbuckets;
    j["replicas"] = c.options().replicas;
    j["cut_off"] = c.cut_off();
    j["failovers"] = c.counters().failovers;
    j["cold_buckets"] = c.counters().cold_buckets;
    if (f.node.empty()) {
        j["last_failover"] = nullptr;
    } else {
        j["last_failover"] = {{"node", f.node},         {"at_unix_ms", f.at_unix_ms},
                              {"detect_ms", f.detect_ms}, {"push_ms", f.push_ms},
                              {"buckets", f.buckets},     {"cold", f.cold},
                              {"how", f.refused ? "refused" : "silence"}};
    }
    j["refused_failovers"] = c.counters().refused_failovers;
    j["takeovers"] = json::array();
    j["standbys"] = json::array();
    for (const Takeover& t : c.takeovers()) {
        if (t.standby) {
            j["standbys"].push_back({{"node", t.node},
                                     {"addr", t.addr()},
                                     {"holder", t.holder},
                                     {"state", Coordinator::takeover_state(t.st)}});
            continue;
        }
        j["takeovers"].push_back({{"node", t.node},
                                  {"addr", t.addr()},
                                  {"holder", t.holder},
                                  {"mode", t.hook ? "hook" : "listen"},
                                  {"state", Coordinator::takeover_state(t.st)},
                                  {"since_unix_ms", t.since_unix_ms}});
    }
    const Rebalance& r = c.rebalance();
    json rb;
    rb["state"] = rebalance_state(r.st);
    rb["reason"] = r.reason;
    rb["buckets_total"] = r.total;
    rb["buckets_done"] = r.done;
    rb["failed"] = r.failed;
    rb["bytes_moved"] = r.bytes;
    rb["parallel"] = r.parallel;
    rb["started_unix_ms"] = r.started_ms == 0 ? json(nullptr) : json(r.started_unix_ms);
    const int64_t end = r.st == Rebalance::St::Running ? now : r.ended_ms;
    const double elapsed = r.started_ms == 0 ? 0.0 : static_cast<double>(end - r.started_ms) / 1e3;
    rb["elapsed_s"] = elapsed;
    const double rate = elapsed > 0 ? r.done / elapsed : 0.0;
    rb["rate_buckets_per_s"] = rate;
    const uint32_t left = r.total > r.done ? r.total - r.done : 0;
    rb["eta_s"] = r.st == Rebalance::St::Running && rate > 0 ? json(left / rate) : json(nullptr);
    rb["draining"] = json::array();
    for (const auto& s : c.servers()) {
        if (s->drain != Server::Drain::None) rb["draining"].push_back(s->name);
    }
    rb["moves"] = json::array();
    for (const Move& mv : c.moves()) {
        rb["moves"].push_back({{"bucket", mv.bucket},
                               {"from", mv.from},
                               {"to", mv.to},
                               {"phase", phase_name(mv.phase)},
                               {"since_ms", now - mv.started_ms}});
    }
    j["rebalance"] = rb;
    Load l = load_of(m);
    j["servers"] = json::array();
    for (const auto& s : c.servers()) j["servers"].push_back(server_json(c, *s, l, now));
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string map_json(const Coordinator& c) {
    const BucketMap& m = c.map();
    json j = {{"epoch", m.epoch}, {"buckets", m.nbuckets}, {"text", m.format()}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string metrics_text(const Coordinator& c) {
    const Counters& k = c.counters();
    const FailoverRecord& f = c.last_failover();
    int64_t now = mono_ms();
    std::string out;
    char line[256];
    auto add = [&](const char* help, const char* type, const char* name, double v) {
        char num[64];
        snprintf(num, sizeof(num), "%.17g", v);
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type +
               "\n" + name + " " + num + "\n";
    };
    add("Epoch of the current bucket map.", "gauge", "mc_coordinator_epoch",
        static_cast<double>(c.map().epoch));
    out += "# HELP mc_coordinator_servers Servers by health.\n"
           "# TYPE mc_coordinator_servers gauge\n";
    for (const char* h : kHealths) {
        int n = 0;
        for (const auto& s : c.servers()) {
            n += std::string(s->health(now, c.options().heartbeat_ms, c.start_ms())) == h;
        }
        snprintf(line, sizeof(line), "mc_coordinator_servers{state=\"%s\"} %d\n", h, n);
        out += line;
    }
    add("Failovers of a dead server's actives.", "counter", "mc_coordinator_failovers_total",
        static_cast<double>(k.failovers));
    add("Heartbeat replies received.", "counter", "mc_coordinator_heartbeats_total",
        static_cast<double>(k.heartbeats));
    out += "# HELP mc_coordinator_heartbeat_rtt_seconds Heartbeat round trip.\n"
           "# TYPE mc_coordinator_heartbeat_rtt_seconds histogram\n";
    uint64_t cum = 0;
    for (size_t i = 0; i <= Counters::kRttBounds.size(); ++i) {
        cum += k.rtt_buckets[i];
        if (i < Counters::kRttBounds.size()) {
            snprintf(line, sizeof(line), "mc_coordinator_heartbeat_rtt_seconds_bucket{le=\"%g\"} %llu\n",
                     Counters::kRttBounds[i], static_cast<unsigned long long>(cum));
        } else {
            snprintf(line, sizeof(line), "mc_coordinator_heartbeat_rtt_seconds_bucket{le=\"+Inf\"} %llu\n",
                     static_cast<unsigned long long>(cum));
        }
        out += line;
    }
    snprintf(line, sizeof(line),
             "mc_coordinator_heartbeat_rtt_seconds_sum %.9f\n"
             "mc_coordinator_heartbeat_rtt_seconds_count %llu\n",
             k.rtt_sum_s, static_cast<unsigned long long>(k.rtt_count));
    out += line;
    add("1 while more than half of the servers look dead (the coordinator changes nothing).",
        "gauge", "mc_coordinator_cut_off", c.cut_off() ? 1 : 0);
    add("When the last failover was decided (unix seconds; 0: none).", "gauge",
        "mc_coordinator_last_failover_timestamp_seconds", f.at_unix_ms / 1000.0);
    add("Last failover: from the dead server's last answer to every live server holding the "
        "new map.", "gauge", "mc_coordinator_last_failover_duration_seconds",
        f.push_ms < 0 ? 0 : (f.detect_ms + f.push_ms) / 1000.0);
    add("Buckets failed over with no in-sync replica (they start empty).", "counter",
        "mc_coordinator_cold_buckets_total", static_cast<double>(k.cold_buckets));
    add("Failovers decided on proof (the link closed, the address refuses connections).",
        "counter", "mc_coordinator_refused_failovers_total",
        static_cast<double>(k.refused_failovers));
    add("Dead servers' addresses taken over by a survivor.", "counter",
        "mc_coordinator_takeovers_total", static_cast<double>(k.takeovers));
    add("Takeovers released (the server was back in sync).", "counter",
        "mc_coordinator_takeover_releases_total", static_cast<double>(k.takeover_releases));
    add("Takeovers or releases that failed (refused, hook failed or timed out).", "counter",
        "mc_coordinator_takeover_errors_total", static_cast<double>(k.takeover_errors));
    add("Takeovers in force (held, or being acquired or released).", "gauge",
        "mc_coordinator_takeovers_active",
        static_cast<double>(std::count_if(c.takeovers().begin(), c.takeovers().end(),
                                          [](const Takeover& t) { return !t.standby; })));
    add("Maps a server accepted.", "counter", "mc_coordinator_maps_pushed_total",
        static_cast<double>(k.maps_pushed));
    add("Map pushes refused or lost.", "counter", "mc_coordinator_push_errors_total",
        static_cast<double>(k.push_errors));
    return out;
}

}  // namespace mcm::coord
