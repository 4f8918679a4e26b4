#include "coordinator/link.h"

#include <event2/buffer.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <algorithm>
#include <set>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "coordinator/clock.h"
#include "coordinator/log.h"
#include "tls/io.h"
#include "tls/peer.h"

namespace mcm::coord {

namespace {
const tls::PeerTls* g_peer_tls = nullptr;
}

void set_peer_tls(const tls::PeerTls* t) { g_peer_tls = t; }

ServerLink::ServerLink(event_base* base, std::string name, std::string host, uint16_t port,
                       std::string secret, Events ev)
    : base_(base), name_(std::move(name)), host_(std::move(host)), port_(port),
      secret_(std::move(secret)), ev_(std::move(ev)) {
    backoff_ = evtimer_new(base_, backoff_cb, this);
}

ServerLink::~ServerLink() {
    // Queued callbacks are dropped, not run: their owner is going away with this link.
    queue_.clear();
    if (bev_ != nullptr) bufferevent_free(bev_);
    if (backoff_ != nullptr) event_free(backoff_);
}

void ServerLink::start() {
    if (state_ == State::Idle) connect();
}

void ServerLink::stop() { close_and_fail("stopped", false); }

void ServerLink::reset(const std::string& why) {
    if (state_ != State::Idle && state_ != State::Backoff) close_and_fail(why, true);
}

void ServerLink::connect() {
    // The address is resolved each time (a server may move); a name lookup blocks the loop
    // briefly, so use IP addresses in production.
    evutil_addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    std::string port = std::to_string(port_);
    if (evutil_getaddrinfo(host_.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
        state_ = State::Connecting;
        close_and_fail("cannot resolve " + host_, true);
        return;
    }
    if (g_peer_tls != nullptr) {
        // The handshake runs inside the connect: "connected" means verified both ways.
        SSL* ssl = g_peer_tls->dial(-1);
        if (ssl != nullptr) {
            bev_ = bufferevent_openssl_socket_new(base_, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                  BEV_OPT_CLOSE_ON_FREE);
        }
        if (bev_ == nullptr) {
            if (ssl != nullptr) SSL_free(ssl);
            evutil_freeaddrinfo(res);
            state_ = State::Connecting;
            close_and_fail("TLS: " + tls::last_error(), true);
            return;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev_, 1);
    } else {
        bev_ = bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    bufferevent_setcb(bev_, read_cb, nullptr, event_cb, this);
    state_ = State::Connecting;
    connect_deadline_ms_ = mono_ms() + kConnectTimeoutMs;
    int rc = bufferevent_socket_connect(bev_, res->ai_addr, static_cast<int>(res->ai_addrlen));
    evutil_freeaddrinfo(res);
    if (rc != 0) {
        close_and_fail("connect failed", true);
        return;
    }
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

void ServerLink::close_and_fail(const std::string& why, bool reconnect, bool peer_closed) {
    bool was_ready = state_ == State::Ready;
    // A link that never gets up says why, once per reason (it retries every 100 ms): a
    // refused secret or TLS handshake must not look like silence.
    if (!was_ready && state_ != State::Idle && state_ != State::Backoff && why != setup_failure_ &&
        why.rfind("connect", 0) != 0 && why != "stopped") {
        CLOG_INFO("link to %s (%s:%u) not set up: %s", name_.c_str(), host_.c_str(), port_,
                  why.c_str());
        setup_failure_ = why;
    }
    ++generation_;
    if (bev_ != nullptr) {
        bufferevent_free(bev_);
        bev_ = nullptr;
    }
    state_ = reconnect ? State::Backoff : State::Idle;
    if (reconnect) {
        timeval tv{0, static_cast<suseconds_t>(kBackoffMs * 1000)};
        evtimer_add(backoff_, &tv);
    } else {
        evtimer_del(backoff_);
    }
    // Fail what was queued only after the link is consistent: a callback may send again.
    std::deque<Pending> failed;
    failed.swap(queue_);
    for (Pending& p : failed) p.done(false, p.lines);
    if (was_ready && ev_.on_down) ev_.on_down(why, peer_closed);
}

void ServerLink::write(const std::string& wire, Kind kind, int64_t timeout_ms, Done done) {
    queue_.push_back(Pending{kind, mono_ms() + timeout_ms, std::move(done), {}});
    bufferevent_write(bev_, wire.data(), wire.size());
}

bool ServerLink::send(std::string wire, Kind kind, int64_t timeout_ms, Done done) {
    if (state_ != State::Ready) return false;
    if (lead_ != nullptr && !lead_->leading(mono_ms())) return false;
    write(wire, kind, timeout_ms, std::move(done));
    return true;
}

void ServerLink::authenticate() {
    state_ = State::Authenticating;
    write("cluster auth\r\n", Kind::Line, kConnectTimeoutMs,
          [this](bool ok, const std::vector<std::string>& lines) {
              if (!ok) return;
              const std::string& l = lines.front();
              if (l.rfind("CHALLENGE ", 0) != 0) {
                  close_and_fail("auth: unexpected reply: " + l, true);
                  return;
              }
              std::string proof = hmac_hex(secret_, l.substr(10));
              write("cluster auth " + proof + "\r\n", Kind::Line, kConnectTimeoutMs,
                    [this](bool ok2, const std::vector<std::string>& r) {
                        if (!ok2) return;
                        if (r.front() != "OK") {
                            close_and_fail("auth refused: " + r.front(), true);
                            return;
                        }
                        check_identity();
                    });
          });
}

// Another server may listen on this one's address (address takeover, doc/coordinator.md):
// the link is Ready only once the server it reached calls itself by the expected name.
void ServerLink::check_identity() {
    write("stats cluster\r\n", Kind::Block, kConnectTimeoutMs,
          [this](bool ok, const std::vector<std::string>& lines) {
              if (!ok) return;
              std::string node;
              for (const std::string& l : lines) {
                  if (l.rfind("STAT node_id ", 0) == 0) node = l.substr(13);
              }
              if (node != name_) {
                  if (!wrong_node_logged_) {
                      CLOG_INFO("%s's address %s:%u answers as %s: not %s (an address taken "
                                "over while it is down?); retrying", name_.c_str(),
                                host_.c_str(), port_, node.empty() ? "?" : node.c_str(),
                                name_.c_str());
                      wrong_node_logged_ = true;
                  }
                  close_and_fail("reached " + (node.empty() ? "another server" : node), true);
                  return;
              }
              wrong_node_logged_ = false;
              setup_failure_.clear();
              state_ = State::Ready;
              if (ev_.on_ready) ev_.on_ready();
          });
}

void ServerLink::check_timeouts(int64_t now_ms) {
    if (state_ == State::Connecting && now_ms > connect_deadline_ms_) {
        close_and_fail("connect timed out", true);
    } else if (!queue_.empty() && now_ms > queue_.front().deadline_ms) {
        close_and_fail("reply timed out", true);
    }
}

// True when the head command is complete.
bool ServerLink::take_line(const std::string& line) {
    Pending& p = queue_.front();
    if (p.kind == Kind::Line) {
        p.lines.push_back(line);
        return true;
    }
    if (p.lines.empty()) {
        p.lines.push_back(line);
        // An error instead of a block ends the reply.
        return line == "ERROR" || line.rfind("CLIENT_ERROR", 0) == 0 ||
               line.rfind("SERVER_ERROR", 0) == 0;
    }
    if (line == "END") return true;
    p.lines.push_back(line);
    return false;
}

void ServerLink::on_read() {
    evbuffer* in = bufferevent_get_input(bev_);
    const uint64_t gen = generation_;
    // Bounded by the bytes buffered; stops as soon as a callback closed the link.
    while (gen == generation_) {
        size_t len = 0;
        char* raw = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (raw == nullptr) {
            if (evbuffer_get_length(in) > kMaxLine) close_and_fail("reply line too long", true);
            return;
        }
        std::string line(raw, len);
        free(raw);
        if (queue_.empty()) {
            close_and_fail("unexpected reply: " + line, true);
            return;
        }
        if (!take_line(line)) continue;
        Pending p = std::move(queue_.front());
        queue_.pop_front();
        p.done(true, p.lines);
    }
}

void ServerLink::read_cb(bufferevent*, void* arg) { static_cast<ServerLink*>(arg)->on_read(); }

void ServerLink::event_cb(bufferevent* bev, short what, void* arg) {
    auto* self = static_cast<ServerLink*>(arg);
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        self->authenticate();
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        int err = EVUTIL_SOCKET_ERROR();
        bool eof = (what & BEV_EVENT_EOF) != 0;
        std::string why = eof ? "closed by server" : evutil_socket_error_to_string(err);
        if (g_peer_tls != nullptr && !eof) {
            unsigned long e = bufferevent_get_openssl_error(bev);
            if (e != 0) {
                char buf[256];
                ERR_error_string_n(e, buf, sizeof(buf));
                why = std::string("TLS: ") + buf;
                err = 0;
            }
        }
        self->close_and_fail(why, true, eof || err == ECONNRESET);
    }
}

void ServerLink::backoff_cb(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<ServerLink*>(arg);
    if (self->state_ == State::Backoff) self->connect();
}

namespace {

struct Probe {
    int fd = -1;
    SSL* ssl = nullptr;  // peer TLS, once connected and asked who it is
    event* ev = nullptr;
    std::function<void(ProbeResult)> done;
    std::string expect;  // the node that should answer (empty: connecting is enough)
    std::string in;      // its answer so far
    int64_t deadline_ms = 0;
};

std::set<Probe*>& probes() {
    static std::set<Probe*> live;  // the loop thread's only
    return live;
}

void probe_free(Probe* p) {
    probes().erase(p);
    if (p->ev != nullptr) event_free(p->ev);
    tls::finish(p->ssl);
    if (p->fd >= 0) ::close(p->fd);
    delete p;
}

void probe_finish(Probe* p, ProbeResult r) {
    auto done = std::move(p->done);
    probe_free(p);
    done(r);
}

ProbeResult probe_result(int err) {
    if (err == 0) return ProbeResult::Accepted;
    return err == ECONNREFUSED ? ProbeResult::Refused : ProbeResult::Other;
}

void probe_read_cb(evutil_socket_t fd, short what, void* arg) {
    auto* p = static_cast<Probe*>(arg);
    if (!(what & EV_READ)) return probe_finish(p, ProbeResult::Other);  // no answer in time
    char buf[4096];
    ssize_t n = tls::recv(fd, p->ssl, buf, sizeof(buf));
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        return probe_finish(p, ProbeResult::Other);
    }
    p->in.append(buf, static_cast<size_t>(n));
    const std::string key = "STAT node_id ";
    size_t at = p->in.find(key);
    size_t eol = at == std::string::npos ? at : p->in.find("\r\n", at);
    if (eol != std::string::npos) {
        std::string name = p->in.substr(at + key.size(), eol - at - key.size());
        return probe_finish(p, name == p->expect ? ProbeResult::Accepted : ProbeResult::Elsewhere);
    }
    // END without a node_id (not a managed server), or an error line: not the node.
    if (p->in.find("END\r\n") != std::string::npos || p->in.find("ERROR") != std::string::npos ||
        p->in.size() > 65536) {
        return probe_finish(p, ProbeResult::Elsewhere);
    }
}

void probe_wait(event_base* base, Probe* p, short what, event_callback_fn cb) {
    if (p->ev != nullptr) event_free(p->ev);
    p->ev = event_new(base, p->fd, what, cb, p);
    int64_t left = std::max<int64_t>(1, p->deadline_ms - mono_ms());
    timeval tv{static_cast<time_t>(left / 1000), static_cast<suseconds_t>((left % 1000) * 1000)};
    event_add(p->ev, &tv);
}

void probe_ask(event_base* base, Probe* p) {
    static const char kAsk[] = "stats cluster\r\n";
    if (tls::send(p->fd, p->ssl, kAsk, sizeof(kAsk) - 1) != static_cast<ssize_t>(sizeof(kAsk) - 1)) {
        return probe_finish(p, ProbeResult::Other);
    }
    probe_wait(base, p, EV_READ | EV_PERSIST, probe_read_cb);
}

// Peer TLS: the handshake before the question. A server that fails it is not the node.
void probe_handshake_cb(evutil_socket_t, short what, void* arg) {
    auto* p = static_cast<Probe*>(arg);
    if (!(what & (EV_READ | EV_WRITE))) return probe_finish(p, ProbeResult::Other);  // timed out
    event_base* base = event_get_base(p->ev);
    switch (tls::handshake(p->ssl)) {
        case tls::Hs::Done: return probe_ask(base, p);
        case tls::Hs::WantRead: return probe_wait(base, p, EV_READ, probe_handshake_cb);
        case tls::Hs::WantWrite: return probe_wait(base, p, EV_WRITE, probe_handshake_cb);
        case tls::Hs::Failed: ERR_clear_error(); return probe_finish(p, ProbeResult::Other);
    }
}

// Connected: without a name to check that is the answer; with one, ask who this is.
void probe_connected(event_base* base, Probe* p) {
    if (p->expect.empty()) return probe_finish(p, ProbeResult::Accepted);
    if (g_peer_tls == nullptr) return probe_ask(base, p);
    p->ssl = g_peer_tls->dial(p->fd);
    if (p->ssl == nullptr) return probe_finish(p, ProbeResult::Other);
    probe_wait(base, p, EV_WRITE, probe_handshake_cb);
}

void probe_cb(evutil_socket_t fd, short what, void* arg) {
    auto* p = static_cast<Probe*>(arg);
    if (!(what & EV_WRITE)) return probe_finish(p, ProbeResult::Other);  // timed out
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return probe_finish(p, probe_result(err));
    probe_connected(event_get_base(p->ev), p);
}

}  // namespace

void probe_address(event_base* base, const std::string& host, uint16_t port, int64_t timeout_ms,
                   std::function<void(ProbeResult)> done, const std::string& expect_node) {
    evutil_addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    std::string ps = std::to_string(port);
    if (evutil_getaddrinfo(host.c_str(), ps.c_str(), &hints, &res) != 0 || res == nullptr) {
        done(ProbeResult::Other);
        return;
    }
    auto* p = new Probe;
    probes().insert(p);
    p->done = std::move(done);
    p->expect = expect_node;
    p->deadline_ms = mono_ms() + timeout_ms;
    p->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = p->fd < 0 ? -1 : ::connect(p->fd, res->ai_addr, res->ai_addrlen);
    int err = rc == 0 ? 0 : errno;
    evutil_freeaddrinfo(res);
    if (p->fd < 0 || (rc != 0 && err != EINPROGRESS)) {
        // Loopback answers within connect(): a refusal shows here at once.
        return probe_finish(p, p->fd < 0 ? ProbeResult::Other : probe_result(err));
    }
    if (rc == 0) return probe_connected(base, p);
    p->ev = event_new(base, p->fd, EV_WRITE, probe_cb, p);
    timeval tv{static_cast<time_t>(timeout_ms / 1000),
               static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
    event_add(p->ev, &tv);
}

void cancel_probes() {
    while (!probes().empty()) probe_free(*probes().begin());
}

}  // namespace mcm::coord
