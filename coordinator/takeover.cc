// Failover on proof of death and address takeover (doc/coordinator.md, "Failover on proof"
// and "Address takeover"): the parts of the Coordinator that probe a server's address when
// its link closes, and that have a survivor answer on a dead server's client address (a
// `cluster listen` on the survivor, or the operator's hook) until it is back in sync.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "coordinator/clock.h"
#include "coordinator/coordinator.h"
#include "coordinator/log.h"

extern char** environ;

namespace mcm::coord {

namespace {

constexpr int64_t kProbeTimeoutMs = 200;
// A probe that finds the port still open right after the link closed is tried again a few
// times: the kernel closes a killed process's sockets one by one.
constexpr int kProbeAttempts = 3;
constexpr int64_t kProbeRetryMs = 20;

bool loopback(const std::string& host) {
    return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

const char* Coordinator::takeover_state(Takeover::St st) {
    switch (st) {
        case Takeover::St::Acquiring: return "acquiring";
        case Takeover::St::Held: return "held";
        case Takeover::St::Releasing: return "releasing";
    }
    return "?";
}

// ---- proof of death ----------------------------------------------------------------------

// The link closed from the server's side (EOF or reset). That alone proves nothing (a
// middlebox or a proxy may have cut it); a refused connection to the server's own address
// right after does: nothing listens there, so the process is gone (doc/coordinator.md).
void Coordinator::on_link_down(Server* s, bool peer_closed) {
    if (!opts_.dead_on_refused || !peer_closed || mode_ != Mode::Running ||
        s->phase == Phase::Dead || s->probing) {
        return;
    }
    probe_gone(s->name, 0);
}

void Coordinator::probe_gone(const std::string& name, int attempt) {
    Server* s = find(name);
    if (s == nullptr) return;
    s->probing = true;
    const int64_t answered_at = s->last_answer_ms;
    probe_address(base_, s->host, s->port, kProbeTimeoutMs,
                  [this, name, attempt, answered_at](ProbeResult r) {
                      Server* s2 = find(name);
                      if (s2 == nullptr) return;
                      s2->probing = false;
                      // It answered meanwhile, or is gone already: nothing to prove.
                      if (s2->phase == Phase::Dead || s2->last_answer_ms != answered_at ||
                          s2->link->ready()) {
                          return;
                      }
                      // A standby on its address gets connections only once the node's
                      // own listener is closed (server/managed/standby.h): as good as a
                      // refusal. Another server answering where no standby was placed
                      // proves nothing.
                      if (r == ProbeResult::Elsewhere && !address_taken(*s2)) {
                          r = ProbeResult::Other;
                      }
                      if (r == ProbeResult::Refused || r == ProbeResult::Elsewhere) {
                          CLOG_WARN("%s: its link closed and its address %s:%u %s: gone",
                                    name.c_str(), s2->host.c_str(), s2->port,
                                    r == ProbeResult::Refused ? "refuses connections"
                                                              : "is answered by its standby");
                          s2->gone_proof_ms = mono_ms();
                          // The replicas report, in a heartbeat sent from now on, that they
                          // have read their stream from it to its end (drained()).
                          for (auto& sp : servers_) sp->drain_seq = sp->hb_seq;
                          send_heartbeats(s2->gone_proof_ms);
                          decide_soon();
                      } else if (r == ProbeResult::Accepted && attempt + 1 < kProbeAttempts) {
                          // Again from the tick (at most a quarter heartbeat away).
                          s2->probe_attempt = attempt + 1;
                          s2->probe_retry_ms = mono_ms() + kProbeRetryMs;
                      } else {
                          CLOG_DEBUG("%s: link closed but its address %s (%d): waiting for "
                                     "silence", name.c_str(),
                                     r == ProbeResult::Accepted ? "accepts connections"
                                                                : "does not answer",
                                     attempt);
                      }
                  },
                  s->name);
}

// Replication is asynchronous: when the active dies, records it acknowledged may still sit in
// its replicas' sockets, unread. Silence gave them dead_after_ms to read them; a proof comes
// within milliseconds. So a proven death waits until every live server that replicates one
// of its active buckets has answered a heartbeat sent after the proof, reporting that bucket
// out of sync (its replication link from the dead server has read to the end and closed), or
// two heartbeats at most.
bool Coordinator::drained(const Server& dead, int64_t now) const {
    if (now - dead.gone_proof_ms > 2 * static_cast<int64_t>(opts_.heartbeat_ms)) return true;
    int d = map_.node_index(dead.name);
    if (d < 0) return true;
    for (const auto& sp : servers_) {
        const Server& s = *sp;
        if (&s == &dead || s.phase == Phase::Dead || s.needs_failover) continue;
        int idx = map_.node_index(s.name);
        if (idx < 0) continue;
        bool holds = false;
        for (uint32_t b = 0; b < map_.nbuckets; ++b) {
            if (map_.active[b] != d) continue;
            const auto& r = map_.replicas[b];
            if (std::find(r.begin(), r.end(), idx) == r.end()) continue;
            holds = true;
            if (b < s.replicas.size() && s.replicas[b].in_sync) return false;
        }
        if (holds && s.answered_seq <= s.drain_seq) return false;
    }
    return true;
}

// The decision at once rather than at the next tick (up to a quarter heartbeat later).
void Coordinator::decide_soon() {
    timeval tv{0, 0};
    event_add(decide_soon_, &tv);
}

void Coordinator::decide_soon_cb(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Coordinator*>(arg);
    if (c->mode_ != Mode::Running) return;
    int64_t now = mono_ms();
    c->decide(now);
    c->run_takeovers(now);
}

// ---- address takeover --------------------------------------------------------------------

bool Coordinator::takeover_wanted(const Server& s) const {
    switch (opts_.takeover) {
        case Options::Takeover::Off: return false;
        case Options::Takeover::Listen:
        case Options::Takeover::Hook: return true;
        case Options::Takeover::Auto: return !opts_.takeover_hook.empty() || loopback(s.host);
    }
    return false;
}

bool Coordinator::address_taken(const Server& s) const {
    return std::any_of(takeovers_.begin(), takeovers_.end(), [&](const Takeover& t) {
        return t.host == s.host && t.port == s.port;
    });
}

Takeover* Coordinator::find_takeover(uint64_t id) {
    for (Takeover& t : takeovers_) {
        if (t.id == id) return &t;
    }
    return nullptr;
}

// The live server that took most of the dead one's actives (its clients' keys are mostly
// there already); with none (it held no actives), the live server with the fewest actives.
Server* Coordinator::pick_holder(const Server& dead, const BucketMap& before) const {
    int d = before.node_index(dead.name);
    Load l = load_of(map_);
    Server* best = nullptr;
    uint32_t best_took = 0, best_actives = 0;
    for (const auto& sp : servers_) {
        Server* s = sp.get();
        if (s == &dead || s->name == dead.name || s->needs_failover ||
            (s->phase != Phase::Live) || !s->link->ready()) {
            continue;
        }
        int idx = map_.node_index(s->name);
        if (idx < 0) continue;
        uint32_t took = 0;
        for (uint32_t b = 0; d >= 0 && b < before.nbuckets && b < map_.nbuckets; ++b) {
            took += before.active[b] == d && map_.active[b] == idx;
        }
        uint32_t actives = l.actives[idx];
        if (best == nullptr || took > best_took || (took == best_took && actives < best_actives)) {
            best = s;
            best_took = took;
            best_actives = actives;
        }
    }
    return best;
}

void Coordinator::begin_takeover(Server* dead, const BucketMap& before) {
    if (!takeover_wanted(*dead)) return;
    for (Takeover& t : takeovers_) {
        if (t.node != dead->name) continue;
        // Its standby answers already (or it died again before it was released): keep it.
        if (t.standby) {
            t.standby = false;
            t.since_unix_ms = unix_ms();
            if (t.st == Takeover::St::Held) ++counters_.takeovers;
            CLOG_WARN("takeover: %s, %s's standby, answers on its address %s", t.holder.c_str(),
                      t.node.c_str(), t.addr().c_str());
            state_dirty_ = true;
        }
        if (t.st == Takeover::St::Releasing && !t.in_flight) t.st = Takeover::St::Held;
        t.release_wanted = false;
        return;
    }
    Server* h = pick_holder(*dead, before);
    if (h == nullptr) {
        CLOG_WARN("takeover of %s's address %s:%u: no live server to hold it", dead->name.c_str(),
                  dead->host.c_str(), dead->port);
        return;
    }
    Takeover t;
    t.id = next_takeover_id_++;
    t.node = dead->name;
    t.host = dead->host;
    t.port = dead->port;
    t.holder = h->name;
    t.hook = opts_.takeover == Options::Takeover::Hook ||
             (opts_.takeover == Options::Takeover::Auto && !opts_.takeover_hook.empty());
    t.since_unix_ms = unix_ms();
    takeovers_.push_back(t);
    state_dirty_ = true;
    takeover_step(&takeovers_.back(), mono_ms());
}

// A holder died: what it held goes to another survivor (its listeners died with it; a holder
// that was only cut off closes them when it is reset to rejoin).
void Coordinator::holder_lost(Server* holder) {
    for (size_t i = 0; i < takeovers_.size();) {
        Takeover& t = takeovers_[i];
        if (t.holder != holder->name) {
            ++i;
            continue;
        }
        if (t.st == Takeover::St::Releasing || t.standby) {
            // Its listeners died with it; a standby is placed again on another server.
            takeovers_.erase(takeovers_.begin() + static_cast<long>(i));
            state_dirty_ = true;
            continue;
        }
        Server* node = find(t.node);
        Server* h = node != nullptr ? pick_holder(*node, map_) : nullptr;
        if (h == holder) h = nullptr;
        if (h == nullptr) {
            CLOG_WARN("takeover of %s's address %s: its holder %s is dead and no other live "
                      "server can hold it", t.node.c_str(), t.addr().c_str(), t.holder.c_str());
            takeovers_.erase(takeovers_.begin() + static_cast<long>(i));
            state_dirty_ = true;
            continue;
        }
        CLOG_INFO("takeover of %s's address %s moves from %s (dead) to %s", t.node.c_str(),
                  t.addr().c_str(), t.holder.c_str(), h->name.c_str());
        if (t.pid > 0) {  // a hook run for the old holder: its outcome no longer matters
            kill(t.pid, SIGKILL);
            int status = 0;
            waitpid(t.pid, &status, 0);
            t.pid = -1;
        }
        t.holder = h->name;
        t.st = Takeover::St::Acquiring;
        t.in_flight = false;
        t.id = next_takeover_id_++;  // results of what was under way are ignored
        state_dirty_ = true;
        ++i;
    }
}

void Coordinator::release_takeovers(const std::string& node) {
    for (size_t i = 0; i < takeovers_.size();) {
        Takeover& t = takeovers_[i];
        if (t.node != node) {
            ++i;
            continue;
        }
        if (t.st == Takeover::St::Acquiring) {
            if (t.in_flight) {
                t.release_wanted = true;
                ++i;
            } else {
                takeovers_.erase(takeovers_.begin() + static_cast<long>(i));
                state_dirty_ = true;
            }
            continue;
        }
        if (t.st == Takeover::St::Held) {
            CLOG_INFO("%s is back in sync: %s releases its address %s", node.c_str(),
                      t.holder.c_str(), t.addr().c_str());
            t.st = Takeover::St::Releasing;
            state_dirty_ = true;
        }
        ++i;
    }
}

bool Coordinator::spawn_hook(Takeover* t, const char* op) {
    std::string addr = t->addr();
    const char* argv[] = {opts_.takeover_hook.c_str(), op, t->node.c_str(), addr.c_str(),
                          t->holder.c_str(), nullptr};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, opts_.takeover_hook.c_str(), nullptr, nullptr,
                         const_cast<char* const*>(argv), environ);
    if (rc != 0) {
        CLOG_WARN("takeover hook %s: cannot run it: %s", opts_.takeover_hook.c_str(),
                  strerror(rc));
        return false;
    }
    CLOG_INFO("takeover hook: %s %s %s %s %s (pid %d)", opts_.takeover_hook.c_str(), op,
              t->node.c_str(), addr.c_str(), t->holder.c_str(), static_cast<int>(pid));
    t->pid = pid;
    t->deadline_ms = mono_ms() + opts_.takeover_hook_timeout_ms;
    t->in_flight = true;
    return true;
}

void Coordinator::takeover_step(Takeover* t, int64_t now) {
    (void)now;
    if (t->in_flight || t->st == Takeover::St::Held) return;
    const bool acquire = t->st == Takeover::St::Acquiring;
    Server* h = find(t->holder);
    if (t->hook) {
        if (!spawn_hook(t, acquire ? "acquire" : "release")) {
            takeover_done(t->id, false, "the hook did not start");
        }
        return;
    }
    if (h == nullptr || h->phase == Phase::Dead) {
        // Releasing: the holder's listeners died with it (or close when it is reset).
        // Acquiring: holder_lost moves it on; nothing to send meanwhile.
        if (!acquire) takeover_done(t->id, true, "its holder is gone");
        return;
    }
    if (!h->link->ready()) return;  // the next tick tries again
    if (acquire && t->standby && !t->steered) {
        // The owner first: its listeners get the steering program before the standby's
        // listener joins their group, or the kernel's hash could hand the standby a
        // connection in the moment between its listen() and its own setting.
        Server* o = find(t->node);
        if (o == nullptr || o->phase != Phase::Live || !o->link->ready()) return;
        t->in_flight = true;
        const uint64_t id = t->id;
        bool sent = o->link->send("cluster steer\r\n", ServerLink::Kind::Line, 3000,
                                  [this, id](bool ok, const std::vector<std::string>& l) {
                                      Takeover* t2 = find_takeover(id);
                                      if (t2 == nullptr) return;
                                      t2->in_flight = false;
                                      if (!ok) return;  // link lost: again on a new one
                                      if (l.front() != "OK") {
                                          CLOG_WARN("standby: %s cannot steer its address "
                                                    "%s: %s", t2->node.c_str(),
                                                    t2->addr().c_str(), l.front().c_str());
                                      }
                                      t2->steered = true;  // the standby steers too
                                  });
        if (!sent) t->in_flight = false;
        return;
    }
    std::string wire = std::string(acquire ? "cluster listen " : "cluster unlisten ") +
                       t->addr() + "\r\n";
    t->in_flight = true;
    const uint64_t id = t->id;
    bool sent = h->link->send(wire, ServerLink::Kind::Line, 3000,
                              [this, id](bool ok, const std::vector<std::string>& l) {
                                  Takeover* t2 = find_takeover(id);
                                  if (t2 == nullptr) return;
                                  if (!ok) {  // link lost: try again on a new one
                                      t2->in_flight = false;
                                      return;
                                  }
                                  const std::string& r = l.front();
                                  bool done = r == "OK" ||
                                              (t2->st == Takeover::St::Releasing &&
                                               r.rfind("CLIENT_ERROR not listening", 0) == 0);
                                  takeover_done(id, done, r);
                              });
    if (!sent) t->in_flight = false;
}

void Coordinator::takeover_done(uint64_t id, bool ok, const std::string& what) {
    Takeover* t = find_takeover(id);
    if (t == nullptr) return;
    t->in_flight = false;
    t->pid = -1;
    state_dirty_ = true;
    auto erase = [&] {
        takeovers_.erase(std::find_if(takeovers_.begin(), takeovers_.end(),
                                      [&](const Takeover& x) { return x.id == id; }));
    };
    if (t->st == Takeover::St::Acquiring) {
        if (!ok) {
            ++counters_.takeover_errors;
            CLOG_WARN("takeover of %s's address %s by %s failed: %s", t->node.c_str(),
                      t->addr().c_str(), t->holder.c_str(), what.c_str());
            erase();
            return;
        }
        if (t->standby) {
            CLOG_INFO("standby: %s listens behind %s on %s", t->holder.c_str(), t->node.c_str(),
                      t->addr().c_str());
        } else {
            ++counters_.takeovers;
            CLOG_WARN("takeover: %s answers on %s's address %s (%s)", t->holder.c_str(),
                      t->node.c_str(), t->addr().c_str(), t->hook ? "hook" : "listen");
        }
        t->st = t->release_wanted ? Takeover::St::Releasing : Takeover::St::Held;
        t->release_wanted = false;
        save_state();  // a restarted coordinator knows whom to ask to release it
        return;
    }
    if (t->st == Takeover::St::Releasing) {
        if (ok) {
            ++counters_.takeover_releases;
            CLOG_INFO("takeover released: %s no longer answers on %s's address %s",
                      t->holder.c_str(), t->node.c_str(), t->addr().c_str());
        } else {
            ++counters_.takeover_errors;
            CLOG_WARN("release of %s's address %s by %s failed: %s", t->node.c_str(),
                      t->addr().c_str(), t->holder.c_str(), what.c_str());
        }
        erase();
        save_state();  // a restarted coordinator must not release it again
    }
}

// Address standby (listen mode, doc/coordinator.md): while a server is up and in sync,
// the server that replicates most of its active buckets (the one that takes them over when
// it dies) already listens on its address. The servers' listeners steer every connection to
// the address's first listener, the owner's, so the standby gets nothing until the owner's
// socket closes, and then everything at once: clients never meet a refused port, and the
// coordinator's probe reaching the standby proves the owner gone.
void Coordinator::arm_standbys() {
    if (!opts_.standby) return;
    for (const auto& sp : servers_) {
        Server& x = *sp;
        if (x.phase != Phase::Live || x.joining || x.needs_failover || !x.link->ready() ||
            !takeover_wanted(x) || !loopback(x.host) || address_taken(x)) {
            continue;
        }
        if (opts_.takeover == Options::Takeover::Hook ||
            (opts_.takeover == Options::Takeover::Auto && !opts_.takeover_hook.empty())) {
            continue;  // a floating address can be on one host only
        }
        int xi = map_.node_index(x.name);
        if (xi < 0) continue;
        std::vector<uint32_t> count(map_.nodes.size(), 0);
        for (uint32_t b = 0; b < map_.nbuckets; ++b) {
            if (map_.active[b] != xi || map_.replicas[b].empty()) continue;
            ++count[static_cast<size_t>(map_.replicas[b].front())];
        }
        Server* best = nullptr;
        uint32_t most = 0;
        for (const auto& hp : servers_) {
            Server* h = hp.get();
            int hi = map_.node_index(h->name);
            if (h == &x || hi < 0 || h->phase != Phase::Live || h->needs_failover ||
                !h->link->ready()) {
                continue;
            }
            uint32_t c = count[static_cast<size_t>(hi)];
            if (best == nullptr || c > most) {
                best = h;
                most = c;
            }
        }
        if (best == nullptr) continue;
        Takeover t;
        t.id = next_takeover_id_++;
        t.node = x.name;
        t.host = x.host;
        t.port = x.port;
        t.holder = best->name;
        t.standby = true;
        t.since_unix_ms = unix_ms();
        CLOG_INFO("standby: %s will answer on %s's address %s if it dies", best->name.c_str(),
                  x.name.c_str(), t.addr().c_str());
        takeovers_.push_back(t);
        state_dirty_ = true;
    }
}

void Coordinator::run_takeovers(int64_t now) {
    arm_standbys();
    // Hooks that ended, or ran too long.
    for (size_t i = 0; i < takeovers_.size(); ++i) {
        Takeover& t = takeovers_[i];
        if (t.pid <= 0) continue;
        int status = 0;
        pid_t r = waitpid(t.pid, &status, WNOHANG);
        if (r == 0 && now > t.deadline_ms) {
            CLOG_WARN("takeover hook (pid %d) still running after %u ms: killed",
                      static_cast<int>(t.pid), opts_.takeover_hook_timeout_ms);
            kill(t.pid, SIGKILL);
            r = waitpid(t.pid, &status, 0);
            status = -1;
        }
        if (r == 0) continue;
        bool ok = r == t.pid && status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        std::string what = status == -1 ? "timed out"
                           : WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                               : "killed by a signal";
        t.pid = -1;
        takeover_done(t.id, ok, what);
        --i;  // takeover_done may have erased it; look at this index again
        if (i + 1 > takeovers_.size()) break;
    }
    for (size_t i = 0; i < takeovers_.size(); ++i) {
        Takeover& t = takeovers_[i];
        if (!t.in_flight && t.st != Takeover::St::Held) {
            const uint64_t id = t.id;
            takeover_step(&t, now);
            // takeover_step may erase (a release whose holder is gone): stay in bounds.
            if (i >= takeovers_.size() || takeovers_[i].id != id) --i;
        }
    }
}

}  // namespace mcm::coord
