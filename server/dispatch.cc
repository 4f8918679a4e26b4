// Executes text-protocol commands against the store with memcached's replies and counters.
// Replies obey noreply exactly where memcached's out_string does: the parser records noreply
// before any argument error, so "set k x 0 1 noreply" stays silent, like memcached.
#include "server/dispatch.h"
#include "tls/peer.h"
#include "tls/server.h"

#include <csignal>
#include <cstdio>
#include <cstring>

#include "config.h"
#include "proto/errors.h"
#include "proto/numbers.h"
#include "proto/text_parser.h"
#include "replication/replicator.h"
#include "server/log.h"
#include "server/textfmt.h"
#include "server/watch.h"

namespace mcm::server {

using proto::Cmd;
using proto::Request;

namespace {


}  // namespace

store::StoreOp store_op(Cmd c) noexcept {
    switch (c) {
        case Cmd::Add: return store::StoreOp::Add;
        case Cmd::Replace: return store::StoreOp::Replace;
        case Cmd::Append: return store::StoreOp::Append;
        case Cmd::Prepend: return store::StoreOp::Prepend;
        case Cmd::Cas: return store::StoreOp::Cas;
        default: return store::StoreOp::Set;
    }
}

void Dispatcher::count_cas(store::StoreOp op, store::StoreStatus s) noexcept {
    if (op != store::StoreOp::Cas) return;
    if (s == store::StoreStatus::Stored) stats_.cas_hits.add();
    if (s == store::StoreStatus::Exists) stats_.cas_badval.add();
    if (s == store::StoreStatus::NotFound) stats_.cas_misses.add();
}

store::AllocStatus Dispatcher::alloc_for_store(std::string_view key, uint32_t flags,
                                               store::RelTime exp, uint32_t len, bool drop_old,
                                               store::ItemRef* item) {
    store::AllocStatus rc = ctx_.store.alloc(key, flags, exp, len, item);
    if (rc == store::AllocStatus::Ok) return rc;
    if (rc == store::AllocStatus::TooLarge) {
        stats_.store_too_large.add();
    } else {
        stats_.store_no_memory.add();
    }
    // A failed set leaves no old value readable, except where memcached fails while reading
    // a chunked value (its old item stays).
    if (drop_old && (rc == store::AllocStatus::TooLarge || !oom_during_read(key, flags, len))) {
        (void)ctx_.store.remove(key);
    }
    return rc;
}

bool Dispatcher::oom_during_read(std::string_view key, uint32_t flags,
                                 uint32_t len) const noexcept {
    // memcached's item_make_header plus the cas field: the size it compares with the chunk
    // limit to decide whether the item is chunked.
    size_t ntotal = 48 + key.size() + 1 + size_t{len} + 2 + (flags != 0 ? 4 : 0) +
                    (ctx_.settings.use_cas ? 8 : 0);
    return ntotal > ctx_.settings.slab_chunk_max;
}

std::string_view Dispatcher::store_error_text(store::AllocStatus rc, std::string_view key,
                                              uint32_t flags, uint32_t len) const noexcept {
    if (rc == store::AllocStatus::TooLarge) return proto::kTooLarge;
    return oom_during_read(key, flags, len) ? proto::kOutOfMemoryDuringRead
                                            : proto::kOutOfMemoryStoring;
}

void Dispatcher::reply(const Request& req, OutBuf& out, std::string_view line) {
    if (!req.noreply) out.append(line);
}

Next Dispatcher::execute(const Request& req, OutBuf& out, PendingStore* pending, size_t* swallow) {
    store::Store& st = ctx_.store;
    HintScope hint(ctx_.cluster != nullptr);  // the routing's bucket hint ends with the request
    cur_fd_ = pending->cfd;
    if (ctx_.cluster != nullptr && req.cmd != Cmd::Error) {
        Next next;
        if (!route_text(req, out, pending, swallow, &next)) return next;
    }
    switch (req.cmd) {
        case Cmd::Error:
            if (req.swallow != 0) {  // a meta set's error: always sent, its value discarded
                out.append(proto::error_text(req.error));
                *swallow = req.swallow;
                return Next::Swallow;
            }
            reply(req, out, proto::error_text(req.error));
            return Next::Continue;
        case Cmd::MetaGet: meta_get(req, out); return Next::Continue;
        case Cmd::MetaSet: return meta_set(req, out, pending, swallow);
        case Cmd::MetaDelete: meta_delete(req, out); return Next::Continue;
        case Cmd::MetaArith: meta_arith(req, out); return Next::Continue;
        case Cmd::MetaNoop: out.append("MN\r\n"); return Next::Continue;
        case Cmd::MetaDebug: meta_debug(req, out); return Next::Continue;
        case Cmd::Get:
        case Cmd::Gets:
        case Cmd::Gat:
        case Cmd::Gats: get(req, out); return Next::Continue;
        case Cmd::Set:
        case Cmd::Add:
        case Cmd::Replace:
        case Cmd::Append:
        case Cmd::Prepend:
        case Cmd::Cas: {
            if (ctx_.prefix_stats.enabled()) ctx_.prefix_stats.record_set(req.key);
            store::RelTime exp = ctx_.clock.realtime(req.exptime);
            store::ItemRef item;
            auto rc = alloc_for_store(req.key, req.flags, exp,
                                      static_cast<uint32_t>(req.value_len), req.cmd == Cmd::Set,
                                      &item);
            if (rc != store::AllocStatus::Ok) {
                reply(req, out,
                      store_error_text(rc, req.key, req.flags,
                                       static_cast<uint32_t>(req.value_len)));
                *swallow = static_cast<size_t>(req.value_len) + 2;
                return Next::Swallow;
            }
            pending->cmd = req.cmd;
            pending->noreply = req.noreply;
            pending->cas_unique = req.cas_unique;
            pending->wire_len = static_cast<uint32_t>(req.value_len) + 2;
            pending->item = std::move(item);
            return Next::ReadValue;
        }
        case Cmd::Delete:
            if (ctx_.prefix_stats.enabled()) ctx_.prefix_stats.record_delete(req.key);
            if (watch::watching(watch::kFetchers)) [[unlikely]] {  // memcached logs its lookup
                store::Lookup l = st.peek(req.key);
                log_get(req.key, l.item.get(), l.reason);
            }
            if (st.remove(req.key)) {
                stats_.delete_hits.add();
                reply(req, out, "DELETED\r\n");
            } else {
                stats_.delete_misses.add();
                reply(req, out, "NOT_FOUND\r\n");
            }
            return Next::Continue;
        case Cmd::Incr:
        case Cmd::Decr: arith(req, out); return Next::Continue;
        case Cmd::Touch: {
            stats_.touch_cmds.add();
            if (watch::watching(watch::kFetchers)) [[unlikely]] {
                store::Lookup l = st.peek(req.key);
                log_get(req.key, l.item.get(), l.reason);
            }
            if (st.touch(req.key, ctx_.clock.realtime(req.exptime))) {
                stats_.touch_hits.add();
                reply(req, out, "TOUCHED\r\n");
            } else {
                stats_.touch_misses.add();
                reply(req, out, "NOT_FOUND\r\n");
            }
            return Next::Continue;
        }
        case Cmd::FlushAll:
            stats_.flush_cmds.add();
            if (!ctx_.settings.flush_enabled) {
                reply(req, out, proto::kFlushDisabled);
                return Next::Continue;
            }
            st.flush(req.exptime);
            reply(req, out, "OK\r\n");
            return Next::Continue;
        case Cmd::Version: out.append("VERSION " VERSION "\r\n"); return Next::Continue;
        case Cmd::Verbosity:
            ctx_.verbose.store(req.level > 2 ? 2 : static_cast<int>(req.level));
            log_set_level(ctx_.verbose.load());
            reply(req, out, "OK\r\n");
            return Next::Continue;
        case Cmd::Quit: return Next::CloseAfterWrite;
        case Cmd::Shutdown:
            if (!ctx_.settings.shutdown_enabled) {
                out.append(proto::kShutdownDisabled);
                return Next::Continue;
            }
            if (req.args.empty()) {
                std::raise(SIGINT);
                return Next::CloseNow;
            }
            if (req.args == "graceful") {
                std::raise(SIGUSR1);
                return Next::CloseNow;
            }
            out.append(proto::error_text(proto::Err::InvalidShutdownMode));
            return Next::Continue;
        case Cmd::CacheMemlimit:
            if (req.memlimit < 8) {
                reply(req, out, proto::kMemlimitTooSmall);
            } else if (req.memlimit > 1000000000) {
                reply(req, out, proto::kMemlimitNotBytes);
            } else {
                st.set_max_bytes(static_cast<size_t>(req.memlimit) * 1024 * 1024);
                LOG(LogLevel::Info, "maxbytes adjusted to %um", req.memlimit);
                reply(req, out, "OK\r\n");
            }
            return Next::Continue;
        case Cmd::Stats: stats(req, out); return Next::Continue;
        case Cmd::RefreshCerts: {
            // -Z: read the certificate, key and CA files again; new handshakes use them.
            // memcached's replies: OK, or its error message as the line.
            // Peer TLS's files (-o peer_tls_*) are read again too.
            if (ctx_.server_tls == nullptr && ctx_.peer_tls == nullptr) {
                out.append("Error TLS not enabled\r\n");
                return Next::Continue;
            }
            std::string err;
            if (ctx_.server_tls != nullptr) {
                if (!ctx_.server_tls->refresh(&err)) {
                    out.append(err + "\r\n");
                    return Next::Continue;
                }
                ctx_.server_tls->last_refresh.store(ctx_.clock.now(), std::memory_order_relaxed);
            }
            if (ctx_.peer_tls != nullptr && !ctx_.peer_tls->reload(&err)) {
                out.append("Error reloading peer TLS: " + err + "\r\n");
                return Next::Continue;
            }
            out.append("OK\r\n");
            return Next::Continue;
        }
        case Cmd::Debug: debug(req, out); return Next::Continue;
        case Cmd::Cluster: return cluster(req, out, pending, swallow);
        case Cmd::LruCrawler: lru_crawler(req, out); return Next::Continue;
        case Cmd::Slabs: slabs(req, out); return Next::Continue;
        case Cmd::Watch: return watch(req, out, pending);
    }
    return Next::Continue;
}

void Dispatcher::get(const Request& req, OutBuf& out, bool end) {
    const bool touch = req.cmd == Cmd::Gat || req.cmd == Cmd::Gats;
    const bool with_cas = req.cmd == Cmd::Gets || req.cmd == Cmd::Gats;
    const bool report_cas = ctx_.settings.use_cas;
    store::RelTime exp = touch ? ctx_.clock.realtime(req.exptime) : 0;
    // A key over 250 bytes anywhere in the line turns the whole reply into one error
    // (memcached drops the values it had already queued).
    OutBuf::Mark mark = out.mark();
    proto::KeyCursor keys(req.keys);
    std::string_view key;
    while (keys.next(&key)) {
        if (key.size() > proto::kKeyMaxLength) {
            out.rollback(mark);
            out.append(proto::kKeyTooLongOrBad);
            return;
        }
        store::Lookup r = touch ? ctx_.store.get_and_touch(key, exp) : ctx_.store.get(key);
        if (ctx_.prefix_stats.enabled()) ctx_.prefix_stats.record_get(key, bool(r.item));
        if (watch::watching(watch::kFetchers)) [[unlikely]] log_get(key, r.item.get(), r.reason);
        if (touch) {
            stats_.touch_cmds.add();
        } else {
            stats_.get_cmds.add();
        }
        if (!r.item) {
            if (touch) {
                stats_.touch_misses.add();
            } else {
                stats_.get_misses.add();
            }
            if (r.reason == store::MissReason::Expired) stats_.get_expired.add();
            if (r.reason == store::MissReason::Flushed) stats_.get_flushed.add();
            continue;
        }
        if (touch) {
            stats_.touch_hits.add();
        } else {
            stats_.get_hits.add();
        }
        store::Item* it = r.item.get();
        // "VALUE <key> <flags> <bytes>[ <cas>]\r\n"
        char* p = out.reserve(6 + it->nkey + 3 * 21 + 4);
        char* s = p;
        std::memcpy(p, "VALUE ", 6);
        p += 6;
        std::memcpy(p, it->data, it->nkey);
        p += it->nkey;
        if (it->client_flags == 0) {  // the common case: no digits to compute
            std::memcpy(p, " 0 ", 3);
            p += 3;
        } else {
            *p++ = ' ';
            p = put_u64(p, it->client_flags);
            *p++ = ' ';
        }
        p = put_u64(p, it->value_len());
        if (with_cas) {
            *p++ = ' ';
            p = put_u64(p, report_cas ? it->cas : 0);
        }
        *p++ = '\r';
        *p++ = '\n';
        out.commit(static_cast<size_t>(p - s));
        out.add_item(r.item.detach(), it->value(), it->nbytes);
    }
    if (end) out.append("END\r\n");
}

void Dispatcher::arith(const Request& req, OutBuf& out) {
    const bool incr = req.cmd == Cmd::Incr;
    uint64_t value = 0;
    if (watch::watching(watch::kFetchers)) [[unlikely]] {  // memcached logs its lookup
        store::Lookup l = ctx_.store.peek(req.key);
        log_get(req.key, l.item.get(), l.reason);
    }
    switch (ctx_.store.delta(req.key, incr, req.delta, &value)) {
        case store::DeltaStatus::Ok: {
            if (incr) {
                stats_.incr_hits.add();
            } else {
                stats_.decr_hits.add();
            }
            if (req.noreply) return;
            char* p = out.reserve(24);
            char* e = put_u64(p, value);
            *e++ = '\r';
            *e++ = '\n';
            out.commit(static_cast<size_t>(e - p));
            return;
        }
        case store::DeltaStatus::NotFound:
            if (incr) {
                stats_.incr_misses.add();
            } else {
                stats_.decr_misses.add();
            }
            reply(req, out, "NOT_FOUND\r\n");
            return;
        case store::DeltaStatus::NonNumeric: reply(req, out, proto::kNonNumeric); return;
        case store::DeltaStatus::NoMemory: reply(req, out, proto::kOutOfMemory); return;
        case store::DeltaStatus::Exists: return;  // only with a cas to compare (ma C)
    }
}

void Dispatcher::finish_store(PendingStore* pending, OutBuf& out) {
    PendingStore::Kind kind = pending->kind;
    pending->kind = PendingStore::Kind::Text;  // the next command starts afresh
    switch (kind) {
        case PendingStore::Kind::ClusterMap: return finish_cluster_map(pending, out);
        case PendingStore::Kind::Meta: return finish_meta_store(pending, out);
        case PendingStore::Kind::Binary: return finish_binary_store(pending, out);
        case PendingStore::Kind::Text: break;
    }
    store::ItemRef item = std::move(pending->item);
    Request r;  // for reply(): only noreply matters
    r.noreply = pending->noreply;
    stats_.set_cmds.add();
    const char* v = item->value();
    if (v[item->nbytes - 2] != '\r' || v[item->nbytes - 1] != '\n') {
        reply(r, out, proto::kBadDataChunk);
        return;
    }
    cur_fd_ = pending->cfd;
    if (watch::watching(watch::kFetchers)) [[unlikely]] {  // memcached's lookup before a store
        store::Lookup l = ctx_.store.peek(item->key());
        log_get(item->key(), l.item.get(), l.reason);
    }
    store::StoreStatus s = ctx_.store.store(item, store_op(pending->cmd), pending->cas_unique);
    count_cas(store_op(pending->cmd), s);
    if (watch::watching(watch::kMutations)) [[unlikely]] log_store(pending->cmd, item.get(), s);
    switch (s) {
        case store::StoreStatus::Stored: reply(r, out, "STORED\r\n"); break;
        case store::StoreStatus::NotStored: reply(r, out, "NOT_STORED\r\n"); break;
        case store::StoreStatus::Exists: reply(r, out, "EXISTS\r\n"); break;
        case store::StoreStatus::NotFound: reply(r, out, "NOT_FOUND\r\n"); break;
        case store::StoreStatus::TooLarge: reply(r, out, proto::kTooLarge); break;
        case store::StoreStatus::NoMemory: reply(r, out, proto::kOutOfMemoryStoring); break;
    }
}

void Dispatcher::stats(const Request& req, OutBuf& out) {
    std::string_view a = req.args;
    if (a.empty()) {
        write_general_stats(ctx_, out);
        return;
    }
    std::string_view sub = a.substr(0, a.find(' '));
    if (sub == "reset") {
        reset_stats(ctx_);
        out.append("RESET\r\n");
    } else if (sub == "settings") {
        write_settings_stats(ctx_, out);
    } else if (sub == "items") {
        write_items_stats(ctx_, out);
    } else if (sub == "slabs") {
        write_slabs_stats(ctx_, out);
    } else if (sub == "conns") {
        write_conns_stats(ctx_, out);
    } else if (sub == "cluster" && ctx_.cluster != nullptr) {
        write_cluster_stats(ctx_, out);
    } else if (sub == "buckets" && ctx_.cluster != nullptr) {
        write_bucket_stats(ctx_, out);
    } else if (sub == "replication" && ctx_.replicator != nullptr) {
        out.append(ctx_.replicator->stats_text());
        out.append("END\r\n");
    } else if (sub == "cachedump") {
        stats_cachedump(a, out);
    } else if (sub == "sizes" || sub == "sizes_enable" || sub == "sizes_disable") {
        stats_sizes(sub, out);
    } else if (sub == "detail") {
        std::string_view arg = a.size() > sub.size() ? a.substr(sub.size() + 1) : "";
        arg = arg.substr(0, arg.find(' '));
        if (arg == "on") {
            ctx_.prefix_stats.set_enabled(true);
            out.append("OK\r\n");
        } else if (arg == "off") {
            ctx_.prefix_stats.set_enabled(false);
            out.append("OK\r\n");
        } else if (arg == "dump") {
            out.append(ctx_.prefix_stats.dump());
        } else {
            out.append(proto::error_text(proto::Err::StatsDetailUsage));
        }
    } else {
        out.append("ERROR\r\n");
    }
}

void Dispatcher::debug(const Request& req, OutBuf& out) {
#ifdef MC_DEBUG
    // debug time <+N|-N>: move the server clock (memcached's debugtime), for expiry tests.
    std::string_view a = req.args;
    if (a.starts_with("time ")) {
        std::string_view n = a.substr(5);
        int64_t secs = 0;
        if (!n.empty() && n[0] == '+') n.remove_prefix(1);
        if (proto::parse_i64(n, &secs)) {
            ctx_.clock.advance(secs);
            out.append("OK\r\n");
            return;
        }
    }
    out.append("CLIENT_ERROR usage: debug time <+seconds>\r\n");
#else
    (void)req;
    out.append("ERROR\r\n");
#endif
}

}  // namespace mcm::server
