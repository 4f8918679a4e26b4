// Operators' commands: stats cachedump, stats sizes*, lru_crawler, slabs, watch, and the
// watch log lines of reads, writes and evictions. Replies and argument checks follow
// memcached 1.6.18; where this server's memory layout differs (no per-class LRU lists, no
// slab mover, no crawler queue) the command is accepted with an answer that is true here,
// as doc/protocol.md ("Differences") describes.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "proto/numbers.h"
#include "server/dispatch.h"
#include "server/opstate.h"
#include "server/watch.h"

namespace mcm::server {

namespace {

// memcached's MAX_NUMBER_OF_SLAB_CLASSES: class ids it accepts in dumps are 1..63.
constexpr uint32_t kMaxClassIds = 64;
// memcached stops a cachedump at 2 MB of reply.
constexpr size_t kCachedumpMaxBytes = 2 * 1024 * 1024;

// Space-separated tokens, empty ones skipped (memcached's tokenizer).
std::vector<std::string_view> split(std::string_view a) {
    std::vector<std::string_view> t;
    while (!a.empty()) {
        size_t sp = a.find(' ');
        std::string_view w = a.substr(0, sp);
        if (!w.empty()) t.push_back(w);
        if (sp == std::string_view::npos) break;
        a.remove_prefix(sp + 1);
    }
    return t;
}

// "all", or comma-separated class ids 1..63. False: BADCLASS.
bool parse_classes(std::string_view s, std::vector<bool>* want) {
    want->assign(kMaxClassIds, false);
    if (s == "all") {
        want->assign(kMaxClassIds, true);
        return true;
    }
    while (true) {
        size_t c = s.find(',');
        std::string_view t = s.substr(0, c);
        uint32_t id = 0;
        if (!proto::parse_u32(t, &id) || id == 0 || id >= kMaxClassIds) return false;
        (*want)[id] = true;
        if (c == std::string_view::npos) return true;
        s.remove_prefix(c + 1);
    }
}

void append_u64(std::string* s, uint64_t v) {
    char b[24];
    int n = std::snprintf(b, sizeof b, "%llu", static_cast<unsigned long long>(v));
    s->append(b, static_cast<size_t>(n));
}

void append_i64(std::string* s, int64_t v) {
    char b[24];
    int n = std::snprintf(b, sizeof b, "%lld", static_cast<long long>(v));
    s->append(b, static_cast<size_t>(n));
}

}  // namespace

// stats cachedump <class> <limit>: "ITEM <key> [<bytes> b; <exptime> s]" (unix exptime, 0
// for none), then END. limit 0 means all (up to 2 MB of reply).
void Dispatcher::stats_cachedump(std::string_view args, OutBuf& out) {
    if (!ctx_.settings.dump_enabled) {
        out.append("CLIENT_ERROR stats cachedump not allowed\r\n");
        return;
    }
    std::vector<std::string_view> t = split(args);  // t[0] is "cachedump"
    if (t.size() < 3) {
        out.append("CLIENT_ERROR bad command line\r\n");
        return;
    }
    uint32_t id = 0;
    uint32_t limit = 0;
    if (!proto::parse_u32(t[1], &id) || !proto::parse_u32(t[2], &limit)) {
        out.append("CLIENT_ERROR bad command line format\r\n");
        return;
    }
    if (id >= kMaxClassIds) {
        out.append("CLIENT_ERROR Illegal slab id\r\n");
        return;
    }
    const int64_t started = ctx_.clock.process_started();
    std::string body;
    uint32_t shown = 0;
    ctx_.store.visit_all([&](const store::Item& it, unsigned cls) {
        if (cls != id) return true;
        size_t before = body.size();
        body.append("ITEM ");
        body.append(it.key());
        body.append(" [");
        append_u64(&body, it.value_len());
        body.append(" b; ");
        append_i64(&body, it.exptime == 0 ? 0 : int64_t{it.exptime} + started);
        body.append(" s]\r\n");
        if (body.size() + 5 > kCachedumpMaxBytes) {
            body.resize(before);
            return false;
        }
        ++shown;
        return limit == 0 || shown < limit;
    });
    body.append("END\r\n");
    out.append(body);
}

// stats sizes: item counts by total size, in 32-byte steps, of the items now stored.
void Dispatcher::stats_sizes(std::string_view sub, OutBuf& out) {
    if (sub == "sizes_enable") {
        if (!ctx_.settings.use_cas) {
            out.append("STAT sizes_status error\r\nSTAT sizes_error cas_support_disabled\r\n");
            return;
        }
        ops::sizes_enabled.store(true, std::memory_order_relaxed);
        out.append("STAT sizes_status enabled\r\n");  // memcached sends no END here
        return;
    }
    if (sub == "sizes_disable") {
        ops::sizes_enabled.store(false, std::memory_order_relaxed);
        out.append("STAT sizes_status disabled\r\n");  // nor here
        return;
    }
    if (!ops::sizes_enabled.load(std::memory_order_relaxed)) {
        out.append("STAT sizes_status disabled\r\nEND\r\n");
        return;
    }
    std::map<size_t, uint64_t> hist;
    ctx_.store.visit_all([&](const store::Item& it, unsigned) {
        ++hist[(it.total_size() + 31) / 32];
        return true;
    });
    std::string body;
    for (const auto& [bucket, n] : hist) {
        body.append("STAT ");
        append_u64(&body, bucket * 32);
        body.push_back(' ');
        append_u64(&body, n);
        body.append("\r\n");
    }
    body.append("END\r\n");
    out.append(body);
}

void Dispatcher::lru_crawler(const proto::Request& req, OutBuf& out) {
    std::vector<std::string_view> t = split(req.args);
    if (t.size() == 2) {
        std::string_view sub = t[0];
        std::string_view arg = t[1];
        if (sub == "crawl") {
            std::vector<bool> want;
            if (!ops::crawler_enabled.load(std::memory_order_relaxed)) {
                out.append("CLIENT_ERROR lru crawler disabled\r\n");
            } else if (!parse_classes(arg, &want)) {
                out.append("BADCLASS invalid class id\r\n");
            } else {
                // One pass of the background reclaimer over the whole table (it is not
                // organised by class here): expired and flushed items are removed.
                // Store::crawl visits 4 of the 64 shards per call, slots/4 slots in each:
                // 16 calls of a 16th of the table's slots visit every slot once.
                uint64_t total = uint64_t{1} << ctx_.store.stats().hash_power_level;
                for (int i = 0; i < 16; ++i) {
                    (void)ctx_.store.crawl(static_cast<size_t>(std::max<uint64_t>(64, total / 16)));
                }
                out.append("OK\r\n");
            }
            return;
        }
        if (sub == "metadump") {
            if (!ctx_.settings.dump_enabled) {
                out.append("ERROR metadump not allowed\r\n");
                return;
            }
            if (!ops::crawler_enabled.load(std::memory_order_relaxed)) {
                out.append("CLIENT_ERROR lru crawler disabled\r\n");
                return;
            }
            std::vector<bool> want;
            if (arg == "hash") {
                want.assign(kMaxClassIds, true);
            } else if (!parse_classes(arg, &want)) {
                out.append("BADCLASS invalid class id\r\n");
                return;
            }
            metadump(want, out);
            return;
        }
        if (sub == "sleep" || sub == "tocrawl") {
            uint32_t v = 0;
            if (!proto::parse_u32(arg, &v)) {
                out.append("CLIENT_ERROR bad command line format\r\n");
                return;
            }
            if (sub == "sleep") {
                if (v > 1000000) {
                    out.append("CLIENT_ERROR sleep must be one second or less\r\n");
                    return;
                }
                ops::crawler_sleep.store(v, std::memory_order_relaxed);
            } else {
                ops::crawler_tocrawl.store(v, std::memory_order_relaxed);
            }
            out.append("OK\r\n");
            return;
        }
    } else if (t.size() == 1) {
        if (t[0] == "enable") {
            // memcached answers so when its crawler thread is already running.
            if (ops::crawler_enabled.exchange(true, std::memory_order_relaxed)) {
                out.append("ERROR failed to start lru crawler thread\r\n");
            } else {
                out.append("OK\r\n");
            }
            return;
        }
        if (t[0] == "disable") {
            ops::crawler_enabled.store(false, std::memory_order_relaxed);
            out.append("OK\r\n");
            return;
        }
    }
    out.append("ERROR\r\n");
}

// lru_crawler metadump: one line per live item of the wanted classes, "\n"-terminated as
// memcached's are, then "END\r\n".
void Dispatcher::metadump(const std::vector<bool>& want, OutBuf& out) {
    const int64_t started = ctx_.clock.process_started();
    std::string body;
    ctx_.store.visit_all([&](const store::Item& it, unsigned cls) {
        if (cls >= want.size() || !want[cls]) return true;
        body.append("key=");
        watch::uri_encode(it.key(), &body);
        body.append(" exp=");
        append_i64(&body, it.exptime == 0 ? -1 : int64_t{it.exptime} + started);
        body.append(" la=");
        append_i64(&body, int64_t{it.time} + started);
        body.append(" cas=");
        append_u64(&body, ctx_.settings.use_cas ? it.cas : 0);
        body.append(it.has(store::Item::kFetched) ? " fetch=yes" : " fetch=no");
        body.append(" cls=");
        append_u64(&body, cls);
        body.append(" size=");
        append_u64(&body, it.total_size());
        body.push_back('\n');
        return true;
    });
    body.append("END\r\n");
    out.append(body);
}

void Dispatcher::slabs(const proto::Request& req, OutBuf& out) {
    std::vector<std::string_view> t = split(req.args);
    if (t.size() >= 2 && t[0] == "automove") {
        uint32_t level = 0;
        if (!proto::parse_u32(t[1], &level)) {
            out.append("CLIENT_ERROR bad command line format\r\n");
        } else if (level > 2) {
            out.append("ERROR\r\n");
        } else {
            // Recorded and shown in stats settings; memory moves between classes on demand
            // here whatever the level (doc/protocol.md).
            ops::slab_automove.store(static_cast<int>(level), std::memory_order_relaxed);
            out.append("OK\r\n");
        }
        return;
    }
    if (t.size() == 3 && t[0] == "reassign") {
        if (!ctx_.settings.slab_reassign) {
            out.append("CLIENT_ERROR slab reassignment disabled\r\n");
            return;
        }
        int32_t src = 0;
        int32_t dst = 0;
        if (!proto::parse_i32(t[1], &src) || !proto::parse_i32(t[2], &dst)) {
            out.append("CLIENT_ERROR bad command line format\r\n");
            return;
        }
        if (src == dst) {
            out.append("SAME src and dst class are identical\r\n");
            return;
        }
        const int32_t largest = static_cast<int32_t>(ctx_.store.class_sizes().size()) - 1;
        std::vector<store::ClassStats> cs = ctx_.store.class_stats();
        auto pages = [&](int32_t id) -> uint64_t {
            for (const store::ClassStats& c : cs) {
                if (static_cast<int32_t>(c.id) == id) return c.total_pages;
            }
            return 0;
        };
        if (src == -1) {  // memcached: any class with a page to spare
            for (int32_t id = 1; id <= largest; ++id) {
                if (id != dst && pages(id) >= 2) {
                    src = id;
                    break;
                }
            }
        }
        if (src < 0 || src > largest || dst < 0 || dst > largest) {
            out.append("BADCLASS invalid src or dst class id\r\n");
        } else if (pages(src) < 2) {
            out.append("NOSPARE source class has no spare pages\r\n");
        } else {
            // Nothing is moved now: a class short of memory empties another class's page
            // itself when it allocates (doc/protocol.md).
            out.append("OK\r\n");
        }
        return;
    }
    out.append("ERROR\r\n");
}

Next Dispatcher::watch(const proto::Request& req, OutBuf& out, PendingStore* pending) {
    if (!ctx_.settings.watch_enabled) {
        out.append("CLIENT_ERROR watch commands not allowed\r\n");
        return Next::Continue;
    }
    uint32_t flags = 0;
    if (!watch::parse_flags(req.args, &flags)) {
        out.append("ERROR\r\n");
        return Next::Continue;
    }
    // "OK" is queued by the watch thread once the watcher is registered (Conn::handoff), so
    // every event after the client reads it is streamed.
    pending->watch_flags = flags;
    pending->watch_handoff = true;
    return Next::Continue;
}

void Dispatcher::log_get(std::string_view key, const store::Item* it,
                         store::MissReason reason) {
    std::string b = "type=item_get key=";
    watch::uri_encode(key, &b);
    if (it != nullptr) {
        b.append(" status=found clsid=");
        append_u64(&b, ctx_.store.class_of(it));
    } else {
        b.append(reason == store::MissReason::Expired   ? " status=expired"
                 : reason == store::MissReason::Flushed ? " status=flushed"
                                                        : " status=not_found");
        b.append(" clsid=0");
    }
    b.append(" cfd=");
    append_i64(&b, cur_fd_);
    b.append(" size=");
    append_u64(&b, it != nullptr ? it->value_len() : 0);
    watch::emit(watch::kFetchers, b);
}

void Dispatcher::log_store(proto::Cmd cmd, const store::Item* it, store::StoreStatus s) {
    std::string b = "type=item_store key=";
    watch::uri_encode(it->key(), &b);
    switch (s) {
        case store::StoreStatus::Stored: b.append(" status=stored"); break;
        case store::StoreStatus::Exists: b.append(" status=exists"); break;
        case store::StoreStatus::NotFound: b.append(" status=not_found"); break;
        case store::StoreStatus::NotStored:
        case store::StoreStatus::TooLarge:
        case store::StoreStatus::NoMemory: b.append(" status=not_stored"); break;
    }
    b.append(" cmd=");
    b.append(proto::cmd_name(cmd == proto::Cmd::MetaSet ? proto::Cmd::Set : cmd));
    b.append(" ttl=");
    store::RelTime now = ctx_.clock.now();
    append_u64(&b, it->exptime == 0 || it->exptime <= now ? 0 : it->exptime - now);
    b.append(" clsid=");
    append_u64(&b, ctx_.store.class_of(it));
    b.append(" cfd=");
    append_i64(&b, cur_fd_);
    b.append(" size=");
    append_u64(&b, it->value_len());
    watch::emit(watch::kMutations, b);
}

// Store::Config::on_evict: the eviction line, when someone watches evictions.
void log_eviction(const store::Item& it, unsigned cls, store::RelTime now) noexcept {
    if (!watch::watching(watch::kEvictions)) return;
    std::string b = "type=eviction key=";
    watch::uri_encode(it.key(), &b);
    b.append(it.has(store::Item::kFetched) ? " fetch=yes" : " fetch=no");
    b.append(" ttl=");
    append_i64(&b, it.exptime == 0 ? -1 : int64_t{it.exptime} - int64_t{now});
    b.append(" la=");
    append_i64(&b, now > it.time ? int64_t{now} - int64_t{it.time} : 0);
    b.append(" clsid=");
    append_u64(&b, cls);
    b.append(" size=");
    append_u64(&b, it.value_len());
    watch::emit(watch::kEvictions, b);
}

}  // namespace mcm::server
