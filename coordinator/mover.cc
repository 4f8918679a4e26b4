// The mover: planned bucket moves toward the even map (doc/coordinator.md, "Rebalance" and
// "Moving a bucket"). A rebalance is a goal, not a script: each pass (decide(), a quarter
// heartbeat) compares the map with plan_balance()'s target, carries the moves under way one
// step further and starts new ones while fewer than `parallel` run. A failover, a lost
// server or a coordinator restart in the middle needs no special unwinding: a move whose
// servers are no longer live is dropped (a handoff it began is cancelled), the next pass
// plans again from the map as it is, and handoffs nobody owns are cancelled
// (cancel_stale_handoffs).
#include <algorithm>
#include <charconv>

#include "coordinator/clock.h"
#include "coordinator/coordinator.h"
#include "coordinator/hb_reply.h"
#include "coordinator/log.h"

namespace mcm::coord {

const char* phase_name(Move::Phase p) {
    switch (p) {
        case Move::Phase::Copy: return "copy";
        case Move::Phase::Handoff: return "handoff";
        case Move::Phase::Switch: return "switch";
        case Move::Phase::Trim: return "trim";
    }
    return "?";
}

const char* rebalance_state(Rebalance::St st) {
    switch (st) {
        case Rebalance::St::Idle: return "idle";
        case Rebalance::St::Running: return "running";
        case Rebalance::St::Done: return "done";
        case Rebalance::St::Cancelled: return "cancelled";
    }
    return "?";
}

namespace {

// The new active must apply the old one's last write by then, or the handoff is cancelled:
// below the servers' default -o forward_park_ms (200), so writes parked meanwhile on the old
// active go on there rather than fail.
constexpr int64_t kCatchUpMs = 150;
constexpr uint32_t kMaxRetries = 20;   // handoffs refused because a map changed meanwhile
constexpr uint32_t kMaxAttempts = 3;   // moves of one bucket given up in one rebalance

bool differs(const BucketMap& a, const BucketMap& b, uint32_t bucket) {
    if (a.active[bucket] != b.active[bucket]) return true;
    std::vector<uint16_t> x = a.replicas[bucket], y = b.replicas[bucket];
    std::sort(x.begin(), x.end());
    std::sort(y.begin(), y.end());
    return x != y;
}

}  // namespace

std::vector<bool> Coordinator::eligible() const {
    std::vector<bool> e(map_.nodes.size(), false);
    for (size_t i = 0; i < map_.nodes.size(); ++i) {
        Server* s = find(map_.nodes[i].name);
        e[i] = s != nullptr && s->phase == Phase::Live && !s->needs_failover &&
               s->drain == Server::Drain::None;
    }
    return e;
}

Coordinator::Outcome Coordinator::start_rebalance(uint32_t parallel, const std::string& why,
                                                  uint32_t* planned) {
    if (mode_ != Mode::Running) return {409, "the first map is not dealt yet"};
    if (cut_off_) return {409, "the coordinator is cut off from a majority of servers"};
    std::vector<bool> e = eligible();
    if (std::none_of(e.begin(), e.end(), [](bool x) { return x; })) {
        return {409, "no server may hold buckets"};
    }
    BucketMap target = plan_balance(map_, e, opts_.replicas);
    uint32_t n = 0;
    for (uint32_t b = 0; b < map_.nbuckets; ++b) n += differs(map_, target, b);
    if (planned != nullptr) *planned = n;
    if (reb_.st != Rebalance::St::Running) {
        reb_ = Rebalance{};
        reb_.st = Rebalance::St::Running;
        reb_.started_unix_ms = unix_ms();
        reb_.started_ms = mono_ms();
        moved_.clear();
        attempts_.clear();
    }
    reb_.reason = why;
    reb_.total = std::max(reb_.total, reb_.done + n);
    state_dirty_ = true;  // a restarted coordinator carries it on
    if (parallel > 0) reb_.parallel = std::min<uint32_t>(parallel, 64);
    CLOG_INFO("rebalance (%s): %u buckets to move, %u at a time", why.c_str(), n, reb_.parallel);
    decide_soon();
    return {};
}

Coordinator::Outcome Coordinator::cancel_rebalance() {
    if (reb_.st == Rebalance::St::Running) {
        finish_rebalance(Rebalance::St::Cancelled, "cancelled by the operator");
    }
    return {};
}

Coordinator::Outcome Coordinator::drain_node(const std::string& name, bool remove,
                                             uint32_t* planned) {
    Server* s = find(name);
    if (s == nullptr) return {404, "unknown node " + name};
    if (servers_.size() == 1) return {409, "cannot drain the last server"};
    s->drain = remove ? Server::Drain::Remove : Server::Drain::Drain;
    state_dirty_ = true;
    return start_rebalance(0, (remove ? "removing " : "draining ") + name, planned);
}

void Coordinator::finish_rebalance(Rebalance::St st, const std::string& why) {
    for (const Move& m : moves_) {
        if (m.phase == Move::Phase::Switch || m.phase == Move::Phase::Handoff) {
            // A handoff begun: the old active takes writes again.
            cancel_handoff(find(m.from), m.bucket);
        }
    }
    moves_.clear();
    reb_.st = st;
    reb_.reason = why;
    reb_.ended_ms = mono_ms();
    state_dirty_ = true;
    CLOG_INFO("rebalance %s: %u buckets moved, %u given up, %llu bytes, in %.1f s (%s)",
              rebalance_state(st), reb_.done, reb_.failed,
              static_cast<unsigned long long>(reb_.bytes),
              static_cast<double>(reb_.ended_ms - reb_.started_ms) / 1000.0, why.c_str());
}

// plan_balance() costs milliseconds on big maps: planned again only when the servers that
// may hold buckets change, a failover changed the map behind the mover's back, or the
// cached target says there is nothing left to do (to be sure of it).
const BucketMap& Coordinator::target_for(const std::vector<bool>& e) {
    const bool stale = e != target_eligible_ || counters_.failovers != target_failovers_ ||
                       target_.nbuckets != map_.nbuckets ||
                       target_.nodes.size() != map_.nodes.size();
    bool converged = !stale;
    for (uint32_t b = 0; converged && b < map_.nbuckets; ++b) converged = !differs(map_, target_, b);
    if (stale || converged) {
        target_ = plan_balance(map_, e, opts_.replicas);
        target_eligible_ = e;
        target_failovers_ = counters_.failovers;
    }
    return target_;
}

// The old active of a handoff takes writes for b again (parked ones go on).
void Coordinator::cancel_handoff(Server* o, uint32_t b) {
    if (o == nullptr || !o->link->ready()) return;
    o->link->send("cluster handoff " + std::to_string(b) + " cancel\r\n",
                  ServerLink::Kind::Line, 3000, [](bool, const std::vector<std::string>&) {});
}

Move* Coordinator::find_move(uint64_t id) {
    for (Move& m : moves_) {
        if (m.id == id) return &m;
    }
    return nullptr;
}

bool Coordinator::moving(uint32_t b) const {
    return std::any_of(moves_.begin(), moves_.end(), [b](const Move& m) { return m.bucket == b; });
}

void Coordinator::end_move(uint64_t id, bool ok, const std::string& why) {
    Move* m = find_move(id);
    if (m == nullptr) return;
    if (ok) {
        ++reb_.done;
        reb_.bytes += m->bytes;
    } else {
        ++reb_.failed;
        // Tried again by a later pass, a few times at most.
        if (++attempts_[m->bucket] < kMaxAttempts) {
            moved_.erase(std::remove(moved_.begin(), moved_.end(), m->bucket), moved_.end());
        }
        CLOG_WARN("move of bucket %u (%s -> %s) given up: %s", m->bucket, m->from.c_str(),
                  m->to.c_str(), why.c_str());
        if (m->phase == Move::Phase::Switch || m->phase == Move::Phase::Handoff) {
            cancel_handoff(find(m->from), m->bucket);
        }
    }
    moves_.erase(moves_.begin() + (m - moves_.data()));
}

// Handoffs reported by a server that holds the current map and that no move of this
// coordinator owns (it restarted, or a cancel was lost): taken back, so writes flow again.
void Coordinator::cancel_stale_handoffs(Server* s) {
    if (s->handoffs.empty() || s->epoch != map_.epoch || !s->link->ready()) return;
    for (uint32_t b : s->handoffs) {
        bool owned = std::any_of(moves_.begin(), moves_.end(), [&](const Move& m) {
            return m.bucket == b && m.from == s->name;
        });
        if (owned) continue;
        CLOG_WARN("%s holds bucket %u for a handover nobody runs: cancelled", s->name.c_str(), b);
        cancel_handoff(s, b);
    }
    s->handoffs.clear();
}

// Members drained for removal leave the map once they hold nothing.
void Coordinator::retire_drained() {
    Load l = load_of(map_);
    std::vector<std::string> gone;
    for (auto& s : servers_) {
        int idx = map_.node_index(s->name);
        if (s->drain != Server::Drain::Remove || idx < 0) continue;
        if (l.actives[idx] + l.replicas[idx] == 0) gone.push_back(s->name);
    }
    for (const std::string& n : gone) {
        int idx = map_.node_index(n);
        BucketMap next;
        std::string err;
        if (!without_node(map_, static_cast<uint16_t>(idx), &next, &err)) continue;
        auto it = std::find_if(servers_.begin(), servers_.end(),
                               [&](const auto& p) { return p->name == n; });
        std::unique_ptr<Server> s = std::move(*it);
        servers_.erase(it);
        release_takeovers(n);
        if (!commit(std::move(next), "node " + n + " drained and removed")) {
            servers_.push_back(std::move(s));
            continue;
        }
        // Told it holds nothing (it is no longer in the map it is sent): it stops serving.
        push(s.get(), false);
        graveyard_.push_back(std::move(s));
    }
}

void Coordinator::rebalance_step(int64_t now) {
    for (auto& s : servers_) cancel_stale_handoffs(s.get());
    if (reb_.st != Rebalance::St::Running) return;
    std::vector<bool> e = eligible();
    if (std::none_of(e.begin(), e.end(), [](bool x) { return x; })) {
        finish_rebalance(Rebalance::St::Cancelled, "no server may hold buckets");
        return;
    }
    BucketMap batch = map_;  // copy and trim steps of this pass, committed once
    std::vector<uint64_t> ids;
    for (const Move& m : moves_) ids.push_back(m.id);
    for (uint64_t id : ids) {
        if (Move* m = find_move(id)) move_step(m, now, &batch);
    }
    if (!same_assignment(batch, map_)) {
        batch.epoch = map_.epoch + 1;
        std::string switched;
        for (const Move& m : moves_) {
            if (m.switching) switched += " " + std::to_string(m.bucket) + "(" + m.from + "->" + m.to + ")";
        }
        const bool ok = commit(std::move(batch),
                               "rebalance: " + std::to_string(moves_.size()) + " buckets moving, " +
                                   std::to_string(reb_.done) + " of " +
                                   std::to_string(reb_.total) + " done" +
                                   (switched.empty() ? "" : "; new actives:" + switched));
        const int64_t t = mono_ms();
        std::vector<uint64_t> failed;
        for (Move& m : moves_) {
            if (!m.switching) continue;
            m.switching = false;
            if (!ok) {
                failed.push_back(m.id);
                continue;
            }
            m.phase_ms = t;
            m.holders_epoch = map_.epoch;  // the replicas follow the new active from here
            CLOG_INFO("bucket %u moved from %s to %s at seqno %llu (writes held %lld ms)",
                      m.bucket, m.from.c_str(), m.to.c_str(),
                      static_cast<unsigned long long>(m.seqno),
                      static_cast<long long>(t - m.handoff_ms));
        }
        for (uint64_t id : failed) end_move(id, false, "the map could not be saved");
    }
    const BucketMap& target = target_for(e);
    uint32_t left = 0;
    bool started = false;
    for (uint32_t b = 0; b < map_.nbuckets; ++b) {
        if (!differs(map_, target, b) || moving(b)) continue;
        if (std::find(moved_.begin(), moved_.end(), b) != moved_.end()) continue;
        ++left;
        if (moves_.size() >= reb_.parallel) continue;
        // Every server the move touches must be live now (the old active may be draining).
        const uint16_t a = map_.active[b];
        Server* old = a == repl::kNoNode ? nullptr : find(map_.nodes[a].name);
        bool ok = old != nullptr && old->phase == Phase::Live && !old->needs_failover &&
                  e[target.active[b]];
        for (uint16_t r : target.replicas[b]) ok = ok && e[r];
        if (!ok) continue;
        Move m;
        m.id = next_move_id_++;
        m.bucket = b;
        m.from = map_.nodes[map_.active[b]].name;
        m.to = map_.nodes[target.active[b]].name;
        for (uint16_t r : target.replicas[b]) m.replicas.push_back(map_.nodes[r].name);
        m.started_ms = now;
        m.phase_ms = now;
        moves_.push_back(std::move(m));
        moved_.push_back(b);
        --left;
        started = true;
    }
    reb_.total = std::max(reb_.total, reb_.done + left + static_cast<uint32_t>(moves_.size()));
    if (moves_.empty() && left == 0) {
        finish_rebalance(Rebalance::St::Done, reb_.reason);
        retire_drained();
    } else if (started) {
        decide_soon();  // the new moves' copy step goes at once, not a tick later
    }
}

void Coordinator::move_step(Move* m, int64_t now, BucketMap* batch) {
    const uint32_t b = m->bucket;
    const int from = map_.node_index(m->from);
    const int to = map_.node_index(m->to);
    auto ready = [&](const std::string& name) {
        Server* s = find(name);
        return s != nullptr && s->phase == Phase::Live && !s->needs_failover;
    };
    bool ok = from >= 0 && to >= 0 && ready(m->from) && ready(m->to);
    for (const std::string& r : m->replicas) ok = ok && ready(r);
    if (!ok) return end_move(m->id, false, "a server it needs is not live");
    const bool switched = map_.active[b] == to;
    if (!switched && map_.active[b] != from) {
        return end_move(m->id, false, "the bucket failed over meanwhile");
    }
    // Holders the target wants: the new active and its replicas.
    std::vector<uint16_t> want;
    want.push_back(static_cast<uint16_t>(to));
    for (const std::string& r : m->replicas) want.push_back(static_cast<uint16_t>(map_.node_index(r)));
    auto holds = [&](const BucketMap& mm, uint16_t n) {
        const auto& rr = mm.replicas[b];
        return mm.active[b] == n || std::find(rr.begin(), rr.end(), n) != rr.end();
    };
    // In sync by a report made under a map at least as new as the one that gave the bucket
    // its present holders (later maps, other buckets' moves, do not change this one).
    auto in_sync = [&](uint16_t n) {
        Server* s = find(map_.nodes[n].name);
        return s != nullptr && s->epoch >= m->holders_epoch && b < s->replicas.size() &&
               s->replicas[b].in_sync;
    };
    switch (m->phase) {
        case Move::Phase::Copy: {
            if (!m->added) {
                for (uint16_t n : want) {
                    if (holds(*batch, n)) continue;
                    batch->replicas[b].push_back(n);
                    m->copied = true;
                }
                m->added = true;
                return;  // in sync after the map, at a later pass
            }
            for (uint16_t n : want) {
                if (!holds(map_, n)) return;  // the map adding them is not committed yet
            }
            if (m->holders_epoch == 0) m->holders_epoch = map_.epoch;
            for (uint16_t n : want) {
                if (n != map_.active[b] && !in_sync(n)) return;
            }
            m->phase = m->from == m->to ? Move::Phase::Trim : Move::Phase::Handoff;
            m->phase_ms = now;
            if (m->phase == Move::Phase::Handoff) send_handoff(m->id);
            return;
        }
        case Move::Phase::Handoff:
            if (!m->in_flight) send_handoff(m->id);
            return;
        case Move::Phase::Switch: {
            if (!m->caught_up) return;  // poll_applied drives it
            // The new active has applied the old one's last write: it takes over. The old
            // one stays a replica (it holds the bucket up to the handoff) until the trim.
            if (switched) return;
            auto& rr = batch->replicas[b];
            rr.erase(std::remove(rr.begin(), rr.end(), static_cast<uint16_t>(to)), rr.end());
            if (std::find(rr.begin(), rr.end(), static_cast<uint16_t>(from)) == rr.end()) {
                rr.push_back(static_cast<uint16_t>(from));
            }
            batch->active[b] = static_cast<uint16_t>(to);
            m->phase = Move::Phase::Trim;
            m->switching = true;
            return;
        }
        case Move::Phase::Trim: {
            // Holders beyond the target go once the replicas it keeps are in sync with the
            // bucket's active (after a switch they resume from the new one): should the new
            // active die now, a failover finds a warm copy.
            for (const std::string& r : m->replicas) {
                if (!in_sync(static_cast<uint16_t>(map_.node_index(r)))) return;
            }
            auto& rr = batch->replicas[b];
            rr.erase(std::remove_if(rr.begin(), rr.end(),
                                    [&](uint16_t n) {
                                        return std::find(want.begin(), want.end(), n) ==
                                               want.end();
                                    }),
                     rr.end());
            if (m->copied && m->bytes == 0) {
                // What the new owner holds of the bucket, for the progress figures.
                Server* t = find(m->to);
                const uint64_t id = m->id;
                if (t != nullptr && t->link->ready() && !m->in_flight) {
                    m->in_flight = true;
                    t->link->send("cluster applied " + std::to_string(b) + "\r\n",
                                  ServerLink::Kind::Line, 2000,
                                  [this, id](bool ok2, const std::vector<std::string>& l) {
                                      Move* mm = find_move(id);
                                      if (mm == nullptr) return;
                                      mm->in_flight = false;
                                      const AppliedReply r =
                                          parse_applied_reply(ok2 ? l.front() : std::string());
                                      if (r.has_bytes) mm->bytes = r.bytes;
                                      end_move(id, true, "");
                                  });
                    return;
                }
            }
            if (!m->in_flight) end_move(m->id, true, "");
            return;
        }
    }
}

void Coordinator::send_handoff(uint64_t id) {
    Move* m = find_move(id);
    Server* o = m == nullptr ? nullptr : find(m->from);
    if (m == nullptr || o == nullptr || !o->link->ready() || m->in_flight) return;
    m->in_flight = true;
    const uint64_t epoch = map_.epoch;
    bool sent = o->link->send(
        "cluster handoff " + std::to_string(m->bucket) + " " + std::to_string(epoch) + "\r\n",
        ServerLink::Kind::Line, 3000, [this, id](bool ok, const std::vector<std::string>& l) {
            Move* mm = find_move(id);
            if (mm == nullptr) return;
            mm->in_flight = false;
            uint64_t seqno = 0;
            if (parse_handoff_reply(ok ? l.front() : std::string(), &seqno)) {
                mm->seqno = seqno;
                mm->phase = Move::Phase::Switch;
                mm->phase_ms = mono_ms();
                mm->handoff_ms = mm->phase_ms;
                mm->deadline_ms = mm->phase_ms + kCatchUpMs;
                poll_applied(id);
                return;
            }
            // A map changed between the send and its arrival (the epoch did not match), or
            // the server is busy: the next pass asks again.
            if (++mm->retries > kMaxRetries) {
                end_move(id, false, "handoff refused: " + (ok ? l.front() : "link lost"));
            }
        });
    if (!sent) m->in_flight = false;
}

namespace {
struct PollArg {
    Coordinator* c;
    std::weak_ptr<int> life;
    uint64_t id;
};
}  // namespace

void Coordinator::poll_cb(evutil_socket_t, short, void* arg) {
    auto* p = static_cast<PollArg*>(arg);
    Coordinator* c = p->c;
    uint64_t id = p->id;
    bool alive = !p->life.expired();
    delete p;
    if (alive) c->poll_applied(id);
}

// The new active catching up with the old one's last write. Writes to the bucket are parked
// meanwhile, so this polls every millisecond rather than wait for a heartbeat.
void Coordinator::poll_applied(uint64_t id) {
    Move* m = find_move(id);
    if (m == nullptr || m->phase != Move::Phase::Switch || m->in_flight) return;
    Server* t = find(m->to);
    if (t == nullptr || !t->link->ready() || mono_ms() > m->deadline_ms) {
        return end_move(id, false, "the new owner did not catch up in " +
                                       std::to_string(kCatchUpMs) + " ms (applied " +
                                       std::to_string(m->applied) + " of " +
                                       std::to_string(m->seqno) + ", " +
                                       std::to_string(m->polls) + " polls)");
    }
    m->in_flight = true;
    bool sent = t->link->send(
        "cluster applied " + std::to_string(m->bucket) + "\r\n", ServerLink::Kind::Line, 2000,
        [this, id](bool ok, const std::vector<std::string>& l) {
            Move* mm = find_move(id);
            if (mm == nullptr) return;
            mm->in_flight = false;
            const AppliedReply r = parse_applied_reply(ok ? l.front() : std::string());
            ++mm->polls;
            if (r.has_seqno) mm->applied = r.seqno;
            if (r.applied && r.state == "replica" && r.has_seqno && r.has_bytes &&
                r.seqno >= mm->seqno) {
                mm->caught_up = true;  // the next pass (at once) commits the switch
                mm->bytes = r.bytes;
                decide_soon();
                return;
            }
            if (!ok || !r.seven || r.state != "replica") {
                return end_move(id, false, "the new owner answered " +
                                               (ok ? l.front() : std::string("nothing")));
            }
            timeval tv{0, 1000};
            event_base_once(base_, -1, EV_TIMEOUT, &Coordinator::poll_cb,
                            new PollArg{this, life_, id}, &tv);
        });
    if (!sent) m->in_flight = false;
}

}  // namespace mcm::coord
