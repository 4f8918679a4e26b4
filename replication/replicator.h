// The replication stream of managed mode (issue 6; doc/replication.md): one thread with its
// own event loop that keeps every bucket's replicas fed.
//
// Active side: the store's mutation hook frames each write of a bucket that is active here
// and has replicas into that bucket's bounded backlog (on the writer's thread, under the
// store's lock for the bucket), marks the bucket dirty and wakes this thread, which copies new records to every
// link whose peer subscribed to the bucket. A slow peer's link buffer stops growing at a high
// mark; when the backlog then drops records that peer still needs, the link is cut, and the
// peer resumes or is backfilled when it returns. Client requests never wait for a link.
//
// Replica side: for each bucket this server replicates, it subscribes on the link to the
// bucket's active with its history id and last applied sequence number, and applies what
// arrives (repl::Applier), acknowledging as it goes.
//
// Links: one per pair of servers, dialled by the one whose node name sorts first, to the
// other's client port: "cluster auth" challenge-response, then "cluster repl <name> <nonce>",
// after which the acceptor's worker hands the socket to this thread and the acceptor proves
// the secret in its Hello frame. Heartbeats every 200 ms; a link silent for 3 s is cut.
#pragma once

#include <openssl/ssl.h>
#include <event2/event.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "replication/applier.h"
#include "replication/cluster_view.h"
#include "replication/hints.h"
#include "replication/record.h"
#include "server/store/clock.h"
#include "server/store/store.h"

namespace mcm::repl {

class Replicator {
public:
    Replicator(const ReplConfig& cfg, ClusterView& cluster, store::Clock& clock);
    ~Replicator();
    Replicator(const Replicator&) = delete;
    Replicator& operator=(const Replicator&) = delete;

    // The store must be attached before start(); its Config carries on_mutation/this.
    void attach(store::Store& st);
    static void on_mutation(void* ctx, const store::Mutation& m) noexcept;
    // The store's AccessFn (read hints): a read on a worker thread set an item's access mark;
    // noted for the bucket's replicas if it is active here with replicas. Lock-free.
    static void on_access(void* ctx, uint32_t bucket, uint64_t table_hash) noexcept;
    void start();
    void stop();

    // A worker thread hands over an authenticated connection whose peer said
    // "cluster repl <node> <nonce>"; buffered: bytes already read past that line.
    // ssl: the connection's TLS session (peer TLS), which comes along; null for plain TCP.
    void adopt(int fd, SSL* ssl, std::string node, std::string nonce, std::string buffered);

    // `stats replication` lines (any thread; figures at most 50 ms old).
    std::string stats_text() const;
    // Extra `stats buckets` lines for bucket b ("" if none); live figures.
    std::string bucket_stats_text(uint32_t b) const;
    // The coordinator's heartbeat line for bucket b in state s (doc/coordinator.md):
    // "A <b> <seqno> <replicas in sync>" or "R <b> <applied> <in sync>"; nothing if dead.
    void heartbeat_line(uint32_t b, BucketState s, std::string* out) const;
    // Ships what bucket b's backlog holds now rather than at the next sweep or tick (a
    // planned handover waits for its last record). Any thread.
    void nudge(uint32_t b) noexcept;
    // A replica bucket's applied sequence number and whether it is in sync (any thread).
    void replica_progress(uint32_t b, uint64_t* applied, bool* in_sync) const noexcept;
    // Wakes this thread after a map changed anything: it reconciles at once and prepares
    // the buckets the map made active (ClusterView::take_activations).
    static void wake_for_change(void* self) { static_cast<Replicator*>(self)->wake(); }

    // repl_ack: the write this thread made last (its bucket and sequence number), if the
    // bucket streams to replicas; cleared by take_last_write.
    struct WriteRef {
        uint32_t bucket = UINT32_MAX;
        uint64_t seqno = 0;
        store::MutationKind kind = store::MutationKind::Set;
    };
    static WriteRef take_last_write() noexcept;
    // Whether some replica is in sync for the bucket and could acknowledge.
    bool can_ack(uint32_t bucket) const noexcept;
    // Calls fn(ctx, token, timed_out) on the replication thread once a replica has
    // acknowledged the write, or after -o repl_ack_timeout (timed_out then true). fn must hand
    // over to the right thread itself.
    using AckFn = void (*)(void* ctx, uint64_t token, bool timed_out);
    void wait_ack(WriteRef w, AckFn fn, void* ctx, uint64_t token);

    // Pings also carry this server's view of the coordinator (fencing), so they come often.
    static constexpr uint64_t kPingEveryUs = 25'000;
    static constexpr uint64_t kTickUs = 25'000;
    // A peer's report of the coordinator counts for this long (doc/coordinator.md).
    static constexpr uint64_t kReportFreshUs = 300'000;
    static constexpr uint64_t kDeadAfterUs = 3'000'000;
    static constexpr uint64_t kRedialUs = 200'000;
    static constexpr uint64_t kResubUs = 200'000;
    static constexpr size_t kHighWater = 4 * 1024 * 1024;  // link output buffer
    // A backfill step (pump_sub) holds the bucket's lock, so the workers writing to its
    // shard wait, for at most about this many items or microseconds of walking; one pump
    // goes on with steps for up to kBackfillSliceUs before letting this thread's other work in.
    static constexpr size_t kBackfillStepItems = 256;
    static constexpr uint64_t kBackfillStepUs = 200;
    static constexpr uint64_t kBackfillSliceUs = 2000;
    static constexpr size_t kBackfillRoom = 1 << 20;  // free buffer a step starts with
    static constexpr uint64_t kCoalesceUs = 1000;     // polling period under load
    static constexpr uint64_t kMaxCoalesceUs = 4000;  // ... and when writes are few
    static constexpr uint64_t kSweepRecords = 64;     // what a sweep should carry

private:
    struct Link;
    struct Bucket;       // shared: hook and thread
    struct OutSub;       // per link, per bucket we send
    class SubTable;      // a link's OutSubs
    struct Inbound;      // per bucket we replicate
    struct PeerStats;    // per peer name, across its links
    struct AckWaiter {
        WriteRef w;
        AckFn fn;
        void* ctx;
        uint64_t token;
        uint64_t deadline_us;
    };

    static void on_wake(evutil_socket_t fd, short what, void* arg);
    static void on_tick(evutil_socket_t fd, short what, void* arg);
    static void on_link_io(evutil_socket_t fd, short what, void* arg);
    void run();
    void wake();
    void take_adopted();
    void forget_gone_peers();
    void tick();
    void reconcile();
    bool pump_dirty();  // false if no bucket was dirty
    static void on_rearm(evutil_socket_t fd, short what, void* arg);
    void schedule_rearm();
    void adapt_poll(uint64_t now);
    // only: the buckets to look at (null: every subscription). every_lock: take every
    // subscription's lock even when its bucket's sequence number, read without the lock,
    // says nothing is new (tick()'s periodic safety net; the other passes skip those).
    void pump_link(Link* l, const std::vector<uint32_t>* only, bool every_lock = true);
    // wait: block on the bucket's lock; otherwise a busy lock re-marks the bucket for the
    // next sweep.
    bool pump_sub(Link* l, uint32_t b, OutSub& s, bool wait = true);
    void handle_io(Link* l, short what);
    bool read_frames(Link* l);
    bool dial_text(Link* l);
    bool on_frame(Link* l, uint8_t type, std::string_view payload);
    void on_sub(Link* l, uint32_t b, uint64_t history, uint64_t seqno);
    void on_ack(Link* l, uint32_t b, uint64_t seqno, uint64_t now);
    void send_subs(Link* l);
    bool flush(Link* l);
    void close_link(Link* l, const char* why);
    void dial(const std::string& peer, const std::string& host, uint16_t port);
    void enable_bucket(uint32_t b);
    void take_activations();
    void forget_after_reset();  // cluster reset: nothing held here may be resumed from
    void activate_bucket(uint32_t b, BucketState was);
    void demote_bucket(uint32_t b);  // handed over by a planned move: a replica from here
    void check_coordinator();  // the "coordinator is gone" rule
    void note_fencing(const CoordinatorView& me);
    bool fenced_logged_ = false;
    void keep_inbound(uint32_t b, std::string_view record, uint64_t seqno);
    void disable_bucket(uint32_t b);
    // Read hints: the workers' rings into each link's batch (every tick), and the batches
    // onto the links (every cfg_.hint_ms).
    void drain_hints();
    void ship_hints(uint64_t now);
    void publish_stats();
    // Completes the ack waits of bucket b up to acked (b = UINT32_MAX: of every bucket, each
    // against its own highest acknowledgement).
    void check_waiters(uint32_t b, uint64_t acked);
    PeerStats& peer_stats(const std::string& peer);
    void unconfirm(uint32_t b) noexcept;  // one replica fewer in sync for b
    void drop_sub(Link* l, uint32_t b);   // end l's subscription to b, if any
    // stream_lost: the stream from the bucket's active ended (the link closed, or the peer is
    // not active for it any more) rather than the bucket starting over (a new source, a
    // reset, a backfill): the moment it was last in sync is kept for the heartbeat's report.
    void set_in_sync(Inbound& in, bool v, bool stream_lost = false) noexcept;

    const ReplConfig cfg_;
    ClusterView& cluster_;
    store::Clock& clock_;
    store::Store* store_ = nullptr;
    std::unique_ptr<Applier> applier_;
    uint32_t nbuckets_;
    std::string me_;
    std::string secret_;
    size_t per_bucket_backlog_;

    // Shared with writer threads. A bucket's history and backlog are guarded by the store's
    // lock for the bucket (Store::bucket_mutex), which the hook already runs under.
    std::unique_ptr<Bucket[]> buckets_;
    // One bit per group of 2^kDirtyGroupShift buckets: set by a writer, cleared by a sweep.
    static constexpr uint32_t kDirtyGroupShift = 4;
    size_t dirty_words() const noexcept {
        return (((size_t{nbuckets_} + (1u << kDirtyGroupShift) - 1) >> kDirtyGroupShift) + 63) / 64;
    }
    std::atomic<uint64_t>& dirty_word(uint32_t b) const noexcept {
        return dirty_[(b >> kDirtyGroupShift) / 64];
    }
    static uint64_t dirty_bit(uint32_t b) noexcept {
        return uint64_t{1} << ((b >> kDirtyGroupShift) % 64);
    }
    std::unique_ptr<std::atomic<uint64_t>[]> dirty_;
    std::vector<uint32_t> dirty_scratch_;  // the replication thread's list of buckets to pump
    std::atomic<bool> wake_pending_{false};
    int wake_fd_ = -1;

    std::mutex adopt_mu_;
    struct Adopted {
        int fd;
        SSL* ssl;
        std::string node, nonce, buffered;
    };
    std::vector<Adopted> adopted_;  // guarded by adopt_mu_

    mutable std::mutex ack_mu_;
    std::vector<AckWaiter> waiters_;  // guarded by ack_mu_
    std::atomic<bool> ack_recheck_{false};  // a wait began after its ack arrived

    // This thread only.
    event_base* base_ = nullptr;
    event* wake_ev_ = nullptr;
    event* tick_ev_ = nullptr;
    event* rearm_ev_ = nullptr;
    bool rearm_scheduled_ = false;
    uint64_t poll_us_ = kCoalesceUs;  // the current polling period (adapt_poll)
    uint64_t swept_records_ = 0;      // records sent since the last sweep
    uint64_t last_sweep_us_ = 0;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    std::vector<std::unique_ptr<Link>> links_;
    std::vector<std::unique_ptr<Link>> dead_links_;  // freed at the next tick
    std::map<std::string, uint64_t> next_dial_us_;
    std::vector<Inbound> in_;
    std::vector<std::pair<uint32_t, BucketState>> activations_;  // scratch
    std::vector<uint32_t> demotions_;                             // scratch
    std::vector<uint8_t> held_;        // per bucket: held here (not dead) at the last reconcile
    std::deque<uint32_t> to_drop_;     // buckets given away: their items to drop, one a tick
    uint64_t resets_seen_ = 0;
    uint64_t ticks_ = 0;
    uint64_t reconciled_gen_ = UINT64_MAX;
    std::map<std::string, std::unique_ptr<PeerStats>> peer_stats_;
    uint64_t next_hint_ship_us_ = 0;
    std::vector<uint64_t> hint_scratch_;  // a Hints frame's hashes, on arrival
    std::vector<Link*> hint_links_;       // drain_hints' scratch

    // Read hints noted by the workers, drained by this thread.
    HintRings hints_;

    // Figures for stats (any thread).
    mutable std::mutex stats_mu_;
    std::string stats_text_;           // guarded by stats_mu_
    std::vector<std::string> bucket_text_;  // guarded by stats_mu_
    std::atomic<uint64_t> overflows_{0};
    std::atomic<uint64_t> ack_waits_{0};
    std::atomic<uint64_t> ack_timeouts_{0};
    std::atomic<uint64_t> bad_frames_{0};  // links closed for a frame that cannot be ours
    std::atomic<uint64_t> items_dropped_{0};  // items of buckets given away, dropped
    std::unique_ptr<std::atomic<uint8_t>[]> in_sync_out_;  // per bucket: replicas in sync
    std::unique_ptr<std::atomic<uint8_t>[]> in_sync_in_;   // per bucket: in sync here
    // Per bucket: when (now_us) this replica's stream ended while it was in sync (0: in sync
    // now, never was, or started over since). Reported as "in sync N ms ago", so that a
    // coordinator that did not see it (a new leader, a restart) can still tell a warm
    // replica of a server that died before it took over (doc/coordinator.md).
    std::unique_ptr<std::atomic<uint64_t>[]> in_sync_lost_us_;
    std::unique_ptr<std::atomic<uint64_t>[]> applied_live_;  // per bucket: applied here
    // The map epoch whose sources reconcile() last put in place. Until it catches up with
    // the installed map, a replica's in-sync flag may describe its former source.
    std::atomic<uint64_t> reconciled_epoch_{0};
};

}  // namespace mcm::repl
