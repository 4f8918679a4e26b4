#include "coordinator/coordinator.h"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "coordinator/clock.h"
#include "coordinator/log.h"

namespace mcm::coord {

using repl::kNoNode;

void Counters::observe_rtt(double s) {
    size_t i = 0;
    while (i < kRttBounds.size() && s > kRttBounds[i]) ++i;
    ++rtt_buckets[i];
    rtt_sum_s += s;
    ++rtt_count;
}

Coordinator::Coordinator(event_base* base, Options opts, std::unique_ptr<StateStore> store,
                         const Leadership* lead)
    : base_(base), opts_(std::move(opts)), lead_(lead), store_(std::move(store)) {}

Coordinator::~Coordinator() {
    if (tick_ != nullptr) event_free(tick_);
    if (decide_soon_ != nullptr) event_free(decide_soon_);
    cancel_probes();  // their callbacks point here
}

// ---- setup ----------------------------------------------------------------------------

bool Coordinator::setup() {
    start_ms_ = mono_ms();
    State st;
    std::string err;
    switch (store_->load(&st, &err)) {
        case StateStore::Load::Error:
            CLOG_CRIT("%s (not touching it; fix or move it away)", err.c_str());
            return false;
        case StateStore::Load::Missing:
            if (opts_.nodes.empty()) {
                CLOG_CRIT("no state in %s and no --node: a new cluster needs its servers",
                          store_->where().c_str());
                return false;
            }
            prepare_first_start();
            break;
        case StateStore::Load::Ok:
            if (!load_state(st)) return false;
            break;
    }
    // Decisions run four times a heartbeat (at most every 25 ms), so a death is acted on
    // within 25 ms of its deadline rather than a whole heartbeat later.
    int64_t tick_ms = std::clamp<int64_t>(opts_.heartbeat_ms / 4, 5, 25);
    tick_ = event_new(base_, -1, EV_PERSIST, tick_cb, this);
    decide_soon_ = event_new(base_, -1, 0, decide_soon_cb, this);
    timeval tv{0, static_cast<suseconds_t>(tick_ms * 1000)};
    event_add(tick_, &tv);
    next_beat_ms_ = start_ms_;
    for (auto& s : servers_) s->link->start();
    return true;
}

bool Coordinator::load_state(const State& st) {
    if (!equal_ct(st.secret_check, hmac_hex(opts_.secret, st.cluster_id))) {
        CLOG_CRIT("%s belongs to another cluster (its secret check does not match "
                  "this secret); not touching it", store_->where().c_str());
        return false;
    }
    if (st.buckets != opts_.buckets) {
        CLOG_CRIT("%s is for %u buckets, --buckets says %u; not touching it",
                  store_->where().c_str(), st.buckets, opts_.buckets);
        return false;
    }
    std::string err;
    if (!BucketMap::parse(st.map_text, &map_, &err) || map_.nbuckets != st.buckets) {
        CLOG_CRIT("%s is corrupt: its map: %s", store_->where().c_str(),
                  err.empty() ? "wrong bucket count" : err.c_str());
        return false;
    }
    state_ = st;
    map_.epoch = std::max(map_.epoch, st.epoch);
    if (st.replicas != opts_.replicas) {
        CLOG_INFO("replicas per bucket: %u (the state file had %u)", opts_.replicas, st.replicas);
        state_.replicas = opts_.replicas;
    }
    Load load = load_of(map_);
    for (const MemberState& m : st.members) {
        int idx = map_.node_index(m.name);
        if (idx < 0) {
            CLOG_CRIT("%s is corrupt: member %s is not in its map", store_->where().c_str(),
                      m.name.c_str());
            return false;
        }
        Server* s = add_server(m.name, map_.nodes[idx].host, map_.nodes[idx].port);
        s->known_boot = m.boot_id;
        s->joining = m.joining;
        s->drain = m.drain == "drain"    ? Server::Drain::Drain
                   : m.drain == "remove" ? Server::Drain::Remove
                                         : Server::Drain::None;
        // A member holding nothing was failed over (or never caught up) before the restart:
        // it comes back through the rejoin path (reset first), as it would have.
        if (m.joining || (load.actives[idx] == 0 && load.replicas[idx] == 0)) {
            s->phase = Phase::Dead;
            s->dead_hb_seq = 0;
        }
    }
    for (const TakeoverState& ts : st.takeovers) {
        Takeover t;
        t.id = next_takeover_id_++;
        t.node = ts.node;
        t.holder = ts.holder;
        t.hook = ts.mode == "hook";
        uint16_t port = 0;
        std::string host;
        if (!parse_hostport(ts.addr, &host, &port, false)) continue;
        t.host = host;
        t.port = port;
        t.since_unix_ms = unix_ms();
        // Still needed while the node has not rejoined (it holds nothing: it comes back
        // through the rejoin, which releases it); else released now.
        Server* n = find(ts.node);
        t.st = n != nullptr && n->phase == Phase::Dead ? Takeover::St::Held
                                                         : Takeover::St::Releasing;
        // Behind a live node it was (or is as good as) a standby: released, then placed
        // again by arm_standbys.
        t.standby = t.st == Takeover::St::Releasing;
        CLOG_INFO("takeover in force: %s holds %s's address %s (%s)", t.holder.c_str(),
                  t.node.c_str(), ts.addr.c_str(),
                  t.st == Takeover::St::Held ? "until it rejoins" : "to be released");
        takeovers_.push_back(std::move(t));
    }
    CLOG_INFO("state loaded: cluster %s, epoch %llu, %zu servers, %u buckets, %u replicas",
              state_.cluster_id.c_str(), static_cast<unsigned long long>(map_.epoch),
              servers_.size(), map_.nbuckets, opts_.replicas);
    if (st.rebalance) {  // it was running: the next passes carry it on from the map
        reb_.st = Rebalance::St::Running;
        reb_.reason = "resumed after a coordinator restart";
        reb_.started_unix_ms = unix_ms();
        reb_.started_ms = mono_ms();
    }
    mode_ = Mode::Running;
    return true;
}

void Coordinator::prepare_first_start() {
    state_.cluster_id = random_hex(16);
    state_.secret_check = hmac_hex(opts_.secret, state_.cluster_id);
    state_.buckets = opts_.buckets;
    state_.replicas = opts_.replicas;
    for (const NodeAddr& n : opts_.nodes) add_server(n.name, n.host, n.port);
    mode_ = Mode::FirstStart;
    CLOG_INFO("new cluster %s: waiting for %zu servers to answer", state_.cluster_id.c_str(),
              servers_.size());
}

Server* Coordinator::add_server(const std::string& name, const std::string& host,
                                uint16_t port) {
    auto s = std::make_unique<Server>();
    Server* raw = s.get();
    s->name = name;
    s->host = host;
    s->port = port;
    ServerLink::Events ev;
    ev.on_ready = [raw] {
        raw->token = 0;  // a new connection: its first heartbeat grants nothing
        raw->lease_sent_ms = 0;
        CLOG_DEBUG("link to %s ready", raw->name.c_str());
    };
    ev.on_down = [this, raw](const std::string& why, bool peer_closed) {
        CLOG_INFO("link to %s lost: %s", raw->name.c_str(), why.c_str());
        on_link_down(raw, peer_closed);
    };
    std::string via_host = host;
    uint16_t via_port = port;
    for (const NodeAddr& c : opts_.control) {
        if (c.name == name) {
            via_host = c.host;
            via_port = c.port;
        }
    }
    s->link = std::make_unique<ServerLink>(base_, name, via_host, via_port, opts_.secret,
                                           std::move(ev));
    s->link->set_leadership(lead_);
    servers_.push_back(std::move(s));
    return raw;
}

Server* Coordinator::find(const std::string& name) const {
    for (const auto& s : servers_) {
        if (s->name == name) return s.get();
    }
    return nullptr;
}

// ---- the tick and heartbeats -------------------------------------------------------------

void Coordinator::tick_cb(evutil_socket_t, short, void* arg) {
    static_cast<Coordinator*>(arg)->tick();
}

void Coordinator::tick() {
    graveyard_.clear();
    int64_t now = mono_ms();
    if (!may_act(now)) return;  // deposed: the supervisor tears this down
    for (auto& s : servers_) {
        s->link->check_timeouts(now);
        if (s->probe_retry_ms != 0 && now >= s->probe_retry_ms) {
            s->probe_retry_ms = 0;
            probe_gone(s->name, s->probe_attempt);
        }
    }
    if (now >= next_beat_ms_) {
        send_heartbeats(now);
        next_beat_ms_ += opts_.heartbeat_ms;
        if (next_beat_ms_ <= now) next_beat_ms_ = now + opts_.heartbeat_ms;  // the loop lagged
    }
    if (mode_ == Mode::FirstStart) {
        first_start_tick(now);
    } else {
        decide(now);
        run_takeovers(now);
    }
}

void Coordinator::send_heartbeats(int64_t now) {
    for (auto& sp : servers_) {
        Server* s = sp.get();
        if (!s->link->ready() || s->hb_in_flight) continue;  // one in flight: skip this beat
        uint32_t lease = may_lease(*s) ? opts_.lease_ms() : 0;
        std::string wire = "cluster hb " + std::to_string(lease) + " " +
                           std::to_string(s->token) + " " + std::to_string(opts_.quiet_ms()) +
                           "\r\n";
        uint64_t seq = ++s->hb_seq;
        int64_t sent_us = mono_us();
        s->hb_in_flight = true;
        int64_t timeout = std::max<int64_t>(opts_.dead_after_ms, 1000);
        bool ok = s->link->send(wire, ServerLink::Kind::Block, timeout,
                                [this, s, seq, sent_us](bool ok2, const std::vector<std::string>& l) {
                                    s->hb_in_flight = false;
                                    if (!ok2) return;
                                    on_heartbeat(s, seq, sent_us, l);
                                    if (may_lease(*s)) renew_lease(s);
                                });
        if (!ok) s->hb_in_flight = false;
    }
    (void)now;
}

// Only a server that may hold actives gets a lease; a dead one never gets it renewed.
bool Coordinator::may_lease(const Server& s) const {
    return mode_ == Mode::Running && !s.needs_failover &&
           (s.phase == Phase::Live || s.phase == Phase::CatchingUp) && s.link->ready();
}

// Right after each heartbeat reply: a lease from the token that reply carried, issued one
// round trip ago, rather than from the previous beat's (a heartbeat interval ago). That keeps
// every server's lease nearly whole, so the servers' "coordinator gone" rule takes over
// without a gap when the coordinator dies (doc/coordinator.md, Fencing). The next heartbeat
// waits for this reply (its token).
void Coordinator::renew_lease(Server* s) {
    std::string wire = "cluster lease " + std::to_string(opts_.lease_ms()) + " " +
                       std::to_string(s->token) + " " + std::to_string(opts_.quiet_ms()) + "\r\n";
    s->hb_in_flight = true;
    const int64_t sent_ms = mono_ms();
    const int64_t limit_ms = opts_.quiet_ms() - kReportAgeMs;
    bool ok = s->link->send(wire, ServerLink::Kind::Line, std::max<int64_t>(opts_.dead_after_ms, 1000),
                            [s, sent_ms, limit_ms](bool ok2, const std::vector<std::string>& l) {
                                s->hb_in_flight = false;
                                if (!ok2 || l.empty()) {
                                    s->lease_sent_ms = 0;
                                    return;
                                }
                                // The server's silence between two renewals is at most the
                                // time from the previous one's send to this one's reply. A
                                // silence its peers could read as "the coordinator is gone"
                                // restarts its continuous contact (the failover grace).
                                const int64_t now = mono_ms();
                                if (s->lease_sent_ms == 0 || now - s->lease_sent_ms > limit_ms) {
                                    s->contact_since_ms = now;
                                }
                                s->lease_sent_ms = sent_ms;
                                // LEASE <token> <lease_left_ms>
                                uint64_t tok = 0;
                                if (parse_lease_reply(l.front(), &tok)) {
                                    s->token = tok;
                                    s->last_token_ms = now;
                                }
                            });
    if (!ok) s->hb_in_flight = false;
}

void Coordinator::on_heartbeat(Server* s, uint64_t seq, int64_t sent_us,
                               const std::vector<std::string>& lines) {
    HbReply h;
    std::string err;
    if (!parse_hb(lines, &h, &err) || h.node_id != s->name) {
        if (!s->bad_hb_logged) {
            CLOG_WARN("%s: unusable heartbeat reply (%s); reconnecting", s->name.c_str(),
                      err.empty() ? ("it calls itself " + h.node_id).c_str() : err.c_str());
            s->bad_hb_logged = true;
        }
        s->link->reset("bad heartbeat reply");
        return;
    }
    int64_t now = mono_ms();
    ++counters_.heartbeats;
    counters_.observe_rtt(static_cast<double>(mono_us() - sent_us) / 1e6);
    s->note_answer(now, opts_.heartbeat_ms);
    s->gone_proof_ms = 0;  // it answers: whatever refused was not it
    s->answered_seq = std::max(s->answered_seq, seq);
    s->take_report(h, map_.nbuckets == 0 ? opts_.buckets : map_.nbuckets, now);
    check_identity(s, h);
    if (s->phase == Phase::Dead && seq > s->dead_hb_seq) s->back = true;
    reconcile_epoch(s);
    // A proven death waits for this kind of answer (drained()): decide without a tick's delay.
    for (auto& o : servers_) {
        if (o->gone_proof_ms != 0 && o->phase != Phase::Dead) {
            decide_soon();
            break;
        }
    }
}

// A new boot id means the process restarted and lost its data; a server with no map at all
// while the map gives it buckets lost it too. Either way its buckets must fail over.
// A new boot id means the process restarted and lost its data: its buckets must fail over.
// (The same boot with an older epoch only missed a push: reconcile_epoch sends it the map.)
void Coordinator::check_identity(Server* s, const HbReply& h) {
    if (s->known_boot == h.boot_id) return;
    bool unknown = s->known_boot.empty();
    if (!unknown) {
        CLOG_WARN("%s restarted (boot %s, was %s)", s->name.c_str(), h.boot_id.c_str(),
                  s->known_boot.c_str());
    }
    s->known_boot = h.boot_id;
    state_dirty_ = true;
    if (mode_ != Mode::Running || s->phase == Phase::Dead) return;
    // Without a boot id to compare (an old state file), an epoch behind ours while the map
    // gives it buckets is the sign of a restart.
    int idx = map_.node_index(s->name);
    Load l = load_of(map_);
    bool holds = idx >= 0 && l.actives[idx] + l.replicas[idx] > 0;
    if (!unknown || (h.epoch < map_.epoch && holds)) s->needs_failover = true;
}

void Coordinator::reconcile_epoch(Server* s) {
    if (mode_ != Mode::Running || s->needs_failover ||
        (s->phase != Phase::Live && s->phase != Phase::CatchingUp)) {
        return;
    }
    if (s->epoch > map_.epoch) {
        fetch_map(s);
    } else if (s->epoch < map_.epoch && !s->push_in_flight) {
        CLOG_INFO("%s holds epoch %llu, the map is at %llu: pushing it", s->name.c_str(),
                  static_cast<unsigned long long>(s->epoch),
                  static_cast<unsigned long long>(map_.epoch));
        push(s, false);
    }
}

void Coordinator::first_start_tick(int64_t now) {
    std::string missing;
    uint64_t max_epoch = 0;
    for (auto& s : servers_) {
        if (!s->answered) missing += " " + s->name + " (" + s->host + ":" +
                                     std::to_string(s->port) + ")";
        max_epoch = std::max(max_epoch, s->epoch);
    }
    if (!missing.empty()) {
        if (now - start_ms_ > kFirstStartWaitMs) {
            CLOG_CRIT("new cluster: no answer within %lld ms from:%s",
                      static_cast<long long>(kFirstStartWaitMs), missing.c_str());
            exit_code_ = 1;
            event_base_loopexit(base_, nullptr);
        }
        return;
    }
    std::vector<BucketMap::Node> nodes;
    for (auto& s : servers_) nodes.push_back({s->name, s->host, s->port});
    BucketMap first = first_map(nodes, opts_.buckets, opts_.replicas, max_epoch + 1);
    mode_ = Mode::Running;
    if (!commit(std::move(first), "first map dealt")) {
        if (!may_act(mono_ms())) return;  // deposed meanwhile: the next leader deals it
        exit_code_ = 1;
        event_base_loopexit(base_, nullptr);
    }
}

// ---- decisions ---------------------------------------------------------------------------

void Coordinator::decide(int64_t now) {
    if (!may_act(mono_ms())) return;
    if (update_cut_off(now)) return;  // cut off: change nothing
    std::vector<Server*> dead;
    for (auto& s : servers_) {
        bool silent = s->phase != Phase::Dead &&
                      s->silence_ms(now, start_ms_) > static_cast<int64_t>(opts_.dead_after_ms);
        bool proven = s->phase != Phase::Dead && s->gone_proof_ms != 0 && drained(*s, now);
        if (silent || proven || (s->needs_failover && s->phase != Phase::Dead)) {
            dead.push_back(s.get());
        }
    }
    if (!dead.empty() && grace_ok(now)) {
        // The rest of this pass (replica restore, state saves) waits for the next, run at
        // once (declare_dead): the failover maps go out first.
        for (Server* s : dead) {
            bool restarted = s->needs_failover;
            bool proven = !restarted && s->gone_proof_ms != 0 && drained(*s, now);
            BucketMap before = map_;
            declare_dead(s, now,
                         restarted ? "restarted or lost its data"
                         : proven  ? "its link closed and its address proved it gone"
                                   : "no answer",
                         !restarted);
            // A restarted server answers on its address itself: nothing to take over.
            if (!restarted) begin_takeover(s, before);
        }
        return;
    }
    for (auto& s : servers_) {
        if (s->phase == Phase::Dead && s->back) start_rejoin(s.get());
    }
    for (auto& s : servers_) {
        if (s->phase == Phase::CatchingUp) check_caught_up(s.get());
    }
    maintain_replicas();
    rebalance_step(now);
    if (state_dirty_) save_state();
}

bool Coordinator::update_cut_off(int64_t now) {
    uint32_t members = 0, dead = 0;
    for (auto& s : servers_) {
        if (s->joining) continue;
        ++members;
        dead += s->silence_ms(now, start_ms_) > static_cast<int64_t>(opts_.dead_after_ms);
    }
    bool cut = members > 0 && dead * 2 > members;
    if (cut != cut_off_) {
        if (cut) {
            CLOG_CRIT("CUT OFF: %u of %u servers look dead at once; the coordinator is the one "
                      "cut off, so it changes nothing until a majority answers again",
                      dead, members);
        } else {
            CLOG_CRIT("no longer cut off: a majority of servers answers again");
        }
        cut_off_ = cut;
    }
    return cut_off_;
}

// A failover waits until a majority has been in continuous contact for kGraceMs (and the
// coordinator has run that long): servers then hold fresh leases and have stopped relying on
// the "coordinator gone" rule (doc/coordinator.md, Grace).
bool Coordinator::grace_ok(int64_t now) const {
    if (now - start_ms_ < kGraceMs) return false;
    uint32_t members = 0, steady = 0;
    for (auto& s : servers_) {
        if (s->joining) continue;
        ++members;
        bool in_contact = s->answered &&
                          (now - s->last_answer_ms) * 2 <= 3 * int64_t{opts_.heartbeat_ms};
        // Only a server whose lease is being renewed counts: one that is not (resetting,
        // or back and not yet rejoined) tells its peers the coordinator is silent.
        steady += in_contact && s->lease_sent_ms != 0 && now - s->contact_since_ms >= kGraceMs;
    }
    return steady * 2 > members;
}

void Coordinator::declare_dead(Server* s, int64_t now, const std::string& why, bool close_link,
                               Server* extra_target) {
    int64_t detect = s->silence_ms(now, start_ms_);
    CLOG_WARN("declaring %s dead: %s (last answer %lld ms ago)", s->name.c_str(), why.c_str(),
              static_cast<long long>(detect));
    const bool refused = s->gone_proof_ms != 0;
    s->phase = Phase::Dead;
    s->dead_since_ms = now;
    s->dead_hb_seq = s->hb_seq;
    s->back = false;
    s->needs_failover = false;
    s->gone_proof_ms = 0;
    if (close_link) s->link->reset("declared dead");
    holder_lost(s);  // addresses it held for others go to another survivor
    int idx = map_.node_index(s->name);
    if (idx < 0) return;
    FailoverPlan p = plan_failover(map_, static_cast<uint16_t>(idx), failover_view(*s));
    if (p.changed) {
        if (p.moved > 0) {
            last_failover_ =
                FailoverRecord{s->name, unix_ms(), detect, -1, p.moved, p.cold, refused};
            ++counters_.failovers;
            counters_.refused_failovers += refused;
            counters_.cold_buckets += p.cold;
            failover_declared_ms_ = now;
        }
        std::string what = "failover of " + s->name + ": " + std::to_string(p.moved) +
                           " buckets moved, " + std::to_string(p.cold) + " of them cold";
        commit(std::move(p.map), what, extra_target, p.moved > 0);
    }
    // The replica count is restored by the next decision pass (maintain_replicas), run at
    // once after this one: the failover map's pushes are queued on the links and go out
    // when the loop next runs, so no second state save (an fsync) may come before them.
    restore_after_ = s->name;
    decide_soon();
}

void Coordinator::start_rejoin(Server* s) {
    CLOG_INFO("%s answers again: resetting it before it rejoins as a replica", s->name.c_str());
    s->phase = Phase::Resetting;
    s->back = false;
    auto fail = [this, s](const std::string& why) {
        if (s->phase != Phase::Resetting) return;
        CLOG_WARN("rejoin of %s failed: %s", s->name.c_str(), why.c_str());
        s->phase = Phase::Dead;
        s->dead_hb_seq = s->hb_seq;
        s->link->reset("rejoin failed");
    };
    bool sent = s->link->send(
        "cluster reset\r\n", ServerLink::Kind::Line, 5000,
        [this, s, fail](bool ok, const std::vector<std::string>& l) {
            if (!ok || l.front() != "OK") return fail(ok ? l.front() : "link lost");
            if (s->phase != Phase::Resetting) return;
            std::string text = map_.format();
            std::string wire = "cluster setmap " + std::to_string(text.size()) + "\r\n" + text +
                               "\r\n";
            bool sent2 = s->link->send(
                wire, ServerLink::Kind::Line, 5000,
                [this, s, fail](bool ok2, const std::vector<std::string>& l2) {
                    if (!ok2 || l2.front() != "OK") return fail(ok2 ? l2.front() : "link lost");
                    if (s->phase == Phase::Resetting) finish_rejoin(s);
                });
            if (!sent2) fail("link lost");
        });
    if (!sent) fail("link not ready");
}

void Coordinator::finish_rejoin(Server* s) {
    s->phase = Phase::CatchingUp;
    int idx = map_.node_index(s->name);
    if (idx < 0) return;
    BucketMap next;
    if (plan_rejoin(map_, static_cast<uint16_t>(idx), view(), opts_.replicas, &next)) {
        commit(std::move(next), s->name + " rejoins with extra replicas");
    }
    if (plan_restore(map_, view(), opts_.replicas, &next)) {
        commit(std::move(next), "replicas restored with " + s->name);
    }
}

void Coordinator::check_caught_up(Server* s) {
    int idx = map_.node_index(s->name);
    if (idx < 0 || s->needs_failover || s->epoch < map_.epoch) return;
    uint32_t held = 0;
    for (uint32_t b = 0; b < map_.nbuckets; ++b) {
        const auto& r = map_.replicas[b];
        if (std::find(r.begin(), r.end(), idx) == r.end()) continue;
        if (b >= s->replicas.size() || !s->replicas[b].in_sync) return;
        ++held;
    }
    CLOG_INFO("%s caught up (%u replica buckets in sync): up", s->name.c_str(), held);
    s->phase = Phase::Live;
    release_takeovers(s->name);  // in sync: its address is its own again
    if (s->joining) {
        s->joining = false;
        state_dirty_ = true;
    }
    if (s->rebalance_on_join) {
        s->rebalance_on_join = false;
        uint32_t n = 0;
        start_rebalance(0, s->name + " joined", &n);
    }
}

void Coordinator::maintain_replicas() {
    BucketMap next;
    const std::string lost = std::move(restore_after_);
    restore_after_.clear();
    if (uint32_t n = plan_orphans(map_, view(), &next)) {
        counters_.cold_buckets += n;
        commit(std::move(next), std::to_string(n) + " buckets without any holder given out empty");
    }
    if (plan_restore(map_, view(), opts_.replicas, &next)) {
        commit(std::move(next),
               lost.empty() ? "replicas restored" : "replicas restored after losing " + lost);
    }
    // While a rebalance runs, its moves decide which extra holders go.
    if (reb_.st != Rebalance::St::Running && plan_trim(map_, view(), opts_.replicas, &next)) {
        commit(std::move(next), "surplus replicas trimmed (their replacements are in sync)");
    }
}

// ---- the map -----------------------------------------------------------------------------

View Coordinator::view() const {
    View v;
    v.live.assign(map_.nodes.size(), false);
    v.reports.assign(map_.nodes.size(), {});
    for (size_t i = 0; i < map_.nodes.size(); ++i) {
        Server* s = find(map_.nodes[i].name);
        if (s == nullptr) continue;
        v.live[i] = !s->needs_failover &&
                    (s->phase == Phase::Live || s->phase == Phase::CatchingUp);
        v.reports[i] = s->replicas;
    }
    return v;
}

// The view for failing `dead` over: a replica of one of its buckets counts as in sync when it
// was reported in sync within 1.5 heartbeats of the dead server's last answer. Its stream
// broke when the active died, so its current report says "not in sync" for a good reason.
View Coordinator::failover_view(const Server& dead) const {
    View v = view();
    int d = map_.node_index(dead.name);
    int64_t anchor = dead.answered ? dead.last_answer_ms : start_ms_;
    if (!dead.answered) {
        // Never heard by this coordinator: it died before this one took over (a new leader,
        // a restart). It lived at least until its replicas were last in sync with it, as
        // they report (R lines' "in sync N ms ago").
        int64_t last = 0;
        for (const auto& reports : v.reports) {
            for (uint32_t b = 0; b < reports.size() && b < map_.nbuckets; ++b) {
                if (map_.active[b] == d && reports[b].reported) {
                    last = std::max(last, reports[b].in_sync_ms);
                }
            }
        }
        if (last > 0) anchor = last;
    }
    int64_t since = anchor - int64_t{opts_.heartbeat_ms} * 3 / 2;
    for (auto& reports : v.reports) {
        for (uint32_t b = 0; b < reports.size() && b < map_.nbuckets; ++b) {
            ReplicaReport& r = reports[b];
            if (map_.active[b] == d && r.reported && r.in_sync_ms > 0 && r.in_sync_ms >= since) {
                r.in_sync = true;
            }
        }
    }
    return v;
}

bool Coordinator::save_state() {
    state_.epoch = map_.epoch;
    state_.buckets = map_.nbuckets == 0 ? opts_.buckets : map_.nbuckets;
    state_.replicas = opts_.replicas;
    state_.map_text = map_.format();
    state_.members.clear();
    for (auto& s : servers_) {
        state_.members.push_back({s->name, s->host + ":" + std::to_string(s->port), s->joining,
                                  s->drain == Server::Drain::Drain    ? "drain"
                                  : s->drain == Server::Drain::Remove ? "remove"
                                                                      : "",
                                  s->known_boot});
    }
    state_.rebalance = reb_.st == Rebalance::St::Running;
    state_.takeovers.clear();
    for (const Takeover& t : takeovers_) {
        state_.takeovers.push_back({t.node, t.addr(), t.holder, t.hook ? "hook" : "listen"});
    }
    std::string err;
    if (!store_->save(state_, &err)) {
        CLOG_CRIT("cannot save the state: %s", err.c_str());
        return false;
    }
    state_dirty_ = false;
    return true;
}

// The new map is saved before any server sees it: a restarted coordinator never hands out an
// epoch a server already holds for a different map.
bool Coordinator::commit(BucketMap next, const std::string& why, Server* extra_target,
                         bool failover) {
    BucketMap old = std::move(map_);
    map_ = std::move(next);
    if (!save_state()) {
        CLOG_CRIT("%s: NOT applied (state not saved); the map stays at epoch %llu", why.c_str(),
                  static_cast<unsigned long long>(old.epoch));
        map_ = std::move(old);
        return false;
    }
    CLOG_INFO("epoch %llu: %s", static_cast<unsigned long long>(map_.epoch), why.c_str());
    if (failover) {
        failover_epoch_ = map_.epoch;
        failover_push_left_ = 0;
    }
    for (auto& s : servers_) {
        const bool live = !s->needs_failover &&
                          (s->phase == Phase::Live || s->phase == Phase::CatchingUp);
        if ((!live && s.get() != extra_target) || !s->link->ready()) continue;
        // The failed-over server itself (a manual failover or removal) gets the map too, so
        // it stops serving at once, but the push time counts the live servers only: it may
        // be hung, or gone before it answers.
        const bool counted = failover && live;
        push(s.get(), counted);
        failover_push_left_ += counted;
    }
    if (failover && failover_push_left_ == 0) last_failover_.push_ms = 0;
    return true;
}

void Coordinator::push(Server* s, bool failover_round) {
    std::string text = map_.format();
    std::string wire = "cluster setmap " + std::to_string(text.size()) + "\r\n" + text + "\r\n";
    uint64_t epoch = map_.epoch;
    s->push_in_flight = true;
    bool sent = s->link->send(
        wire, ServerLink::Kind::Line, 2000,
        [this, s, epoch, failover_round](bool ok, const std::vector<std::string>& l) {
            s->push_in_flight = false;
            if (ok && l.front() == "OK") {
                ++counters_.maps_pushed;
                if (failover_round && epoch == failover_epoch_ && failover_push_left_ > 0 &&
                    --failover_push_left_ == 0) {
                    last_failover_.push_ms = mono_ms() - failover_declared_ms_;
                    CLOG_INFO("failover of %s: every live server holds epoch %llu (detect %lld "
                              "ms, push %lld ms)", last_failover_.node.c_str(),
                              static_cast<unsigned long long>(epoch),
                              static_cast<long long>(last_failover_.detect_ms),
                              static_cast<long long>(last_failover_.push_ms));
                }
                return;
            }
            ++counters_.push_errors;
            CLOG_WARN("%s refused map epoch %llu: %s", s->name.c_str(),
                      static_cast<unsigned long long>(epoch),
                      ok ? l.front().c_str() : "link lost");
        });
    if (!sent) s->push_in_flight = false;
}

void Coordinator::fetch_map(Server* s) {
    if (s->fetch_in_flight) return;
    s->fetch_in_flight = true;
    bool sent = s->link->send(
        "cluster map\r\n", ServerLink::Kind::Block, 2000,
        [this, s](bool ok, const std::vector<std::string>& l) {
            s->fetch_in_flight = false;
            if (!ok) return;
            std::string text;
            for (const std::string& line : l) text += line + "\r\n";
            text += "END\r\n";
            BucketMap m;
            std::string err;
            if (!BucketMap::parse(text, &m, &err) || m.nbuckets != map_.nbuckets) {
                CLOG_WARN("%s: unusable map: %s", s->name.c_str(),
                          err.empty() ? "bucket count differs" : err.c_str());
                return;
            }
            if (m.epoch > map_.epoch) adopt_map(m, s->name);
        });
    if (!sent) s->fetch_in_flight = false;
}

// A server holds a newer map than the state file (the state was restored from an older copy,
// or a save was lost): the servers' map wins; membership follows it.
void Coordinator::adopt_map(const BucketMap& m, const std::string& from) {
    CLOG_WARN("%s holds epoch %llu, newer than ours (%llu): adopting its map", from.c_str(),
              static_cast<unsigned long long>(m.epoch),
              static_cast<unsigned long long>(map_.epoch));
    for (const BucketMap::Node& n : m.nodes) {
        if (find(n.name) == nullptr) add_server(n.name, n.host, n.port)->link->start();
    }
    for (size_t i = 0; i < servers_.size();) {
        if (m.node_index(servers_[i]->name) < 0) {
            CLOG_WARN("%s is not in the adopted map: dropped", servers_[i]->name.c_str());
            servers_[i]->link->stop();
            graveyard_.push_back(std::move(servers_[i]));
            servers_.erase(servers_.begin() + static_cast<long>(i));
        } else {
            ++i;
        }
    }
    map_ = m;
    save_state();
}

uint64_t Coordinator::max_lag(const Server& s) const {
    int idx = map_.node_index(s.name);
    uint64_t lag = 0;
    if (idx < 0) return 0;
    for (uint32_t b = 0; b < map_.nbuckets && b < s.replicas.size(); ++b) {
        if (!s.replicas[b].reported || map_.active[b] == kNoNode) continue;
        Server* a = find(map_.nodes[map_.active[b]].name);
        if (a == nullptr || b >= a->active_seqno.size()) continue;
        uint64_t head = a->active_seqno[b], applied = s.replicas[b].applied;
        if (head > applied) lag = std::max(lag, head - applied);
    }
    return lag;
}

// ---- admin operations --------------------------------------------------------------------

Coordinator::Outcome Coordinator::failover_node(const std::string& name) {
    Server* s = find(name);
    if (s == nullptr) return {404, "unknown node " + name};
    if (mode_ != Mode::Running) return {409, "the first map is not dealt yet"};
    if (cut_off_) return {409, "the coordinator is cut off from a majority of servers"};
    if (s->phase == Phase::Dead) return {409, name + " is already failed over"};
    // The server may still be reachable: it gets the new map too, so it stops serving its
    // old actives at once rather than when its lease runs out; then it rejoins as a replica.
    declare_dead(s, mono_ms(), "manual failover", false, s);
    return {};
}

Coordinator::Outcome Coordinator::remove_node(const std::string& name) {
    Server* s = find(name);
    if (s == nullptr) return {404, "unknown node " + name};
    if (mode_ != Mode::Running) return {409, "the first map is not dealt yet"};
    if (cut_off_) return {409, "the coordinator is cut off from a majority of servers"};
    if (servers_.size() == 1) return {409, "cannot remove the last server"};
    if (s->phase != Phase::Dead) declare_dead(s, mono_ms(), "removed", false, s);
    int idx = map_.node_index(name);
    BucketMap next;
    std::string err;
    if (idx >= 0 && !without_node(map_, static_cast<uint16_t>(idx), &next, &err)) {
        return {409, err};
    }
    auto it = std::find_if(servers_.begin(), servers_.end(),
                           [&](const auto& p) { return p.get() == s; });
    std::unique_ptr<Server> gone = std::move(*it);
    servers_.erase(it);
    release_takeovers(name);  // it is not coming back
    if (idx >= 0 && !commit(std::move(next), "node " + name + " removed")) {
        servers_.push_back(std::move(gone));
        return {409, "cannot save the state"};
    }
    // Kept until the next tick so the failover map queued for it still goes out.
    graveyard_.push_back(std::move(gone));
    BucketMap r;
    if (plan_restore(map_, view(), opts_.replicas, &r)) {
        commit(std::move(r), "replicas restored after removing " + name);
    }
    return {};
}

Coordinator::Outcome Coordinator::add_node(const std::string& name, const std::string& addr,
                                           bool rebalance) {
    std::string host;
    uint16_t port = 0;
    if (!repl::valid_node_name(name)) return {400, "bad node name (letters, digits, -_.)"};
    if (!parse_hostport(addr, &host, &port, false)) return {400, "addr wants host:port"};
    if (find(name) != nullptr) return {409, "node " + name + " exists"};
    if (mode_ != Mode::Running) return {409, "the first map is not dealt yet"};
    if (cut_off_) return {409, "the coordinator is cut off from a majority of servers"};
    Server* s = add_server(name, host, port);
    s->phase = Phase::Dead;  // rejoins (reset, map, replicas) on its first answer
    s->joining = true;
    s->rebalance_on_join = rebalance;
    s->dead_hb_seq = 0;
    if (!commit(with_node(map_, {name, host, port}), "node " + name + " added")) {
        servers_.pop_back();
        return {409, "cannot save the state"};
    }
    s->link->start();
    return {};
}

}  // namespace mcm::coord
