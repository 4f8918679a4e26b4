// The text of `stats`, `stats settings`, `stats items`, `stats slabs`, `stats conns`, with
// memcached 1.6's key names and order (monitoring tools parse them by name).
#include "server/opstate.h"
#include "server/stats.h"
#include "tls/server.h"

#include <event2/event.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "config.h"
#include "server/context.h"
#include "server/outbuf.h"
#include "server/worker.h"

namespace mcm::server {

namespace {

void stat(OutBuf& out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void stat(OutBuf& out, const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len =
        static_cast<size_t>(n) < sizeof(buf) - 2 ? static_cast<size_t>(n) : sizeof(buf) - 3;
    char* p = out.reserve(5 + len + 2);
    std::memcpy(p, "STAT ", 5);
    std::memcpy(p + 5, buf, len);
    p[5 + len] = '\r';
    p[6 + len] = '\n';
    out.commit(5 + len + 2);
}

void u64(OutBuf& out, const char* name, uint64_t v) {
    stat(out, "%s %" PRIu64, name, v);
}

const char* yes_no(bool b) {
    return b ? "yes" : "no";
}

const char* protocol_name(Protocol p) {
    switch (p) {
        case Protocol::Ascii: return "ascii";
        case Protocol::Binary: return "binary";
        default: return "auto-negotiate";
    }
}

}  // namespace

ThreadTotals sum_thread_stats(ServerContext& ctx) {
    ThreadTotals t;
    for (Worker* w : ctx.workers) t.add(w->stats());
    return t;
}

void reset_stats(ServerContext& ctx) {
    for (Worker* w : ctx.workers) w->stats().reset();
    ctx.store.reset_stats();
    ctx.prefix_stats.clear();
    ctx.gstats.total_conns.store(0);
    ctx.gstats.rejected_conns.store(0);
    ctx.gstats.listen_disabled_num.store(0);
    if (ctx.server_tls != nullptr) {  // memcached zeroes them too
        ctx.server_tls->handshake_errors.store(0, std::memory_order_relaxed);
        ctx.server_tls->new_sessions.store(0, std::memory_order_relaxed);
    }
}

void write_general_stats(ServerContext& ctx, OutBuf& out) {
    const Settings& s = ctx.settings;
    ThreadTotals t = sum_thread_stats(ctx);
    store::StoreStats ss = ctx.store.stats();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    int64_t now_unix = ctx.clock.unix_now();

    u64(out, "pid", static_cast<uint64_t>(getpid()));
    u64(out, "uptime", ctx.clock.now());
    u64(out, "time", static_cast<uint64_t>(now_unix));
    stat(out, "version %s", VERSION);
    stat(out, "libevent %s", event_get_version());
    u64(out, "pointer_size", sizeof(void*) * 8);
    stat(out, "rusage_user %ld.%06ld", static_cast<long>(ru.ru_utime.tv_sec),
         static_cast<long>(ru.ru_utime.tv_usec));
    stat(out, "rusage_system %ld.%06ld", static_cast<long>(ru.ru_stime.tv_sec),
         static_cast<long>(ru.ru_stime.tv_usec));
    u64(out, "max_connections", static_cast<uint64_t>(s.max_conns));
    u64(out, "curr_connections", static_cast<uint64_t>(ctx.gstats.curr_conns.load()));
    u64(out, "total_connections", ctx.gstats.total_conns.load());
    if (s.maxconns_fast) u64(out, "rejected_connections", ctx.gstats.rejected_conns.load());
    u64(out, "connection_structures", ctx.gstats.conn_structures.load());
    u64(out, "response_obj_oom", 0);
    u64(out, "response_obj_count", 0);
    u64(out, "response_obj_bytes", 0);
    // Read buffers: the 16 KB buffers connections borrow while a request is being read;
    // "free" ones wait in a worker's pool. No global limit here, so never out of memory.
    uint64_t rbufs = 0, rbufs_free = 0;
    for (Worker* w : ctx.workers) {
        rbufs += w->rbuf_count();
        rbufs_free += w->rbuf_free_count();
    }
    u64(out, "read_buf_count", rbufs);
    u64(out, "read_buf_bytes", rbufs * Worker::kReadBufSize);
    u64(out, "read_buf_bytes_free", rbufs_free * Worker::kReadBufSize);
    u64(out, "read_buf_oom", 0);
    u64(out, "reserved_fds", static_cast<uint64_t>(ctx.reserved_fds.load()));
    u64(out, "cmd_get", t.get_cmds);
    u64(out, "cmd_set", t.set_cmds);
    u64(out, "cmd_flush", t.flush_cmds);
    u64(out, "cmd_touch", t.touch_cmds);
    u64(out, "cmd_meta", t.meta_cmds);
    u64(out, "get_hits", t.get_hits);
    u64(out, "get_misses", t.get_misses);
    u64(out, "get_expired", t.get_expired);
    u64(out, "get_flushed", t.get_flushed);
    u64(out, "delete_misses", t.delete_misses);
    u64(out, "delete_hits", t.delete_hits);
    u64(out, "incr_misses", t.incr_misses);
    u64(out, "incr_hits", t.incr_hits);
    u64(out, "decr_misses", t.decr_misses);
    u64(out, "decr_hits", t.decr_hits);
    u64(out, "cas_misses", t.cas_misses);
    u64(out, "cas_hits", t.cas_hits);
    u64(out, "cas_badval", t.cas_badval);
    u64(out, "touch_hits", t.touch_hits);
    u64(out, "touch_misses", t.touch_misses);
    u64(out, "store_too_large", t.store_too_large);
    u64(out, "store_no_memory", t.store_no_memory);
    u64(out, "auth_cmds", t.auth_cmds);
    u64(out, "auth_errors", t.auth_errors);
    if (s.idle_timeout != 0) u64(out, "idle_kicks", t.idle_kicks);  // shown only then, as memcached
    u64(out, "bytes_read", t.bytes_read);
    u64(out, "bytes_written", t.bytes_written);
    u64(out, "limit_maxbytes", ctx.store.max_bytes());
    u64(out, "accepting_conns", ctx.gstats.accepting_conns.load() ? 1 : 0);
    u64(out, "listen_disabled_num", ctx.gstats.listen_disabled_num.load());
    u64(out, "time_in_listen_disabled_us", 0);
    u64(out, "threads", static_cast<uint64_t>(s.num_threads));
    u64(out, "conn_yields", t.conn_yields);
    u64(out, "hash_power_level", ss.hash_power_level);
    u64(out, "hash_bytes", ss.hash_bytes);
    u64(out, "hash_is_expanding", ss.hash_is_expanding ? 1 : 0);
    if (s.slab_reassign) {
        // The store moves a page to another size class inline, in the allocation that needs
        // it, by evicting what the page holds: no mover thread, so nothing is rescued, busy
        // or running, and every moved page counts in slabs_moved; the items evicted to empty
        // it count in slab_reassign_evictions_nomem (and in evictions).
        u64(out, "slab_reassign_rescues", 0);
        u64(out, "slab_reassign_chunk_rescues", 0);
        u64(out, "slab_reassign_evictions_nomem", ss.slab_reassign_evictions_nomem);
        u64(out, "slab_reassign_inline_reclaim", 0);
        u64(out, "slab_reassign_busy_items", 0);
        u64(out, "slab_reassign_busy_deletes", 0);
        u64(out, "slab_reassign_running", 0);
        u64(out, "slabs_moved", ss.slabs_moved);
    }
    u64(out, "malloc_fails", 0);
    // The log_* counters belong to `watch` (live logging): none is written here.
    u64(out, "log_worker_dropped", 0);
    u64(out, "log_worker_written", 0);
    u64(out, "log_watcher_skipped", 0);
    u64(out, "log_watcher_sent", 0);
    u64(out, "log_watchers", 0);
    if (ctx.server_tls != nullptr) {  // -Z only, where memcached has them
        const tls::ServerTls& st = *ctx.server_tls;
        if (s.ssl.session_cache) {
            u64(out, "ssl_new_sessions", st.new_sessions.load(std::memory_order_relaxed));
        }
        u64(out, "ssl_handshake_errors", st.handshake_errors.load(std::memory_order_relaxed));
        int64_t since = ctx.clock.now() - st.last_refresh.load(std::memory_order_relaxed);
        u64(out, "time_since_server_cert_refresh", static_cast<uint64_t>(since < 0 ? 0 : since));
    }
    u64(out, "unexpected_napi_ids", 0);
    u64(out, "round_robin_fallback", 0);
    u64(out, "bytes", ss.bytes);
    u64(out, "curr_items", ss.curr_items);
    u64(out, "total_items", ss.total_items);
    u64(out, "slab_global_page_pool", 0);  // pages are handed from class to class directly
    u64(out, "expired_unfetched", ss.expired_unfetched);
    u64(out, "evicted_unfetched", ss.evicted_unfetched);
    if (s.lru_maintainer) u64(out, "evicted_active", ss.evicted_active);
    u64(out, "evictions", ss.evictions);
    u64(out, "reclaimed", ss.reclaimed);
    u64(out, "crawler_reclaimed", ss.crawler_reclaimed);
    u64(out, "crawler_items_checked", 0);
    u64(out, "lrutail_reflocked", 0);  // no item is locked at an LRU tail here
    if (s.lru_maintainer) {
        // One LRU per class, no hot/warm/cold segments: nothing moves between them.
        u64(out, "moves_to_cold", 0);
        u64(out, "moves_to_warm", 0);
        u64(out, "moves_within_lru", 0);
        u64(out, "direct_reclaims", 0);
        u64(out, "lru_bumps_dropped", 0);
    }
    out.append("END\r\n");
}

void write_settings_stats(ServerContext& ctx, OutBuf& out) {
    const Settings& s = ctx.settings;
    u64(out, "maxbytes", ctx.store.max_bytes());
    u64(out, "maxconns", static_cast<uint64_t>(s.max_conns));
    u64(out, "tcpport", static_cast<uint64_t>(s.port < 0 ? 0 : s.port));
    u64(out, "udpport", static_cast<uint64_t>(s.udp_port));
    // memcached keeps every -l given, joined with commas ("notls:" prefixes included).
    std::string inter;
    for (const std::string& l : s.listen) inter += (inter.empty() ? "" : ",") + l;
    stat(out, "inter %s", s.listen.empty() ? "NULL" : inter.c_str());
    u64(out, "verbosity", static_cast<uint64_t>(ctx.verbose.load()));
    u64(out, "oldest", 0);
    stat(out, "evictions %s", s.evict_to_free ? "on" : "off");
    stat(out, "domain_socket %s", s.socket_path.empty() ? "NULL" : s.socket_path.c_str());
    stat(out, "umask %o", static_cast<unsigned>(s.access_mask));
    stat(out, "shutdown_command %s", yes_no(s.shutdown_enabled));
    stat(out, "growth_factor %.2f", s.factor);
    u64(out, "chunk_size", static_cast<uint64_t>(s.chunk_size));
    u64(out, "num_threads", static_cast<uint64_t>(s.num_threads));
    u64(out, "num_threads_per_udp", static_cast<uint64_t>(s.num_threads));  // every worker reads UDP
    stat(out, "stat_key_prefix %c", ':');
    stat(out, "detail_enabled %s", yes_no(ctx.prefix_stats.enabled()));
    u64(out, "reqs_per_event", static_cast<uint64_t>(s.reqs_per_event));
    stat(out, "cas_enabled %s", yes_no(s.use_cas));
    u64(out, "tcp_backlog", static_cast<uint64_t>(s.backlog));
    stat(out, "binding_protocol %s", protocol_name(s.binding_protocol));
    stat(out, "auth_enabled_sasl %s", "no");
    stat(out, "auth_enabled_ascii %s", "no");
    u64(out, "item_size_max", s.item_size_max);
    stat(out, "maxconns_fast %s", yes_no(s.maxconns_fast));
    u64(out, "hashpower_init", s.hashpower_init);
    stat(out, "slab_reassign %s", yes_no(s.slab_reassign));
    u64(out, "slab_automove", static_cast<uint64_t>(ops::slab_automove.load(std::memory_order_relaxed)));
    stat(out, "slab_automove_ratio %.2f", 0.8);  // memcached's default; not settable here
    u64(out, "slab_automove_window", s.slab_automove_window);
    u64(out, "slab_chunk_max", s.slab_chunk_max);
    stat(out, "lru_crawler %s", yes_no(ops::crawler_enabled.load(std::memory_order_relaxed)));
    u64(out, "lru_crawler_sleep", ops::crawler_sleep.load(std::memory_order_relaxed));
    u64(out, "lru_crawler_tocrawl", ops::crawler_tocrawl.load(std::memory_order_relaxed));
    u64(out, "tail_repair_time", s.tail_repair_time);
    stat(out, "flush_enabled %s", yes_no(s.flush_enabled));
    stat(out, "dump_enabled %s", yes_no(s.dump_enabled));
    stat(out, "hash_algorithm %s", "xxh3");
    stat(out, "lru_maintainer_thread %s", yes_no(s.lru_maintainer));
    stat(out, "temp_lru %s", yes_no(s.temp_lru));
    u64(out, "temporary_ttl", s.temporary_ttl);
    u64(out, "idle_timeout", s.idle_timeout);
    u64(out, "read_buf_mem_limit", s.read_buf_mem_limit);
    // Not in memcached: the workers' network loop in effect (epoll after a fallback).
    stat(out, "io_engine %s", s.io_engine == Settings::IoEngine::Uring ? "uring" : "epoll");
    stat(out, "inline_ascii_response %s", "no");
    // TLS, shown whether -Z is on or not (memcached built with TLS does the same), in its
    // words: a file not given is "(null)", a cipher list or CA not given "NULL".
    stat(out, "ssl_enabled %s", yes_no(s.ssl_enabled));
    stat(out, "ssl_chain_cert %s", s.ssl.chain_cert.empty() ? "(null)" : s.ssl.chain_cert.c_str());
    stat(out, "ssl_key %s", s.ssl.key.empty() ? "(null)" : s.ssl.key.c_str());
    u64(out, "ssl_verify_mode", static_cast<uint64_t>(s.ssl.verify_mode));
    u64(out, "ssl_keyformat", static_cast<uint64_t>(s.ssl.keyformat));
    stat(out, "ssl_ciphers %s", s.ssl.ciphers.empty() ? "NULL" : s.ssl.ciphers.c_str());
    stat(out, "ssl_ca_cert %s", s.ssl.ca_cert.empty() ? "NULL" : s.ssl.ca_cert.c_str());
    u64(out, "ssl_wbuf_size", s.ssl_wbuf_size);
    stat(out, "ssl_session_cache %s", yes_no(s.ssl.session_cache));
    stat(out, "ssl_kernel_tls %s", yes_no(s.ssl.kernel_tls));
    stat(out, "ssl_min_version %s", tls::min_version_name(s.ssl.min_version));
    stat(out, "memory_file %s", "(null)");  // -e is refused
    out.append("END\r\n");
}

void write_items_stats(ServerContext& ctx, OutBuf& out) {
    int64_t now = ctx.clock.now();
    (void)now;
    for (const store::ClassStats& c : ctx.store.class_stats()) {
        if (c.number == 0 && c.evicted == 0 && c.outofmemory == 0) continue;
        unsigned id = c.id;
        stat(out, "items:%u:number %" PRIu64, id, c.number);
        stat(out, "items:%u:number_hot %d", id, 0);
        stat(out, "items:%u:number_warm %d", id, 0);
        stat(out, "items:%u:number_cold %" PRIu64, id, c.number);
        stat(out, "items:%u:age_hot %d", id, 0);
        stat(out, "items:%u:age_warm %d", id, 0);
        stat(out, "items:%u:age %" PRIu64, id, c.age);
        stat(out, "items:%u:mem_requested %" PRIu64, id, c.mem_requested);
        stat(out, "items:%u:evicted %" PRIu64, id, c.evicted);
        stat(out, "items:%u:evicted_nonzero %" PRIu64, id, c.evicted_nonzero);
        stat(out, "items:%u:evicted_time %" PRIu64, id, c.evicted_time);
        stat(out, "items:%u:outofmemory %" PRIu64, id, c.outofmemory);
        stat(out, "items:%u:tailrepairs %d", id, 0);
        stat(out, "items:%u:reclaimed %" PRIu64, id, c.reclaimed);
        stat(out, "items:%u:expired_unfetched %" PRIu64, id, c.expired_unfetched);
        stat(out, "items:%u:evicted_unfetched %" PRIu64, id, c.evicted_unfetched);
        stat(out, "items:%u:evicted_active %" PRIu64, id, c.evicted_active);
        stat(out, "items:%u:crawler_reclaimed %" PRIu64, id, c.crawler_reclaimed);
        stat(out, "items:%u:crawler_items_checked %d", id, 0);
        stat(out, "items:%u:lrutail_reflocked %d", id, 0);
        stat(out, "items:%u:moves_to_cold %d", id, 0);
        stat(out, "items:%u:moves_to_warm %d", id, 0);
        stat(out, "items:%u:moves_within_lru %d", id, 0);
        stat(out, "items:%u:direct_reclaims %d", id, 0);
        stat(out, "items:%u:hits_to_hot %d", id, 0);
        stat(out, "items:%u:hits_to_warm %d", id, 0);
        stat(out, "items:%u:hits_to_cold %d", id, 0);
        stat(out, "items:%u:hits_to_temp %d", id, 0);
    }
    out.append("END\r\n");
}

void write_slabs_stats(ServerContext& ctx, OutBuf& out) {
    ThreadTotals t = sum_thread_stats(ctx);
    store::StoreStats ss = ctx.store.stats();
    unsigned active = 0;
    for (const store::ClassStats& c : ctx.store.class_stats()) {
        if (c.total_pages == 0) continue;
        ++active;
        unsigned id = c.id;
        stat(out, "%u:chunk_size %zu", id, c.chunk_size);
        stat(out, "%u:chunks_per_page %zu", id, c.chunks_per_page);
        stat(out, "%u:total_pages %" PRIu64, id, c.total_pages);
        stat(out, "%u:total_chunks %" PRIu64, id, c.total_pages * c.chunks_per_page);
        stat(out, "%u:used_chunks %" PRIu64, id, c.used_chunks);
        stat(out, "%u:free_chunks %" PRIu64, id, c.free_chunks);
        stat(out, "%u:free_chunks_end %" PRIu64, id, c.free_chunks_end);
        stat(out, "%u:cmd_set %" PRIu64, id, c.total_items);
    }
    stat(out, "active_slabs %u", active);
    u64(out, "total_malloced", ss.malloc_bytes);
    (void)t;
    out.append("END\r\n");
}

void write_conns_stats(ServerContext& ctx, OutBuf& out) {
    uint32_t now = ctx.clock.now();
    ctx.conns.for_each([&](int fd, const ConnInfo& c) {
        if (c.is_udp) stat(out, "%d:UDP UDP", fd);
        stat(out, "%d:addr %s", fd, c.addr.c_str());
        if (!c.is_listener && !c.is_udp) stat(out, "%d:listen_addr %s", fd, c.listen_addr.c_str());
        stat(out, "%d:state %s", fd, c.state.load(std::memory_order_relaxed));
        uint32_t last = c.last_cmd_time.load(std::memory_order_relaxed);
        stat(out, "%d:secs_since_last_cmd %u", fd, now > last ? now - last : 0);
    });
    out.append("END\r\n");
}

}  // namespace mcm::server
