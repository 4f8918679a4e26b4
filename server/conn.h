// One client connection, owned by its worker thread from accept to close. Reads into a pooled
// buffer, parses and executes commands in order, reads storage values straight into items,
// and sends replies with sendmsg. Reading pauses while replies cannot be written
// (back-pressure) and yields to other connections after -R commands.
#pragma once

#include <event2/event.h>
#include <openssl/ssl.h>

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "server/context.h"
#include "server/dispatch.h"
#include "server/outbuf.h"

struct io_uring_sqe;

namespace mcm::server {

class Worker;

// Per-connection state machine:
//
//   Parse --storage cmd--> ReadValue --value complete--> Parse
//   Parse --alloc failed--> Swallow --bytes dropped--> Parse
//   any --EOF, error, quit, bad framing--> Closing
enum class ConnState : uint8_t { Parse, ReadValue, Swallow, ForwardValue, WaitForward, Closing };
// The protocol a connection speaks, decided by its first byte under -B auto.
enum class WireProto : uint8_t { Unknown, Text, Binary };

class Conn {
public:
    Conn(Worker* worker, int fd, bool is_unix, const std::string& listen_addr);
    ~Conn();
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    bool start();  // register with the worker's loop; false if libevent refused
    // TLS: this connection becomes the server end of a TLS session made from ctx (any server
    // context: the clients' -Z one, or another, e.g. the cluster's peer context; the session
    // takes its own reference). Call it before start(), or at least before any byte of the
    // socket was read; false if OpenSSL could not make the session. The handshake then runs
    // on the worker's loop, non-blocking; commands are read once it completed. Whether the
    // client presented a certificate that verified is in ConnInfo::tls_peer_verified (and
    // tls_peer_verified()) once the handshake is done.
    bool start_tls(SSL_CTX* ctx);
    // Peer TLS (-o peer_tls_*) on a plain listener: the first byte decides whether this is a
    // peer's TLS connection (sniff_peer). Call before start().
    void expect_peer_tls() noexcept { sniff_peer_ = true; }
    bool is_tls() const noexcept { return ssl_ != nullptr; }
    bool tls_handshake_done() const noexcept { return ssl_ != nullptr && !tls_handshaking_; }
    bool tls_peer_verified() const noexcept {
        return info_.tls_peer_verified.load(std::memory_order_relaxed);
    }
    SSL* tls_session() const noexcept { return ssl_; }
    int fd() const noexcept { return fd_; }
    // -o idle_timeout: true if no command arrived for secs and nothing is being sent or read.
    bool idle_for(uint32_t now, unsigned secs) const noexcept;
    void close();  // on the worker thread only; the worker frees the object later
    // Give the read buffer back to the worker's pool if nothing is buffered and no command
    // arrived in the current second (the worker's housekeeping timer calls it).
    void release_idle_rbuf(uint32_t now);
    // Managed mode: every part of a forwarded request has answered (or failed). Called on this
    // connection's worker: the reply takes its place in the output, which is then flushed.
    void forward_done(ForwardJob* job);
    // Managed mode: one of this connection's requests starts (true) or stops (false) waiting
    // for a new map. While one waits, no later command is parsed, so none can overtake it.
    void forward_parked(bool on);

    // io_uring path (server/conn_uring.cc), called by the worker's ring loop: completions of
    // this connection's receive and send, and a turn it asked for (ring_schedule).
    void on_recv(int res, unsigned flags);
    void on_send(int res);
    void ring_ready();
    bool ring_idle() const noexcept { return !recv_inflight_ && !send_inflight_ && !queued_; }

private:
    enum class Step : uint8_t { NeedRead, Yield, OutputFull, Close, Wait, Handoff };
    void handoff();
    // -o repl_ack, around each command: inline so that without it the request path pays a
    // branch only.
    OutBuf::Mark begin_ack_check() { return ack_mode_ ? ack_mark() : OutBuf::Mark{}; }
    void maybe_wait_ack(OutBuf::Mark m, Next next) {
        if (ack_mode_ && next == Next::Continue) wait_ack(m);
    }
    OutBuf::Mark ack_mark();
    void wait_ack(OutBuf::Mark m);
    void start_forward();
    static void on_event(evutil_socket_t fd, short what, void* arg);
    void handle(short what);
    Step process();
    // Read once into the buffer (or straight into the item being filled). >0 bytes read,
    // 0 would block, -1 EOF or error.
    ssize_t read_some(bool* drained);
    bool flush_output();  // false on a fatal socket error; sets want_write_ when blocked
    // One read from the socket: the system call, or SSL_read on a TLS connection (the same
    // results: >0 bytes, 0 end of stream, -1 with errno, EAGAIN when it would block).
    ssize_t sock_read(void* buf, size_t n) {
        if (ssl_ != nullptr) [[unlikely]] return tls_read(buf, n);
        return sys_read_fd(buf, n);
    }
    ssize_t sys_read_fd(void* buf, size_t n);
    ssize_t tls_read(void* buf, size_t n);
    IoStatus tls_flush(size_t* sent);
    // Before each event of a TLS connection: runs the handshake; false while it is not done
    // (or failed: the connection is then closed).
    bool tls_ready();
    bool sniff_peer();
    void set_events(short what);
    void ensure_rbuf();

    Worker* worker_;
    Dispatcher& dispatcher_;
    ServerContext& ctx_;
    int fd_;
    ConnState state_ = ConnState::Parse;
    WireProto proto_ = WireProto::Unknown;
    event* ev_ = nullptr;
    short ev_flags_ = 0;
    bool want_write_ = false;  // replies are waiting for the socket to drain
    bool close_after_write_ = false;
    bool closed_ = false;   // the socket is closed and the worker owns the corpse
    bool keep_fd_ = false;  // handed to the replication thread: close() leaves the socket
    bool ack_mode_ = false;  // -o repl_ack is not none (managed mode)
    bool drained_ = false;  // the last read found the socket empty
    bool relay_only_ = false;  // activated by forward_done with nothing to parse
    int budget_ = 0;        // commands left in this event (-R)

    // Read buffer: bytes [rstart_, rend_) are unprocessed.
    char* rbuf_ = nullptr;
    size_t rcap_ = 0;
    size_t rstart_ = 0;
    size_t rend_ = 0;

    PendingStore pending_;  // the storage command whose value is being read
    // Requests other servers are answering, oldest first; each holds a place in out_.
    std::deque<std::unique_ptr<ForwardJob>> fwds_;
    static constexpr size_t kMaxForwards = 64;  // then parsing waits for replies
    // Tested on every command: empty() first, it is cheaper than a deque's size().
    bool forwards_full() const noexcept {
        return !fwds_.empty() && (fwds_.size() >= kMaxForwards || parked_ > 0);
    }
    int parked_ = 0;  // requests of fwds_ parked (waiting for a new map)
    size_t value_filled_ = 0;
    size_t swallow_left_ = 0;

    OutBuf out_;
    ConnInfo info_;

    // io_uring path (server/conn_uring.cc). The same process() runs on what a receive
    // brought; sends go out as sendmsg requests with out_'s iovecs. A receive is armed only
    // when the epoll path would be reading (linked behind the send of the replies before it),
    // so back-pressure, -R yields and EOF behave the same.
    bool ring_ = false;
    bool recv_inflight_ = false;
    bool recv_direct_ = false;       // the receive in flight writes into rbuf_ or the item
    bool recv_direct_item_ = false;  // ... into the item being filled
    bool recv_cancelled_ = false;
    bool send_inflight_ = false;
    bool queued_ = false;       // on the worker's ready list
    bool run_queued_ = false;   // ... to run process() (else only to send)
    bool want_recv_ = false;    // process() needs more input
    bool out_full_ = false;     // output over kMaxPendingOutput: resume when a send completes
    bool eof_ = false;          // the peer closed (or the socket failed) after the input staged
    bool no_bufs_ = false;      // the provided buffers ran out: next receive goes to rbuf_
    bool handoff_wait_ = false;  // a handoff waits for the ring to let go of the socket
    int in_bid_ = -1;           // the provided buffer staged input comes from
    const char* in_ptr_ = nullptr;
    size_t in_len_ = 0;
    std::vector<struct iovec> iov_;
    struct msghdr msg_ {};
    bool ring_start();
    void ring_run();
    void ring_sync();
    void ring_close();
    void ring_wake(bool run);
    void ring_take_input();
    void ring_consume(size_t n);
    bool make_room();  // room at the end of the read buffer (conn.cc)
    ::io_uring_sqe* ring_send(bool last);
    void ring_recv();
    void ring_try_handoff();
    SSL* ssl_ = nullptr;             // TLS session (start_tls); null on a plain connection
    bool tls_handshaking_ = false;   // the handshake has not completed yet
    bool tls_want_write_ = false;    // SSL_read needs the socket writable first
    bool sniff_peer_ = false;        // peer TLS: the first byte is still to be looked at
    bool peer_sniffed_ = false;      // ... and it opened a TLS record
};

}  // namespace mcm::server
