// Counters. Per-thread counters are written only by their worker (relaxed single-writer
// stores, no locked instructions on the request path) and summed when `stats` asks; global
// gauges are atomics. The `stats` output itself (key names and order copied from memcached)
// is composed in stats.cc.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace mcm::server {

// X(name): per-thread event counters, named as memcached's stats keys where they are shown.
#define MCM_THREAD_STATS(X) \
    X(get_cmds)             \
    X(get_hits)             \
    X(get_misses)           \
    X(get_expired)          \
    X(get_flushed)          \
    X(touch_cmds)           \
    X(touch_hits)           \
    X(touch_misses)         \
    X(set_cmds)             \
    X(delete_hits)          \
    X(delete_misses)        \
    X(incr_hits)            \
    X(incr_misses)          \
    X(decr_hits)            \
    X(decr_misses)          \
    X(cas_hits)             \
    X(cas_misses)           \
    X(cas_badval)           \
    X(flush_cmds)           \
    X(meta_cmds)            \
    X(store_too_large)      \
    X(store_no_memory)      \
    X(auth_cmds)            \
    X(auth_errors)          \
    X(bytes_read)           \
    X(bytes_written)        \
    X(conn_yields)          \
    X(idle_kicks)

// A counter with one writer thread: increments are plain loads and stores.
class Counter {
public:
    void add(uint64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }
    // stats reset from another thread: a racing increment may be lost, as in memcached.
    void reset() noexcept { v_.store(0, std::memory_order_relaxed); }
    void sub(uint64_t n = 1) noexcept {  // for gauges
        v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }

private:
    std::atomic<uint64_t> v_{0};
};

// Owned by one worker thread; read by whichever thread serves `stats`.
struct ThreadStats {
#define MCM_X(name) Counter name;
    MCM_THREAD_STATS(MCM_X)
#undef MCM_X
    void reset() noexcept {
#define MCM_X(name) name.reset();
        MCM_THREAD_STATS(MCM_X)
#undef MCM_X
    }
};

// A plain snapshot (sum over threads).
struct ThreadTotals {
#define MCM_X(name) uint64_t name = 0;
    MCM_THREAD_STATS(MCM_X)
#undef MCM_X
    void add(const ThreadStats& s) noexcept {
#define MCM_X(name) name += s.name.get();
        MCM_THREAD_STATS(MCM_X)
#undef MCM_X
    }
};

// Server-wide gauges and counters touched by the listener and connection setup/teardown.
struct GlobalStats {
    std::atomic<int64_t> curr_conns{0};
    std::atomic<uint64_t> total_conns{0};
    std::atomic<uint64_t> rejected_conns{0};
    std::atomic<uint64_t> conn_structures{0};
    std::atomic<uint64_t> listen_disabled_num{0};
    std::atomic<bool> accepting_conns{true};
};

}  // namespace mcm::server

namespace mcm::server {

struct ServerContext;
class OutBuf;

// `stats` and its subcommands, each ending with "END\r\n". Key names and order as memcached.
void write_general_stats(ServerContext& ctx, OutBuf& out);
void write_settings_stats(ServerContext& ctx, OutBuf& out);
void write_items_stats(ServerContext& ctx, OutBuf& out);
void write_slabs_stats(ServerContext& ctx, OutBuf& out);
void write_cluster_stats(ServerContext& ctx, OutBuf& out);  // managed mode (cluster_cmd.cc)
void write_bucket_stats(ServerContext& ctx, OutBuf& out);
void write_conns_stats(ServerContext& ctx, OutBuf& out);
void reset_stats(ServerContext& ctx);
ThreadTotals sum_thread_stats(ServerContext& ctx);

}  // namespace mcm::server
