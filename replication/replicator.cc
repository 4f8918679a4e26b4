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

void Replicator::set_in_sync(Inbound& in, bool v, bool stream_lost) noexcept {
    std::atomic<uint64_t>& lost = in_sync_lost_us_[in.bucket];
    if (v) {
        lost.store(0, std::memory_order_relaxed);
    } else if (!stream_lost) {
        lost.store(0, std::memory_order_relaxed);
    } else if (in.in_sync) {
        lost.store(now_us(), std::memory_order_relaxed);
    }  // a stream that ends while not in sync keeps what an earlier loss recorded
    in.in_sync = v;
    in_sync_in_[in.bucket].store(v ? 1 : 0, std::memory_order_relaxed);
}

Replicator::PeerStats& Replicator::peer_stats(const std::string& peer) {
    auto& p = peer_stats_[peer];
    if (!p) p = std::make_unique<PeerStats>();
    return *p;
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
      held_(cfg.nbuckets, 0),
      bucket_text_(cfg.nbuckets),
      in_sync_out_(new std::atomic<uint8_t>[cfg.nbuckets]),
      in_sync_in_(new std::atomic<uint8_t>[cfg.nbuckets]),
      in_sync_lost_us_(new std::atomic<uint64_t>[cfg.nbuckets]),
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
        in_sync_lost_us_[b].store(0, std::memory_order_relaxed);
        applied_live_[b].store(0, std::memory_order_relaxed);
        in_[b].bucket = b;
    }
    for (size_t i = 0; i < dirty_words(); ++i) dirty_[i].store(0);
}

Replicator::~Replicator() {
    stop();
    links_.clear();
    dead_links_.clear();
    for (Adopted& a : adopted_) {
        tls::finish(a.ssl);
        ::close(a.fd);
    }
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
    // within 100 ms; any later write to the group sends it sooner.)
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
    if (self->cluster_.generation() != self->reconciled_gen_) {  // a map: act on it now
        self->reconciled_gen_ = self->cluster_.generation();
        self->reconcile();
    }
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

void Replicator::adopt(int fd, SSL* ssl, std::string node, std::string nonce,
                       std::string buffered) {
    {
        std::lock_guard<std::mutex> g(adopt_mu_);
        adopted_.push_back(
            Adopted{fd, ssl, std::move(node), std::move(nonce), std::move(buffered)});
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
        l->ssl = a.ssl;
        // Writes resume from a buffer that may have moved and grown, as the dialer's do.
        if (l->ssl != nullptr) {
            SSL_set_mode(l->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        }
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
            bad_frames_.fetch_add(1, std::memory_order_relaxed);
            close_link(raw, "bad frames");
            continue;
        }
        (void)flush(raw);
        // A TLS session may hold decrypted bytes the socket will never signal again.
        if (raw->ssl != nullptr && raw->fd >= 0 && SSL_pending(raw->ssl) > 0) handle_io(raw, EV_READ);
    }
}

void Replicator::tick() {
    uint64_t now = now_us();
    dead_links_.clear();
    take_adopted();
    take_activations();
    ++ticks_;
    // The map's consequences at once; the redial and resubscribe timers (200 ms) every
    // fourth tick. A full pass over the buckets each tick cost the idle thread for nothing.
    const uint64_t gen = cluster_.generation();
    if (gen != reconciled_gen_ || ticks_ % 4 == 0) {
        reconciled_gen_ = gen;
        reconcile();
    }
    if (!to_drop_.empty()) {
        const uint32_t b = to_drop_.front();
        to_drop_.pop_front();
        if (cluster_.state(b) == BucketState::Dead) {
            items_dropped_.fetch_add(store_->drop_buckets(b, b), std::memory_order_relaxed);
        }
    }
    drain_hints();      // the workers' rings hold 25 ms of hints at most
    ship_hints(now);    // every hint_ms; the loop below flushes them
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
            // Every subscription, but under its lock only every fourth tick (100 ms): taking
            // 1,024 locks each tick cost an idle replica pair more than its heartbeats.
            pump_link(l, nullptr, ticks_ % 4 == 0);
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
    if (ticks_ % 4 == 0) forget_gone_peers();
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
    if (ticks_ % 2 == 0) publish_stats();  // figures at most 50 ms old
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

// Stats and redial timers of peers that are neither in the map nor on a link: `stats
// replication` lists the links that exist or that the map asks for, not every name ever seen.
void Replicator::forget_gone_peers() {
    const std::shared_ptr<const BucketMap> map = cluster_.map();
    auto linked = [this](const std::string& peer) {
        for (auto& l : links_) {
            if (l->peer == peer) return true;
        }
        for (auto& l : dead_links_) {
            if (l->peer == peer) return true;
        }
        return false;
    };
    for (auto it = peer_stats_.begin(); it != peer_stats_.end();) {
        const bool in_map = map != nullptr && map->node_index(it->first) >= 0;
        if (!in_map && !linked(it->first)) {
            next_dial_us_.erase(it->first);
            it = peer_stats_.erase(it);
        } else {
            ++it;
        }
    }
}

void Replicator::reconcile() {
    const std::shared_ptr<const BucketMap> map_ref = cluster_.map();
    const BucketMap* map = map_ref.get();
    uint64_t now = now_us();
    std::set<std::string> needed;
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        BucketState st = cluster_.state(b);
        bool has_map = map != nullptr && b < map->nbuckets;
        // A bucket pending for a planned handover is still ours: its stream must go on to the
        // new owner, which takes over at its last record.
        const bool ours = st == BucketState::Active ||
                          (st == BucketState::Pending && cluster_.in_handoff(b));
        bool want = ours && has_map && !map->replicas[b].empty();
        if (want && !buckets_[b].on()) enable_bucket(b);
        if (!want && buckets_[b].on()) disable_bucket(b);
        // A bucket this server no longer holds (a move trimmed it, a failover gave it away):
        // its items are never served again, so their memory goes back (tick(), one bucket
        // at a time: each drop walks a store shard under its lock).
        const bool holds = st != BucketState::Dead;
        if (held_[b] != 0 && !holds) to_drop_.push_back(b);
        held_[b] = holds ? 1 : 0;
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
    reconciled_epoch_.store(map == nullptr ? 0 : map->epoch, std::memory_order_release);
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
    if (map == nullptr) return;
    // A peer the map no longer holds: its link goes (a removed server that keeps running
    // would otherwise keep it, and its stats, for good).
    for (auto& lp : links_) {
        if (lp->fd >= 0 && map->node_index(lp->peer) < 0) close_link(lp.get(), "not in the map");
    }
    // Dial the peers we need and should call (the name that sorts first dials).
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

}  // namespace mcm::repl
