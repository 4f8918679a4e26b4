// The composition root: parse the command line, set the process up, create the store, the
// workers and the listener, run the main loop (accept, clock, signals) until told to stop,
// then tear everything down in reverse order.
#include <event2/event.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "config.h"
#include "replication/replicator.h"
#include "server/managed/cluster.h"
#include "server/context.h"
#include "server/daemon.h"
#include "server/dispatch.h"
#include "server/opstate.h"
#include "server/listener.h"
#include "tls/server.h"
#include "server/log.h"
#include "server/settings.h"
#include "server/uring.h"
#include "server/store/store.h"
#include "server/watch.h"
#include "server/worker.h"
#include "tls/peer.h"

namespace mcm::server {
namespace {

// memcached starts its clock a little in the past so that relative time 1 is always over.
constexpr int64_t kClockHeadStart = 62;

// The background reclaimer (memcached's LRU crawler): walks the table slowly, unlinking
// expired and flushed items and finishing table growth. Owns one thread.
class Crawler {
public:
    Crawler(store::Store& st, bool as_maintainer)
        : store_(st), as_maintainer_(as_maintainer), thread_([this] { run(); }) {}
    ~Crawler() {
        {
            std::lock_guard<std::mutex> g(mu_);
            stop_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }

private:
    void run() {
        std::unique_lock<std::mutex> lk(mu_);
        while (!stop_) {
            lk.unlock();
            if (ops::crawler_enabled.load(std::memory_order_relaxed)) {
                (void)store_.crawl(8192, as_maintainer_);
            }
            lk.lock();
            cv_.wait_for(lk, std::chrono::milliseconds(100), [this] { return stop_; });
        }
    }
    store::Store& store_;
    bool as_maintainer_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

void on_stop_signal(evutil_socket_t sig, short, void* arg) {
    LOG(LogLevel::Info, "Signal handled: %s.", strsignal(static_cast<int>(sig)));
    event_base_loopbreak(static_cast<event_base*>(arg));
}

struct ClockTick {
    store::Clock* clock;
    event* ev;
};

void on_clock(evutil_socket_t, short, void* arg) {
    auto* t = static_cast<ClockTick*>(arg);
    t->clock->tick(static_cast<int64_t>(time(nullptr)));
}

int run(int argc, char** argv) {
    Settings settings;
    switch (parse_command_line(argc, argv, &settings)) {
        case ParseOutcome::ExitOk: return EXIT_SUCCESS;
        case ParseOutcome::ExitError: return 64;  // EX_USAGE
        case ParseOutcome::Run: break;
    }
#ifdef MC_DEBUG
    settings.debug_commands = true;
#endif
    log_set_level(settings.verbose);
    signal(SIGPIPE, SIG_IGN);

    // Peer TLS's files are read before privileges are dropped (they may be root's only).
    std::unique_ptr<tls::PeerTls> peer_tls;
    if (settings.peer_tls.enabled()) {
        std::string err;
        peer_tls = tls::PeerTls::create(settings.peer_tls, &err);
        if (!peer_tls) {
            fprintf(stderr, "peer TLS: %s\n", err.c_str());
            return 64;  // EX_USAGE, as a bad option
        }
    }
    // -Z: the clients' TLS context, likewise before privileges are dropped. A bad file or
    // option exits as memcached's (its message, EX_USAGE).
    std::unique_ptr<tls::ServerTls> server_tls;
    if (settings.ssl_enabled) {
        std::string err;
        server_tls = tls::ServerTls::create(settings.ssl, &err);
        if (!server_tls) {
            fprintf(stderr, "%s\n", err.c_str());
            return 64;  // EX_USAGE
        }
        // Peer TLS on a -Z port: a hello offering ALPN mcm-peer moves to the cluster's
        // context (doc/managed.md, Peer TLS), also after refresh_certs rebuilds this one.
        if (peer_tls) {
            const tls::PeerTls* pt = peer_tls.get();
            server_tls->set_context_hook(
                [pt](SSL_CTX* c) { SSL_CTX_set_client_hello_cb(c, tls::peer_hello_cb, const_cast<tls::PeerTls*>(pt)); });
        }
    }
    if (!raise_limits(settings)) return 71;     // EX_OSERR
    if (!drop_privileges(settings)) return 64;  // EX_USAGE
    if (!daemonize(settings)) return 71;

    int64_t now = static_cast<int64_t>(time(nullptr));
    store::Clock clock(now - kClockHeadStart);
    clock.tick(now);

    watch::g_watcher_buf_bytes = settings.watcher_logbuf_bytes;
    store::Config sc;
    sc.max_bytes = settings.max_bytes;
    sc.item_size_max = settings.item_size_max;
    sc.evict = settings.evict_to_free;
    sc.use_cas = settings.use_cas;
    if (settings.hashpower_init != 0) sc.hash_power = settings.hashpower_init;
    sc.hash_expand = settings.hash_expand;
    sc.on_evict = &log_eviction;  // `watch evictions`; returns at once when nobody watches
    ops::crawler_enabled.store(settings.lru_crawler, std::memory_order_relaxed);
    ops::slab_automove.store(settings.slab_automove, std::memory_order_relaxed);
    std::unique_ptr<Cluster> cluster;
    std::unique_ptr<repl::Replicator> replicator;
    if (settings.managed()) {
        sc.nbuckets = settings.buckets;
        sc.bucket_fn = &repl::bucket_of;
        cluster = std::make_unique<Cluster>(settings);
        repl::ReplConfig rc;
        rc.node_id = settings.node_id;
        rc.secret = settings.cluster_secret;
        rc.nbuckets = settings.buckets;
        rc.backlog_bytes = settings.repl_backlog;
        rc.ack = settings.repl_ack;
        rc.ack_timeout_ms = settings.repl_ack_timeout_ms;
        rc.hint_rate = settings.repl_hint_rate;
        rc.hint_ms = settings.repl_hint_ms;
        rc.peer_tls = peer_tls.get();
        // Twice the largest item (a peer started with a larger -I still gets through, up to
        // a point), never less than 4 MB, never more than the stream's own limit.
        rc.max_frame = static_cast<uint32_t>(std::min<size_t>(
            repl::kMaxFrame, std::max<size_t>(size_t{4} << 20, 2 * settings.item_size_max + 65536)));
        replicator = std::make_unique<repl::Replicator>(rc, *cluster, clock);
        cluster->set_change_wake(&repl::Replicator::wake_for_change, replicator.get());
        sc.on_mutation = &repl::Replicator::on_mutation;
        sc.mutation_ctx = replicator.get();
        if (settings.repl_hint_rate > 0) {  // off: reads do not even look
            sc.on_access = &repl::Replicator::on_access;
            sc.access_ctx = replicator.get();
        }
    }
    store::Store store(sc, clock);
    if (replicator) replicator->attach(store);

    ServerContext ctx(settings, store, clock);
    ctx.started_unix = now;
    ctx.cluster = cluster.get();
    ctx.replicator = replicator.get();
    ctx.peer_tls = peer_tls.get();
    ctx.server_tls = server_tls.get();
    ctx.verbose.store(settings.verbose);
    ctx.prefix_stats.set_delimiter(settings.prefix_delimiter);
    ctx.prefix_stats.set_enabled(settings.detail_enabled);
    if (settings.lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
        fprintf(stderr, "warning: -k invalid, mlockall() failed: %s\n", strerror(errno));
    }

    if (settings.io_engine == Settings::IoEngine::Uring) {
        // -o io_engine=uring: where the kernel (or the configuration) refuses io_uring, every
        // worker runs the epoll loop instead, with this one line in the log.
        std::string why = Ring::refused_by(settings);
        if (!why.empty()) {  // a choice of the configuration (TLS), not a failure
            LOG(LogLevel::Info, "io_uring not used (%s): using epoll", why.c_str());
            settings.io_engine = Settings::IoEngine::Epoll;
        } else if (!Ring::probe(&why)) {
            LOG(LogLevel::Warn, "io_uring unavailable (%s): using epoll", why.c_str());
            settings.io_engine = Settings::IoEngine::Epoll;
        }
    }
    std::vector<std::unique_ptr<Worker>> workers;
    for (int i = 0; i < settings.num_threads; ++i) {
        workers.push_back(std::make_unique<Worker>(ctx, i));
        ctx.workers.push_back(workers.back().get());
    }
    for (auto& w : workers) w->start();
    if (replicator) replicator->start();

    event_base* base = event_base_new();
    int rc = EXIT_SUCCESS;
    // The stop signals are caught before the listener publishes its ports (the port file): a
    // supervisor that reads the port and then sends SIGTERM at once must get a clean exit.
    event* sigs[3] = {evsignal_new(base, SIGINT, on_stop_signal, base),
                      evsignal_new(base, SIGTERM, on_stop_signal, base),
                      evsignal_new(base, SIGUSR1, on_stop_signal, base)};
    for (event* e : sigs) event_add(e, nullptr);
    {
        Listener listener(ctx, base);
        ctx.listener = &listener;
        if (!listener.setup()) {
            rc = 71;  // EX_OSERR
        } else {
            (void)write_pid_file(settings);
            std::unique_ptr<Crawler> crawler;
            // Always there: `lru_crawler enable` may start what -o no_lru_crawler stopped.
            crawler = std::make_unique<Crawler>(store, settings.lru_maintainer);

            ClockTick tick{&clock, nullptr};
            tick.ev = event_new(base, -1, EV_PERSIST, on_clock, &tick);
            timeval one_sec{1, 0};
            event_add(tick.ev, &one_sec);
            event_base_dispatch(base);
            listener.close_requests();

            event_free(tick.ev);
            crawler.reset();
            remove_pid_file(settings);
        }
        listener.close_requests();
        for (auto& w : workers) w->stop();
        if (replicator) replicator->stop();
        ctx.listener = nullptr;
    }
    workers.clear();
    replicator.reset();
    for (event* e : sigs) event_free(e);
    event_base_free(base);
    return rc;
}

}  // namespace
}  // namespace mcm::server

int main(int argc, char** argv) {
    try {
        return mcm::server::run(argc, argv);
    } catch (const std::exception& e) {
        fprintf(stderr, "fatal: %s\n", e.what());
        return 71;
    }
}
