// Connection I/O and the per-connection command loop.
#include "server/conn.h"
#include "server/watch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <openssl/err.h>

#include "proto/text_parser.h"
#include "replication/replicator.h"
#include "server/log.h"
#include "server/sys.h"
#include "server/worker.h"
#include "server/managed/cluster.h"
#include "tls/io.h"
#include "tls/peer.h"
#include "tls/server.h"

namespace mcm::server {

namespace {

// Stop parsing new commands while this many reply bytes wait for the socket.
constexpr size_t kMaxPendingOutput = 4 * 1024 * 1024;
// Replies queued at a -R yield are sent then only if there are at least this many bytes.
constexpr size_t kYieldFlushBytes = 64 * 1024;

std::string peer_name(int fd, bool) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "tcp:?";
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss.ss_family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        return std::string("tcp:") + host + ":" + std::to_string(port);
    }
    if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        return std::string("tcp6:[") + host + "]:" + std::to_string(port);
    }
    return "tcp:?";
}

}  // namespace

Conn::Conn(Worker* worker, int fd, bool is_unix, const std::string& listen_addr)
    : worker_(worker),
      dispatcher_(worker->dispatcher()),
      ctx_(worker->ctx()),
      fd_(fd),
      out_(&worker->ctx().store) {
    info_.addr = is_unix ? listen_addr : peer_name(fd, false);
    info_.listen_addr = listen_addr;
    info_.last_cmd_time.store(ctx_.clock.now(), std::memory_order_relaxed);
    ack_mode_ = ctx_.replicator != nullptr && ctx_.settings.repl_ack != Settings::ReplAck::None;
    ctx_.conns.add(fd_, &info_);
    pending_.cfd = fd_;
}

Conn::~Conn() {
    if (ssl_ != nullptr) SSL_free(ssl_);  // torn down at exit: no goodbye
    if (!closed_) {
        // Torn down with its worker at exit, not closed on its own.
        ctx_.conns.remove(fd_);
        ::close(fd_);
        ctx_.gstats.curr_conns.fetch_sub(1, std::memory_order_relaxed);
    }
    if (ev_ != nullptr) event_free(ev_);
    if (ring_ && closed_ && !keep_fd_) ::close(fd_);  // kept open until the ring let go of it
    if (rbuf_ != nullptr) {
        if (rcap_ == Worker::kReadBufSize) {
            worker_->release_rbuf(rbuf_);
        } else {
            std::free(rbuf_);
        }
    }
}

bool Conn::start_tls(SSL_CTX* ctx) {
    if (ssl_ != nullptr || ctx == nullptr) return false;
    ssl_ = tls::new_server_session(ctx, fd_);
    if (ssl_ == nullptr) return false;
    tls_handshaking_ = true;
    info_.tls = true;
    pending_.tls = true;
    return true;
}

bool Conn::tls_ready() {
    if (tls_want_write_) {  // an SSL_read waited for the socket to drain: read again
        tls_want_write_ = false;
        if (!want_write_) set_events(EV_READ | EV_PERSIST);
    }
    if (!tls_handshaking_) [[likely]] return true;
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
        tls_handshaking_ = false;
        info_.tls_peer_verified.store(tls::peer_verified(ssl_), std::memory_order_relaxed);
        // Peer TLS: a certificate of the cluster's CA, through the peer context (the only one
        // that agrees to ALPN mcm-peer), opens `cluster auth` to this connection.
        pending_.peer_tls = ctx_.peer_tls != nullptr && tls::is_peer_session(ssl_);
        info_.last_cmd_time.store(ctx_.clock.now(), std::memory_order_relaxed);
        set_events(EV_READ | EV_PERSIST);
        return true;  // a request may have come right behind the handshake: read on
    }
    int err = SSL_get_error(ssl_, rc);
    switch (err) {
        case SSL_ERROR_WANT_READ: set_events(EV_READ | EV_PERSIST); return false;
        case SSL_ERROR_WANT_WRITE: set_events(EV_WRITE | EV_PERSIST); return false;
        default: break;
    }
    // A client that is not TLS, a certificate that did not verify, a version or cipher not
    // offered, a hang-up mid-handshake: counted (stats ssl_handshake_errors), then closed.
    // A connection closed before it sent a byte (a port probe) is no handshake: not counted.
    bool silent = BIO_number_read(SSL_get_rbio(ssl_)) == 0;
    if (ctx_.server_tls != nullptr && !silent) {
        ctx_.server_tls->handshake_errors.fetch_add(1, std::memory_order_relaxed);
    }
    if (peer_sniffed_ && ctx_.cluster != nullptr) {
        ctx_.cluster->peer_tls_handshake_errors.fetch_add(1, std::memory_order_relaxed);
    }
    if (log_enabled(LogLevel::Info)) {
        std::string why = tls::first_error();
        LOG(LogLevel::Info, "%d: SSL handshake failed: %s", fd_, why.empty() ? "connection closed" : why.c_str());
    }
    ERR_clear_error();
    close();
    return false;
}

ssize_t Conn::sys_read_fd(void* buf, size_t n) { return sys_read(fd_, buf, n); }

// Room at the end of the read buffer (both loops): the unread bytes moved to the front, or,
// for a line longer than the buffer (only a multi-get gets this far), a buffer twice as
// large. False if that allocation failed.
bool Conn::make_room() {
    ensure_rbuf();
    if (rstart_ == rend_) rstart_ = rend_ = 0;
    if (rend_ < rcap_) return true;
    if (rstart_ > 0) {
        std::memmove(rbuf_, rbuf_ + rstart_, rend_ - rstart_);
        rend_ -= rstart_;
        rstart_ = 0;
        return true;
    }
    size_t ncap = rcap_ * 2;
    char* nb = static_cast<char*>(std::malloc(ncap));
    if (nb == nullptr) return false;
    std::memcpy(nb, rbuf_, rend_);
    if (rcap_ == Worker::kReadBufSize) {
        worker_->release_rbuf(rbuf_);
    } else {
        std::free(rbuf_);
    }
    rbuf_ = nb;
    rcap_ = ncap;
    return true;
}

ssize_t Conn::tls_read(void* buf, size_t n) {
    ERR_clear_error();
    int rc = SSL_read(ssl_, buf, static_cast<int>(n > INT32_MAX ? INT32_MAX : n));
    if (rc > 0) return rc;
    switch (SSL_get_error(ssl_, rc)) {
        case SSL_ERROR_WANT_READ: errno = EAGAIN; return -1;
        case SSL_ERROR_WANT_WRITE:
            // The session must write first (a key update's reply): wait for the socket to
            // drain, then read again (tls_ready switches back to reading).
            tls_want_write_ = true;
            set_events(EV_WRITE | EV_PERSIST);
            errno = EAGAIN;
            return -1;
        case SSL_ERROR_ZERO_RETURN: return 0;  // the client's close_notify
        case SSL_ERROR_SYSCALL:
            ERR_clear_error();
            if (rc == 0 || errno == 0) return 0;  // end of stream without close_notify
            return -1;
        default:
            ERR_clear_error();
            errno = EPROTO;
            return -1;
    }
}

// Replies go out through a buffer of ssl_wbuf_size bytes (one per worker thread), as
// memcached's: the queued text and values are copied into it, then written with SSL_write.
// After a write that would block, the next try copies the same bytes again (more, perhaps,
// never fewer), which is what SSL_write asks of a retry.
IoStatus Conn::tls_flush(size_t* sent) {
    thread_local std::vector<char> wbuf;
    size_t cap = ctx_.settings.ssl_wbuf_size;
    if (wbuf.size() < cap) wbuf.resize(cap);
    *sent = 0;
    while (!out_.empty()) {
        size_t n = out_.gather(wbuf.data(), cap);
        if (n == 0) {
            out_.consume(0);  // empty segments (filled holes with no reply) at the head
            if (out_.empty()) break;
            return IoStatus::Blocked;  // the next reply is still being made elsewhere
        }
        ERR_clear_error();
        int w = SSL_write(ssl_, wbuf.data(), static_cast<int>(n));
        if (w > 0) {
            out_.consume(static_cast<size_t>(w));
            *sent += static_cast<size_t>(w);
            continue;
        }
        switch (SSL_get_error(ssl_, w)) {
            case SSL_ERROR_WANT_WRITE:
            case SSL_ERROR_WANT_READ: return IoStatus::Retry;
            default: ERR_clear_error(); return IoStatus::Fatal;
        }
    }
    return IoStatus::Done;
}

bool Conn::start() {
    if (worker_->ring() != nullptr) return ring_start();
    ev_ = event_new(worker_->base(), fd_, EV_READ | EV_PERSIST, &Conn::on_event, this);
    if (ev_ == nullptr) return false;
    ev_flags_ = EV_READ | EV_PERSIST;
    return event_add(ev_, nullptr) == 0;
}

void Conn::set_events(short what) {
    if (what == ev_flags_) return;
    event_del(ev_);
    event_assign(ev_, worker_->base(), fd_, what, &Conn::on_event, this);
    ev_flags_ = what;
    event_add(ev_, nullptr);
}

void Conn::on_event(evutil_socket_t, short what, void* arg) {
    static_cast<Conn*>(arg)->handle(what);
}

void Conn::ensure_rbuf() {
    if (rbuf_ == nullptr) {
        rbuf_ = worker_->borrow_rbuf();
        rcap_ = Worker::kReadBufSize;
        rstart_ = rend_ = 0;
    }
}

// Idle connections hold no read buffer (memcached does the same since 1.6). Called by the
// worker's housekeeping timer, not after every request: a busy connection keeps its buffer.
void Conn::release_idle_rbuf(uint32_t now) {
    uint32_t last = info_.last_cmd_time.load(std::memory_order_relaxed);
    if (rbuf_ != nullptr && rstart_ == rend_ && state_ == ConnState::Parse && now > last &&
        !recv_direct_) {
        if (rcap_ == Worker::kReadBufSize) {
            worker_->release_rbuf(rbuf_);
        } else {
            std::free(rbuf_);
        }
        rbuf_ = nullptr;
        rcap_ = rstart_ = rend_ = 0;
    }
}

ssize_t Conn::read_some(bool* drained) {
    // A value being read goes straight into the item once the buffer holds none of it.
    if (state_ == ConnState::ReadValue && rstart_ == rend_) {
        size_t need = pending_.wire_len - value_filled_;
        ssize_t n = sock_read(pending_.dest() + value_filled_, need);
        if (n > 0) {
            value_filled_ += static_cast<size_t>(n);
            worker_->stats().bytes_read.add(static_cast<uint64_t>(n));
            *drained = static_cast<size_t>(n) < need;
            return n;
        }
        if (n == 0) return -1;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        return -1;
    }
    if (!make_room()) return -1;
    size_t room = rcap_ - rend_;
    ssize_t n = sock_read(rbuf_ + rend_, room);
    if (n > 0) {
        rend_ += static_cast<size_t>(n);
        worker_->stats().bytes_read.add(static_cast<uint64_t>(n));
        *drained = static_cast<size_t>(n) < room;
        return n;
    }
    if (n == 0) return -1;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    return -1;
}

Conn::Step Conn::process() {
    for (;;) {
        switch (state_) {
            case ConnState::Closing: return Step::Close;
            case ConnState::ReadValue: {
                size_t need = pending_.wire_len - value_filled_;
                size_t have = rend_ - rstart_;
                size_t n = need < have ? need : have;
                if (n > 0) {
                    std::memcpy(pending_.dest() + value_filled_, rbuf_ + rstart_, n);
                    rstart_ += n;
                    value_filled_ += n;
                }
                if (value_filled_ < pending_.wire_len) return Step::NeedRead;
                OutBuf::Mark m = begin_ack_check();
                dispatcher_.finish_store(&pending_, out_);
                maybe_wait_ack(m, Next::Continue);
                state_ = ConnState::Parse;
                break;
            }
            case ConnState::ForwardValue: {
                // A forwarded storage command: its value goes along with it.
                ForwardJob* job = fwds_.back().get();
                size_t have = rend_ - rstart_;
                size_t n = job->value_pending < have ? job->value_pending : have;
                job->request.append(rbuf_ + rstart_, n);
                rstart_ += n;
                job->value_pending -= n;
                if (job->value_pending > 0) return Step::NeedRead;
                start_forward();
                state_ = ConnState::Parse;
                break;
            }
            case ConnState::WaitForward:
                if (forwards_full()) return Step::Wait;
                state_ = ConnState::Parse;
                break;
            case ConnState::Swallow: {
                size_t have = rend_ - rstart_;
                size_t n = swallow_left_ < have ? swallow_left_ : have;
                rstart_ += n;
                swallow_left_ -= n;
                if (swallow_left_ > 0) return Step::NeedRead;
                state_ = ConnState::Parse;
                break;
            }
            case ConnState::Parse: {
                if (rstart_ == rend_) return Step::NeedRead;
                if (forwards_full()) {  // enough replies owed: wait for some
                    state_ = ConnState::WaitForward;
                    return Step::Wait;
                }
                if (out_.pending_bytes() > kMaxPendingOutput) return Step::OutputFull;
                if (budget_ <= 0) {
                    worker_->stats().conn_yields.add();
                    return Step::Yield;
                }
                if (proto_ == WireProto::Unknown) {
                    // -B auto: a binary client's first byte is the request magic.
                    Protocol b = ctx_.settings.binding_protocol;
                    bool bin = b == Protocol::Binary ||
                               (b == Protocol::Auto &&
                                static_cast<uint8_t>(rbuf_[rstart_]) == proto::bin::kReqMagic);
                    proto_ = bin ? WireProto::Binary : WireProto::Text;
                }
                size_t consumed = 0;
                size_t swallow = 0;
                std::string_view in(rbuf_ + rstart_, rend_ - rstart_);
                Next next;
                if (proto_ == WireProto::Binary) {
                    proto::bin::BinRequest breq;
                    proto::ParseStatus ps = proto::bin::parse_binary(in, &breq, &consumed);
                    if (ps == proto::ParseStatus::NeedMore) return Step::NeedRead;
                    if (ps == proto::ParseStatus::Close) {
                        // Bad magic: replies to the requests before it still go out.
                        close_after_write_ = true;
                        state_ = ConnState::Closing;
                        return Step::Close;
                    }
                    --budget_;
                    info_.last_cmd_time.store(ctx_.clock.now(), std::memory_order_relaxed);
                    OutBuf::Mark m = begin_ack_check();
                    next = dispatcher_.execute_binary(breq, out_, &pending_, &swallow);
                    maybe_wait_ack(m, next);
                    rstart_ += consumed;
                } else {
                    proto::Request req;
                    proto::ParseStatus ps = proto::parse_command(in, &req, &consumed);
                    if (ps == proto::ParseStatus::NeedMore) return Step::NeedRead;
                    if (ps == proto::ParseStatus::Close) {
                        state_ = ConnState::Closing;
                        return Step::Close;
                    }
                    --budget_;
                    info_.last_cmd_time.store(ctx_.clock.now(), std::memory_order_relaxed);
                    if (log_enabled(LogLevel::Debug)) {  // -vv: each command line, as memcached
                        size_t len = consumed;
                        while (len > 0 && (in[len - 1] == '\n' || in[len - 1] == '\r')) --len;
                        // An authentication proof is not logged: whatever a client sends
                        // there (the secret itself, typed by mistake) stays out of the log.
                        constexpr std::string_view kAuth = "cluster auth ";
                        if (std::string_view(in.data(), len).starts_with(kAuth)) len = kAuth.size();
                        LOG(LogLevel::Debug, "<%d %.*s%s", fd_, static_cast<int>(len), in.data(),
                            len == kAuth.size() ? "<proof>" : "");
                    }
                    OutBuf::Mark m = begin_ack_check();
                    next = dispatcher_.execute(req, out_, &pending_, &swallow);
                    maybe_wait_ack(m, next);
                    rstart_ += consumed;  // the request's views are dead from here on
                    if (pending_.switch_binary) {
                        pending_.switch_binary = false;
                        proto_ = WireProto::Binary;
                    }
                    if (pending_.repl_handoff || pending_.watch_handoff) return Step::Handoff;
                }
                switch (next) {
                    case Next::Continue: break;
                    case Next::ReadValue:
                        value_filled_ = 0;
                        state_ = ConnState::ReadValue;
                        break;
                    case Next::Swallow:
                        swallow_left_ = swallow;
                        state_ = ConnState::Swallow;
                        break;
                    case Next::CloseAfterWrite:
                        close_after_write_ = true;
                        state_ = ConnState::Closing;
                        return Step::Close;
                    case Next::CloseNow:
                        out_.clear();
                        state_ = ConnState::Closing;
                        return Step::Close;
                    case Next::Forward:
                        // The reply gets its place now; other commands go on meanwhile.
                        pending_.forward->conn = this;
                        pending_.forward->hole = out_.hole();
                        fwds_.push_back(std::move(pending_.forward));
                        if (fwds_.back()->value_pending > 0) {
                            state_ = ConnState::ForwardValue;
                            break;
                        }
                        start_forward();
                        break;
                }
                break;
            }
        }
    }
}

bool Conn::flush_output() {
    if (out_.empty()) {
        want_write_ = false;
        return true;
    }
    size_t sent = 0;
    IoStatus s = ssl_ == nullptr ? out_.flush(fd_, &sent) : tls_flush(&sent);
    worker_->stats().bytes_written.add(sent);
    if (s == IoStatus::Fatal) return false;
    want_write_ = (s == IoStatus::Retry);
    return true;
}

// Peer TLS on a plain port: a first byte that opens a TLS record (a handshake, 0x16; no
// memcached command starts with it) makes this a peer's connection, served by the cluster's
// TLS context. Looked at once, without taking the byte. False while nothing has come yet.
bool Conn::sniff_peer() {
    unsigned char b = 0;
    ssize_t n = ::recv(fd_, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
    sniff_peer_ = false;
    if (n == 1 && b == 0x16) {
        SSL_CTX* pc = ctx_.peer_tls->acquire_server_ctx();
        bool ok = start_tls(pc);
        SSL_CTX_free(pc);
        if (!ok) {
            close();
            return false;
        }
        peer_sniffed_ = true;
    }
    return true;  // a plain client (or EOF, or an error the read will see)
}

void Conn::handle(short what) {
    if (sniff_peer_ && !sniff_peer()) [[unlikely]] return;
    if (ssl_ != nullptr && !tls_ready()) return;
    if (relay_only_) {
        relay_only_ = false;
        if (what == EV_WRITE) {
            // Forwarded replies arrived (forward_done) and the socket said nothing: send them
            // without a read that could only say EAGAIN. Reading stays on, or resumes if
            // these replies had blocked the socket before.
            if (!flush_output()) return close();
            set_events(want_write_ ? static_cast<short>(EV_WRITE | EV_PERSIST)
                                   : static_cast<short>(EV_READ | EV_PERSIST));
            return;
        }
    }
    budget_ = ctx_.settings.reqs_per_event;
    info_.state.store("conn_parse_cmd", std::memory_order_relaxed);
    if (want_write_) {
        if (!flush_output()) return close();
        if (want_write_) {
            // Still blocked: wait for EV_WRITE (forward_done or a resumed park may have
            // switched the event to EV_READ, which would leave the replies unsent).
            set_events(EV_WRITE | EV_PERSIST);
            return;
        }
        set_events(EV_READ | EV_PERSIST);
    }
    for (;;) {
        switch (process()) {
            case Step::Close:
                if (close_after_write_) (void)flush_output();
                return close();
            case Step::Handoff: return handoff();
            case Step::Yield:
                // Let the other connections of this worker run, then continue here. The
                // replies so far wait for the next turn unless they already fill a socket
                // buffer's worth: one sendmsg per -R commands would cost more than it helps.
                if (out_.pending_bytes() >= kYieldFlushBytes) {
                    if (!flush_output()) return close();
                    if (want_write_) {
                        set_events(EV_WRITE | EV_PERSIST);
                        return;
                    }
                }
                event_active(ev_, EV_READ, 0);
                return;
            case Step::OutputFull:
                if (!flush_output()) return close();
                if (want_write_) {
                    set_events(EV_WRITE | EV_PERSIST);
                    return;
                }
                continue;
            case Step::Wait:
                // Another server answers the request in progress: send what is ready and
                // stop reading until forward_done() wakes us.
                if (!flush_output()) return close();
                set_events(want_write_ ? static_cast<short>(EV_WRITE | EV_PERSIST) : 0);
                return;
            case Step::NeedRead: break;
        }
        // The last read returned less than it asked for: the socket is empty, so reply and
        // wait for the next event instead of paying for a read that would say EAGAIN.
        if (drained_) {
            drained_ = false;
            if (!flush_output()) return close();
            if (want_write_) set_events(EV_WRITE | EV_PERSIST);
            // memcached's names: waiting for the rest of a value is conn_nread.
            info_.state.store(state_ == ConnState::ReadValue || state_ == ConnState::Swallow ||
                                      state_ == ConnState::ForwardValue
                                  ? "conn_nread"
                                  : "conn_waiting",
                              std::memory_order_relaxed);
            return;
        }
        ssize_t n = read_some(&drained_);
        if (n < 0) return close();
        if (n == 0) {
            if (!flush_output()) return close();
            if (want_write_) set_events(EV_WRITE | EV_PERSIST);
            return;
        }
    }
}

bool Conn::idle_for(uint32_t now, unsigned secs) const noexcept {
    uint32_t last = info_.last_cmd_time.load(std::memory_order_relaxed);
    return !closed_ && state_ == ConnState::Parse && out_.empty() && now > last &&
           now - last > secs;
}

void Conn::start_forward() {
    worker_->peers()->submit(fwds_.back().get());
}

void Conn::forward_done(ForwardJob* job) {
    if (closed_) return;
    out_.fill(job->hole, dispatcher_.finish_forward(*job));
    for (auto it = fwds_.begin(); it != fwds_.end(); ++it) {
        if (it->get() == job) {
            fwds_.erase(it);
            break;
        }
    }
    if (ring_) return ring_wake(state_ == ConnState::WaitForward || rstart_ != rend_);
    if (state_ != ConnState::WaitForward && rstart_ == rend_) {
        // Nothing waits to be parsed: only the replies now unblocked go out, once this loop
        // iteration's other replies for this connection are in (see handle()).
        relay_only_ = true;
        event_active(ev_, EV_WRITE, 0);
        return;
    }
    // Send what is now unblocked, and resume parsing if it was waiting for a free slot.
    set_events(EV_READ | EV_PERSIST);
    event_active(ev_, EV_READ, 0);
}

void Conn::forward_parked(bool on) {
    if (on) {
        ++parked_;
        return;
    }
    if (--parked_ == 0 && !closed_) {  // parsing may go on
        if (ring_) return ring_wake(true);
        set_events(EV_READ | EV_PERSIST);
        event_active(ev_, EV_READ, 0);
    }
}

// -o repl_ack: a write's reply waits (in a hole of the output, so later replies queue behind
// it in order) until one replica acknowledged the write, or the timeout passed. Only when some
// replica is in sync for the bucket: with none, waiting could only time out.
OutBuf::Mark Conn::ack_mark() {
    (void)repl::Replicator::take_last_write();
    return out_.mark();
}

// Only a finished command's reply waits (not one still reading its value, say).
void Conn::wait_ack(OutBuf::Mark m) {
    repl::Replicator::WriteRef w = repl::Replicator::take_last_write();
    if (w.bucket == UINT32_MAX || w.kind == store::MutationKind::Flush) return;
    if (ctx_.settings.repl_ack == Settings::ReplAck::Delete &&
        w.kind != store::MutationKind::Delete) {
        return;
    }
    if (!ctx_.replicator->can_ack(w.bucket)) return;
    std::string reply = out_.take_since(m);
    if (reply.empty()) return;  // noreply / quiet: nobody waits for it
    auto job = std::make_unique<ForwardJob>();
    job->kind = ForwardJob::Kind::Text;
    job->conn = this;
    job->reply = std::move(reply);
    job->hole = out_.hole();
    job->ack_token = worker_->track_ack(job.get());
    ctx_.replicator->wait_ack(w, &Worker::ack_done, worker_, job->ack_token);
    fwds_.push_back(std::move(job));
}

// `cluster repl`: the socket becomes a replication link, served by the replication thread
// from here on. What is still buffered (the peer's first frames) goes with it.
// A TLS connection's session goes along (the handshake is done: commands were read).
void Conn::handoff() {
    if (pending_.watch_handoff) {
        // `watch`: once "OK" is out, the socket belongs to the watch thread.
        pending_.watch_handoff = false;
        if (!flush_output() || want_write_ || !fwds_.empty()) return close();
        int fd = fd_;
        SSL* ssl = std::exchange(ssl_, nullptr);
        keep_fd_ = true;
        close();
        watch::adopt(fd, ssl, pending_.watch_flags, "OK\r\n");
        return;
    }
    pending_.repl_handoff = false;
    if (!flush_output() || want_write_ || !fwds_.empty()) return close();
    std::string rest(rbuf_ + rstart_, rend_ - rstart_);
    int fd = fd_;
    SSL* ssl = std::exchange(ssl_, nullptr);
    keep_fd_ = true;
    close();
    ctx_.replicator->adopt(fd, ssl, std::move(pending_.repl_node), std::move(pending_.repl_nonce),
                           std::move(rest));
}

void Conn::close() {
    for (auto& j : fwds_) {
        if (j->ack_token != 0) {
            worker_->forget_ack(j->ack_token);
        } else if (worker_->peers() != nullptr) {
            worker_->peers()->cancel(j.get());
        }
    }
    fwds_.clear();
    state_ = ConnState::Closing;
    closed_ = true;
    if (ring_) {
        ring_close();  // the socket is closed when the ring has let go of it (~Conn)
    } else {
        if (ev_ != nullptr) {
            event_del(ev_);
        }
        out_.clear();
        pending_.item.reset();
    }
    ctx_.conns.remove(fd_);
    if (ssl_ != nullptr) {
        tls::finish(ssl_);  // close_notify if the handshake had completed, then freed
        ssl_ = nullptr;
    }
    if (!keep_fd_ && !ring_) ::close(fd_);
    ctx_.gstats.curr_conns.fetch_sub(1, std::memory_order_relaxed);
    worker_->conn_closed(this);
}

}  // namespace mcm::server
