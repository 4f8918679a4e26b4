// What the replication thread does for the coordinator (doc/coordinator.md): it prepares the
// buckets a map made active here (a promoted replica continues its bucket's history and
// sequence numbers, so the bucket's other replicas resume instead of being backfilled), keeps
// what a replica applies when the bucket has other replicas, answers the heartbeat's
// per-bucket lines, and decides the fencing rule's "the coordinator is gone" case from its
// peers' reports.
#include <algorithm>
#include <mutex>

#include "replication/replicator_impl.h"
#include "replication/stream.h"
#include "server/log.h"

namespace mcm::repl {

void Replicator::take_activations() {
    if (cluster_.resets() != resets_seen_) forget_after_reset();
    cluster_.take_demotions(&demotions_);
    for (uint32_t b : demotions_) demote_bucket(b);
    demotions_.clear();
    cluster_.take_activations(&activations_);
    for (auto [b, was] : activations_) activate_bucket(b, was);
    activations_.clear();
}

// `cluster reset` dropped every item: a history held as a replica is no longer held, and an
// active's backlog describes data that is gone. Every bucket starts over (the next
// subscription is a backfill).
void Replicator::forget_after_reset() {
    resets_seen_ = cluster_.resets();
    std::fill(held_.begin(), held_.end(), 0);  // the reset dropped every item already
    to_drop_.clear();
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        Inbound& in = in_[b];
        if (in.link != nullptr) frame_bucket(&in.link->wbuf, FrameType::Unsub, b);
        in.link = nullptr;
        in.source.clear();
        in.history = 0;
        in.backfilling = false;
        set_in_sync(in, false);
        applier_->reset(b, 0);
        applied_live_[b].store(0, std::memory_order_relaxed);
        if (buckets_[b].on()) disable_bucket(b);
    }
    for (auto& lp : links_) {
        std::vector<uint32_t> subs;
        for (auto& [b, sub] : lp->out) subs.push_back(b);
        for (uint32_t b : subs) {
            frame_bucket(&lp->wbuf, FrameType::NotActive, b);
            drop_sub(lp.get(), b);
        }
    }
    LOG(server::LogLevel::Info, "replication: cluster reset, every bucket starts over");
}

// b is pending here because a map made it active. A replica that holds a consistent prefix
// of the bucket's history (in.history set: records applied in order, no backfill left
// half-done) continues it: same history id, the next write numbered after the last record
// applied, the backlog of applied records (if kept) still valid. A replica with an
// incomplete copy drops it: the bucket starts cold rather than serve values that may be
// stale. A bucket that was not a replica here starts a new history.
void Replicator::activate_bucket(uint32_t b, BucketState was) {
    if (b >= nbuckets_ || cluster_.state(b) != BucketState::Pending) return;
    Inbound& in = in_[b];
    const uint64_t applied = applier_->applied_seqno(b);
    const bool promoted = was == BucketState::Replica;
    // A backfill under way has set the history but not yet delivered the whole bucket.
    const bool warm = promoted && in.history != 0 && !in.backfilling;
    if (in.link != nullptr) {  // no more records from the former active
        frame_bucket(&in.link->wbuf, FrameType::Unsub, b);
        in.link = nullptr;
    }
    in.source.clear();
    in.backfilling = false;
    set_in_sync(in, false);
    // Not a complete copy: the bucket starts empty. That includes one that was not a replica
    // here: what this server may still hold of it (it held it once, before a failover or a
    // move took it away, and nothing dropped the items) is older than writes made since.
    if (!warm) (void)store_->drop_buckets(b, b);
    Bucket& bk = buckets_[b];
    const std::shared_ptr<const BucketMap> map_ref = cluster_.map();
    const BucketMap* map = map_ref.get();
    const bool replicas = map != nullptr && b < map->nbuckets && !map->replicas[b].empty();
    {
        std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
        if (warm) {
            store_->set_bucket_seqno_locked(b, applied);
            bk.history = in.history;
            if (bk.backlog.last_seqno() != applied) bk.backlog.clear(applied);
        } else {
            bk.history = random_history();
            bk.backlog.clear(store_->bucket_seqno_locked(b));
        }
        bk.seqno.store(bk.backlog.last_seqno(), std::memory_order_relaxed);
        if (!replicas) bk.backlog.release();
    }
    in.keep = false;
    bk.acked.store(0, std::memory_order_relaxed);
    bk.enabled.store(replicas, std::memory_order_release);
    cluster_.activate(b);
    if (promoted) {
        LOG(server::LogLevel::Info, "replication: bucket %u promoted here %s at seqno %llu", b,
            warm ? "warm" : "cold (no complete copy)", static_cast<unsigned long long>(applied));
    }
}

// b was handed over to another server by a planned move and is a replica here now. Its
// writes stopped at the handover and the new owner continued its history from the same
// sequence number, so this server holds exactly that history: it subscribes with it and is
// resumed, not backfilled. (Before reconcile(), which disables the bucket as an active.)
void Replicator::demote_bucket(uint32_t b) {
    if (b >= nbuckets_ || cluster_.state(b) != BucketState::Replica) return;
    Inbound& in = in_[b];
    Bucket& bk = buckets_[b];
    uint64_t at = 0;
    uint64_t history = 0;
    {
        std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
        at = store_->bucket_seqno_locked(b);
        if (bk.on() && bk.backlog.last_seqno() == at) history = bk.history;
    }
    if (in.link != nullptr) frame_bucket(&in.link->wbuf, FrameType::Unsub, b);
    in.link = nullptr;
    in.source.clear();  // reconcile() sets the new owner
    in.backfilling = false;
    set_in_sync(in, false);
    in.history = history;
    applier_->reset(b, at);
    applied_live_[b].store(at, std::memory_order_relaxed);
    LOG(server::LogLevel::Info, "replication: bucket %u handed over at seqno %llu; %s", b,
        static_cast<unsigned long long>(at),
        history != 0 ? "continues as a replica" : "a replica from scratch (backfilled)");
}

// Says so when this server starts or stops refusing its active buckets (the operator's first
// question after a page). Decided here at each tick, as the request path decides per request.
void Replicator::note_fencing(const CoordinatorView& me) {
    const bool fenced = me.leased && !cluster_.serving_now();
    if (fenced == fenced_logged_) return;
    fenced_logged_ = fenced;
    if (fenced) {
        LOG(server::LogLevel::Warn,
            "fenced: no lease from the coordinator for %u ms and no majority of peers saying "
            "it is gone; active buckets are refused",
            me.silent_ms);
    } else {
        LOG(server::LogLevel::Warn, "serving again: %s",
            me.lease_valid ? "the coordinator renewed the lease" : "the coordinator is gone");
    }
}

// A record applied to a bucket whose other replicas may one day resume from this server.
void Replicator::keep_inbound(uint32_t b, std::string_view record, uint64_t seqno) {
    char h[kFrameHeader];
    put_frame_header(h, FrameType::Record, record.size());
    std::lock_guard<std::mutex> g(store_->bucket_mutex(b));
    try {
        buckets_[b].backlog.append(seqno, now_us(), {std::string_view(h, sizeof h), record});
    } catch (...) {
        // Out of memory: the gap makes a later resume from here a backfill.
    }
}

void Replicator::heartbeat_line(uint32_t b, BucketState s, std::string* out) const {
    if (b >= nbuckets_) return;
    if (s == BucketState::Active || s == BucketState::Pending) {
        const uint64_t seqno = buckets_[b].on() ? buckets_[b].seqno.load(std::memory_order_relaxed)
                                                : store_->bucket_seqno(b);
        *out += "A " + std::to_string(b) + " " + std::to_string(seqno) + " " +
                std::to_string(in_sync_out_[b].load(std::memory_order_relaxed)) + "\r\n";
    } else if (s == BucketState::Replica) {
        // A map installed a moment ago may have changed this bucket's source while the
        // replication thread has not yet acted on it: say "not in sync" until it has, so the
        // coordinator never counts a replica in sync with a stream it no longer follows.
        const bool current = reconciled_epoch_.load(std::memory_order_acquire) >= cluster_.epoch();
        const bool in_sync = current && in_sync_in_[b].load(std::memory_order_relaxed);
        *out += "R " + std::to_string(b) + " " +
                std::to_string(applied_live_[b].load(std::memory_order_relaxed)) + " " +
                (in_sync ? "1" : "0");
        // Not in sync because its active's stream ended: how long ago it was in sync.
        const uint64_t lost = in_sync_lost_us_[b].load(std::memory_order_relaxed);
        if (!in_sync && lost != 0) {
            const uint64_t now = now_us();
            *out += " " + std::to_string(now > lost ? (now - lost) / 1000 : 0);
        }
        *out += "\r\n";
    }
}

void Replicator::nudge(uint32_t b) noexcept {
    if (b >= nbuckets_) return;
    dirty_word(b).fetch_or(dirty_bit(b));
    wake_pending_.store(true);
    wake();
}

void Replicator::replica_progress(uint32_t b, uint64_t* applied, bool* in_sync) const noexcept {
    if (b >= nbuckets_) return;
    *applied = applied_live_[b].load(std::memory_order_relaxed);
    const bool current = reconciled_epoch_.load(std::memory_order_acquire) >= cluster_.epoch();
    *in_sync = current && in_sync_in_[b].load(std::memory_order_relaxed) != 0;
}

// Fencing's second clause (doc/coordinator.md): with the lease out, active buckets are
// served only while more than half of the map's servers, this one included, say in fresh
// reports that they have not heard the coordinator for quiet_ms either, and none of them
// holds a newer map. Then the coordinator is gone (or cut off from most of the cluster,
// where it changes nothing), not merely out of reach from here.
void Replicator::check_coordinator() {
    CoordinatorView me = cluster_.coordinator();
    note_fencing(me);
    const std::shared_ptr<const BucketMap> map_ref = cluster_.map();
    const BucketMap* map = map_ref.get();
    if (!me.leased || map == nullptr || me.silent_ms < me.quiet_ms) {
        cluster_.set_gone_until(0);
        return;
    }
    const uint64_t now = now_us();
    const uint64_t epoch = cluster_.epoch();
    size_t agree = 1;  // this server
    uint64_t until = now + kReportFreshUs;  // re-decided every tick meanwhile
    for (const BucketMap::Node& n : map->nodes) {
        if (n.name == me_) continue;
        for (auto& lp : links_) {
            const Link& l = *lp;
            if (l.peer != n.name || l.fd < 0 || l.st != Link::St::Up || l.coord_rx_us == 0 ||
                now - l.coord_rx_us > kReportFreshUs) {
                continue;
            }
            if (l.coord_epoch > epoch) {  // a newer map exists: this one may be stale
                cluster_.set_gone_until(0);
                return;
            }
            if (l.coord_silent_ms >= me.quiet_ms) {
                ++agree;
                until = std::min(until, l.coord_rx_us + kReportFreshUs);
            }
            break;
        }
    }
    if (agree * 2 > map->nodes.size()) {
        cluster_.set_gone_until(static_cast<int64_t>(until));
    } else {
        cluster_.set_gone_until(0);
    }
}

}  // namespace mcm::repl
