// Managed mode's request routing: a key whose bucket is active here runs here; a write to a
// pending bucket waits a little for the handover; anything else is forwarded to the bucket's
// active server (server/forward.cc) or, with -o bucket_forward=0 or on a peer link (a request
// is forwarded once at most), refused with SERVER_ERROR NOT_MY_BUCKET <bucket> <epoch>.
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

Dispatcher::Where Dispatcher::where(uint32_t b, bool write, bool from_peer) {
    Cluster& cl = *ctx_.cluster;
    repl::BucketState s = cl.state(b);
    if (s == repl::BucketState::Pending && write) {
        // A handover is under way: hold the write briefly (this worker waits with it).
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
    if (from_peer || !ctx_.settings.bucket_forward) return Where::Refuse;
    // A server whose lease ran out forwards nothing either: the request may have sat in its
    // socket through a pause while the client wrote a newer value elsewhere.
    return cl.serving() ? Where::Remote : Where::Refuse;
}

std::string Dispatcher::not_my_bucket(uint32_t b) {
    Cluster& cl = *ctx_.cluster;
    repl::BucketState s = cl.state(b);
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
    const bool peer = p->cluster_peer;
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
                Where w = where(b, write, peer);
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
            Where w = where(bucket, write, peer);
            if (w == Where::Local) return true;
            if (w == Where::Remote) {
                *next = forward_text(req, out, p, swallow);
                return false;
            }
            if (!req.noreply || req.cmd == Cmd::MetaGet || req.cmd == Cmd::MetaSet ||
                req.cmd == Cmd::MetaDelete || req.cmd == Cmd::MetaArith) {
                // meta errors ignore q, as all meta errors do
                out.append("SERVER_ERROR " + not_my_bucket(bucket) + "\r\n");
            } else {
                (void)not_my_bucket(bucket);
            }
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
    Where w = where(b, write, p->cluster_peer);
    if (w == Where::Local) return true;
    if (w == Where::Remote) {
        *next = forward_binary(r, out, p, swallow);
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

// The active server of a bucket in the map held: false if the map names none.
bool owner_of(const Cluster& cl, uint32_t b, std::string* name, std::string* host,
              uint16_t* port) {
    std::shared_ptr<const repl::BucketMap> m = cl.map();
    if (m == nullptr || b >= m->nbuckets || m->active[b] == repl::kNoNode) return false;
    const repl::BucketMap::Node& n = m->nodes[m->active[b]];
    if (n.name == cl.node_id()) return false;  // the map says here, the state says no
    *name = n.name;
    *host = n.host;
    *port = n.port;
    return true;
}

}  // namespace

Next Dispatcher::forward_text(const Request& req, OutBuf& out, PendingStore* p, size_t* swallow) {
    Cluster& cl = *ctx_.cluster;
    auto job = std::make_unique<ForwardJob>();
    if (req.cmd == Cmd::Get || req.cmd == Cmd::Gets || req.cmd == Cmd::Gat ||
        req.cmd == Cmd::Gats) {
        // Split by owner. Local keys are read now (a later command of this connection must
        // not be seen by them); the reply is put together in the request's key order when
        // the other servers have answered.
        job->kind = ForwardJob::Kind::MultiGet;
        job->get_cmd = std::string(proto::cmd_name(req.cmd));
        if (req.cmd == Cmd::Gat || req.cmd == Cmd::Gats) {
            job->get_cmd += " " + std::to_string(req.exptime);
        }
        proto::KeyCursor keys(req.keys);
        std::string_view key;
        while (keys.next(&key)) {
            uint32_t b = cl.bucket(key);
            std::string node, host;
            uint16_t port = 0;
            if (where(b, req.cmd == Cmd::Gat || req.cmd == Cmd::Gats, p->cluster_peer) ==
                Where::Local) {
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
            } else if (!owner_of(cl, b, &node, &host, &port)) {
                out.append("SERVER_ERROR " + not_my_bucket(b) + "\r\n");
                return Next::Continue;
            } else {
                job->addr[node] = {host, port};
            }
            job->keys.emplace_back(key);
            job->owner.push_back(std::move(node));
        }
        p->forward = std::move(job);
        return Next::Forward;
    }
    uint32_t b = cl.bucket(req.key);
    if (!owner_of(cl, b, &job->node, &job->host, &job->port)) {
        out.append("SERVER_ERROR " + not_my_bucket(b) + "\r\n");
        if (proto::cmd_flags(req.cmd) & proto::kStore) {
            *swallow = static_cast<size_t>(req.value_len) + 2;
            return Next::Swallow;
        }
        return Next::Continue;
    }
    job->kind = ForwardJob::Kind::Text;
    job->request = std::string(req.raw);
    if (proto::cmd_flags(req.cmd) & proto::kStore) {
        job->value_pending = static_cast<size_t>(req.value_len) + 2;
    }
    p->forward = std::move(job);
    return Next::Forward;
}

Next Dispatcher::forward_binary(const proto::bin::BinRequest& r, OutBuf& out, PendingStore* p,
                                size_t* swallow) {
    Cluster& cl = *ctx_.cluster;
    auto job = std::make_unique<ForwardJob>();
    uint32_t b = cl.bucket(r.key);
    if (!owner_of(cl, b, &job->node, &job->host, &job->port)) {
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
    // The response must carry the client's opaque: it does, the request is sent unchanged.
    p->forward = std::move(job);
    return Next::Forward;
}

std::string Dispatcher::finish_forward(const ForwardJob& job) {
    if (!job.error.empty()) {
        if (job.kind != ForwardJob::Kind::Binary) return "SERVER_ERROR " + job.error + "\r\n";
        // 0x86: temporary failure; the body says which server and why.
        std::string r(proto::bin::kHeaderLen, '\0');
        proto::bin::write_header(r.data(), job.bin_opcode, 0x86, 0, 0,
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
