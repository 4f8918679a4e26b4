// Worker threads: a libevent loop each, fed new sockets by the listener.
#include "server/worker.h"

#include <pthread.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include "server/conn.h"
#include "tls/server.h"
#include "server/log.h"
#include "server/uring.h"

namespace mcm::server {

Worker::Worker(ServerContext& ctx, int id) : ctx_(ctx), id_(id), dispatcher_(ctx, stats_) {
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    base_ = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (base_ == nullptr) throw std::runtime_error("event_base_new failed");
    if (ctx.cluster != nullptr) {
        peers_ = std::make_unique<PeerLinks>(this, ctx.settings.cluster_secret);
    }
    notify_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (notify_fd_ < 0) throw std::runtime_error("eventfd failed");
    notify_ev_ = event_new(base_, notify_fd_, EV_READ | EV_PERSIST, &Worker::on_notify, this);
    event_add(notify_ev_, nullptr);
    // Closed connections are freed outside their own callbacks, on this zero-delay event.
    reap_ev_ = event_new(
        base_, -1, 0,
        [](evutil_socket_t, short, void* arg) {
            auto* w = static_cast<Worker*>(arg);
            for (Conn* c : w->dead_) delete c;
            w->dead_.clear();
        },
        this);
    // Housekeeping once a second: idle connections give back their read buffers, and with
    // -o idle_timeout the ones idle too long are closed.
    housekeeping_ev_ = event_new(
        base_, -1, EV_PERSIST,
        [](evutil_socket_t, short, void* arg) { static_cast<Worker*>(arg)->housekeeping(); },
        this);
    timeval one_sec{1, 0};
    event_add(housekeeping_ev_, &one_sec);
}

void Worker::housekeeping() {
    if (stopping_.load(std::memory_order_acquire)) {  // in case the wake-up was missed
        event_base_loopbreak(base_);
        return;
    }
    uint32_t now = ctx_.clock.now();
    unsigned timeout = ctx_.settings.idle_timeout;
    std::vector<Conn*> idle;
    for (Conn* c : conns_) {
        if (timeout > 0 && c->idle_for(now, timeout)) {
            idle.push_back(c);
        } else {
            c->release_idle_rbuf(now);
        }
    }
    for (Conn* c : idle) {
        LOG(LogLevel::Info, "idle timeout: closing connection %d", c->fd());
        stats_.idle_kicks.add();
        c->close();
    }
}

Worker::~Worker() {
    ring_.reset();  // ring_loop cancelled its requests; the connections go after it
    for (Conn* c : dead_) delete c;
    dead_.clear();
    for (Conn* c : conns_) delete c;
    conns_.clear();
    peers_.reset();  // its events belong to base_
    for (char* b : rbuf_pool_) std::free(b);
    for (Udp& u : udp_) {
        ctx_.conns.remove(u.fd);
        event_free(u.ev);
        ::close(u.fd);
    }
    if (reap_ev_ != nullptr) event_free(reap_ev_);
    if (housekeeping_ev_ != nullptr) event_free(housekeeping_ev_);
    if (notify_ev_ != nullptr) event_free(notify_ev_);
    if (notify_fd_ >= 0) ::close(notify_fd_);
    if (base_ != nullptr) event_base_free(base_);
}

namespace {
thread_local Worker* tls_worker = nullptr;
}  // namespace

Worker* Worker::current() noexcept { return tls_worker; }

void Worker::start() {
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "mc-worker");  // for top -H, perf and the benchmarks
        tls_worker = this;
        if (ctx_.settings.io_engine == Settings::IoEngine::Uring) {
            std::string why;
            if (ring_setup(&why)) {
                ring_loop();
                return;
            }
            LOG(LogLevel::Warn, "worker %d: io_uring unavailable (%s), using epoll", id_,
                why.c_str());
        }
        event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
    });
}

void Worker::stop() {
    // libevent without its threading layer must not be driven from another thread (a
    // loopbreak from here could be lost), so the loop breaks itself when it sees the flag.
    stopping_.store(true, std::memory_order_release);
    uint64_t one = 1;
    (void)!::write(notify_fd_, &one, sizeof(one));
    if (thread_.joinable()) thread_.join();
}

void Worker::hand_over(NewConn nc) {
    {
        std::lock_guard<std::mutex> g(mu_);
        queue_.push_back(std::move(nc));
    }
    uint64_t one = 1;
    (void)!::write(notify_fd_, &one, sizeof(one));
}

void Worker::poke() {
    uint64_t one = 1;
    (void)!::write(notify_fd_, &one, sizeof(one));
}

void Worker::on_notify(evutil_socket_t fd, short, void* arg) {
    uint64_t v;
    (void)!::read(fd, &v, sizeof(v));
    auto* w = static_cast<Worker*>(arg);
    // Callbacks do not nest: whatever request callback ran on this thread has returned.
    w->passes_.fetch_add(1, std::memory_order_acq_rel);
    if (w->stopping_.load(std::memory_order_acquire)) {
        event_base_loopbreak(w->base_);
        return;
    }
    w->accept_queued();
}

uint64_t Worker::track_ack(ForwardJob* job) {
    uint64_t t = next_ack_token_++;
    ack_jobs_[t] = job;
    return t;
}

void Worker::ack_done(void* worker, uint64_t token, bool) {
    auto* w = static_cast<Worker*>(worker);
    {
        std::lock_guard<std::mutex> g(w->mu_);
        w->acked_.push_back(token);
    }
    uint64_t one = 1;
    (void)!::write(w->notify_fd_, &one, sizeof(one));
}

void Worker::accept_queued() {
    std::deque<NewConn> q;
    std::vector<uint64_t> acked;
    {
        std::lock_guard<std::mutex> g(mu_);
        q.swap(queue_);
        acked.swap(acked_);
    }
    for (uint64_t t : acked) {
        auto it = ack_jobs_.find(t);
        if (it == ack_jobs_.end()) continue;  // its connection closed meanwhile
        ForwardJob* job = it->second;
        ack_jobs_.erase(it);
        job->conn->forward_done(job);
    }
    for (NewConn& nc : q) {
        if (nc.udp) {
            event* ev = event_new(base_, nc.fd, EV_READ | EV_PERSIST, &Worker::on_udp, this);
            if (ev == nullptr || event_add(ev, nullptr) != 0) {
                LOG(LogLevel::Warn, "failed to register UDP socket %d", nc.fd);
                if (ev != nullptr) event_free(ev);
                ::close(nc.fd);
                continue;
            }
            auto info = std::make_unique<ConnInfo>();
            info->addr = nc.listen_addr;
            info->is_udp = true;
            info->state.store("conn_read", std::memory_order_relaxed);
            info->last_cmd_time.store(ctx_.clock.now(), std::memory_order_relaxed);
            ctx_.conns.add(nc.fd, info.get());
            udp_.push_back(Udp{nc.fd, ev, std::move(info)});
            continue;
        }
        auto* c = new Conn(this, nc.fd, nc.is_unix, nc.listen_addr);
        bool tls_ok = true;
        if (nc.tls) {
            SSL_CTX* tctx = ctx_.server_tls != nullptr ? ctx_.server_tls->acquire() : nullptr;
            tls_ok = c->start_tls(tctx);
            if (tctx != nullptr) SSL_CTX_free(tctx);
        } else if (ctx_.peer_tls != nullptr && !nc.is_unix) {
            c->expect_peer_tls();
        }
        if (!tls_ok || !c->start()) {
            LOG(LogLevel::Warn, "failed to register connection %d", nc.fd);
            delete c;
            ::close(nc.fd);
            ctx_.gstats.curr_conns.fetch_sub(1, std::memory_order_relaxed);
            continue;
        }
        conns_.push_back(c);
        LOG(LogLevel::Debug, "<%d new client connection", nc.fd);
    }
}

char* Worker::borrow_rbuf() {
    if (!rbuf_pool_.empty()) {
        char* b = rbuf_pool_.back();
        rbuf_pool_.pop_back();
        rbuf_free_.sub();
        return b;
    }
    char* b = static_cast<char*>(std::malloc(kReadBufSize));
    if (b == nullptr) throw std::bad_alloc();
    rbuf_count_.add();
    return b;
}

void Worker::release_rbuf(char* buf) {
    // Keep a bounded pool: enough for the busy connections, not one per idle connection.
    if (rbuf_pool_.size() < 64) {
        rbuf_pool_.push_back(buf);
        rbuf_free_.add();
    } else {
        std::free(buf);
        rbuf_count_.sub();
    }
}

void Worker::conn_closed(Conn* c) {
    LOG(LogLevel::Debug, "<%d connection closed.", c->fd());
    for (size_t i = 0; i < conns_.size(); ++i) {
        if (conns_[i] == c) {
            conns_[i] = conns_.back();
            conns_.pop_back();
            break;
        }
    }
    dead_.push_back(c);
    if (ring_ == nullptr) event_active(reap_ev_, 0, 0);  // the ring loop reaps on its own
}

}  // namespace mcm::server
