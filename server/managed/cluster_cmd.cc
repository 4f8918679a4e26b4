// The `cluster` admin commands of managed mode (doc/managed.md) and its stats groups:
//   cluster map                       any client: the map this server holds
//   cluster auth / cluster auth <hex> challenge-response with the cluster secret
//   cluster setmap <bytes>            then the map text: install it (newer epochs only)
//   cluster state <range> <state>     set buckets' local state (active replica pending dead)
//   cluster drop <range>              drop the buckets' items
//   cluster reset                     every bucket dead, every item dropped, no map
//   cluster peer [binary]             this connection is a peer's forwarding link (binary:
//                                     it speaks the binary protocol from here on)
//   cluster repl <node> <nonce> [<to>]
//                                     this connection is a peer's replication link: the socket
//                                     goes to the replication thread (doc/replication.md);
//                                     refused when <to> is not this server (an address taken
//                                     over from <to>)
//   cluster listen <host>:<port>      address takeover: also serve clients on that address
//   cluster unlisten <host>:<port>    stop (doc/managed.md, Address takeover)
//   cluster steer                     before a standby joins this server's address: its
//                                     own listeners take every connection (standby.h)
//   cluster handoff <bucket> <epoch>  a planned move: the bucket stops taking writes here
//                                     -> HANDOFF <bucket> <seqno> (its last write's number)
//   cluster handoff <range> cancel    such buckets take writes again -> OK <n>
//   cluster applied <bucket>          -> APPLIED <bucket> <state> <seqno> <in_sync> <items>
//                                     <bytes>: how far this server holds the bucket
//   cluster dump <bucket>             every live item of the bucket, with its metadata
//                                     (for comparing a replica with its active)
//   cluster hb <lease_ms> <token> <quiet_ms>
//                                     the coordinator's heartbeat: renews the lease, answers
//                                     the epoch and every bucket's position (doc/coordinator.md)
//   cluster lease <lease_ms> <token> <quiet_ms>
//                                     renews the lease only (sent right after each heartbeat,
//                                     so the lease runs from a token issued one round trip ago)
// Everything but map and auth needs an authenticated connection.
#include <chrono>
#include <charconv>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/errors.h"
#include "proto/base64.h"
#include "replication/auth.h"
#include "replication/replicator.h"
#include "server/managed/cluster.h"
#include "server/managed/cluster_parse.h"
#include "server/dispatch.h"
#include "server/listener.h"
#include "server/worker.h"

namespace mcm::server {

namespace {

constexpr size_t kMaxMapBytes = 16 * 1024 * 1024;

}  // namespace

// The words are parsed by parse_cluster_command (cluster_parse.cc, pure and fuzzed); this
// acts on what it found.
Next Dispatcher::cluster(const proto::Request& req, OutBuf& out, PendingStore* p,
                         size_t* swallow) {
    using Kind = ClusterCmd::Kind;
    Cluster* cl = ctx_.cluster;
    if (cl == nullptr) {  // standalone: no such command, as memcached
        out.append("ERROR\r\n");
        return Next::Continue;
    }
    const ClusterCmd c = parse_cluster_command(req.args, cl->nbuckets(), cl->node_id());
    if (c.kind == Kind::Map) {
        std::shared_ptr<const repl::BucketMap> m = cl->map();
        if (m == nullptr) {
            out.append("MAP " + std::to_string(cl->epoch()) + " " +
                       std::to_string(cl->nbuckets()) + "\r\nEND\r\n");
        } else {
            out.append(m->format());
        }
        return Next::Continue;
    }
    // Peer TLS (-o peer_tls_*): only a connection that showed a certificate from the cluster's
    // CA may even try the secret; on any other, the control commands do not exist.
    if ((c.kind == Kind::AuthChallenge || c.kind == Kind::AuthProof) && ctx_.peer_tls != nullptr &&
        !p->peer_tls) {
        cl->peer_tls_refused.fetch_add(1, std::memory_order_relaxed);
        out.append("CLIENT_ERROR cluster auth needs a peer TLS connection\r\n");
        return Next::Continue;
    }
    if (c.kind == Kind::AuthChallenge) {
        p->cluster_nonce = repl::random_hex32();
        out.append("CHALLENGE " + p->cluster_nonce + "\r\n");
        return Next::Continue;
    }
    if (c.kind == Kind::AuthProof) {
        bool ok = cl->verify(p->cluster_nonce, c.word);
        p->cluster_nonce.clear();  // one try per challenge
        if (ok) {
            p->cluster_auth = true;
            out.append("OK\r\n");
        } else {
            cl->auth_failures.fetch_add(1, std::memory_order_relaxed);
            out.append("CLIENT_ERROR authentication failed\r\n");
        }
        return Next::Continue;
    }
    if (!p->cluster_auth && c.needs_auth) {
        out.append("CLIENT_ERROR cluster command needs authentication\r\n");
        if (c.kind == Kind::SetMap) {  // the map text that follows must not run as commands
            *swallow = static_cast<size_t>(c.len) + 2;
            return Next::Swallow;
        }
        return Next::Continue;
    }
    cl->last_control_unix.store(static_cast<int64_t>(time(nullptr)), std::memory_order_relaxed);
    switch (c.kind) {
        case Kind::SetMap:
            if (c.len > kMaxMapBytes) {
                out.append("CLIENT_ERROR bad map: too large\r\n");
                *swallow = static_cast<size_t>(c.len) + 2;
                return Next::Swallow;
            }
            p->kind = PendingStore::Kind::ClusterMap;
            p->blob.assign(static_cast<size_t>(c.len) + 2, '\0');
            p->wire_len = c.len + 2;
            return Next::ReadValue;
        case Kind::State:
            cl->set_states(c.first, c.last, c.state);
            out.append("OK\r\n");
            return Next::Continue;
        case Kind::BadState:
            out.append("CLIENT_ERROR bad bucket state\r\n");
            return Next::Continue;
        case Kind::Drop:
            out.append("OK " + std::to_string(ctx_.store.drop_buckets(c.first, c.last)) + "\r\n");
            return Next::Continue;
        case Kind::Peer:
            // A peer's forwarding link: never forward again; "binary": binary requests follow.
            p->cluster_peer = true;
            p->switch_binary = c.binary;
            out.append("OK\r\n");
            return Next::Continue;
        case Kind::ReplElsewhere:
            // The dialer meant another server whose address this one holds (address
            // takeover): refused before the socket is adopted, so the link this server keeps
            // with the dialer is not replaced by one the dialer is about to drop.
            out.append("CLIENT_ERROR this is " + cl->node_id() + ", not " + std::string(c.word) +
                       "\r\n");
            return Next::Continue;
        case Kind::Repl: {
            if (ctx_.replicator == nullptr) break;  // ERROR
            // Only a peer of the current map may open a replication link: this server's own
            // name, or one the map does not hold, would leave a link (and its stats) that no
            // map ever asks for. A peer the map adds a moment later redials (200 ms).
            std::shared_ptr<const repl::BucketMap> m = cl->map();
            if (!repl::valid_node_name(c.word)) {
                cl->repl_refused.fetch_add(1, std::memory_order_relaxed);
                out.append("CLIENT_ERROR bad node name\r\n");
                return Next::Continue;
            }
            if (c.word == cl->node_id() || m == nullptr || m->node_index(c.word) < 0) {
                cl->repl_refused.fetch_add(1, std::memory_order_relaxed);
                out.append("CLIENT_ERROR " + std::string(c.word) + " is not a peer in the map" +
                           (m == nullptr ? "" : " of epoch " + std::to_string(m->epoch)) +
                           "\r\n");
                return Next::Continue;
            }
            p->repl_handoff = true;
            p->repl_node.assign(c.word);
            p->repl_nonce.assign(c.nonce);
            return Next::Continue;
        }
        case Kind::Dump:
            write_bucket_dump(c.first, out);
            return Next::Continue;
        case Kind::Heartbeat:
            write_heartbeat(c.lease_ms, c.token, c.quiet_ms, c.full, p, out);
            return Next::Continue;
        case Kind::BadHeartbeat:
            out.append(c.full ? "CLIENT_ERROR bad heartbeat\r\n" : "CLIENT_ERROR bad lease\r\n");
            return Next::Continue;
        case Kind::Listen:
        case Kind::Unlisten: {
            if (ctx_.listener == nullptr) {
                out.append("SERVER_ERROR no listener\r\n");
                return Next::Continue;
            }
            std::string addr(c.word);
            std::string err = c.kind == Kind::Listen ? ctx_.listener->takeover_listen(addr)
                                                     : ctx_.listener->takeover_unlisten(addr);
            out.append(err.empty() ? std::string("OK\r\n") : err + "\r\n");
            return Next::Continue;
        }
        case Kind::HandoffCancel:
            out.append("OK " + std::to_string(cl->cancel_handoffs(c.first, c.last)) + "\r\n");
            return Next::Continue;
        case Kind::Handoff:
            begin_handoff(c.first, c.epoch, out);
            return Next::Continue;
        case Kind::Applied: {
            const uint32_t b = c.first;
            repl::BucketState s = cl->state(b);
            uint64_t seqno = ctx_.store.bucket_seqno(b);
            bool in_sync = false;
            if (s == repl::BucketState::Replica && ctx_.replicator != nullptr) {
                ctx_.replicator->replica_progress(b, &seqno, &in_sync);
            }
            std::vector<store::BucketCounts> counts = ctx_.store.bucket_counts();
            uint64_t items = b < counts.size() ? counts[b].items : 0;
            uint64_t bytes = b < counts.size() ? counts[b].bytes : 0;
            out.append("APPLIED " + std::to_string(b) + " " + std::string(repl::state_name(s)) +
                       " " + std::to_string(seqno) + " " + (in_sync ? "1" : "0") + " " +
                       std::to_string(items) + " " + std::to_string(bytes) + "\r\n");
            return Next::Continue;
        }
        case Kind::Steer: {
            std::string err = ctx_.listener == nullptr ? "SERVER_ERROR no listener"
                                                       : ctx_.listener->steer_own();
            out.append(err.empty() ? std::string("OK\r\n") : err + "\r\n");
            return Next::Continue;
        }
        case Kind::Reset:
            // A server being reset rejoins holding nothing: nor other servers' addresses.
            if (ctx_.listener != nullptr) ctx_.listener->takeover_unlisten_all();
            cl->reset();
            (void)ctx_.store.drop_buckets(0, cl->nbuckets() - 1);
            out.append("OK\r\n");
            return Next::Continue;
        case Kind::BadRange:
            out.append("CLIENT_ERROR bad bucket range\r\n");
            return Next::Continue;
        case Kind::Map:
        case Kind::AuthChallenge:
        case Kind::AuthProof:
        case Kind::Unknown: break;
    }
    out.append("ERROR\r\n");
    return Next::Continue;
}

// ITEM <key> <flags> <exptime unix, 0 never> <cas> <bytes> <marks>\r\n<data>\r\n ... END.
// marks: "-", or letters s (stale) and b (binary key, then printed in base64).
void Dispatcher::write_bucket_dump(uint32_t bucket, OutBuf& out) {
    std::string text;
    int64_t started = ctx_.clock.process_started();
    (void)ctx_.store.visit_bucket(bucket, [&](const store::Item& it) {
        std::string marks;
        uint8_t f = it.iflags.load(std::memory_order_relaxed);
        if (f & store::Item::kStale) marks += 's';
        std::string key(it.key());
        if (f & store::Item::kKeyBinary) {
            marks += 'b';
            std::string enc(proto::base64_encoded_size(key.size()), '\0');
            enc.resize(proto::base64_encode(key, enc.data()));
            key = std::move(enc);
        }
        if (marks.empty()) marks = "-";
        int64_t exp = it.exptime == 0 ? 0 : started + it.exptime;
        text += "ITEM " + key + " " + std::to_string(it.client_flags) + " " +
                std::to_string(exp) + " " + std::to_string(it.cas) + " " +
                std::to_string(it.nbytes - 2) + " " + marks + "\r\n";
        text.append(it.value(), it.nbytes);
    });
    out.append(text);
    out.append("END\r\n");
}

// The lease runs from when the token being returned was issued, not from now: a heartbeat
// that waited in a buffer while this server was paused grants nothing it should not.
void Dispatcher::write_heartbeat(uint32_t lease_ms, uint64_t token, uint32_t quiet_ms,
                                 bool full, PendingStore* p, OutBuf& out) {
    Cluster& cl = *ctx_.cluster;
    if (full) cl.heartbeats.fetch_add(1, std::memory_order_relaxed);
    if (token != 0 && token == p->hb_token) cl.grant_lease(p->hb_issued_us, lease_ms, quiet_ms);
    static std::atomic<uint64_t> next_token{1};
    p->hb_token = next_token.fetch_add(1, std::memory_order_relaxed);
    p->hb_issued_us = mono_us();
    if (!full) {  // cluster lease: LEASE <token> <lease_left_ms>
        out.append("LEASE " + std::to_string(p->hb_token) + " " +
                   std::to_string(cl.lease_left_ms()) + "\r\n");
        return;
    }
    std::string text = "HB " + cl.node_id() + " " + std::to_string(cl.epoch()) + " " +
                       cl.boot_id() + " " + std::to_string(p->hb_token) + " " +
                       std::to_string(cl.lease_left_ms()) + " " + (cl.serving() ? "0" : "1") +
                       "\r\n";
    if (ctx_.replicator != nullptr) {
        for (uint32_t b = 0; b < cl.nbuckets(); ++b) {
            const size_t at = text.size();
            ctx_.replicator->heartbeat_line(b, cl.state(b), &text);
            // H: an active bucket pending for a planned handover (its writes parked).
            if (cl.in_handoff(b) && text.size() > at && text[at] == 'A') text[at] = 'H';
        }
    }
    text += "END\r\n";
    out.append(text);
}

// The old owner's half of a planned move (doc/coordinator.md, "Moving a bucket"). The bucket
// turns pending: writes park from now on. A request thread may have read "active" just
// before and still be writing; every other worker passing its loop once proves those writes
// done (this worker is here, not in one). Then the bucket's last sequence number is final:
// the new owner takes over once it has applied it.
void Dispatcher::begin_handoff(uint32_t b, uint64_t epoch, OutBuf& out) {
    Cluster& cl = *ctx_.cluster;
    std::string err = cl.begin_handoff(b, epoch);
    if (!err.empty()) {
        out.append(err + "\r\n");
        return;
    }
    Worker* me = Worker::current();
    std::vector<std::pair<Worker*, uint64_t>> wait;
    for (Worker* w : ctx_.workers) {
        if (w == me) continue;
        wait.emplace_back(w, w->passes());
        w->poke();
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    for (auto& [w, seen] : wait) {
        while (w->passes() == seen) {
            if (std::chrono::steady_clock::now() > until) {
                cl.cancel_handoffs(b, b);
                out.append("SERVER_ERROR a worker did not pass in 1 s; handoff cancelled\r\n");
                return;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }
    uint64_t seqno = 0;
    {
        std::lock_guard<std::mutex> g(ctx_.store.bucket_mutex(b));
        seqno = ctx_.store.bucket_seqno_locked(b);
    }
    if (ctx_.replicator != nullptr) ctx_.replicator->nudge(b);  // the last records go now
    out.append("HANDOFF " + std::to_string(b) + " " + std::to_string(seqno) + "\r\n");
}

void Dispatcher::finish_cluster_map(PendingStore* p, OutBuf& out) {
    std::string text = std::move(p->blob);
    p->blob.clear();
    if (text.size() < 2 || text[text.size() - 2] != '\r' || text.back() != '\n') {
        out.append(proto::kBadDataChunk);
        return;
    }
    text.resize(text.size() - 2);
    repl::BucketMap m;
    std::string err;
    if (!repl::BucketMap::parse(text, &m, &err)) {
        out.append("CLIENT_ERROR bad map: " + err + "\r\n");
        return;
    }
    switch (ctx_.cluster->install(m, &err)) {
        case Cluster::Install::Ok: out.append("OK\r\n"); break;
        case Cluster::Install::Stale: out.append("CLIENT_ERROR stale map: " + err + "\r\n"); break;
        case Cluster::Install::Invalid: out.append("CLIENT_ERROR bad map: " + err + "\r\n"); break;
    }
}

void write_cluster_stats(ServerContext& ctx, OutBuf& out) {
    Cluster& cl = *ctx.cluster;
    auto line = [&](std::string_view k, const std::string& v) {
        out.append("STAT ");
        out.append(k);
        out.append(" ");
        out.append(v);
        out.append("\r\n");
    };
    uint32_t counts[4] = {0, 0, 0, 0};
    for (uint32_t b = 0; b < cl.nbuckets(); ++b) ++counts[static_cast<int>(cl.state(b))];
    int64_t last = cl.last_control_unix.load(std::memory_order_relaxed);
    line("node_id", cl.node_id());
    line("map_epoch", std::to_string(cl.epoch()));
    line("buckets", std::to_string(cl.nbuckets()));
    line("buckets_active", std::to_string(counts[static_cast<int>(repl::BucketState::Active)]));
    line("buckets_replica", std::to_string(counts[static_cast<int>(repl::BucketState::Replica)]));
    line("buckets_pending", std::to_string(counts[static_cast<int>(repl::BucketState::Pending)]));
    line("buckets_dead", std::to_string(counts[static_cast<int>(repl::BucketState::Dead)]));
    line("bucket_forward", ctx.settings.bucket_forward ? "yes" : "no");
    line("secs_since_control", last == 0 ? "-1" : std::to_string(time(nullptr) - last));
    line("forwarded", std::to_string(cl.forwarded.load()));
    line("forward_errors", std::to_string(cl.forward_errors.load()));
    line("forward_park_ms", std::to_string(ctx.settings.forward_park_ms));
    line("forward_parked", std::to_string(cl.forward_parked.load()));
    line("forward_park_resumed", std::to_string(cl.forward_park_resumed.load()));
    line("forward_park_timeouts", std::to_string(cl.forward_park_timeouts.load()));
    line("forward_peer_behind", std::to_string(cl.forward_peer_behind.load()));
    line("not_my_bucket", std::to_string(cl.not_my_bucket.load()));
    line("fenced", cl.serving() ? "no" : "yes");
    line("fenced_refusals", std::to_string(cl.fenced_refusals.load()));
    line("lease_left_ms", std::to_string(cl.lease_left_ms()));
    line("heartbeats", std::to_string(cl.heartbeats.load()));
    line("heartbeat_gap_max_ms", std::to_string(cl.hb_gap_max_ms.load()));
    line("boot_id", cl.boot_id());
    line("maps_installed", std::to_string(cl.maps_installed.load()));
    line("maps_refused", std::to_string(cl.maps_refused.load()));
    line("handoffs", std::to_string(cl.handoffs_begun.load()));
    line("handoffs_cancelled", std::to_string(cl.handoffs_cancelled.load()));
    line("auth_failures", std::to_string(cl.auth_failures.load()));
    line("peer_tls", ctx.peer_tls != nullptr ? "yes" : "no");
    line("peer_tls_refused", std::to_string(cl.peer_tls_refused.load()));
    line("peer_tls_handshake_errors", std::to_string(cl.peer_tls_handshake_errors.load()));
    line("repl_links_refused", std::to_string(cl.repl_refused.load()));
    std::vector<std::string> tk;
    if (ctx.listener != nullptr) tk = ctx.listener->takeover_addrs();
    std::string addrs;
    for (const std::string& a : tk) addrs += (addrs.empty() ? "" : ",") + a;
    line("takeover_listeners", std::to_string(tk.size()));
    line("takeover_addrs", addrs.empty() ? "-" : addrs);
    out.append("END\r\n");
}

void write_bucket_stats(ServerContext& ctx, OutBuf& out) {
    Cluster& cl = *ctx.cluster;
    std::vector<store::BucketCounts> c = ctx.store.bucket_counts();
    for (uint32_t b = 0; b < cl.nbuckets(); ++b) {
        repl::BucketState s = cl.state(b);
        uint64_t items = b < c.size() ? c[b].items : 0;
        uint64_t bytes = b < c.size() ? c[b].bytes : 0;
        if (s == repl::BucketState::Dead && items == 0) continue;
        std::string p = "STAT bucket:" + std::to_string(b) + ":";
        out.append(p + "state " + std::string(repl::state_name(s)) + "\r\n");
        out.append(p + "items " + std::to_string(items) + "\r\n");
        out.append(p + "bytes " + std::to_string(bytes) + "\r\n");
        if (ctx.replicator != nullptr) out.append(ctx.replicator->bucket_stats_text(b));
    }
    out.append("END\r\n");
}

}  // namespace mcm::server
