// Managed mode's request routing: a key whose bucket is active here runs here; a write to a
// pending bucket waits a little for the handover; anything else is forwarded to the bucket's
// active server (server/forward.cc) or, with -o bucket_forward=0 or on a peer link (a request
// is forwarded once at most), refused with SERVER_ERROR NOT_MY_BUCKET <bucket> <epoch>.
// Waiting is parking (-o forward_park_ms, forward.cc): a request with no owner in the map,
// whose owner failed, or that writes to a pending bucket, waits on its connection for the
// next map (the cluster generation) and is then routed again (reroute).
#include <chrono>
#include <thread>

#include "proto/binary.h"
#include "server/managed/cluster.h"
#include "server/dispatch.h"
#include "proto/text_parser.h"

#include <cstring>

namespace mcm::server {

using proto::Cmd;
using proto::Request;

namespace {

constexpr auto kPendingWait = std::chrono::milliseconds(250);
constexpr unsigned kPendingWaitMs = 250;

bool is_write(Cmd c) noexcept {
    switch (c) {
        case Cmd::Get:
        case Cmd::Gets:
        case Cmd::MetaGet:
        case Cmd::MetaDebug: return false;
        default: return true;
    }
}

}  // namespace

Dispatcher::Where Dispatcher::where(uint32_t b, bool write, const PendingStore* p) {
    Cluster& cl = *ctx_.cluster;
    repl::BucketState s = cl.state(b);
    if (s == repl::BucketState::Pending && write) {
        // A handover is under way. A connection's request waits for it parked (the worker
        // goes on); a UDP request, or any with parking off, holds this worker while it waits.
        if (ctx_.settings.forward_park_ms > 0 && !p->no_park) return Where::Wait;
        auto until = std::chrono::steady_clock::now() + kPendingWait;
        while (s == repl::BucketState::Pending && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            s = cl.state(b);
        }
    }
    // A pending bucket's data is here: reads are served (a promoted replica waits as pending
    // for a moment, a handover's old owner too); its writes waited above.
    if (s == repl::BucketState::Active || (s == repl::BucketState::Pending && !write)) {
        return cl.serving() ? Where::Local : Where::Refuse;  // fenced: refused, never stale
    }
    if (p->cluster_peer || !ctx_.settings.bucket_forward) return Where::Refuse;
    // A server whose lease ran out forwards nothing either: the request may have sat in its
    // socket through a pause while the client wrote a newer value elsewhere.
    return cl.serving() ? Where::Remote : Where::Refuse;
}

std::string Dispatcher::not_my_bucket(uint32_t b) {
    Cluster& cl = *ctx_.cluster;
    if (!cl.serving()) {
        // The lease ran out: ours by the map held may have moved, and the others are not
        // forwarded (see where()).
        cl.fenced_refusals.fetch_add(1, std::memory_order_relaxed);
        return "FENCED " + std::to_string(b) + " " + std::to_string(cl.epoch());
    }
    cl.not_my_bucket.fetch_add(1, std::memory_order_relaxed);
    return "NOT_MY_BUCKET " + std::to_string(b) + " " + std::to_string(cl.epoch());
}

bool Dispatcher::route_text(const Request& req, OutBuf& out, PendingStore* p, size_t* swallow,
                            Next* next) {
    Cluster& cl = *ctx_.cluster;
    // The common case first: one key whose bucket is active here (a state load, no call).
    std::string_view one = req.key;
    if (one.empty() && !req.keys.empty() && req.keys.find(' ') == std::string_view::npos &&
        req.keys.size() <= proto::kKeyMaxLength) {
        one = req.keys;  // a get with one key
    }
    if (!one.empty()) {
        uint32_t b = cl.bucket(one);
        // The store places the item by bucket too: spare it a second CRC.
        store::bucket_hint = {one.data(), one.size(), b};
        if (cl.state(b) == repl::BucketState::Active && cl.serving()) return true;
    }
    const bool write = is_write(req.cmd);
    uint32_t bucket = 0;
    bool remote = false;
    switch (req.cmd) {
        case Cmd::Get:
        case Cmd::Gets:
        case Cmd::Gat:
        case Cmd::Gats: {
            proto::KeyCursor keys(req.keys);
            std::string_view key;
            while (keys.next(&key)) {
                if (key.size() > proto::kKeyMaxLength) return true;  // the local path's error
                uint32_t b = cl.bucket(key);
                Where w = where(b, write, p);
                if (w == Where::Local) continue;
                if (w == Where::Refuse) {
                    out.append("SERVER_ERROR " + not_my_bucket(b) + "\r\n");
                    *next = Next::Continue;
                    return false;
                }
                remote = true;
            }
            if (!remote) return true;
            *next = forward_text(req, out, p, swallow);
            return false;
        }
        case Cmd::Set:
        case Cmd::Add:
        case Cmd::Replace:
        case Cmd::Append:
        case Cmd::Prepend:
        case Cmd::Cas:
        case Cmd::Delete:
        case Cmd::Incr:
        case Cmd::Decr:
        case Cmd::Touch:
        case Cmd::MetaGet:
        case Cmd::MetaSet:
        case Cmd::MetaDelete:
        case Cmd::MetaArith:
        case Cmd::MetaDebug: {
            bucket = cl.bucket(req.key);
            Where w = where(bucket, write, p);
            if (w == Where::Local) return true;
            if (w == Where::Remote || w == Where::Wait) {
                *next = forward_text(req, out, p, swallow, w == Where::Wait);
                return false;
            }
            refuse_text(req, out, bucket);  // meta errors ignore q, as all meta errors do
            *next = Next::Continue;
            if (proto::cmd_flags(req.cmd) & proto::kStore) {  // its value must not run
                *swallow = static_cast<size_t>(req.value_len) + 2;
                *next = Next::Swallow;
            }
            return false;
        }
        default: return true;  // not about a key
    }
}

bool Dispatcher::route_binary(const proto::bin::BinRequest& r, OutBuf& out, PendingStore* p,
                              size_t* swallow, Next* next) {
    namespace bin = proto::bin;
    if (r.keylen == 0 || r.key.size() > proto::kKeyMaxLength) return true;
    switch (r.opcode) {
        case bin::Stat:
        case bin::Version:
        case bin::Noop:
        case bin::Flush:
        case bin::FlushQ:
        case bin::Quit:
        case bin::QuitQ:
        case bin::Verbosity: return true;
        default: break;
    }
    const bool write = !(r.opcode == bin::Get || r.opcode == bin::GetQ || r.opcode == bin::GetK ||
                         r.opcode == bin::GetKQ);
    uint32_t b = ctx_.cluster->bucket(r.key);
    store::bucket_hint = {r.key.data(), r.key.size(), b};
    Where w = where(b, write, p);
    if (w == Where::Local) return true;
    if (w == Where::Remote || w == Where::Wait) {
        *next = forward_binary(r, out, p, swallow, w == Where::Wait);
        return false;
    }
    // 0x07: "not my vbucket", the status Couchbase-style clients know for this.
    std::string body = not_my_bucket(b);
    char h[bin::kHeaderLen];
    bin::write_header(h, r.opcode, 0x07, 0, 0, static_cast<uint32_t>(body.size()), r.opaque, 0);
    out.append(std::string_view(h, sizeof(h)));
    out.append(body);
    *next = Next::Continue;
    if (r.value_len() != 0) {
        *swallow = r.value_len();
        *next = Next::Swallow;
    }
    return false;
}

namespace {

enum class Owner : uint8_t { Found, None, Here };

// The active server of a bucket in the map held. None: no map, or the map names no active
// server (a request may wait for the next map); Here: the map names this server, but the
// bucket's state says otherwise (an operator's `cluster state`, a handover that did not end).
Owner owner_of(const Cluster& cl, uint32_t b, std::string* name, std::string* host,
               uint16_t* port) {
    std::shared_ptr<const repl::BucketMap> m = cl.map();
    if (m == nullptr || b >= m->nbuckets || m->active[b] == repl::kNoNode) return Owner::None;
    const repl::BucketMap::Node& n = m->nodes[m->active[b]];
    if (n.name == cl.node_id()) return Owner::Here;
    *name = n.name;
    *host = n.host;
    *port = n.port;
    return Owner::Found;
}

bool is_meta(Cmd c) noexcept {
    switch (c) {
        case Cmd::MetaGet:
        case Cmd::MetaSet:
        case Cmd::MetaDelete:
        case Cmd::MetaArith:
        case Cmd::MetaDebug:
        case Cmd::MetaNoop: return true;
        default: return false;
    }
}

// "set k 0 0 1 noreply\r\n" -> "set k 0 0 1\r\n" (noreply is always the last word).
void strip_noreply(std::string* line) {
    size_t end = line->size();
    while (end > 0 && ((*line)[end - 1] == '\n' || (*line)[end - 1] == '\r')) --end;
    constexpr std::string_view kWord = "noreply";
    if (end < kWord.size()) return;
    if (std::string_view(*line).substr(end - kWord.size(), kWord.size()) != kWord) return;
    size_t start = end - kWord.size();
    if (start == 0 || ((*line)[start - 1] != ' ' && (*line)[start - 1] != '\t')) return;
    while (start > 0 && ((*line)[start - 1] == ' ' || (*line)[start - 1] == '\t')) --start;
    line->erase(start, end - start);
}

bool binary_write(uint8_t op) noexcept {
    namespace bin = proto::bin;
    return !(op == bin::Get || op == bin::GetQ || op == bin::GetK || op == bin::GetKQ);
}

}  // namespace

// NOT_MY_BUCKET (or FENCED) for a keyed text command, as its local errors go: text noreply
// silences it, meta q does not (meta errors are always sent).
void Dispatcher::refuse_text(const Request& req, OutBuf& out, uint32_t b) {
    std::string why = not_my_bucket(b);
    if (!req.noreply || is_meta(req.cmd)) out.append("SERVER_ERROR " + why + "\r\n");
}

Next Dispatcher::forward_text(const Request& req, OutBuf& out, PendingStore* p, size_t* swallow,
                              bool pending) {
    Cluster& cl = *ctx_.cluster;
    const bool park = ctx_.settings.forward_park_ms > 0;
    auto job = std::make_unique<ForwardJob>();
    job->from_peer = p->cluster_peer;
    // Read before the map: a map installed after this changes the generation, so a request
    // parked for want of an owner cannot miss it.
    job->route_gen = cl.generation();
    const bool is_get = req.cmd == Cmd::Get || req.cmd == Cmd::Gets || req.cmd == Cmd::Gat ||
                     req.cmd == Cmd::Gats;
    if (is_get && req.keys.find_first_of(" \t") == std::string_view::npos &&
        req.keys.size() <= proto::kKeyMaxLength) {
        // One key, owned by one other server (route_text saw it is not local): the request
        // goes as it came and the owner's reply comes back as it is, as for a set.
        uint32_t b = cl.bucket(req.keys);
        if (where(b, req.cmd == Cmd::Gat || req.cmd == Cmd::Gats, p) == Where::Remote &&
            owner_of(cl, b, &job->node, &job->host, &job->port) == Owner::Found) {
            job->kind = ForwardJob::Kind::Text;
            job->request = std::string(req.raw);
            job->park_bucket = b;
            p->forward = std::move(job);
            return Next::Forward;
        }
        job->node.clear();
    }
    if (is_get) {
        // Split by owner. Local keys are read now (a later command of this connection must
        // not be seen by them); the reply is put together in the request's key order when
        // the other servers have answered.
        job->kind = ForwardJob::Kind::MultiGet;
        job->get_cmd = std::string(proto::cmd_name(req.cmd));
        if (req.cmd == Cmd::Gat || req.cmd == Cmd::Gats) {
            job->get_cmd += " " + std::to_string(req.exptime);
        }
        bool unrouted = false;
        proto::KeyCursor keys(req.keys);
        std::string_view key;
        while (keys.next(&key)) {
            uint32_t b = cl.bucket(key);
            std::string node, host;
            uint16_t port = 0;
            Where w = where(b, req.cmd == Cmd::Gat || req.cmd == Cmd::Gats, p);
            if (w == Where::Wait) {  // a gat for a bucket pending here
                node = ForwardJob::kUnrouted;
                if (!unrouted) job->park_bucket = b;
                unrouted = true;
                job->park_ms = kPendingWaitMs;
            } else if (w == Where::Local) {
                node.clear();
                if (!job->blocks.count(std::string(key))) {
                    Request one = req;
                    one.keys = key;
                    OutBuf tmp(&ctx_.store);
                    get(one, tmp, false);
                    std::string block;
                    tmp.drain_to(&block);
                    job->blocks[std::string(key)] = std::move(block);
                }
            } else {
                Owner o = owner_of(cl, b, &node, &host, &port);
                if (o == Owner::Found) {
                    job->addr[node] = {host, port};
                } else if (o == Owner::None && park) {
                    node = ForwardJob::kUnrouted;  // waits for a map that names an owner
                    if (!unrouted) job->park_bucket = b;
                    unrouted = true;
                } else {
                    out.append("SERVER_ERROR " + not_my_bucket(b) + "\r\n");
                    return Next::Continue;
                }
            }
            job->keys.emplace_back(key);
            job->owner.push_back(std::move(node));
        }
        p->forward = std::move(job);
        return Next::Forward;
    }
    uint32_t b = cl.bucket(req.key);
    Owner o = pending ? Owner::None : owner_of(cl, b, &job->node, &job->host, &job->port);
    if (pending) job->park_ms = kPendingWaitMs;  // a write waiting for a handover here
    if (o == Owner::Here || (o == Owner::None && !park)) {
        refuse_text(req, out, b);
        if (proto::cmd_flags(req.cmd) & proto::kStore) {
            *swallow = static_cast<size_t>(req.value_len) + 2;
            return Next::Swallow;
        }
        return Next::Continue;
    }
    // Owner::None with parking: node stays empty, and the job waits for a map.
    job->kind = ForwardJob::Kind::Text;
    job->request = std::string(req.raw);
    job->park_bucket = b;
    if (req.noreply && !is_meta(req.cmd)) {
        // Sent without noreply, so that the owner's refusal (a map older than ours) is
        // seen and the request sent again; the client hears nothing either way.
        job->silent = true;
        strip_noreply(&job->request);
    }
    if (proto::cmd_flags(req.cmd) & proto::kStore) {
        job->value_pending = static_cast<size_t>(req.value_len) + 2;
    }
    p->forward = std::move(job);
    return Next::Forward;
}

Next Dispatcher::forward_binary(const proto::bin::BinRequest& r, OutBuf& out, PendingStore* p,
                                size_t* swallow, bool pending) {
    Cluster& cl = *ctx_.cluster;
    auto job = std::make_unique<ForwardJob>();
    job->route_gen = cl.generation();
    job->from_peer = p->cluster_peer;
    uint32_t b = cl.bucket(r.key);
    Owner o = pending ? Owner::None : owner_of(cl, b, &job->node, &job->host, &job->port);
    if (pending) job->park_ms = kPendingWaitMs;
    if (o == Owner::Here || (o == Owner::None && ctx_.settings.forward_park_ms == 0)) {
        std::string body = not_my_bucket(b);
        char h[proto::bin::kHeaderLen];
        proto::bin::write_header(h, r.opcode, 0x07, 0, 0, static_cast<uint32_t>(body.size()),
                                 r.opaque, 0);
        out.append(std::string_view(h, sizeof(h)));
        out.append(body);
        if (r.value_len() != 0) {
            *swallow = r.value_len();
            return Next::Swallow;
        }
        return Next::Continue;
    }
    job->kind = ForwardJob::Kind::Binary;
    job->request = std::string(r.raw);
    job->bin_opcode = r.opcode;
    job->bin_opaque = r.opaque;
    job->value_pending = r.value_len();
    job->park_bucket = b;
    // The response must carry the client's opaque: it does, the request is sent unchanged.
    p->forward = std::move(job);
    return Next::Forward;
}

Dispatcher::Reroute Dispatcher::reroute(ForwardJob* job) {
    Cluster& cl = *ctx_.cluster;
    job->route_gen = cl.generation();  // before states and map are read, as in forward_text
    if (job->kind == ForwardJob::Kind::MultiGet) {
        // The keys without an answer go out together once each has a place.
        const bool touch = job->get_cmd.rfind("gat", 0) == 0;
        PendingStore ps;
        ps.cluster_peer = job->from_peer;
        for (size_t i = 0; i < job->keys.size(); ++i) {
            if (job->owner[i] != ForwardJob::kUnrouted) continue;
            uint32_t b = cl.bucket(job->keys[i]);
            if (touch && cl.state(b) == repl::BucketState::Pending) return Reroute::Wait;
            Where w = where(b, touch, &ps);
            if (w == Where::Local) continue;
            std::string node, host;
            uint16_t port = 0;
            Owner o = w == Where::Refuse ? Owner::Here : owner_of(cl, b, &node, &host, &port);
            if (o == Owner::None) {
                job->park_bucket = b;
                job->park_why.clear();  // at the bound: NOT_MY_BUCKET
                return Reroute::Wait;
            }
            if (o == Owner::Here) {  // fenced, or the map and the state disagree
                job->error = not_my_bucket(b);
                job->bin_status = 0x07;
                return Reroute::Done;
            }
        }
        for (size_t i = 0; i < job->keys.size(); ++i) {
            if (job->owner[i] != ForwardJob::kUnrouted) continue;
            const std::string& key = job->keys[i];
            uint32_t b = cl.bucket(key);
            std::string node, host;
            uint16_t port = 0;
            if (where(b, touch, &ps) == Where::Local) {
                if (!job->blocks.count(key)) {
                    std::string line = job->get_cmd + " " + key + "\r\n";
                    Request one;
                    size_t used = 0;
                    if (proto::parse_command(line, &one, &used) == proto::ParseStatus::Ok) {
                        OutBuf tmp(&ctx_.store);
                        get(one, tmp, false);
                        std::string block;
                        tmp.drain_to(&block);
                        job->blocks[key] = std::move(block);
                    }
                }
                job->owner[i].clear();
            } else if (owner_of(cl, b, &node, &host, &port) == Owner::Found) {
                job->addr[node] = {host, port};
                job->owner[i] = std::move(node);
            }  // else: the map changed meanwhile (another thread): the key waits again
        }
        return Reroute::Send;
    }
    // One key: run it as if it had just arrived (here, forwarded, or refused).
    OutBuf tmp(&ctx_.store);
    PendingStore ps;
    ps.cluster_peer = job->from_peer;
    size_t swallow = 0;
    size_t used = 0;
    uint32_t b = 0;
    Next next = Next::Continue;
    if (job->kind == ForwardJob::Kind::Binary) {
        proto::bin::BinRequest r;
        if (proto::bin::parse_binary(job->request, &r, &used) != proto::ParseStatus::Ok) {
            return Reroute::Wait;  // cannot happen: it was parsed before
        }
        b = cl.bucket(r.key);
        if (binary_write(r.opcode) && cl.state(b) == repl::BucketState::Pending) {
            return Reroute::Wait;  // the handover ends with a new generation
        }
        next = execute_binary(r, tmp, &ps, &swallow);
    } else {
        Request req;
        if (proto::parse_command(job->request, &req, &used) != proto::ParseStatus::Ok) {
            return Reroute::Wait;
        }
        b = cl.bucket(req.key);
        if (is_write(req.cmd) && cl.state(b) == repl::BucketState::Pending) return Reroute::Wait;
        next = execute(req, tmp, &ps, &swallow);
    }
    if (next == Next::Forward) {
        ForwardJob& nj = *ps.forward;
        if (nj.node.empty()) {
            job->park_bucket = b;
            job->park_why.clear();
            return Reroute::Wait;
        }
        job->node = nj.node;
        job->host = nj.host;
        job->port = nj.port;
        return Reroute::Send;
    }
    if (next == Next::ReadValue) {  // served here: its value is in the request already
        if (job->request.size() - used >= ps.wire_len) {
            std::memcpy(ps.dest(), job->request.data() + used, ps.wire_len);
            finish_store(&ps, tmp);
        }
    }
    job->reply.clear();
    tmp.drain_to(&job->reply);
    return Reroute::Done;
}

void Dispatcher::fail_parked(ForwardJob* job) {
    if (!job->park_why.empty()) {
        job->error = job->park_why;
        job->bin_status = 0x86;  // temporary failure
    } else {
        job->error = not_my_bucket(job->park_bucket);
        job->bin_status = 0x07;
    }
}

std::string Dispatcher::finish_forward(const ForwardJob& job) {
    if (job.silent) return {};  // text noreply: nothing, as a local command would send
    if (!job.error.empty()) {
        // As a SERVER_ERROR of the same command run here would be: silent for text noreply;
        // sent for meta q (meta errors always are) and binary quiet commands (memcached
        // quiets their successes only).
        if (job.kind != ForwardJob::Kind::Binary) return "SERVER_ERROR " + job.error + "\r\n";
        // 0x86: temporary failure, 0x07: no owner; the body says which server and why.
        std::string r(proto::bin::kHeaderLen, '\0');
        proto::bin::write_header(r.data(), job.bin_opcode, job.bin_status, 0, 0,
                                 static_cast<uint32_t>(job.error.size()), job.bin_opaque, 0);
        return r + job.error;
    }
    if (job.kind != ForwardJob::Kind::MultiGet) return job.reply;
    std::string r;
    for (const std::string& key : job.keys) {
        auto it = job.blocks.find(key);
        if (it != job.blocks.end()) r += it->second;
    }
    return r + "END\r\n";
}

}  // namespace mcm::server
