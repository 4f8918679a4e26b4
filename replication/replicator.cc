// The replication thread (see replicator.h and doc/replication.md).
#include "replication/replicator.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <ctime>

#include "replication/auth.h"
#include "replication/replicator_impl.h"
#include "replication/stream.h"
#include "server/log.h"

namespace mcm::repl {

namespace {

thread_local Replicator::WriteRef tls_last_write;

}  // namespace

void Replicator::set_in_sync(Inbound& in, bool v) noexcept {
    in.in_sync = v;
    in_sync_in_[in.bucket].store(v ? 1 : 0, std::memory_order_relaxed);
}

Replicator::PeerStats& Replicator::peer_stats(const std::string& peer) {
    auto& p = peer_stats_[peer];
    if (!p) p = std::make_unique<PeerStats>();
    return *p;
}

// Whether the map makes peer a replica of bucket b.
static bool replicates_to(const BucketMap* map, uint32_t b, const std::string& peer) {
    if (map == nullptr || b >= map->nbuckets) return false;
    for (uint16_t n : map->replicas[b]) {
        if (map->nodes[n].name == peer) return true;
    }
    return false;
}

void Replicator::drop_sub(Link* l, uint32_t b) {
    OutSub* s = l->out.find(b);
    if (s == nullptr) return;
    if (s->confirmed) unconfirm(b);
    l->out.erase(b);
}

void Replicator::unconfirm(uint32_t b) noexcept {
    if (in_sync_out_[b].load(std::memory_order_relaxed) > 0) {
        in_sync_out_[b].fetch_sub(1, std::memory_order_relaxed);
    }
}

Replicator::Replicator(const ReplConfig& cfg, ClusterView& cluster, store::Clock& clock)
    : cfg_(cfg),
      cluster_(cluster),
      clock_(clock),
      nbuckets_(cfg.nbuckets),
      me_(cfg.node_id),
      secret_(cfg.secret),
      buckets_(new Bucket[cfg.nbuckets]),
      dirty_(new std::atomic<uint64_t>[dirty_words()]),
      in_(cfg.nbuckets),
      bucket_text_(cfg.nbuckets),
      in_sync_out_(new std::atomic<uint8_t>[cfg.nbuckets]),
      in_sync_in_(new std::atomic<uint8_t>[cfg.nbuckets]),
      applied_live_(new std::atomic<uint64_t>[cfg.nbuckets]) {
    // A power of two, so that each bucket's ring is exactly its budget (a ring wraps at a
    // power of two and touches all of it over time).
    per_bucket_backlog_ = std::max<size_t>(64 * 1024, cfg.backlog_bytes / nbuckets_);
    while ((per_bucket_backlog_ & (per_bucket_backlog_ - 1)) != 0) {
        per_bucket_backlog_ &= per_bucket_backlog_ - 1;  // round down
    }
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        buckets_[b].backlog.set_max_bytes(per_bucket_backlog_);
        in_sync_out_[b].store(0, std::memory_order_relaxed);
        in_sync_in_[b].store(0, std::memory_order_relaxed);
        applied_live_[b].store(0, std::memory_order_relaxed);
        in_[b].bucket = b;
    }
    for (size_t i = 0; i < dirty_words(); ++i) dirty_[i].store(0);
}

Replicator::~Replicator() {
    stop();
    links_.clear();
    dead_links_.clear();
    for (Adopted& a : adopted_) ::close(a.fd);
    if (wake_ev_ != nullptr) event_free(wake_ev_);
    if (tick_ev_ != nullptr) event_free(tick_ev_);
    if (rearm_ev_ != nullptr) event_free(rearm_ev_);
    if (base_ != nullptr) event_base_free(base_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Replicator::attach(store::Store& st) {
    store_ = &st;
    applier_ = std::make_unique<Applier>(st, clock_, nbuckets_);
}

// ---------------------------------------------------------------------------------------
// The hook: on the writer's thread, under the key's shard lock.

void Replicator::on_mutation(void* ctx, const store::Mutation& m) noexcept {
    auto* self = static_cast<Replicator*>(ctx);
    if (m.bucket >= self->nbuckets_) return;
    Bucket& bk = self->buckets_[m.bucket];
    if (!bk.enabled.load(std::memory_order_acquire)) return;
    try {
        char h[kMutationFrameHeader];
        frame_header(m, self->clock_, h);
        // under the bucket's lock
        bk.backlog.append(m.seqno, now_us(), {std::string_view(h, sizeof h), m.key, m.value});
        bk.seqno.store(m.seqno, std::memory_order_relaxed);
    } catch (...) {
        return;  // out of memory: the record is lost and the backlog's gap forces a backfill
    }
    tls_last_write = WriteRef{m.bucket, m.seqno, m.kind};
    // Mark the bucket's group dirty. If its bit is already set, a sweep is due that has yet to
    // clear it, and it looks at every bucket of the group: no atomic read-modify-write, which
    // under load would cost a full barrier behind the copy above. (If that sweep reads this
    // bucket's sequence number before the store above is visible, tick() sends the record
    // within 50 ms; any later write to the group sends it sooner.)
    std::atomic<uint64_t>& word = self->dirty_word(m.bucket);
    if (word.load(std::memory_order_relaxed) & dirty_bit(m.bucket)) return;
    // Wake the replication thread unless it is awake or polling (see on_rearm): under load
    // writers make no system call here. seq_cst pairs with on_rearm's store and sweep.
    word.fetch_or(dirty_bit(m.bucket));
    if (!self->wake_pending_.load() && !self->wake_pending_.exchange(true)) self->wake();
}

void Replicator::wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd_, &one, sizeof one);
    (void)n;
}

Replicator::WriteRef Replicator::take_last_write() noexcept {
    WriteRef w = tls_last_write;
    tls_last_write = WriteRef{};
    return w;
}

// ---------------------------------------------------------------------------------------
// Thread and loop.

void Replicator::start() {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);  // the 200 us rearm timer
    base_ = event_base_new_with_config(cfg);
    event_config_free(cfg);
    rearm_ev_ = event_new(base_, -1, 0, &Replicator::on_rearm, this);
    wake_ev_ = event_new(base_, wake_fd_, EV_READ | EV_PERSIST, &Replicator::on_wake, this);
    event_add(wake_ev_, nullptr);
    tick_ev_ = event_new(base_, -1, EV_PERSIST, &Replicator::on_tick, this);
    timeval t{0, static_cast<long>(kTickUs)};
    event_add(tick_ev_, &t);
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "mc-repl");
        run();
    });
}

void Replicator::stop() {
    if (!thread_.joinable()) return;
    stopping_.store(true);
    wake();
    thread_.join();
}

void Replicator::run() {
    while (!stopping_.load(std::memory_order_relaxed)) {
        event_base_loop(base_, EVLOOP_ONCE);
    }
}

void Replicator::on_wake(evutil_socket_t fd, short, void* arg) {
    auto* self = static_cast<Replicator*>(arg);
    uint64_t v;
    while (::read(fd, &v, sizeof v) > 0) {
    }
    self->take_adopted();
    self->take_activations();
    (void)self->pump_dirty();
    self->poll_us_ = kCoalesceUs;  // writes resume after a pause: start from the short period
    self->swept_records_ = 0;
    self->last_sweep_us_ = now_us();
    if (self->ack_recheck_.exchange(false, std::memory_order_relaxed)) {
        self->check_waiters(UINT32_MAX, 0);
    }
    self->schedule_rearm();
}

// Writes come in bursts: after a wake-up the thread polls every kCoalesceUs while there is
// something to send, and writers skip the eventfd meanwhile (wake_pending_ stays set). Only
// when a sweep finds nothing does it go back to sleeping on the eventfd.
//
// The period adapts to the write rate: a sweep should carry about kSweepRecords records. Under
// load that is every kCoalesceUs; when writes are few it stretches to kMaxCoalesceUs, because
// each sweep's send wakes the replica (and its ack wakes this thread), which costs more than
// the records themselves at low rates.
void Replicator::schedule_rearm() {
    if (rearm_scheduled_) return;
    rearm_scheduled_ = true;
    timeval t{0, static_cast<long>(poll_us_)};
    event_add(rearm_ev_, &t);
}

void Replicator::adapt_poll(uint64_t now) {
    const uint64_t elapsed = now > last_sweep_us_ ? now - last_sweep_us_ : kCoalesceUs;
    const uint64_t n = std::max<uint64_t>(swept_records_, 1);
    poll_us_ = std::clamp<uint64_t>(elapsed * kSweepRecords / n, kCoalesceUs, kMaxCoalesceUs);
    swept_records_ = 0;
    last_sweep_us_ = now;
}

void Replicator::on_rearm(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Replicator*>(arg);
    self->rearm_scheduled_ = false;
    self->wake_pending_.store(false);
    const bool sent = self->pump_dirty();
    self->adapt_poll(now_us());
    if (sent) {
        self->wake_pending_.store(true);
        self->schedule_rearm();
    }
}

void Replicator::on_tick(evutil_socket_t, short, void* arg) { static_cast<Replicator*>(arg)->tick(); }

void Replicator::adopt(int fd, std::string node, std::string nonce, std::string buffered) {
    {
        std::lock_guard<std::mutex> g(adopt_mu_);
        adopted_.push_back(Adopted{fd, std::move(node), std::move(nonce), std::move(buffered)});
    }
    wake();
}

void Replicator::take_adopted() {
    std::vector<Adopted> got;
    {
        std::lock_guard<std::mutex> g(adopt_mu_);
        got.swap(adopted_);
    }
    for (Adopted& a : got) {
        // A peer that dials again replaces its old link (it restarted, or saw it die first).
        for (auto& l : links_) {
            if (l->peer == a.node && l->fd >= 0) close_link(l.get(), "replaced by a new link");
        }
        auto l = std::make_unique<Link>(this);
        l->peer = a.node;
        l->fd = a.fd;
        l->dialer = false;
        l->st = Link::St::Up;
        l->stats = &peer_stats(a.node);
        l->stats->connects++;
        l->last_rx_us = now_us();
        l->rbuf = std::move(a.buffered);
        frame_hello(&l->wbuf, me_, hmac_hex(secret_, "repl " + a.nonce));
        l->ev = event_new(base_, l->fd, EV_READ | EV_PERSIST, &Replicator::on_link_io, l.get());
        l->ev_flags = EV_READ | EV_PERSIST;
        event_add(l->ev, nullptr);
        LOG(server::LogLevel::Info, "replication: link from %s up", a.node.c_str());
        Link* raw = l.get();
        links_.push_back(std::move(l));
        reconcile();  // the peer may subscribe at once: know which buckets are ours first
        send_subs(raw);
        if (!read_frames(raw)) {
            close_link(raw, "bad frames");
            continue;
        }
        (void)flush(raw);
    }
}

void Replicator::tick() {
    uint64_t now = now_us();
    dead_links_.clear();
    take_adopted();
    take_activations();
    reconcile();
    for (auto& lp : links_) {
        Link* l = lp.get();
        if (l->fd < 0) continue;
        if (now > l->last_rx_us && now - l->last_rx_us > kDeadAfterUs) {
            close_link(l, l->st == Link::St::Up ? "peer silent" : "handshake timed out");
            continue;
        }
        if (l->st == Link::St::Up) {
            if (now >= l->last_ping_us + kPingEveryUs) {
                l->last_ping_us = now;
                frame_u64(&l->wbuf, FrameType::Ping, now);
                CoordinatorView cv = cluster_.coordinator();
                frame_coord(&l->wbuf, CoordMsg{cluster_.epoch(),
                                               cv.leased ? cv.silent_ms : UINT32_MAX});
            }
            send_subs(l);
            pump_link(l, nullptr);
            if (l->fd >= 0 && !flush(l)) close_link(l, "write failed");
        }
    }
    // Drop links that closed.
    for (size_t i = 0; i < links_.size();) {
        if (links_[i]->fd < 0) {
            dead_links_.push_back(std::move(links_[i]));
            links_.erase(links_.begin() + static_cast<long>(i));
        } else {
            ++i;
        }
    }
    check_coordinator();
    // Replica side: delayed flushes that came due.
    (void)applier_->run_due_flushes(static_cast<int64_t>(time(nullptr)));
    // repl_ack: waits that ran out.
    std::vector<AckWaiter> expired;
    {
        std::lock_guard<std::mutex> g(ack_mu_);
        for (size_t i = 0; i < waiters_.size();) {
            if (waiters_[i].deadline_us <= now) {
                expired.push_back(waiters_[i]);
                waiters_[i] = waiters_.back();
                waiters_.pop_back();
            } else {
                ++i;
            }
        }
    }
    for (AckWaiter& w : expired) {
        ack_timeouts_.fetch_add(1, std::memory_order_relaxed);
        w.fn(w.ctx, w.token, true);
    }
    publish_stats();
}

// ---------------------------------------------------------------------------------------
// The map decides: which buckets keep a backlog, which we subscribe to, whom we dial.

// A bucket active here gains replicas: a new history starts at the bucket's current
// sequence number (its earlier records were never kept), so a new replica is backfilled up
// to it and then streamed from it.
void Replicator::enable_bucket(uint32_t b) {
    Bucket& bk = buckets_[b];
    {
        std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
        bk.history = random_history();
        const uint64_t at = store_->bucket_seqno_locked(b);
        bk.backlog.clear(at);
        bk.seqno.store(at, std::memory_order_relaxed);
    }
    bk.acked.store(0, std::memory_order_relaxed);
    bk.enabled.store(true, std::memory_order_release);
}

void Replicator::disable_bucket(uint32_t b) {
    Bucket& bk = buckets_[b];
    bk.enabled.store(false, std::memory_order_release);
    {
        std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
        bk.history = 0;
        bk.backlog.release();
    }
    in_sync_out_[b].store(0, std::memory_order_relaxed);
}

void Replicator::reconcile() {
    const BucketMap* map = cluster_.map();
    uint64_t now = now_us();
    std::set<std::string> needed;
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        BucketState st = cluster_.state(b);
        bool has_map = map != nullptr && b < map->nbuckets;
        bool want = st == BucketState::Active && has_map && !map->replicas[b].empty();
        if (want && !buckets_[b].on()) enable_bucket(b);
        if (!want && buckets_[b].on()) disable_bucket(b);
        if (want) {
            for (uint16_t n : map->replicas[b]) needed.insert(map->nodes[n].name);
        }
        std::string src;
        if (st == BucketState::Replica && has_map && map->active[b] != kNoNode &&
            map->nodes[map->active[b]].name != me_) {
            src = map->nodes[map->active[b]].name;
        }
        Inbound& in = in_[b];
        const bool keep = !src.empty() && map->replicas[b].size() >= 2;
        if (in.keep != keep) {
            in.keep = keep;
            if (!keep && !buckets_[b].on()) {
                std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
                buckets_[b].backlog.release();
            }
        }
        if (in.source != src) {
            if (in.link != nullptr) {
                frame_bucket(&in.link->wbuf, FrameType::Unsub, b);
                if (in.backfilling) in.history = 0;  // what we hold is incomplete
            }
            in.source = src;
            in.link = nullptr;
            set_in_sync(in, false);
            in.backfilling = false;
            in.retry_at_us = 0;
        }
        if (!src.empty()) needed.insert(src);
    }
    // Subscriptions the map no longer allows.
    for (auto& lp : links_) {
        Link* l = lp.get();
        std::vector<uint32_t> gone;
        for (auto& [b, sub] : l->out) {
            if (!buckets_[b].on() || sub.history != buckets_[b].history ||
                !replicates_to(map, b, l->peer)) {
                gone.push_back(b);
            }
        }
        for (uint32_t b : gone) {
            frame_bucket(&l->wbuf, FrameType::NotActive, b);
            drop_sub(l, b);
        }
    }
    // Dial the peers we need and should call (the name that sorts first dials).
    if (map == nullptr) return;
    for (const std::string& p : needed) {
        if (!(me_ < p)) continue;
        bool have = false;
        for (auto& l : links_) have = have || (l->peer == p && l->fd >= 0);
        if (have || now < next_dial_us_[p]) continue;
        int idx = map->node_index(p);
        if (idx < 0) continue;
        next_dial_us_[p] = now + kRedialUs;
        dial(p, map->nodes[idx].host, map->nodes[idx].port);
    }
}

void Replicator::send_subs(Link* l) {
    if (l->st != Link::St::Up) return;
    uint64_t now = now_us();
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        Inbound& in = in_[b];
        if (in.source != l->peer || in.link != nullptr || now < in.retry_at_us) continue;
        in.link = l;
        set_in_sync(in, false);
        frame_sub(&l->wbuf, SubMsg{b, in.history, applier_->applied_seqno(b)});
    }
}

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
    ::close(l->fd);
    l->fd = -1;
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        Inbound& in = in_[b];
        if (in.link != l) continue;
        if (in.backfilling) in.history = 0;  // an interrupted backfill leaves holes
        in.link = nullptr;
        set_in_sync(in, false);
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
        ssize_t n = ::send(l->fd, l->wbuf.data() + l->wpos, l->pending(), MSG_NOSIGNAL);
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
        l->st = Link::St::Challenge;
        l->wbuf = "cluster auth\r\n";
        l->last_rx_us = now_us();
    }
    if (what & EV_READ) {
        char buf[65536];
        for (int i = 0; i < 64; ++i) {
            ssize_t n = ::recv(l->fd, buf, sizeof buf, 0);
            if (n > 0) {
                l->rbuf.append(buf, static_cast<size_t>(n));
                l->stats->bytes_in += static_cast<uint64_t>(n);
                l->last_rx_us = now_us();
                if (static_cast<size_t>(n) < sizeof buf) break;
                continue;
            }
            if (n == 0) return close_link(l, "connection closed by peer");
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            return close_link(l, strerror(errno));
        }
        if (l->st != Link::St::Up && !dial_text(l)) return;
        if (l->fd < 0) return;
        if (!read_frames(l)) return close_link(l, "bad frames");
        if (l->fd < 0) return;
    }
    // Room in the buffer again: send what waited.
    if (l->st == Link::St::Up && l->blocked && l->pending() < kHighWater / 2) {
        l->blocked = false;
        pump_link(l, nullptr);
    }
    if (l->fd >= 0 && !flush(l)) close_link(l, "write failed");
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
                       "\r\ncluster repl " + me_ + " " + l->nonce + "\r\n";
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
    while (l->fd >= 0) {
        FrameType t;
        std::string_view payload;
        std::string_view in(l->rbuf.data() + l->rpos, l->rbuf.size() - l->rpos);
        size_t used = next_frame(in, &t, &payload);
        if (used == 0) break;
        if (used == SIZE_MAX) return false;
        if (l->st == Link::St::Hello) {
            std::string name, proof;
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
            size_t used = decode(p, &rec);
            if (used != p.size()) return false;
            if (rec.bucket >= nbuckets_) return false;
            Inbound& in = in_[rec.bucket];
            if (in.link != l) return true;  // unsubscribed meanwhile: late records
            l->stats->records_in++;
            if (cluster_.state(rec.bucket) != BucketState::Replica) return true;  // promoted
            if (applier_->apply(rec) == Applied::Done && in.keep) {
                keep_inbound(rec.bucket, type, p, rec.seqno);
            }
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
            set_in_sync(in, false);
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
            if (p.size() % 12 != 0) return false;
            const uint64_t now = now_us();
            for (size_t i = 0; i < p.size(); i += 12) {
                uint32_t b = get_u32(p.data() + i);
                if (b >= nbuckets_) return false;
                on_ack(l, b, get_u64(p.data() + i + 4), now);
            }
            return true;
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
        case FrameType::Hello: return false;  // only once, first
    }
    return false;
}

// ---------------------------------------------------------------------------------------
// Active side.

void Replicator::on_sub(Link* l, uint32_t b, uint64_t history, uint64_t seqno) {
    if (!buckets_[b].on()) reconcile();  // a map installed a moment ago counts
    const BucketMap* map = cluster_.map();
    drop_sub(l, b);
    if (!buckets_[b].on() || !replicates_to(map, b, l->peer)) {
        frame_bucket(&l->wbuf, FrameType::NotActive, b);
        return;
    }
    Bucket& bk = buckets_[b];
    OutSub s;
    StreamMsg m;
    m.bucket = b;
    {
        std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
        s.history = bk.history;
        m.history = bk.history;
        if (history == bk.history && seqno <= bk.backlog.last_seqno() &&
            bk.backlog.holds_after(seqno)) {
            s.sent = seqno;  // resume: the backlog holds everything after seqno
            m.seqno = seqno;
            l->stats->resumes++;
        } else {
            s.sent = bk.backlog.last_seqno();  // backfill: items, then records after this
            s.backfill = true;
            m.seqno = s.sent;
            m.backfill = true;
            l->stats->backfills++;
        }
    }
    frame_stream(&l->wbuf, m);
    if (!pump_sub(l, b, l->out.put(b, s))) {
        l->stats->overflows++;
        overflows_.fetch_add(1, std::memory_order_relaxed);
        close_link(l, "backlog overflowed");
    }
}

// Copies what bucket b has for this subscription into the link's buffer. False: records the
// peer needs are gone from the backlog (the link must be cut).
bool Replicator::pump_sub(Link* l, uint32_t b, OutSub& s, bool wait) {
    Bucket& bk = buckets_[b];
    if (s.backfill) {
        s.backfill = false;
        size_t n = store_->visit_bucket(
            b, [&](const store::Item& it) { frame_item(it, b, clock_, &l->wbuf); });
        frame_backfill_end(&l->wbuf, BackfillEndMsg{b, s.sent, n});
        l->stats->backfill_items += n;
        l->stats->records_out += n;
    }
    std::unique_lock<std::mutex> g(store_->bucket_mutex(b), std::defer_lock);
    if (wait) {
        g.lock();
    } else if (!g.try_lock()) {
        // A worker holds the shard (this thread may have preempted it there, on a shared
        // core): come back at the next sweep rather than sleep on the lock.
        dirty_word(b).fetch_or(dirty_bit(b));
        return true;
    }
    if (bk.history != s.history) {
        // The bucket started a new history here (it stopped and started being ours): the
        // peer must subscribe again and will be backfilled.
        frame_bucket(&l->wbuf, FrameType::NotActive, b);
        s.sent = UINT64_MAX;
        return true;
    }
    if (s.sent == UINT64_MAX) return true;
    size_t n = 0;
    if (!bk.backlog.copy_since(s.sent, &l->wbuf, &n)) return false;
    if (n == 0) return true;
    l->stats->records_out += n;
    swept_records_ += n;
    const uint64_t t = bk.backlog.time_of(s.sent + 1);
    s.sent = bk.backlog.last_seqno();
    if (s.runs.size() < OutSub::kMaxRuns) {
        s.runs.push_back(OutSub::Run{s.sent, t});
    } else {
        s.runs.back().last = s.sent;
    }
    return true;
}

void Replicator::pump_link(Link* l, const std::vector<uint32_t>* only) {
    auto one = [&](uint32_t b, OutSub& s) {
        if (l->fd < 0) return;
        if (l->pending() >= kHighWater) {
            l->blocked = true;
            return;
        }
        if (!pump_sub(l, b, s, only == nullptr)) {
            l->stats->overflows++;
            overflows_.fetch_add(1, std::memory_order_relaxed);
            close_link(l, "backlog overflowed");
        }
    };
    if (only == nullptr) {
        for (auto& [b, s] : l->out) {
            one(b, s);
            if (l->fd < 0) return;
        }
        return;
    }
    for (uint32_t b : *only) {
        OutSub* s = l->out.find(b);
        if (s == nullptr) continue;
        // Nothing new, by the bucket's sequence number read without its lock. A write whose
        // number this thread does not see yet is sent by the next sweep of its group, or at the
        // latest by tick(), which pumps every subscription under its lock.
        if (!s->backfill && s->sent == buckets_[b].seqno.load(std::memory_order_relaxed)) continue;
        one(b, *s);
        if (l->fd < 0) return;
    }
}

bool Replicator::pump_dirty() {
    // Every bucket of a dirty group is looked at, whether or not it wrote: that is what lets a
    // writer skip setting a bit already set.
    std::vector<uint32_t>& dirty = dirty_scratch_;
    dirty.clear();
    for (size_t i = 0; i < dirty_words(); ++i) {
        uint64_t bits = dirty_[i].exchange(0);
        while (bits != 0) {
            const uint32_t g = static_cast<uint32_t>(i * 64) + static_cast<uint32_t>(__builtin_ctzll(bits));
            bits &= bits - 1;
            const uint32_t end = std::min(nbuckets_, (g + 1) << kDirtyGroupShift);
            for (uint32_t b = g << kDirtyGroupShift; b < end; ++b) {
                if (buckets_[b].on()) dirty.push_back(b);
            }
        }
    }
    if (dirty.empty()) return false;
    for (auto& lp : links_) {
        Link* l = lp.get();
        if (l->fd < 0 || l->st != Link::St::Up || l->out.empty()) continue;
        pump_link(l, &dirty);
        if (l->fd >= 0 && !flush(l)) close_link(l, "write failed");
    }
    return true;
}

void Replicator::on_ack(Link* l, uint32_t b, uint64_t seqno, uint64_t now) {
    OutSub* sp = l->out.find(b);
    if (sp == nullptr) return;
    OutSub& s = *sp;
    if (!s.confirmed) {
        s.confirmed = true;
        in_sync_out_[b].fetch_add(1, std::memory_order_relaxed);
    }
    Bucket& bk = buckets_[b];
    // Each run of records this acknowledgement completes counts at the age of the run's first
    // record: an upper bound for the others, which were written within one sweep after it.
    uint64_t done = s.acked;
    while (!s.runs.empty() && s.runs.front().last <= seqno) {
        const OutSub::Run& r = s.runs.front();
        l->stats->lag.add(now > r.t_us ? now - r.t_us : 0, r.last - done);
        done = r.last;
        s.runs.pop_front();
    }
    s.acked = std::max(s.acked, seqno);
    if (seqno > bk.acked.load(std::memory_order_relaxed)) {
        bk.acked.store(seqno, std::memory_order_relaxed);
        check_waiters(b, seqno);
    }
}

// ---------------------------------------------------------------------------------------
// repl_ack.

bool Replicator::can_ack(uint32_t bucket) const noexcept {
    return bucket < nbuckets_ && in_sync_out_[bucket].load(std::memory_order_relaxed) > 0;
}

void Replicator::wait_ack(WriteRef w, AckFn fn, void* ctx, uint64_t token) {
    ack_waits_.fetch_add(1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> g(ack_mu_);
        waiters_.push_back(AckWaiter{w, fn, ctx, token,
                                     now_us() + uint64_t{cfg_.ack_timeout_ms} * 1000});
    }
    // Someone waits: send the record now rather than at the next poll, and look whether it
    // was acknowledged already.
    if (buckets_[w.bucket].acked.load(std::memory_order_relaxed) >= w.seqno) {
        ack_recheck_.store(true, std::memory_order_relaxed);
    }
    // The bucket's group is marked again, so the sweep this wakes looks at the bucket even if
    // an earlier sweep read its sequence number before this write's was visible.
    dirty_word(w.bucket).fetch_or(dirty_bit(w.bucket));
    wake();
}

void Replicator::check_waiters(uint32_t b, uint64_t acked) {
    if (cfg_.ack == AckMode::None) return;  // nobody waits
    std::vector<AckWaiter> done;
    {
        std::lock_guard<std::mutex> g(ack_mu_);
        for (size_t i = 0; i < waiters_.size();) {
            uint32_t wb = waiters_[i].w.bucket;
            bool hit = b == UINT32_MAX
                           ? waiters_[i].w.seqno <= buckets_[wb].acked.load(std::memory_order_relaxed)
                           : wb == b && waiters_[i].w.seqno <= acked;
            if (hit) {
                done.push_back(waiters_[i]);
                waiters_[i] = waiters_.back();
                waiters_.pop_back();
            } else {
                ++i;
            }
        }
    }
    for (AckWaiter& w : done) w.fn(w.ctx, w.token, false);
}

// ---------------------------------------------------------------------------------------
// Stats.

void Replicator::publish_stats() {
    uint64_t now = now_us();
    std::string s;
    auto line = [&](const std::string& k, const std::string& v) {
        s += "STAT " + k + " " + v + "\r\n";
    };
    size_t backlog_bytes = 0, backlog_records = 0, streaming = 0;
    uint64_t backlog_dropped = 0;
    std::vector<std::string> btext(nbuckets_);
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        Bucket& bk = buckets_[b];
        if (bk.on()) {
            ++streaming;
            uint64_t last, acked = bk.acked.load(std::memory_order_relaxed), t = 0;
            {
                std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
                backlog_bytes += bk.backlog.bytes();
                backlog_records += bk.backlog.records();
                backlog_dropped += bk.backlog.dropped();
                last = bk.backlog.last_seqno();
                if (acked < last) t = bk.backlog.time_of(acked + 1);
            }
            uint64_t lag_ms = t != 0 && now > t ? (now - t) / 1000 : 0;
            bk.lag_ms.store(lag_ms, std::memory_order_relaxed);
            btext[b] = "A";  // active with replicas: live figures (bucket_stats_text)
        }
        const Inbound& in = in_[b];
        if (!in.source.empty()) btext[b] += "R" + in.source;  // replicated from that node
    }
    const char* ack = cfg_.ack == AckMode::None     ? "none"
                      : cfg_.ack == AckMode::Delete ? "delete"
                                                    : "all";
    line("repl_ack", ack);
    line("buckets_streaming", std::to_string(streaming));
    line("backlog_bytes", std::to_string(backlog_bytes));
    line("backlog_limit", std::to_string(per_bucket_backlog_ * streaming));
    line("backlog_records", std::to_string(backlog_records));
    line("backlog_dropped", std::to_string(backlog_dropped));
    line("backlog_overflows", std::to_string(overflows_.load()));
    line("ack_waits", std::to_string(ack_waits_.load()));
    line("ack_timeouts", std::to_string(ack_timeouts_.load()));
    uint32_t in_buckets = 0, in_synced = 0;
    for (const Inbound& in : in_) {
        if (in.source.empty()) continue;
        ++in_buckets;
        if (in.in_sync) ++in_synced;
    }
    line("buckets_replicated", std::to_string(in_buckets));
    line("buckets_replicated_in_sync", std::to_string(in_synced));
    for (auto& [peer, psp] : peer_stats_) {
        PeerStats& ps = *psp;
        const Link* l = nullptr;
        for (auto& lp : links_) {
            if (lp->peer == peer && lp->fd >= 0) l = lp.get();
        }
        ps.lag.maybe_rotate(now);
        std::string p = "link:" + peer + ":";
        const char* state = l == nullptr                   ? "down"
                            : l->st == Link::St::Up        ? "up"
                                                           : "connecting";
        line(p + "state", state);
        line(p + "role", l == nullptr ? "-" : (l->dialer ? "dialer" : "acceptor"));
        uint64_t lag_records = 0, lag_ms = 0;
        size_t out_subs = 0, out_sync = 0, in_subs = 0, in_sync = 0;
        if (l != nullptr) {
            for (auto& [b, sub] : l->out) {
                ++out_subs;
                if (sub.confirmed) ++out_sync;
                uint64_t last = buckets_[b].seqno.load(std::memory_order_relaxed);
                if (last > sub.acked) lag_records += last - sub.acked;
                lag_ms = std::max(lag_ms, buckets_[b].lag_ms.load(std::memory_order_relaxed));
            }
            for (uint32_t b = 0; b < nbuckets_; ++b) {
                if (in_[b].link != l) continue;
                ++in_subs;
                if (in_[b].in_sync) ++in_sync;
            }
        }
        line(p + "buckets_out", std::to_string(out_subs));
        line(p + "buckets_out_in_sync", std::to_string(out_sync));
        line(p + "buckets_in", std::to_string(in_subs));
        line(p + "buckets_in_in_sync", std::to_string(in_sync));
        line(p + "records_out", std::to_string(ps.records_out));
        line(p + "bytes_out", std::to_string(ps.bytes_out));
        line(p + "records_in", std::to_string(ps.records_in));
        line(p + "bytes_in", std::to_string(ps.bytes_in));
        line(p + "lag_records", std::to_string(lag_records));
        line(p + "lag_ms", std::to_string(lag_ms));
        line(p + "lag_p50_us", std::to_string(ps.lag.quantile(0.5)));
        line(p + "lag_p99_us", std::to_string(ps.lag.quantile(0.99)));
        line(p + "send_buffer", std::to_string(l == nullptr ? 0 : l->pending()));
        line(p + "rtt_us", std::to_string(ps.rtt_us));
        line(p + "connects", std::to_string(ps.connects));
        line(p + "disconnects", std::to_string(ps.disconnects));
        line(p + "resumes", std::to_string(ps.resumes));
        line(p + "backfills", std::to_string(ps.backfills));
        line(p + "backfill_items", std::to_string(ps.backfill_items));
        line(p + "resumes_in", std::to_string(ps.resumes_in));
        line(p + "backfills_in", std::to_string(ps.backfills_in));
        line(p + "backfill_items_in", std::to_string(ps.backfill_items_in));
        line(p + "overflows", std::to_string(ps.overflows));
        if (!ps.last_error.empty()) {
            std::string e = ps.last_error;
            std::replace(e.begin(), e.end(), ' ', '_');
            line(p + "last_error", e);
        }
    }
    std::lock_guard<std::mutex> g(stats_mu_);
    stats_text_ = std::move(s);
    bucket_text_ = std::move(btext);
}

std::string Replicator::stats_text() const {
    std::lock_guard<std::mutex> g(stats_mu_);
    return stats_text_;
}

// Sequence numbers, acknowledgements and sync states are read live, so a client that just
// wrote sees its write counted; the lag in ms and the source are from the last tick.
std::string Replicator::bucket_stats_text(uint32_t b) const {
    if (b >= nbuckets_) return {};
    std::string snap;
    {
        std::lock_guard<std::mutex> g(stats_mu_);
        snap = bucket_text_[b];
    }
    std::string out;
    std::string p = "STAT bucket:" + std::to_string(b) + ":";
    if (!snap.empty() && snap[0] == 'A') {
        const Bucket& bk = buckets_[b];
        uint64_t last = bk.seqno.load(std::memory_order_relaxed);
        uint64_t acked = bk.acked.load(std::memory_order_relaxed);
        out += p + "seqno " + std::to_string(last) + "\r\n";
        out += p + "repl_acked " + std::to_string(acked) + "\r\n";
        out += p + "repl_lag " + std::to_string(last > acked ? last - acked : 0) + "\r\n";
        out += p + "repl_lag_ms " + std::to_string(bk.lag_ms.load(std::memory_order_relaxed)) +
               "\r\n";
        out += p + "replicas_in_sync " +
               std::to_string(in_sync_out_[b].load(std::memory_order_relaxed)) + "\r\n";
        snap.erase(0, 1);
    }
    if (!snap.empty() && snap[0] == 'R') {
        out += p + "source " + snap.substr(1) + "\r\n";
        out += p + "applied_seqno " +
               std::to_string(applied_live_[b].load(std::memory_order_relaxed)) + "\r\n";
        out += p + "in_sync " +
               (in_sync_in_[b].load(std::memory_order_relaxed) ? "yes" : "no") + "\r\n";
    }
    return out;
}

}  // namespace mcm::repl
