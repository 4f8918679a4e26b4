// The active side of replication: subscriptions served from the backlog or by backfill,
// the sweeps that send new records, acknowledgements and repl_ack waits.
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
#include "replication/replicator_impl.h"
#include "replication/stream.h"
#include "server/log.h"

namespace mcm::repl {
// ---------------------------------------------------------------------------------------
// Active side.

void Replicator::on_sub(Link* l, uint32_t b, uint64_t history, uint64_t seqno) {
    if (!buckets_[b].on()) reconcile();  // a map installed a moment ago counts
    const std::shared_ptr<const BucketMap> map_ref = cluster_.map();
    const BucketMap* map = map_ref.get();
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
            s.sent = bk.backlog.last_seqno();  // backfill: from the items as of this record
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
//
// A backfill goes in steps, each under one short hold of the bucket's lock: first the records
// written since the last step, then the next few hundred items as they are now. An item sent
// is so at least as new as every record sent before it, and a record sent after it is a
// later write; records carry the state a write left (record.h), and those of keys the walk
// has not reached yet apply to a missing key harmlessly (a Touch or Delete finds nothing, a
// Set is overwritten when the key's item comes), so the replica ends with the active's items
// whatever the writes between steps. Steps stop at the link's high mark (the link resumes
// them once drained) and after kBackfillSliceUs (the next sweep resumes them), so one big
// bucket neither fills the buffer nor holds up this thread's other links.
bool Replicator::pump_sub(Link* l, uint32_t b, OutSub& s, bool wait) {
    Bucket& bk = buckets_[b];
    const uint64_t began = s.backfill ? now_us() : 0;
    for (;;) {
        if (s.backfill && l->pending() >= kHighWater) {
            l->blocked = true;
            return true;
        }
        if (s.backfill && l->wbuf.capacity() - l->wbuf.size() < kBackfillRoom) {
            // Grown here rather than by the appends under the lock: growing a buffer of a few
            // MiB copies it into fresh pages, which took up to 7 ms in a step.
            l->wbuf.reserve(l->wbuf.size() + kBackfillRoom);
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
        const uint64_t held = s.backfill ? now_us() : 0;
        const uint64_t held_cpu = s.backfill ? thread_cpu_us() : 0;
        if (bk.history != s.history) {
            // The bucket started a new history here (it stopped and started being ours): the
            // peer must subscribe again and will be backfilled.
            frame_bucket(&l->wbuf, FrameType::NotActive, b);
            s.sent = UINT64_MAX;
            s.backfill = false;
            return true;
        }
        if (s.sent == UINT64_MAX) return true;
        size_t n = 0;
        if (!bk.backlog.copy_since(s.sent, &l->wbuf, &n)) return false;
        if (n != 0) {
            l->stats->records_out += n;
            swept_records_ += n;
            const uint64_t t = bk.backlog.time_of(s.sent + 1);
            s.sent = bk.backlog.last_seqno();
            if (s.runs.size() < OutSub::kMaxRuns) {
                s.runs.push_back(OutSub::Run{s.sent, t});
            } else {
                s.runs.back().last = s.sent;
            }
        }
        if (!s.backfill) return true;
        const size_t items = store_->visit_bucket_locked(
            b, &s.cursor, kBackfillStepItems, kBackfillStepUs,
            [&](const store::Item& it) { frame_item(it, b, clock_, &l->wbuf); });
        s.backfill_items += items;
        l->stats->backfill_items += items;
        l->stats->records_out += items;
        l->stats->backfill_steps++;
        if (s.cursor.done) {
            // The replica then holds the bucket as it was after record s.sent.
            frame_backfill_end(&l->wbuf, BackfillEndMsg{b, s.sent, s.backfill_items});
            s.backfill = false;
        }
        const uint64_t hold = now_us() - held;
        const uint64_t hold_cpu = thread_cpu_us() - held_cpu;
        g.unlock();
        l->stats->backfill_max_hold_us = std::max(l->stats->backfill_max_hold_us, hold);
        l->stats->backfill_max_hold_cpu_us =
            std::max(l->stats->backfill_max_hold_cpu_us, hold_cpu);
        if (!s.backfill) return true;
        if (now_us() - began >= kBackfillSliceUs) {
            dirty_word(b).fetch_or(dirty_bit(b));
            schedule_rearm();
            return true;
        }
    }
}

void Replicator::pump_link(Link* l, const std::vector<uint32_t>* only, bool every_lock) {
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
            if (!every_lock && !s.backfill &&
                s.sent == buckets_[b].seqno.load(std::memory_order_relaxed)) {
                continue;
            }
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
        // latest by tick(), which pumps every subscription under its lock every fourth tick.
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
// Read hints (hints.h, doc/replication.md).

void Replicator::on_access(void* ctx, uint32_t bucket, uint64_t table_hash) noexcept {
    auto* self = static_cast<Replicator*>(ctx);
    if (bucket >= self->nbuckets_ || !self->buckets_[bucket].on()) return;  // no replicas
    self->hints_.record(bucket, table_hash);
}

void Replicator::drain_hints() {
    if (cfg_.hint_rate == 0) return;
    // Links that serve some bucket; usually one or two per peer.
    std::vector<Link*>& up = hint_links_;
    up.clear();
    for (auto& lp : links_) {
        if (lp->fd >= 0 && lp->st == Link::St::Up && !lp->out.empty()) up.push_back(lp.get());
    }
    hints_.drain([&](const Hint& h) {
        for (Link* l : up) {
            if (l->out.find(h.bucket) == nullptr) continue;  // not the peer's bucket
            if (!l->hints.add(h.hash)) l->stats->hints_dropped++;
        }
    });
}

void Replicator::ship_hints(uint64_t now) {
    if (cfg_.hint_rate == 0 || now < next_hint_ship_us_) return;
    next_hint_ship_us_ = now + uint64_t{cfg_.hint_ms} * 1000;
    for (auto& lp : links_) {
        Link* l = lp.get();
        if (l->hints.size() == 0) continue;
        if (l->fd < 0 || l->st != Link::St::Up || l->pending() >= kHighWater) {
            l->stats->hints_dropped += l->hints.size();
            l->hints.drop_all();
            continue;
        }
        size_t bytes = 0;
        l->stats->hints_out += l->hints.ship(&l->wbuf, &bytes);
        l->stats->hint_bytes_out += bytes;
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

}  // namespace mcm::repl
