// A connection on the io_uring path (-o io_engine=uring): the seam between Conn's command
// loop (process(), shared with the epoll path in conn.cc) and the worker's ring
// (server/uring.cc). Receives use the ring's provided buffers (the bytes are copied into the
// read buffer or straight into the item being filled, as read_some does on the epoll path),
// or go straight into the item for large values; replies go out as sendmsg requests over
// out_'s iovecs, which out_ keeps unchanged until the completion. Nothing here makes a
// system call of its own: the worker submits every request of a loop turn in one go.
//
// Same behaviour as the epoll path: a receive is armed only where that path would read (not
// while replies owed exceed kMaxPendingOutput, not during a -R yield, not while waiting for
// forwarded replies), and behind the send of the replies before it (a linked request), so a
// client that does not read its replies stops being read; EOF closes the connection once the
// input before it is processed.
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "server/conn.h"
#include "server/log.h"
#include "server/uring.h"
#include "server/worker.h"

namespace mcm::server {

namespace {
// As in conn.cc.
constexpr size_t kMaxPendingOutput = 4 * 1024 * 1024;
constexpr size_t kYieldFlushBytes = 64 * 1024;
// A value at least this long still to come is received straight into its item.
constexpr size_t kDirectValueBytes = 16 * 1024;
constexpr size_t kIovMax = 1024;
}  // namespace

bool Conn::ring_start() {
    ring_ = true;
    want_recv_ = true;
    ring_sync();
    return true;
}

void Conn::ring_wake(bool run) {
    if (closed_) return;
    if (run) run_queued_ = true;
    if (!queued_) {
        queued_ = true;
        worker_->ring_schedule(this);
    }
}

void Conn::ring_ready() {
    queued_ = false;
    if (closed_) return;
    if (run_queued_) {
        run_queued_ = false;
        ring_run();
    }
    ring_sync();
}

// The command loop over what has been received: process() until it needs more input, then
// say so (ring_sync arms the receive).
void Conn::ring_run() {
    if (closed_ || handoff_wait_) return;
    budget_ = ctx_.settings.reqs_per_event;
    info_.state.store("conn_parse_cmd", std::memory_order_relaxed);
    for (;;) {
        switch (process()) {
            case Step::Close: return close();  // ring_close sends what close_after_write_ keeps
            case Step::Handoff:
                handoff_wait_ = true;
                return ring_try_handoff();
            case Step::Yield:
                // Let the other connections run, then continue here (the replies so far go
                // out now only if they fill a socket buffer's worth, as on the epoll path).
                ring_wake(true);
                return;
            case Step::OutputFull:
                out_full_ = true;  // on_send resumes
                return;
            case Step::Wait:
                want_recv_ = false;  // forward_done / forward_parked resume
                return;
            case Step::NeedRead: break;
        }
        if (in_len_ > 0) {
            ring_take_input();
            continue;
        }
        if (eof_) return close();
        want_recv_ = true;
        info_.state.store(state_ == ConnState::ReadValue || state_ == ConnState::Swallow ||
                                  state_ == ConnState::ForwardValue
                              ? "conn_nread"
                              : "conn_waiting",
                          std::memory_order_relaxed);
        return;
    }
}

// Queue what the connection needs from the kernel now: a send of the replies ready, a
// receive if it wants input (linked behind that send).
void Conn::ring_sync() {
    if (closed_ || handoff_wait_) return;
    bool yielding = run_queued_;
    bool want_recv = want_recv_ && !recv_inflight_ && !out_full_ && !yielding && in_len_ == 0 &&
                     !eof_;
    if (want_recv && send_inflight_) want_recv = false;  // armed when that send completes
    if (!send_inflight_ && !out_.empty() &&
        !(yielding && out_.pending_bytes() < kYieldFlushBytes)) {
        worker_->ring()->reserve(2);  // the pair in one submission
        io_uring_sqe* s = ring_send(false);
        if (s != nullptr && want_recv) {
            // The receive starts once the send completed: a client that does not read its
            // replies is not read either (the epoll path stops reading while output blocks).
            s->flags |= IOSQE_IO_LINK;
        }
    }
    if (want_recv) ring_recv();
}

io_uring_sqe* Conn::ring_send(bool last) {
    size_t segs = out_.unsent_segments();
    size_t want = segs < kIovMax ? segs : kIovMax;
    if (iov_.size() < want) iov_.resize(want < 8 ? 8 : want);
    size_t n = out_.gather(iov_.data(), iov_.size());
    if (n == 0) return nullptr;  // the next reply is still being made elsewhere
    msg_ = msghdr{};
    msg_.msg_iov = iov_.data();
    msg_.msg_iovlen = n;
    Ring* r = worker_->ring();
    io_uring_sqe* s = r->sqe();
    // MSG_WAITALL: the kernel sends all of it, waiting for room as needed (no short sends
    // but on errors; a short one is handled anyway). The last send before a close takes what
    // the socket takes now, as the epoll path's last flush.
    io_uring_prep_sendmsg(s, fd_, &msg_, MSG_NOSIGNAL | (last ? MSG_DONTWAIT : MSG_WAITALL));
    io_uring_sqe_set_data64(s, reinterpret_cast<uint64_t>(this) | Ring::kTagSend);
    send_inflight_ = true;
    ++r->inflight;
    return s;
}

void Conn::ring_recv() {
    Ring* r = worker_->ring();
    io_uring_sqe* s = r->sqe();
    bool direct_value = state_ == ConnState::ReadValue && rstart_ == rend_ &&
                        pending_.wire_len - value_filled_ >= kDirectValueBytes;
    if (direct_value) {
        io_uring_prep_recv(s, fd_, pending_.dest() + value_filled_,
                           pending_.wire_len - value_filled_, 0);
        recv_direct_ = recv_direct_item_ = true;
    } else if (no_bufs_ && make_room()) {
        no_bufs_ = false;
        io_uring_prep_recv(s, fd_, rbuf_ + rend_, rcap_ - rend_, 0);
        recv_direct_ = true;
        recv_direct_item_ = false;
    } else {
        io_uring_prep_recv(s, fd_, nullptr, Ring::kBufSize, 0);
        s->flags |= IOSQE_BUFFER_SELECT;
        s->buf_group = 0;
        recv_direct_ = recv_direct_item_ = false;
    }
    io_uring_sqe_set_data64(s, reinterpret_cast<uint64_t>(this) | Ring::kTagRecv);
    recv_inflight_ = true;
    ++r->inflight;
}

void Conn::on_recv(int res, unsigned flags) {
    recv_inflight_ = false;
    bool direct = recv_direct_;
    bool into_item = recv_direct_item_;
    recv_direct_ = recv_direct_item_ = false;
    if ((flags & IORING_CQE_F_BUFFER) != 0) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        if (closed_ || res <= 0) {
            worker_->ring()->recycle(bid);
        } else {
            in_bid_ = static_cast<int>(bid);
            in_ptr_ = worker_->ring()->buf(bid);
            in_len_ = static_cast<size_t>(res);
        }
    }
    if (closed_) return;  // the worker frees it once nothing is in flight
    if (res == -ENOBUFS) {  // every provided buffer is taken: read into our own this time
        no_bufs_ = true;
        ring_sync();
        return;
    }
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        // Cancelled for a handoff, or behind a send that failed (which closed us already).
        if (handoff_wait_) return ring_try_handoff();
        ring_sync();
        return;
    }
    if (res <= 0) {
        eof_ = true;  // EOF or a socket error: close once what came before is processed
    } else {
        worker_->stats().bytes_read.add(static_cast<uint64_t>(res));
        if (direct) {
            if (into_item) {
                value_filled_ += static_cast<size_t>(res);
            } else {
                rend_ += static_cast<size_t>(res);
            }
        }
    }
    if (handoff_wait_) return ring_try_handoff();
    want_recv_ = false;
    ring_run();
    ring_sync();
}

void Conn::on_send(int res) {
    send_inflight_ = false;
    if (res < 0) {
        out_.advance(0);
        if (!closed_) close();  // as a failed sendmsg on the epoll path
        return;
    }
    out_.advance(static_cast<size_t>(res));
    if (closed_) return;
    worker_->stats().bytes_written.add(static_cast<uint64_t>(res));
    if (handoff_wait_) return ring_try_handoff();
    if (out_full_) {
        out_full_ = false;
        ring_run();
    }
    ring_sync();
}

// The staged bytes of a provided buffer, into the item being filled or the read buffer, as
// read_some does with the socket.
void Conn::ring_take_input() {
    if (state_ == ConnState::ReadValue && rstart_ == rend_) {
        size_t need = pending_.wire_len - value_filled_;
        size_t n = need < in_len_ ? need : in_len_;
        std::memcpy(pending_.dest() + value_filled_, in_ptr_, n);
        value_filled_ += n;
        ring_consume(n);
        return;
    }
    if (!make_room()) {  // out of memory: as a failed read
        ring_consume(in_len_);
        eof_ = true;
        return;
    }
    size_t room = rcap_ - rend_;
    size_t n = room < in_len_ ? room : in_len_;
    std::memcpy(rbuf_ + rend_, in_ptr_, n);
    rend_ += n;
    ring_consume(n);
}

void Conn::ring_consume(size_t n) {
    in_ptr_ += n;
    in_len_ -= n;
    if (in_len_ == 0 && in_bid_ >= 0) {
        worker_->ring()->recycle(static_cast<unsigned>(in_bid_));
        in_bid_ = -1;
        in_ptr_ = nullptr;
    }
}

// `cluster repl` and `watch` hand the socket to another thread: first the replies before the
// command go out, the receive in flight is cancelled, and whatever it brought joins the
// buffered input handed over with the socket.
void Conn::ring_try_handoff() {
    if (closed_) return;
    if (recv_inflight_) {
        if (!recv_cancelled_) {
            recv_cancelled_ = true;
            io_uring_sqe* s = worker_->ring()->sqe();
            io_uring_prep_cancel64(s, reinterpret_cast<uint64_t>(this) | Ring::kTagRecv, 0);
            io_uring_sqe_set_data64(s, Ring::kTagIgnore);
        }
        return;  // on_recv comes back here
    }
    while (in_len_ > 0) {
        ring_take_input();
        if (eof_) return close();
    }
    if (send_inflight_) return;  // on_send comes back here
    if (!out_.empty()) {
        if (ring_send(false) == nullptr) return close();  // a forwarded reply still owed: as handoff() does
        return;
    }
    handoff_wait_ = false;
    handoff();  // nothing left to send: handoff()'s flush is a no-op
}

void Conn::ring_close() {
    Ring* r = worker_->ring();
    // Step::Close with close_after_write_: the replies before it go out first (one send; what
    // it does not take is dropped, as the epoll path's one last flush).
    if (close_after_write_ && !send_inflight_ && !out_.empty()) (void)ring_send(true);
    if (recv_inflight_ && !recv_cancelled_) {
        recv_cancelled_ = true;
        io_uring_sqe* s = r->sqe();
        io_uring_prep_cancel64(s, reinterpret_cast<uint64_t>(this) | Ring::kTagRecv, 0);
        io_uring_sqe_set_data64(s, Ring::kTagIgnore);
    }
    if (in_bid_ >= 0) {
        r->recycle(static_cast<unsigned>(in_bid_));
        in_bid_ = -1;
        in_len_ = 0;
    }
    out_.clear();  // after the send in flight, if any
    if (!(recv_inflight_ && recv_direct_item_)) pending_.item.reset();
}

}  // namespace mcm::server
