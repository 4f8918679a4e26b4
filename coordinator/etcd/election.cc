#include "coordinator/etcd/election.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "coordinator/clock.h"
#include "coordinator/log.h"

namespace mcm::coord::etcd {

using nlohmann::json;

std::string leader_key(const std::string& prefix) { return prefix + "/leader"; }
std::string state_key(const std::string& prefix) { return prefix + "/state"; }
std::string epoch_key(const std::string& prefix) { return prefix + "/epoch"; }
std::string coordinators_key(const std::string& prefix) { return prefix + "/coordinators/"; }

namespace {

// Renewals come every sixth of the TTL, so a leader rides out an etcd that does not answer
// for most of the TTL (an etcd leader election takes 1-2 s with etcd's defaults); it stops
// leading a margin before the lease can expire in etcd: a tenth of the TTL, at least 300 ms,
// against clock drift between this machine and etcd's.
int64_t margin_ms(int64_t ttl_ms) { return std::max<int64_t>(300, ttl_ms / 10); }
int64_t renew_every_ms(int64_t ttl_ms) { return std::max<int64_t>(100, ttl_ms / 6); }

constexpr int64_t kPollMs = 100;        // a follower looks at the leader key this often
constexpr int64_t kPeersEveryMs = 1000;  // the list of coordinators
constexpr int64_t kHealthEveryMs = 1000;

bool parse_peer(const std::string& text, PeerInfo* p) {
    try {
        json j = json::parse(text);
        p->id = j.value("id", "");
        p->admin = j.value("admin", "");
        p->since_unix_ms = j.value("since_unix_ms", int64_t{0});
        return !p->id.empty();
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace

int64_t Elector::mono_now() { return mono_ms(); }

Elector::Elector(ElectionConfig c) : cfg_(std::move(c)) {
    view_.id = cfg_.id;
    view_.admin = cfg_.admin;
    view_.ttl_s = cfg_.ttl_s;
    for (const Endpoint& ep : cfg_.url.endpoints) {
        MemberHealth h;
        h.endpoint = ep.str();
        view_.etcd.push_back(std::move(h));
    }
}

Elector::~Elector() { stop(); }

void Elector::start() {
    loop_alive_ms_.store(mono_ms());
    thread_ = std::thread([this] { run(); });
    health_thread_ = std::thread([this] { run_health(); });
}

void Elector::stop() {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (stop_ && !thread_.joinable()) return;
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (health_thread_.joinable()) health_thread_.join();
}

void Elector::resign(const std::string& why) {
    if (lead_until_ms_.exchange(0) != 0) {
        CLOG_CRIT("no longer the leader: %s", why.c_str());
        std::lock_guard<std::mutex> g(view_mu_);
        ++view_.leadership_lost;
    }
    {
        std::lock_guard<std::mutex> g(mu_);
        resign_ = true;
        resign_why_ = why;
    }
    cv_.notify_all();
}

bool Elector::wait(int64_t ms, bool or_resign) {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait_for(g, std::chrono::milliseconds(std::max<int64_t>(ms, 1)),
                 [this, or_resign] { return stop_ || (or_resign && resign_); });
    return !stop_;
}

void Elector::note_error(const std::string& e) {
    std::lock_guard<std::mutex> g(view_mu_);
    if (view_.last_error != e) CLOG_WARN("etcd: %s", e.c_str());
    view_.last_error = e;
}

void Elector::note_ok() {
    std::lock_guard<std::mutex> g(view_mu_);
    last_ok_ms_ = mono_ms();
}

void Elector::lose(const std::string& why) {
    bool was = lead_until_ms_.exchange(0) != 0;
    if (!was) return;
    CLOG_CRIT("no longer the leader: %s", why.c_str());
    std::lock_guard<std::mutex> g(view_mu_);
    ++view_.leadership_lost;
    view_.leading = false;
}

ElectionView Elector::view() const {
    std::lock_guard<std::mutex> g(view_mu_);
    ElectionView v = view_;
    v.leading = leading(mono_ms());
    v.lease_id = lease_.load();
    v.last_etcd_ok_ms_ago = last_ok_ms_ == 0 ? -1 : mono_ms() - last_ok_ms_;
    if (v.leading) {
        v.leader_id = cfg_.id;
        v.leader_admin = cfg_.admin;
    }
    return v;
}

// The campaign and keepalive thread.
void Elector::run() {
    Client etcd(cfg_.url.endpoints, 1000, cfg_.url.tls);
    const std::string lkey = leader_key(cfg_.url.prefix);
    const std::string me_key = coordinators_key(cfg_.url.prefix) + cfg_.id;
    const json me{{"id", cfg_.id}, {"admin", cfg_.admin}, {"since_unix_ms", unix_ms()}};
    int64_t ttl_ms = cfg_.ttl_s * 1000;
    int64_t lease = 0;
    int64_t lease_until = 0;  // by our clock, the lease surely lives until then
    int64_t next_keepalive = 0, next_peers = 0;
    bool stalled_logged = false;
    std::string err;

    while (true) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (stop_) break;
            if (resign_) {
                resign_ = false;
                std::string why = resign_why_;
                lose(why);
                if (lease != 0 && etcd.lease_revoke(lease, &err)) note_ok();
                lease = 0;
                lease_.store(0);
            }
        }
        int64_t now = mono_ms();
        if (lease != 0 && now >= lease_until) {
            lose("the lease was not renewed in time");
            // Best effort: if etcd answers now, followers need not wait for the expiry.
            etcd.set_timeout(200);
            if (etcd.lease_revoke(lease, &err)) note_ok();
            lease = 0;
            lease_.store(0);
        }
        if (lease == 0) {
            int64_t t0 = mono_ms(), granted = 0;
            etcd.set_timeout(std::max<int64_t>(ttl_ms / 2, 500));
            if (!etcd.lease_grant(cfg_.ttl_s, &lease, &granted, &err)) {
                note_error("lease grant: " + err);
                lease = 0;
                if (!wait(kPollMs)) break;
                continue;
            }
            note_ok();
            ttl_ms = granted * 1000;
            lease_until = t0 + ttl_ms - margin_ms(ttl_ms);
            lease_.store(lease);
            next_keepalive = t0 + renew_every_ms(ttl_ms);
            {
                std::lock_guard<std::mutex> g(view_mu_);
                view_.ttl_s = granted;
            }
            if (!etcd.put(me_key, me.dump(), lease, &err)) note_error("register: " + err);
            next_peers = 0;
        }
        // Keep the lease alive, unless the loop thread is stuck.
        now = mono_ms();
        if (now >= next_keepalive) {
            if (now - loop_alive_ms_.load() > ttl_ms / 2) {
                if (!stalled_logged) CLOG_CRIT("the event loop is stuck: not renewing the lease");
                stalled_logged = true;
                next_keepalive = now + kPollMs;
            } else {
                stalled_logged = false;
                int64_t t0 = mono_ms(), ttl = 0;
                etcd.set_timeout(std::clamp<int64_t>(lease_until - t0, 100, 1000));
                if (!etcd.lease_keepalive(lease, &ttl, &err)) {
                    note_error("keepalive: " + err);
                    next_keepalive = mono_ms() + kPollMs;
                } else if (ttl <= 0) {
                    note_error("the lease expired in etcd");
                    lose("the lease expired in etcd");
                    lease = 0;
                    lease_.store(0);
                    continue;
                } else {
                    note_ok();
                    lease_until = t0 + ttl * 1000 - margin_ms(ttl * 1000);
                    next_keepalive = t0 + renew_every_ms(ttl * 1000);
                    // Extends a leadership still held; one resigned or lost meanwhile (0)
                    // stays lost.
                    int64_t held = lead_until_ms_.load();
                    while (held != 0 && !lead_until_ms_.compare_exchange_weak(held, lease_until)) {
                    }
                }
            }
        }
        // The leader key: campaign for it, or check it is still ours.
        etcd.set_timeout(std::max<int64_t>(std::min<int64_t>(lease_until - mono_ms(), 1000), 100));
        std::optional<KeyValue> cur;
        if (!etcd.get(lkey, &cur, &err)) {
            note_error("leader key: " + err);
        } else {
            note_ok();
            bool mine = cur && cur->lease == lease;
            if (lead_until_ms_.load() != 0 && !mine) {
                lose(cur ? "another coordinator holds the leader key" : "the leader key is gone");
            }
            if (!cur) {
                const json info{{"id", cfg_.id}, {"admin", cfg_.admin},
                                {"since_unix_ms", unix_ms()}};
                TxnResult r;
                Txn t;
                t.if_create_revision(lkey, 0).put(lkey, info.dump(), lease).otherwise().get(lkey);
                if (!etcd.txn(t, &r, &err)) {
                    note_error("campaign: " + err);
                    if (err.find("lease not found") != std::string::npos) {  // revoked: anew
                        lease = 0;
                        lease_.store(0);
                    }
                } else if (r.succeeded && mono_ms() < lease_until) {
                    lead_until_ms_.store(lease_until);
                    uint64_t term = ++term_;
                    CLOG_INFO("elected leader (term %llu, lease %llx, TTL %lld s)",
                              static_cast<unsigned long long>(term),
                              static_cast<unsigned long long>(lease),
                              static_cast<long long>(ttl_ms / 1000));
                    std::lock_guard<std::mutex> g(view_mu_);
                    ++view_.elections_won;
                    view_.leader_id = cfg_.id;
                    view_.leader_admin = cfg_.admin;
                    view_.leader_since_unix_ms = unix_ms();
                } else if (!r.gets.empty() && r.gets[0]) {
                    cur = r.gets[0];
                }
            }
            if (cur && cur->lease != lease) {
                PeerInfo p;
                std::lock_guard<std::mutex> g(view_mu_);
                if (parse_peer(cur->value, &p)) {
                    view_.leader_id = p.id;
                    view_.leader_admin = p.admin;
                    view_.leader_since_unix_ms = p.since_unix_ms;
                }
            } else if (!cur && lead_until_ms_.load() == 0) {
                std::lock_guard<std::mutex> g(view_mu_);
                view_.leader_id.clear();
                view_.leader_admin.clear();
            }
        }
        // Who else is there, and the epoch as stored.
        if (mono_ms() >= next_peers) {
            next_peers = mono_ms() + kPeersEveryMs;
            std::vector<KeyValue> kvs;
            std::optional<KeyValue> ep;
            if (etcd.get_prefix(coordinators_key(cfg_.url.prefix), &kvs, &err) &&
                etcd.get(epoch_key(cfg_.url.prefix), &ep, &err)) {
                std::vector<PeerInfo> peers;
                for (const KeyValue& kv : kvs) {
                    PeerInfo p;
                    if (parse_peer(kv.value, &p)) peers.push_back(std::move(p));
                }
                std::lock_guard<std::mutex> g(view_mu_);
                view_.coordinators = std::move(peers);
                view_.epoch = ep ? std::strtoll(ep->value.c_str(), nullptr, 10) : -1;
            }
        }
        int64_t pause = std::min<int64_t>(kPollMs, next_keepalive - mono_ms());
        if (!wait(pause)) break;
    }
    // A graceful stop hands over at once: revoking the lease deletes the leader key.
    lose("shutting down");
    if (lease != 0) {
        etcd.set_timeout(500);
        if (!etcd.lease_revoke(lease, &err)) CLOG_WARN("etcd: lease revoke: %s", err.c_str());
    }
    lease_.store(0);
}

// Each member's own status, for `mcctl status`.
void Elector::run_health() {
    Client etcd(cfg_.url.endpoints, 500, cfg_.url.tls);
    std::string err;
    do {
        std::vector<MemberHealth> out;
        for (const Endpoint& ep : cfg_.url.endpoints) {
            MemberHealth h;
            h.endpoint = ep.str();
            MemberStatus st;
            if (etcd.status(ep, &st, &err)) {
                h.ok = st.errors.empty();
                h.version = st.version;
                h.raft_leader = st.leader_id != 0 && st.leader_id == st.member_id;
                h.raft_term = st.raft_term;
                h.db_size = st.db_size;
                if (st.leader_id == 0) {
                    h.ok = false;
                    h.error = "no raft leader";
                }
                for (const std::string& e : st.errors) h.error += (h.error.empty() ? "" : "; ") + e;
            } else {
                h.error = err;
            }
            out.push_back(std::move(h));
        }
        std::lock_guard<std::mutex> g(view_mu_);
        view_.etcd = std::move(out);
    } while (wait(kHealthEveryMs, false));
}

}  // namespace mcm::coord::etcd
