// A worker thread: one libevent loop serving its own connections. The listener hands new
// sockets over through a locked queue plus an eventfd wake-up; after that a connection lives
// and dies on this thread only. Owns its counters, its pool of read buffers, its dispatcher.
#pragma once

#include <event2/event.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "server/context.h"
#include "server/dispatch.h"
#include "server/managed/forward.h"
#include "server/stats.h"

namespace mcm::server {

class Conn;
class Ring;

struct NewConn {
    int fd;
    bool is_unix;
    std::string listen_addr;
    bool udp = false;  // a UDP socket (this worker's own dup) to serve datagrams from
    bool tls = false;  // accepted on a -Z listener: the connection starts with a handshake
};

class Worker {
public:
    Worker(ServerContext& ctx, int id);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void start();                // spawn the thread
    void stop();                 // ask the loop to exit and join (main thread)
    void hand_over(NewConn nc);  // any thread: queue a socket for this worker

    ServerContext& ctx() noexcept { return ctx_; }
    ThreadStats& stats() noexcept { return stats_; }
    Dispatcher& dispatcher() noexcept { return dispatcher_; }
    PeerLinks* peers() noexcept { return peers_.get(); }  // managed mode only
    event_base* base() noexcept { return base_; }
    int id() const noexcept { return id_; }

    // Read buffers of kReadBufSize bytes, reused across connections (idle ones hold none).
    static constexpr size_t kReadBufSize = 16 * 1024;
    char* borrow_rbuf();
    void release_rbuf(char* buf);
    uint64_t rbuf_count() const noexcept { return rbuf_count_.get(); }  // alive, any thread
    uint64_t rbuf_free_count() const noexcept { return rbuf_free_.get(); }  // of them pooled

    void conn_closed(Conn* c);  // a connection finished; free it after the callback returns

    // -o io_engine=uring (server/uring.cc): the ring this worker's connections use, or null
    // on the epoll path. ring_schedule queues a connection to run on the next loop turn.
    Ring* ring() noexcept { return ring_.get(); }
    void ring_schedule(Conn* c) { ready_.push_back(c); }

    // Quiescence (a planned handover, doc/coordinator.md "Moving a bucket"): once passes()
    // moved past a value read after a bucket became pending, every request this worker was
    // running at that moment has finished. poke() makes the loop pass at once. The worker
    // running the caller is never waited for (it is running the caller).
    uint64_t passes() const noexcept { return passes_.load(std::memory_order_acquire); }
    void poke();
    static Worker* current() noexcept;

    // repl_ack: a reply waiting for a replica's acknowledgement. track_ack gives the job a
    // token; ack_done (any thread) hands the token back when the wait is over; forget_ack
    // drops a job whose connection closed first.
    uint64_t track_ack(ForwardJob* job);
    void forget_ack(uint64_t token) { ack_jobs_.erase(token); }
    static void ack_done(void* worker, uint64_t token, bool timed_out);

private:
    static void on_notify(evutil_socket_t fd, short what, void* arg);
    static void on_udp(evutil_socket_t fd, short what, void* arg);
    void serve_datagram(int fd, const char* buf, size_t n, const void* from, unsigned fromlen);
    void accept_queued();
    void housekeeping();
    // io_uring path (server/uring.cc)
    bool ring_setup(std::string* why);
    void ring_loop();
    void ring_teardown();
    void ring_reap();
    uint64_t ring_next_timer_us();

    ServerContext& ctx_;
    int id_;
    event_base* base_ = nullptr;
    int notify_fd_ = -1;
    event* notify_ev_ = nullptr;
    std::thread thread_;
    std::atomic<bool> stopping_{false};  // set by stop(); the loop breaks on its next wake-up
    std::atomic<uint64_t> passes_{0};    // notify callbacks run (between request callbacks)
    std::mutex mu_;
    std::deque<NewConn> queue_;  // guarded by mu_
    std::vector<uint64_t> acked_;  // guarded by mu_: ack waits that are over
    std::unordered_map<uint64_t, ForwardJob*> ack_jobs_;  // this thread only
    uint64_t next_ack_token_ = 1;
    ThreadStats stats_;
    Dispatcher dispatcher_;
    std::vector<char*> rbuf_pool_;
    Counter rbuf_count_;  // gauges for `stats` read_buf_*; not cleared by stats reset
    Counter rbuf_free_;
    std::vector<Conn*> conns_;  // every live connection of this worker (owned)
    std::vector<Conn*> dead_;   // closed, freed at the next notify/loop turn
    event* reap_ev_ = nullptr;
    event* housekeeping_ev_ = nullptr;  // once a second: idle rbufs, -o idle_timeout
    struct Udp {
        int fd;
        event* ev;
        std::unique_ptr<ConnInfo> info;  // in ctx.conns for `stats conns`
    };
    std::vector<Udp> udp_;  // UDP sockets this worker reads (-U)
    std::unique_ptr<PeerLinks> peers_;  // managed mode: links to the other servers
    std::unique_ptr<Ring> ring_;        // io_uring path only
    std::vector<Conn*> ready_;          // connections to run on the next ring loop turn
    int ev_epfd_ = -1;                  // libevent's epoll fd, polled through the ring
    bool ev_poll_armed_ = false;
    bool ev_ready_ = false;
};

}  // namespace mcm::server
