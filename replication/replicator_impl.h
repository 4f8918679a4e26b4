// The replication thread's private types, shared by the files that implement
// repl::Replicator (replicator.cc: the thread, the hook and the map; links.cc: connections
// and frames; outbound.cc: the active side; coordination.cc: activations, fencing and the
// coordinator's heartbeat; repl_stats.cc: figures). Not for use outside replication/.
#pragma once

#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "tls/io.h"
#include "replication/replicator.h"

namespace mcm::repl {

namespace detail {

inline uint64_t now_us() noexcept {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

// This thread's CPU time: what a step cost, without the time it sat preempted.
inline uint64_t thread_cpu_us() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 +
           static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

inline uint64_t random_history() {
    uint64_t h = 0;
    while (h == 0) {
        if (RAND_bytes(reinterpret_cast<unsigned char*>(&h), sizeof h) != 1) {
            h = now_us() ^ 0x9e3779b97f4a7c15ULL;
        }
    }
    return h;
}


// Record lag (write to acknowledgement) in log-linear microsecond bins: four per power of
// two, so a quantile is known within 19%. Two windows of 10 s, so the figures describe the
// recent past.
struct LagHist {
    static constexpr int kBins = 4 * 40;
    uint64_t cur[kBins] = {};
    uint64_t prev[kBins] = {};
    uint64_t rotated_us = 0;
    static int bin_of(uint64_t us) noexcept {
        if (us < 4) return static_cast<int>(us);
        int p = 63 - __builtin_clzll(us);                      // 2^p <= us < 2^(p+1)
        int sub = static_cast<int>((us >> (p - 2)) & 3);       // the next two bits
        int b = 4 * (p - 1) + sub;
        return b < kBins ? b : kBins - 1;
    }
    static uint64_t upper_edge(int b) noexcept {
        if (b < 4) return static_cast<uint64_t>(b) + 1;
        int p = b / 4 + 1;
        int sub = b % 4;
        return (uint64_t{4} + static_cast<uint64_t>(sub) + 1) << (p - 2);
    }
    void add(uint64_t us, uint64_t n = 1) noexcept { cur[bin_of(us)] += n; }
    void maybe_rotate(uint64_t now) noexcept {
        if (now - rotated_us < 10'000'000) return;
        std::memcpy(prev, cur, sizeof cur);
        std::memset(cur, 0, sizeof cur);
        rotated_us = now;
    }
    // The upper edge of the bin holding quantile q, 0 if empty.
    uint64_t quantile(double q) const noexcept {
        uint64_t total = 0;
        for (int i = 0; i < kBins; ++i) total += cur[i] + prev[i];
        if (total == 0) return 0;
        uint64_t want = static_cast<uint64_t>(q * static_cast<double>(total));
        uint64_t seen = 0;
        for (int i = 0; i < kBins; ++i) {
            seen += cur[i] + prev[i];
            if (seen > want) return upper_edge(i);
        }
        return upper_edge(kBins - 1);
    }
};

}  // namespace detail

using detail::LagHist;
using detail::now_us;
using detail::thread_cpu_us;
using detail::random_history;

struct Replicator::Bucket {
    std::atomic<bool> enabled{false};  // active here with replicas: the hook keeps records
    uint64_t history = 0;              // the bucket's store lock
    Backlog backlog;                   // the bucket's store lock
    bool on() const noexcept { return enabled.load(std::memory_order_relaxed); }
    std::atomic<uint64_t> seqno{0};    // last record kept (stats)
    std::atomic<uint64_t> acked{0};    // highest sequence number a replica acknowledged
    std::atomic<uint64_t> lag_ms{0};   // age of the oldest unacknowledged record
};

struct Replicator::OutSub {
    uint64_t history = 0;
    uint64_t sent = 0;      // the last sequence number put in the link's buffer
    uint64_t acked = 0;
    bool backfill = false;  // the bucket's items are still to be sent
    store::BucketCursor cursor;   // the backfill's walk so far
    uint64_t backfill_items = 0;  // items it sent
    bool confirmed = false; // the peer acknowledged since this stream started: in sync
    // Runs of records sent and not yet acknowledged, for the lag figures: the last sequence
    // number of each run and the write time of its first record (looked up while pump_sub
    // holds the bucket's lock, so an acknowledgement needs no lock). At most kMaxRuns: past
    // that a run grows and keeps its older time.
    struct Run {
        uint64_t last;
        uint64_t t_us;
    };
    static constexpr size_t kMaxRuns = 256;
    std::deque<Run> runs;
};

struct Replicator::Inbound {
    uint32_t bucket = 0;
    std::string source;        // the bucket's active ("" = not replicating it)
    Link* link = nullptr;      // the link the subscription went out on
    uint64_t history = 0;      // of the records held (0: none, or incomplete)
    bool in_sync = false;
    bool backfilling = false;
    uint64_t retry_at_us = 0;  // do not subscribe again before
    // The bucket has other replicas too: keep what is applied in the bucket's backlog, so
    // that if this server is promoted they resume from it instead of being backfilled.
    bool keep = false;
};

struct Replicator::PeerStats {
    uint64_t connects = 0, disconnects = 0;
    uint64_t records_out = 0, bytes_out = 0, records_in = 0, bytes_in = 0;
    uint64_t resumes = 0, backfills = 0, backfill_items = 0;  // served to the peer
    // Backfill steps served to the peer, and the longest a step held a bucket's lock: in
    // wall time (what a worker waiting for the lock saw) and in this thread's CPU time (what
    // the step cost; the difference is time the thread sat preempted holding the lock).
    uint64_t backfill_steps = 0, backfill_max_hold_us = 0, backfill_max_hold_cpu_us = 0;
    uint64_t resumes_in = 0, backfills_in = 0, backfill_items_in = 0;  // received from it
    uint64_t overflows = 0, rtt_us = 0;
    // Read hints: sent to the peer (and their bytes), dropped (over the rate, or the link
    // full); received from it, found here, not found here.
    uint64_t hints_out = 0, hint_bytes_out = 0, hints_dropped = 0;
    uint64_t hints_in = 0, hints_applied = 0, hints_missing = 0;
    uint64_t unknown_frames = 0;  // frames of a type this version does not know, skipped
    std::string last_error;
    LagHist lag;
};

// The buckets a peer replicates from here: in bucket order (full pumps, stats) and indexed by
// bucket (sweeps, acknowledgements), kept together so the two cannot disagree.
class Replicator::SubTable {
public:
    explicit SubTable(uint32_t nbuckets) : at_(nbuckets, nullptr) {}
    OutSub* find(uint32_t b) const noexcept { return at_[b]; }
    OutSub& put(uint32_t b, const OutSub& s) {
        auto [it, fresh] = by_.insert_or_assign(b, s);
        at_[b] = &it->second;
        return it->second;
    }
    void erase(uint32_t b) {
        at_[b] = nullptr;
        by_.erase(b);
    }
    bool empty() const noexcept { return by_.empty(); }
    auto begin() noexcept { return by_.begin(); }
    auto end() noexcept { return by_.end(); }
    auto begin() const noexcept { return by_.cbegin(); }
    auto end() const noexcept { return by_.cend(); }

private:
    std::map<uint32_t, OutSub> by_;
    std::vector<OutSub*> at_;
};

struct Replicator::Link {
    explicit Link(Replicator* owner)
        : r(owner), out(owner->nbuckets_), ack_marked(owner->nbuckets_, false) {
        hints.set_budget(hint_budget(owner->cfg_.hint_rate, owner->cfg_.hint_ms));
    }
    Replicator* r;
    std::string peer;
    int fd = -1;
    SSL* ssl = nullptr;  // peer TLS: the session on fd (null: plain TCP)
    event* ev = nullptr;
    short ev_flags = 0;
    short hs_want = 0;  // Handshake: the events the TLS layer waits for
    enum class St : uint8_t { Connecting, Handshake, Challenge, AuthReply, Hello, Up } st =
        St::Connecting;
    bool dialer = false;
    std::string nonce;  // dialer: what the acceptor's Hello must prove
    std::string rbuf;
    size_t rpos = 0;
    std::string wbuf;
    size_t wpos = 0;
    uint64_t last_rx_us = 0;
    uint64_t last_ping_us = 0;
    SubTable out;                     // buckets the peer replicates from here
    std::vector<uint32_t> ack_dirty;  // buckets applied since the last Ack, each once
    std::vector<bool> ack_marked;     // per bucket: in ack_dirty
    void mark_ack(uint32_t b) {
        if (ack_marked[b]) return;
        ack_marked[b] = true;
        ack_dirty.push_back(b);
    }
    PeerStats* stats = nullptr;
    // The peer's last report of the coordinator (fencing): when it came (0: none), the
    // peer's map epoch, how long it had not heard the coordinator (UINT32_MAX: never had a
    // lease).
    uint64_t coord_rx_us = 0;
    uint64_t coord_epoch = 0;
    uint32_t coord_silent_ms = 0;
    bool blocked = false;  // a pump stopped at the high mark: pump everything once drained
    HintBatch hints;       // read hints for the peer's buckets, shipped every hint_ms
    size_t pending() const noexcept { return wbuf.size() - wpos; }
    ~Link() {
        if (ev != nullptr) event_free(ev);
        tls::finish(ssl);
        if (fd >= 0) ::close(fd);
    }
};

// Whether the map makes peer a replica of bucket b.
inline bool replicates_to(const BucketMap* map, uint32_t b, const std::string& peer) {
    if (map == nullptr || b >= map->nbuckets) return false;
    for (uint16_t n : map->replicas[b]) {
        if (map->nodes[n].name == peer) return true;
    }
    return false;
}

}  // namespace mcm::repl
