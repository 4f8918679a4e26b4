// The replication links: dialling, the handshake, reading and writing frames, and what each
// frame does on arrival (see replicator.h and doc/replication.md).
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "replication/auth.h"
#include "replication/hints.h"
#include "replication/replicator_impl.h"
#include "replication/stream.h"
#include "server/log.h"
#include "tls/peer.h"

namespace mcm::repl {
// ---------------------------------------------------------------------------------------
// Links.

void Replicator::dial(const std::string& peer, const std::string& host, uint16_t port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* ai = nullptr;
    std::string ps = std::to_string(port);
    PeerStats& ps_ = peer_stats(peer);
    if (getaddrinfo(host.c_str(), ps.c_str(), &hints, &ai) != 0 || ai == nullptr) {
        ps_.last_error = "cannot resolve " + host;
        return;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno != EINPROGRESS) {
        ps_.last_error = std::string("connect: ") + strerror(errno);
        ::close(fd);
        return;
    }
    auto l = std::make_unique<Link>(this);
    l->peer = peer;
    l->fd = fd;
    if (cfg_.peer_tls != nullptr) {
        l->ssl = cfg_.peer_tls->dial(fd);
        if (l->ssl == nullptr) {
            ps_.last_error = "TLS: " + tls::last_error();
            l->fd = -1;
            ::close(fd);
            return;
        }
    }
    l->dialer = true;
    l->st = Link::St::Connecting;
    l->nonce = random_hex32();
    l->stats = &ps_;
    l->last_rx_us = now_us();
    l->ev = event_new(base_, fd, EV_WRITE | EV_PERSIST, &Replicator::on_link_io, l.get());
    l->ev_flags = EV_WRITE | EV_PERSIST;
    event_add(l->ev, nullptr);
    links_.push_back(std::move(l));
}

void Replicator::close_link(Link* l, const char* why) {
    if (l->fd < 0) return;
    LOG(server::LogLevel::Info, "replication: link %s %s closed: %s", l->dialer ? "to" : "from",
        l->peer.c_str(), why);
    if (l->st == Link::St::Up) l->stats->disconnects++;
    l->stats->last_error = why;
    event_del(l->ev);
    tls::finish(l->ssl);
    l->ssl = nullptr;
    ::close(l->fd);
    l->fd = -1;
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        Inbound& in = in_[b];
        if (in.link != l) continue;
        if (in.backfilling) in.history = 0;  // an interrupted backfill leaves holes
        in.link = nullptr;
        set_in_sync(in, false, /*stream_lost=*/!in.backfilling);
        in.backfilling = false;
        in.retry_at_us = 0;
    }
    while (!l->out.empty()) drop_sub(l, l->out.begin()->first);
    if (l->dialer) next_dial_us_[l->peer] = now_us() + kRedialUs;
}

void Replicator::on_link_io(evutil_socket_t, short what, void* arg) {
    auto* l = static_cast<Link*>(arg);
    l->r->handle_io(l, what);
}

bool Replicator::flush(Link* l) {
    while (l->pending() > 0) {
        ssize_t n = tls::send(l->fd, l->ssl, l->wbuf.data() + l->wpos, l->pending());
        if (n > 0) {
            l->wpos += static_cast<size_t>(n);
            l->stats->bytes_out += static_cast<uint64_t>(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        return false;
    }
    if (l->wpos == l->wbuf.size()) {
        l->wbuf.clear();
        l->wpos = 0;
    } else if (l->wpos > (1 << 20)) {
        l->wbuf.erase(0, l->wpos);
        l->wpos = 0;
    }
    short want = EV_READ | EV_PERSIST;
    if (l->pending() > 0 || l->st == Link::St::Connecting) want |= EV_WRITE;
    if (l->st == Link::St::Connecting) want = EV_WRITE | EV_PERSIST;
    if (l->st == Link::St::Handshake) want = l->hs_want;
    if (want != l->ev_flags) {
        event_del(l->ev);
        event_assign(l->ev, base_, l->fd, want, &Replicator::on_link_io, l);
        l->ev_flags = want;
        event_add(l->ev, nullptr);
    }
    return true;
}

void Replicator::handle_io(Link* l, short what) {
    if (l->fd < 0) return;
    if (l->st == Link::St::Connecting) {
        if (!(what & EV_WRITE)) return;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return close_link(l, strerror(err));
        l->st = l->ssl != nullptr ? Link::St::Handshake : Link::St::Challenge;
        if (l->ssl == nullptr) l->wbuf = "cluster auth\r\n";
        l->last_rx_us = now_us();
    }
    if (l->st == Link::St::Handshake) {
        tls::Hs h = tls::handshake(l->ssl);
        if (h == tls::Hs::Failed) {
            return close_link(l, ("TLS handshake: " + tls::last_error()).c_str());
        }
        if (h != tls::Hs::Done) {
            l->hs_want = static_cast<short>((h == tls::Hs::WantRead ? EV_READ : EV_WRITE) | EV_PERSIST);
            (void)flush(l);  // only sets the events
            return;
        }
        l->st = Link::St::Challenge;
        l->wbuf = "cluster auth\r\n";
        what = static_cast<short>(what | EV_READ);  // the TLS layer may hold bytes already
    }
    if (what & EV_READ) {
        char buf[65536];
        for (int i = 0; i < 64; ++i) {
            ssize_t n = tls::recv(l->fd, l->ssl, buf, sizeof buf);
            if (n > 0) {
                l->rbuf.append(buf, static_cast<size_t>(n));
                l->stats->bytes_in += static_cast<uint64_t>(n);
                l->last_rx_us = now_us();
                if (static_cast<size_t>(n) < sizeof buf && l->ssl == nullptr) break;
                continue;
            }
            if (n == 0) return close_link(l, "connection closed by peer");
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            return close_link(l, strerror(errno));
        }
        if (l->st != Link::St::Up && !dial_text(l)) return;
        if (l->fd < 0) return;
        if (!read_frames(l)) {
            bad_frames_.fetch_add(1, std::memory_order_relaxed);
            return close_link(l, "bad frames");
        }
        if (l->fd < 0) return;
    }
    if (!flush(l)) return close_link(l, "write failed");
    // Room in the buffer again: send what waited. Looked at after the flush, so a flush that
    // empties the buffer (and so stops the write events) does not leave a backfill waiting.
    if (l->st == Link::St::Up && l->blocked && l->pending() < kHighWater / 2) {
        l->blocked = false;
        pump_link(l, nullptr);
        if (l->fd >= 0 && !flush(l)) close_link(l, "write failed");
    }
}

// The dialer's text phase: challenge, proof and "cluster repl", then frames.
bool Replicator::dial_text(Link* l) {
    for (;;) {
        if (l->st == Link::St::Hello || l->st == Link::St::Up) return true;
        size_t eol = l->rbuf.find("\r\n", l->rpos);
        if (eol == std::string::npos) {
            if (l->rbuf.size() - l->rpos > 4096) {
                close_link(l, "handshake line too long");
                return false;
            }
            return true;
        }
        std::string line = l->rbuf.substr(l->rpos, eol - l->rpos);
        l->rpos = eol + 2;
        if (l->st == Link::St::Challenge) {
            if (line.rfind("CHALLENGE ", 0) != 0) {
                close_link(l, ("handshake refused: " + line).c_str());
                return false;
            }
            l->wbuf += "cluster auth " + hmac_hex(secret_, line.substr(10)) +
                       "\r\ncluster repl " + me_ + " " + l->nonce + " " + l->peer + "\r\n";
            l->st = Link::St::AuthReply;
        } else if (l->st == Link::St::AuthReply) {
            if (line != "OK") {
                close_link(l, ("authentication refused: " + line).c_str());
                return false;
            }
            l->st = Link::St::Hello;
        }
    }
}

bool Replicator::read_frames(Link* l) {
    // Records are applied in order; the keys of the next few are looked up in the store's
    // table ahead of time, the slot kSlotAhead frames ahead and the item kItemAhead ahead
    // (Store::prefetch_slot, prefetch_item), so that the cache misses of a run of records
    // overlap instead of each stalling its own apply.
    constexpr int kSlotAhead = 8;
    constexpr int kItemAhead = 4;
    struct Ahead {
        size_t pos;  // frames in [rpos, pos) have been prefetched
        int lead;    // how many
    } stage[2] = {{l->rpos, 0}, {l->rpos, 0}};
    while (l->fd >= 0) {
        FrameType t;
        std::string_view payload;
        if (l->st == Link::St::Up) {
            for (int k = 0; k < 2; ++k) {
                Ahead& a = stage[k];
                while (a.lead < (k == 0 ? kSlotAhead : kItemAhead)) {
                    std::string_view next(l->rbuf.data() + a.pos, l->rbuf.size() - a.pos);
                    size_t n = next_frame(next, &t, &payload, cfg_.max_frame);
                    if (n == 0 || n == SIZE_MAX) break;
                    RecordView rec;
                    if (t == FrameType::Record && decode_whole(payload, &rec) &&
                        rec.bucket < nbuckets_) {
                        if (k == 0) {
                            store_->prefetch_slot(rec.key, rec.bucket);
                        } else {
                            store_->prefetch_item(rec.key, rec.bucket);
                        }
                    }
                    a.pos += n;
                    ++a.lead;
                }
            }
        }
        std::string_view in(l->rbuf.data() + l->rpos, l->rbuf.size() - l->rpos);
        if (l->st == Link::St::Hello && in.starts_with("CLIENT_ERROR")) {
            // Refused in words: e.g. another server holds the peer's address (takeover).
            size_t eol = in.find("\r\n");
            if (eol == std::string_view::npos) break;
            close_link(l, std::string(in.substr(0, eol)).c_str());
            return true;
        }
        size_t used = next_frame(in, &t, &payload, cfg_.max_frame);
        if (used == 0) break;
        if (used == SIZE_MAX) {
            // Before its bytes are buffered: a length no frame of ours can have.
            const uint32_t len = in.size() >= 4 ? get_u32(in.data()) : 0;
            bad_frames_.fetch_add(1, std::memory_order_relaxed);
            close_link(l, ("frame length " + std::to_string(len) + " outside 1.." +
                           std::to_string(cfg_.max_frame)).c_str());
            return true;
        }
        if (l->st == Link::St::Hello) {
            std::string name, proof;
            if (t == FrameType::Hello && parse_hello(payload, &name, &proof) && name != l->peer) {
                close_link(l, ("reached " + name + " at " + l->peer + "'s address").c_str());
                return true;
            }
            if (t != FrameType::Hello || !parse_hello(payload, &name, &proof) ||
                name != l->peer ||
                proof != hmac_hex(secret_, "repl " + l->nonce)) {
                close_link(l, "peer failed to prove the cluster secret");
                return true;
            }
            l->st = Link::St::Up;
            l->stats->connects++;
            LOG(server::LogLevel::Info, "replication: link to %s up", l->peer.c_str());
            send_subs(l);
        } else if (!on_frame(l, static_cast<uint8_t>(t), payload)) {
            return false;
        }
        l->rpos += used;
        for (Ahead& a : stage) {
            if (a.lead > 0) {
                --a.lead;
            } else {
                a.pos = l->rpos;
            }
        }
    }
    if (l->fd < 0) return true;
    if (l->rpos == l->rbuf.size()) {
        l->rbuf.clear();
        l->rpos = 0;
    } else if (l->rpos > (1 << 20)) {
        l->rbuf.erase(0, l->rpos);
        l->rpos = 0;
    }
    if (!l->ack_dirty.empty()) {
        std::string acks;
        for (uint32_t b : l->ack_dirty) {
            l->ack_marked[b] = false;
            const Inbound& in = in_[b];
            if (in.link != l || in.backfilling) continue;
            ack_add(&acks, b, applier_->applied_seqno(b));
        }
        l->ack_dirty.clear();
        if (!acks.empty()) frame_ack(&l->wbuf, acks);
    }
    return true;
}

bool Replicator::on_frame(Link* l, uint8_t type, std::string_view p) {
    switch (static_cast<FrameType>(type)) {
        case FrameType::Record: {
            RecordView rec;
            // (An empty payload is no record: it used to pass as a default one, a Set of the
            // empty key in bucket 0; found by fuzz/repl_frame_fuzz.)
            if (!decode_whole(p, &rec)) return false;
            if (rec.bucket >= nbuckets_) return false;
            Inbound& in = in_[rec.bucket];
            if (in.link != l) return true;  // unsubscribed meanwhile: late records
            l->stats->records_in++;
            if (cluster_.state(rec.bucket) != BucketState::Replica) return true;  // promoted
            const Applied a = applier_->apply(rec);
            if (a == Applied::Misfiled) return false;  // a corrupt stream: the link closes
            if (a == Applied::Done && in.keep) keep_inbound(rec.bucket, p, rec.seqno);
            applied_live_[rec.bucket].store(applier_->applied_seqno(rec.bucket),
                                            std::memory_order_relaxed);
            l->mark_ack(rec.bucket);
            return true;
        }
        case FrameType::Stream: {
            StreamMsg m;
            if (!parse_stream(p, &m) || m.bucket >= nbuckets_) return false;
            Inbound& in = in_[m.bucket];
            if (in.link != l) return true;
            in.history = m.history;
            if (in.keep) {
                std::lock_guard<std::mutex> g(store_->bucket_mutex(m.bucket));
                Backlog& bl = buckets_[m.bucket].backlog;
                if (m.backfill || bl.last_seqno() != m.seqno) bl.clear(m.seqno);
            }
            if (m.backfill) {
                (void)store_->drop_buckets(m.bucket, m.bucket);
                applier_->reset(m.bucket, m.seqno);
                applied_live_[m.bucket].store(m.seqno, std::memory_order_relaxed);
                in.backfilling = true;
                set_in_sync(in, false);
                l->stats->backfills_in++;
            } else {
                set_in_sync(in, true);
                l->stats->resumes_in++;
            }
            l->mark_ack(m.bucket);
            return true;
        }
        case FrameType::BackfillEnd: {
            BackfillEndMsg m;
            if (!parse_backfill_end(p, &m) || m.bucket >= nbuckets_) return false;
            Inbound& in = in_[m.bucket];
            if (in.link != l) return true;
            in.backfilling = false;
            set_in_sync(in, true);
            l->stats->backfill_items_in += m.items;
            l->mark_ack(m.bucket);
            return true;
        }
        case FrameType::NotActive: {
            uint32_t b;
            if (!parse_bucket(p, &b) || b >= nbuckets_) return false;
            Inbound& in = in_[b];
            if (in.link != l) return true;
            if (in.backfilling) in.history = 0;
            in.link = nullptr;
            set_in_sync(in, false, /*stream_lost=*/!in.backfilling);
            in.backfilling = false;
            in.retry_at_us = now_us() + kResubUs;
            return true;
        }
        case FrameType::Sub: {
            SubMsg m;
            if (!parse_sub(p, &m) || m.bucket >= nbuckets_) return false;
            on_sub(l, m.bucket, m.history, m.seqno);
            return true;
        }
        case FrameType::Unsub: {
            uint32_t b;
            if (!parse_bucket(p, &b) || b >= nbuckets_) return false;
            drop_sub(l, b);
            return true;
        }
        case FrameType::Ack: {
            const uint64_t now = now_us();
            return parse_ack(p, [&](uint32_t b, uint64_t seqno) {
                if (b >= nbuckets_) return false;
                on_ack(l, b, seqno, now);
                return true;
            });
        }
        case FrameType::Ping: {
            uint64_t v;
            if (!parse_u64(p, &v)) return false;
            frame_u64(&l->wbuf, FrameType::Pong, v);
            return true;
        }
        case FrameType::Pong: {
            uint64_t v;
            if (!parse_u64(p, &v)) return false;
            l->stats->rtt_us = now_us() - v;
            return true;
        }
        case FrameType::Coord: {
            CoordMsg m;
            if (!parse_coord(p, &m)) return false;
            l->coord_rx_us = now_us();
            l->coord_epoch = m.epoch;
            l->coord_silent_ms = m.silent_ms;
            check_coordinator();
            return true;
        }
        case FrameType::Hints: {
            // Read hints from the active of some of our buckets: keep those items as if read
            // here. Nothing else changes (no sequence number, no record, no write).
            hint_scratch_.clear();
            if (!parse_hints(p, &hint_scratch_)) return false;
            const size_t n = hint_scratch_.size();
            const size_t found = store_->mark_accessed(hint_scratch_.data(), n);
            l->stats->hints_in += n;
            l->stats->hints_applied += found;
            l->stats->hints_missing += n - found;
            return true;
        }
        case FrameType::Hello: return false;  // only once, first
    }
    // A frame type this version does not know (a newer peer's): skipped, the link goes on.
    l->stats->unknown_frames++;
    return true;
}

}  // namespace mcm::repl
