// The io_uring worker loop (-o io_engine=uring): the ring, its provided receive buffers, and
// the loop that drives the connections through it while keeping the worker's libevent base
// (timers, notifications, peer links, UDP) running. Connections' side: server/conn_uring.cc.
#include "server/uring.h"

#include <event2/event.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "server/conn.h"
#include "server/log.h"
#include "server/settings.h"
#include "server/worker.h"

namespace mcm::server {

namespace {

constexpr unsigned kEntries = 1024;

int setup_ring(io_uring* r) {
    io_uring_params p{};
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = kEntries * 4;
    int rc = io_uring_queue_init_params(kEntries, r, &p);
    if (rc == -EINVAL) {  // an older kernel: without the newer flags
        p = io_uring_params{};
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = kEntries * 4;
        rc = io_uring_queue_init_params(kEntries, r, &p);
    }
    return rc;
}

}  // namespace

std::string Ring::refused_by(const Settings& s) {
    // TLS connections are served by the epoll path only: once TLS is configured, every worker
    // stays on epoll.
    if (s.ssl_enabled) return "TLS (-Z) is served by the epoll loop";
    if (s.peer_tls.enabled()) return "peer TLS (-o peer_tls_cert) is served by the epoll loop";
    return {};
}

bool Ring::probe(std::string* why) {
    const char* f = getenv("MC_URING_FORCE_FAIL");
    if (f != nullptr && *f != '\0' && *f != '0') {
        *why = "MC_URING_FORCE_FAIL is set";
        return false;
    }
    io_uring r;
    int rc = setup_ring(&r);
    if (rc < 0) {
        *why = std::string("io_uring_setup: ") + strerror(-rc);
        return false;
    }
    io_uring_probe* pr = io_uring_get_probe_ring(&r);
    bool ok = pr != nullptr && io_uring_opcode_supported(pr, IORING_OP_RECV) &&
              io_uring_opcode_supported(pr, IORING_OP_SENDMSG) &&
              io_uring_opcode_supported(pr, IORING_OP_POLL_ADD) &&
              io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL);
    if (pr != nullptr) io_uring_free_probe(pr);
    io_uring_queue_exit(&r);
    if (!ok) *why = "the kernel lacks recv, sendmsg, poll or cancel on io_uring";
    return ok;
}

std::unique_ptr<Ring> Ring::create(std::string* why) {
    std::unique_ptr<Ring> r(new Ring());
    int rc = setup_ring(&r->ring_);
    if (rc < 0) {
        *why = std::string("io_uring_setup: ") + strerror(-rc);
        return nullptr;
    }
    r->inited_ = true;
    size_t ring_bytes = sizeof(io_uring_buf) * kBufCount;
    void* mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                     -1, 0);
    if (mem == MAP_FAILED) {
        *why = "mmap of the buffer ring failed";
        return nullptr;
    }
    r->br_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(r->br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = kBufCount;
    reg.bgid = 0;
    rc = io_uring_register_buf_ring(&r->ring_, &reg, 0);
    if (rc < 0) {
        munmap(mem, ring_bytes);
        r->br_ = nullptr;
        *why = std::string("provided buffer ring: ") + strerror(-rc);
        return nullptr;
    }
    r->bufs_ = static_cast<char*>(std::malloc(size_t{kBufCount} * kBufSize));
    if (r->bufs_ == nullptr) {
        *why = "out of memory for receive buffers";
        return nullptr;
    }
    unsigned mask = io_uring_buf_ring_mask(kBufCount);
    for (unsigned i = 0; i < kBufCount; ++i) {
        io_uring_buf_ring_add(r->br_, r->buf(i), kBufSize, static_cast<unsigned short>(i), mask,
                              static_cast<int>(i));
    }
    io_uring_buf_ring_advance(r->br_, static_cast<int>(kBufCount));
    return r;
}

Ring::~Ring() {
    if (inited_) io_uring_queue_exit(&ring_);  // unregisters the buffer ring too
    if (br_ != nullptr) munmap(br_, sizeof(io_uring_buf) * kBufCount);
    std::free(bufs_);
}

io_uring_sqe* Ring::sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    while (s == nullptr) {
        io_uring_submit(&ring_);
        s = io_uring_get_sqe(&ring_);
    }
    return s;
}

void Ring::reserve(unsigned n) {
    if (io_uring_sq_space_left(&ring_) < n) io_uring_submit(&ring_);
}

void Ring::recycle(unsigned bid) noexcept {
    io_uring_buf_ring_add(br_, buf(bid), kBufSize, static_cast<unsigned short>(bid),
                          io_uring_buf_ring_mask(kBufCount), 0);
    io_uring_buf_ring_advance(br_, 1);
}

namespace {

// libevent has no call that gives its epoll fd. Its epoll backend keeps it in the backend
// state that struct event_base points to second (libevent 2.1: struct epollop { struct
// epoll_event* events; int nevents; int epfd; ... }). The guess is checked before use: it
// must be an epoll instance that reports an fd just registered with the base.
int libevent_epoll_fd(event_base* base) {
    const char* m = event_base_get_method(base);
    if (m == nullptr || strcmp(m, "epoll") != 0) return -1;
    struct BaseHead {
        const void* evsel;
        void* evbase;
    };
    struct EpollOp {
        void* events;
        int nevents;
        int epfd;
    };
    auto* head = reinterpret_cast<BaseHead*>(base);
    if (head->evbase == nullptr) return -1;
    int fd = static_cast<EpollOp*>(head->evbase)->epfd;
    char path[64];
    char target[64] = "";
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n <= 0 || strncmp(target, "anon_inode:[eventpoll]", static_cast<size_t>(n)) != 0) {
        return -1;
    }
    int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);  // readable at once
    if (efd < 0) return -1;
    event* ev = event_new(base, efd, EV_READ, [](evutil_socket_t, short, void*) {}, nullptr);
    bool ok = false;
    if (ev != nullptr && event_add(ev, nullptr) == 0) {
        epoll_event got[8];
        int k = epoll_wait(fd, got, 8, 0);
        for (int i = 0; i < k; ++i) ok = ok || got[i].data.fd == efd;
    }
    if (ev != nullptr) event_free(ev);
    ::close(efd);
    return ok ? fd : -1;
}

struct TimerScan {
    timeval now;
    int64_t best_us;
};

}  // namespace

bool Worker::ring_setup(std::string* why) {
    ev_epfd_ = libevent_epoll_fd(base_);
    if (ev_epfd_ < 0) {
        *why = "libevent's epoll fd not found";
        return false;
    }
    ring_ = Ring::create(why);
    return ring_ != nullptr;
}

// Microseconds until the base's next timer (at most a second).
uint64_t Worker::ring_next_timer_us() {
    TimerScan scan{};
    gettimeofday(&scan.now, nullptr);
    scan.best_us = 1000 * 1000;
    event_base_foreach_event(
        base_,
        [](const event_base*, const event* ev, void* arg) -> int {
            auto* s = static_cast<TimerScan*>(arg);
            timeval tv;
            if (event_pending(ev, EV_TIMEOUT, &tv) == 0) return 0;
            int64_t d = (int64_t{tv.tv_sec} - s->now.tv_sec) * 1000000 +
                        (int64_t{tv.tv_usec} - s->now.tv_usec);
            if (d < s->best_us) s->best_us = d < 0 ? 0 : d;
            return 0;
        },
        &scan);
    return static_cast<uint64_t>(scan.best_us);
}

void Worker::ring_reap() {
    size_t keep = 0;
    for (Conn* c : dead_) {
        if (c->ring_idle()) {
            delete c;
        } else {
            dead_[keep++] = c;  // the kernel still holds its buffers: wait for the completions
        }
    }
    dead_.resize(keep);
}

void Worker::ring_loop() {
    io_uring* r = ring_->raw();
    ev_ready_ = true;
    int64_t timer_due_us = 0;  // when the base's next timer is due (monotonic us)
    auto mono_us = [] {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
    };
    while (!stopping_.load(std::memory_order_acquire)) {
        // libevent's share: its fds (poll fired), its timers, events made active meanwhile.
        if (ev_ready_ || event_base_get_num_events(base_, EVENT_BASE_COUNT_ACTIVE) > 0 ||
            mono_us() >= timer_due_us) {
            ev_ready_ = false;
            event_base_loop(base_, EVLOOP_NONBLOCK);
            timer_due_us = mono_us() + static_cast<int64_t>(ring_next_timer_us());
            if (!ev_poll_armed_) {
                io_uring_sqe* s = ring_->sqe();
                io_uring_prep_poll_add(s, ev_epfd_, POLLIN);
                io_uring_sqe_set_data64(s, Ring::kTagEvPoll);
                ev_poll_armed_ = true;
                ++ring_->inflight;
            }
            if (stopping_.load(std::memory_order_acquire)) break;
        }
        // Connections that asked for another turn (-R yields, forwarded replies).
        if (!ready_.empty()) {
            std::vector<Conn*> run;
            run.swap(ready_);
            for (Conn* c : run) c->ring_ready();
        }
        ring_reap();
        // Submit everything queued this turn, and wait for completions in the same call.
        bool busy = !ready_.empty() || event_base_get_num_events(base_, EVENT_BASE_COUNT_ACTIVE) > 0;
        if (busy) {
            io_uring_submit(r);
        } else {
            int64_t wait = timer_due_us - mono_us();
            if (wait < 0) wait = 0;
            __kernel_timespec ts{};
            ts.tv_sec = wait / 1000000;
            ts.tv_nsec = (wait % 1000000) * 1000;
            io_uring_cqe* cqe = nullptr;
            int rc = io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, nullptr);
            if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
                LOG(LogLevel::Warn, "worker %d: io_uring_submit_and_wait: %s", id_, strerror(-rc));
            }
        }
        unsigned head;
        unsigned seen = 0;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(r, head, cqe) {
            ++seen;
            uint64_t ud = cqe->user_data;
            uint64_t tag = ud & Ring::kTagMask;
            switch (tag) {
                case Ring::kTagRecv:
                    --ring_->inflight;
                    reinterpret_cast<Conn*>(ud & ~Ring::kTagMask)->on_recv(cqe->res, cqe->flags);
                    break;
                case Ring::kTagSend:
                    --ring_->inflight;
                    reinterpret_cast<Conn*>(ud & ~Ring::kTagMask)->on_send(cqe->res);
                    break;
                case Ring::kTagEvPoll:
                    --ring_->inflight;
                    ev_poll_armed_ = false;
                    ev_ready_ = true;
                    break;
                default: break;
            }
        }
        io_uring_cq_advance(r, seen);
        passes_.fetch_add(1, std::memory_order_acq_rel);
    }
    ring_teardown();
}

// At exit, on the worker thread: cancel what is in flight and wait (briefly) for the kernel to
// let go of the connections' buffers before they are freed.
void Worker::ring_teardown() {
    if (ring_ == nullptr) return;
    io_uring* r = ring_->raw();
    io_uring_sqe* s = ring_->sqe();
    io_uring_prep_cancel64(s, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(s, Ring::kTagIgnore);
    for (int round = 0; round < 20 && ring_->inflight > 0; ++round) {
        __kernel_timespec ts{0, 10 * 1000 * 1000};
        io_uring_cqe* cqe = nullptr;
        (void)io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, nullptr);
        unsigned head;
        unsigned seen = 0;
        io_uring_for_each_cqe(r, head, cqe) {
            ++seen;
            uint64_t tag = cqe->user_data & Ring::kTagMask;
            if (tag == Ring::kTagRecv || tag == Ring::kTagSend || tag == Ring::kTagEvPoll) {
                --ring_->inflight;
            }
        }
        io_uring_cq_advance(r, seen);
    }
}

}  // namespace mcm::server
