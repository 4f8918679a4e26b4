// A worker's io_uring (-o io_engine=uring; doc/performance.md, "io_uring"). One ring per
// worker thread, created on that thread. Client connections receive and send through it; the
// worker's libevent base (notification eventfd, timers, managed mode's peer links, UDP)
// keeps running: its epoll fd is polled through the ring and the base is run without blocking
// when that poll fires, when a timer is due, or when an event was made active.
//
// Every request of one loop iteration, for all of the worker's connections, goes to the
// kernel in one io_uring_enter, which also waits for the next completions.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mcm::server {

struct Settings;

class Ring {
public:
    // Tags in the low bits of a request's user_data (a Conn* is 8-byte aligned).
    static constexpr uint64_t kTagRecv = 1;
    static constexpr uint64_t kTagSend = 2;
    static constexpr uint64_t kTagIgnore = 3;   // cancellations: nothing to do
    static constexpr uint64_t kTagEvPoll = 4;   // libevent's epoll fd is readable
    static constexpr uint64_t kTagMask = 7;

    // Provided receive buffers (one buffer ring per worker, group 0).
    static constexpr unsigned kBufCount = 256;
    static constexpr unsigned kBufSize = 16 * 1024;

    // On the thread that will use it. nullptr, with the reason in *why, if the kernel refuses.
    static std::unique_ptr<Ring> create(std::string* why);
    // Whether io_uring works here at all (main thread, before the workers start), and the
    // test hook: MC_URING_FORCE_FAIL=1 in the environment makes it fail (t/proto/test_uring.py).
    static bool probe(std::string* why);
    // Why this configuration keeps every worker on epoll (TLS would go here), or empty.
    static std::string refused_by(const Settings& s);

    ~Ring();
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    io_uring* raw() noexcept { return &ring_; }
    // A free submission entry (submits the queue first when it is full).
    io_uring_sqe* sqe();
    // Room for n entries without a submission in between (a linked pair).
    void reserve(unsigned n);
    char* buf(unsigned bid) noexcept { return bufs_ + size_t{bid} * kBufSize; }
    void recycle(unsigned bid) noexcept;  // give a provided buffer back to the kernel

    uint64_t inflight = 0;  // receives, sends and polls whose completion has not been seen

private:
    Ring() = default;
    io_uring ring_{};
    bool inited_ = false;
    io_uring_buf_ring* br_ = nullptr;
    char* bufs_ = nullptr;
};

}  // namespace mcm::server
