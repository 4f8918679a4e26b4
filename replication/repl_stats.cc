// Replication figures: `stats replication` and the per-bucket lines of `stats buckets`,
// published by the replication thread, read by any thread.
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
    line("links_bad_frames", std::to_string(bad_frames_.load()));
    line("max_frame", std::to_string(cfg_.max_frame));
    line("given_away_items_dropped", std::to_string(items_dropped_.load()));
    uint32_t in_buckets = 0, in_synced = 0;
    for (const Inbound& in : in_) {
        if (in.source.empty()) continue;
        ++in_buckets;
        if (in.in_sync) ++in_synced;
    }
    line("buckets_replicated", std::to_string(in_buckets));
    line("buckets_replicated_in_sync", std::to_string(in_synced));
    line("hint_rate", std::to_string(cfg_.hint_rate));
    line("hint_interval_ms", std::to_string(cfg_.hint_ms));
    line("hints_noted", std::to_string(hints_.recorded()));
    line("hints_lost", std::to_string(hints_.dropped()));
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
        line(p + "backfill_steps", std::to_string(ps.backfill_steps));
        line(p + "backfill_max_hold_us", std::to_string(ps.backfill_max_hold_us));
        line(p + "backfill_max_hold_cpu_us", std::to_string(ps.backfill_max_hold_cpu_us));
        line(p + "resumes_in", std::to_string(ps.resumes_in));
        line(p + "backfills_in", std::to_string(ps.backfills_in));
        line(p + "backfill_items_in", std::to_string(ps.backfill_items_in));
        line(p + "overflows", std::to_string(ps.overflows));
        line(p + "hints_out", std::to_string(ps.hints_out));
        line(p + "hint_bytes_out", std::to_string(ps.hint_bytes_out));
        line(p + "hints_dropped", std::to_string(ps.hints_dropped));
        line(p + "hints_in", std::to_string(ps.hints_in));
        line(p + "hints_applied", std::to_string(ps.hints_applied));
        line(p + "hints_missing", std::to_string(ps.hints_missing));
        line(p + "unknown_frames", std::to_string(ps.unknown_frames));
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
