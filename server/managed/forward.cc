// Peer links for one-hop forwarding (see forward.h). Each worker keeps one connection per
// peer server; requests from any of its clients are pipelined on it, each followed by a
// marker (text: "mn", binary: a NOOP with a private opaque) so that the replies, quiet ones
// included, can be cut apart in order. A link authenticates with the cluster secret and says
// "cluster peer", so the other side never forwards what it gets from it.
#include "server/managed/forward.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "proto/binary.h"
#include "replication/auth.h"
#include "server/managed/cluster.h"
#include "server/conn.h"
#include "server/worker.h"
#include "tls/io.h"
#include "tls/peer.h"

namespace mcm::server {

namespace bin = proto::bin;

struct PeerLinks::Link {
    PeerLinks* owner = nullptr;
    bool binary = false;  // carries binary requests (after a text handshake)
    std::string node;
    std::string host;
    uint16_t port = 0;
    int fd = -1;
    SSL* ssl = nullptr;  // peer TLS: the session on fd
    event* ev = nullptr;
    short events = 0;
    bool dirty = false;  // in owner->dirty_: wbuf has requests to send this iteration
    enum class St : uint8_t { Idle, Connecting, Handshake, Challenge, Auth, Ready } st = St::Idle;
    int ok_lines = 0;   // "OK" replies still due for the handshake
    std::string held;   // requests waiting for the handshake
    std::string wbuf;   // bytes to write
    std::string rbuf;   // bytes read, not yet matched to a waiter
    std::deque<Waiter> waiters;
};

namespace {


uint16_t be16(const char* p) {
    return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

size_t nth_number(std::string_view line, int n) {  // the n-th space-separated word as a number
    size_t i = 0;
    for (int k = 0; k < n; ++k) {
        i = line.find(' ', i);
        if (i == std::string_view::npos) return SIZE_MAX;
        ++i;
    }
    size_t e = line.find(' ', i);
    std::string_view w = line.substr(i, e == std::string_view::npos ? line.size() - i : e - i);
    size_t v = 0;
    auto r = std::from_chars(w.data(), w.data() + w.size(), v);
    return r.ec == std::errc() ? v : SIZE_MAX;
}

}  // namespace

PeerLinks::PeerLinks(Worker* worker, const std::string& secret) noexcept
    : worker_(worker), secret_(secret) {}

PeerLinks::~PeerLinks() {
    for (auto& [name, l] : links_) {
        if (l->ev != nullptr) event_free(l->ev);
        tls::finish(l->ssl);
        if (l->fd >= 0) ::close(l->fd);
    }
    if (timer_ != nullptr) event_free(timer_);
    if (park_timer_ != nullptr) event_free(park_timer_);
    if (flush_ev_ != nullptr) event_free(flush_ev_);
}

PeerLinks::Link* PeerLinks::link(const std::string& node, const std::string& host,
                                 uint16_t port, bool binary) {
    auto& l = links_[node + (binary ? "/binary" : "/text")];
    if (l == nullptr) {
        l = std::make_unique<Link>();
        l->owner = this;
        l->binary = binary;
    }
    if (l->host != host || l->port != port) {  // the map moved the node: start over
        if (l->st != Link::St::Idle) fail_link(l.get(), "address changed");
        l->host = host;
        l->port = port;
    }
    l->node = node;
    return l.get();
}

bool ForwardJob::needs_route() const noexcept {
    if (kind != Kind::MultiGet) return node.empty();
    for (const std::string& o : owner) {
        if (o == kUnrouted) return true;
    }
    return false;
}

void PeerLinks::submit(ForwardJob* job) {
    Cluster* cl = worker_->ctx().cluster;
    if (timer_ == nullptr) {
        timer_ = event_new(worker_->base(), -1, EV_PERSIST, &PeerLinks::on_timer, this);
        timeval tick{0, 100 * 1000};
        event_add(timer_, &tick);
    }
    if (job->kind == ForwardJob::Kind::MultiGet) {
        std::map<std::string, std::string> per_node;
        for (size_t i = 0; i < job->keys.size(); ++i) {
            if (job->owner[i].empty() || job->owner[i] == ForwardJob::kUnrouted) continue;
            std::string& r = per_node[job->owner[i]];
            if (r.empty()) r = job->get_cmd;
            r += " ";
            r += job->keys[i];
        }
        job->outstanding = static_cast<int>(per_node.size());
        if (job->outstanding == 0) return finish(job);
        for (auto& [node, req] : per_node) {
            cl->forwarded.fetch_add(1, std::memory_order_relaxed);
            auto& a = job->addr[node];
            req += "\r\n";
            send(link(node, a.first, a.second, false), job, req, false);
        }
        return;
    }
    if (job->node.empty()) return finish(job);  // no owner in the map: park
    job->outstanding = 1;
    cl->forwarded.fetch_add(1, std::memory_order_relaxed);
    const bool binary = job->kind == ForwardJob::Kind::Binary;
    // The request stays in the job: it is sent again if the owner fails (parking).
    send(link(job->node, job->host, job->port, binary), job, job->request, binary);
}

void PeerLinks::cancel(ForwardJob* job) noexcept {
    for (auto& [name, l] : links_) {
        for (Waiter& w : l->waiters) {
            if (w.job == job) w.job = nullptr;
        }
    }
    for (ForwardJob*& p : parked_) {
        if (p == job) p = nullptr;
    }
}

void PeerLinks::send(Link* l, ForwardJob* job, std::string_view bytes, bool binary) {
    Waiter w{job, binary, 0, std::chrono::steady_clock::now() + kTimeout};
    char noop[bin::kHeaderLen] = {};
    std::string_view marker = "mn\r\n";
    if (binary) {
        w.marker = 0x4d430000u | (next_marker_++ & 0xffff);
        noop[0] = static_cast<char>(bin::kReqMagic);
        noop[1] = static_cast<char>(bin::Noop);
        std::memcpy(noop + 12, &w.marker, 4);
        marker = std::string_view(noop, sizeof(noop));
    }
    l->waiters.push_back(w);
    // Once the proof and "cluster peer" are on their way, requests may follow them.
    if (l->st == Link::St::Ready || l->st == Link::St::Auth) {
        l->wbuf.append(bytes);
        l->wbuf.append(marker);
        schedule_flush(l);
        return;
    }
    l->held.append(bytes);
    l->held.append(marker);
    if (l->st != Link::St::Idle) return;
    // Connect (non-blocking); the handshake starts once the socket is writable.
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* ai = nullptr;
    std::string port = std::to_string(l->port);
    if (getaddrinfo(l->host.c_str(), port.c_str(), &hints, &ai) != 0 || ai == nullptr) {
        return fail_link(l, "cannot resolve " + l->host);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return fail_link(l, strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno != EINPROGRESS) {
        std::string why = strerror(errno);
        ::close(fd);
        return fail_link(l, why);
    }
    l->fd = fd;
    if (const tls::PeerTls* t = worker_->ctx().peer_tls; t != nullptr) {
        l->ssl = t->dial(fd);
        if (l->ssl == nullptr) return fail_link(l, "TLS: " + tls::last_error());
    }
    l->st = Link::St::Connecting;
    l->events = EV_READ | EV_WRITE | EV_PERSIST;
    l->ev = event_new(worker_->base(), fd, l->events, &PeerLinks::on_io, l);
    event_add(l->ev, nullptr);
}

void PeerLinks::schedule_flush(Link* l) {
    if (!l->dirty) {
        l->dirty = true;
        dirty_.push_back(l);
    }
    if (flush_armed_) return;
    if (flush_ev_ == nullptr) {
        flush_ev_ = event_new(worker_->base(), -1, 0, &PeerLinks::on_flush, this);
    }
    // Activated now, it runs after the callbacks already due in this loop iteration (libevent
    // appends to the active queue): every ready connection has parsed by then.
    event_active(flush_ev_, EV_TIMEOUT, 0);
    flush_armed_ = true;
}

void PeerLinks::on_flush(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<PeerLinks*>(arg);
    self->flush_armed_ = false;
    std::vector<Link*> links;
    links.swap(self->dirty_);
    for (Link* l : links) {
        l->dirty = false;
        // A link that failed meanwhile has dropped its requests (fd < 0).
        if (l->fd >= 0 && !l->wbuf.empty()) self->handle_io(l, EV_WRITE);
    }
    links.clear();
    if (self->dirty_.empty()) links.swap(self->dirty_);  // keep the capacity
}

void PeerLinks::on_io(evutil_socket_t, short what, void* arg) {
    auto* l = static_cast<Link*>(arg);
    l->owner->handle_io(l, what);
}

void PeerLinks::on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<PeerLinks*>(arg);
    auto now = std::chrono::steady_clock::now();
    for (auto& [name, l] : self->links_) {
        if (!l->waiters.empty() && l->waiters.front().deadline < now) {
            self->fail_link(l.get(), "timed out");
        }
    }
}

void PeerLinks::handle_io(Link* l, short what) {
    if (l->fd < 0) return;
    if (l->st == Link::St::Connecting && (what & EV_WRITE)) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return fail_link(l, strerror(err));
        l->st = l->ssl != nullptr ? Link::St::Handshake : Link::St::Challenge;
        if (l->ssl == nullptr) l->wbuf = "cluster auth\r\n";
    }
    if (l->st == Link::St::Handshake) {
        tls::Hs h = tls::handshake(l->ssl);
        if (h == tls::Hs::Failed) return fail_link(l, "TLS handshake: " + tls::last_error());
        if (h != tls::Hs::Done) {
            short want = static_cast<short>((h == tls::Hs::WantRead ? EV_READ : EV_WRITE) | EV_PERSIST);
            if (want != l->events && l->ev != nullptr) {
                event_del(l->ev);
                event_assign(l->ev, worker_->base(), l->fd, want, &PeerLinks::on_io, l);
                event_add(l->ev, nullptr);
                l->events = want;
            }
            return;
        }
        l->st = Link::St::Challenge;
        l->wbuf = "cluster auth\r\n";
        what = static_cast<short>(what | EV_READ);  // the TLS layer may hold bytes already
    }
    if (!l->wbuf.empty()) {
        ssize_t n = tls::send(l->fd, l->ssl, l->wbuf.data(), l->wbuf.size());
        if (n > 0) {
            l->wbuf.erase(0, static_cast<size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return fail_link(l, strerror(errno));
        }
    }
    if (what & EV_READ) {
        char buf[16384];
        for (;;) {
            ssize_t n = tls::recv(l->fd, l->ssl, buf, sizeof(buf));
            if (n > 0) {
                l->rbuf.append(buf, static_cast<size_t>(n));
                if (static_cast<size_t>(n) < sizeof(buf) && l->ssl == nullptr) break;
                continue;
            }
            if (n == 0) return fail_link(l, "connection closed");
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            return fail_link(l, strerror(errno));
        }
        if (!parse_replies(l) || l->fd < 0) return;
    }
    // Wait for writability only while there is something to write.
    short want = static_cast<short>(EV_READ | EV_PERSIST | (l->wbuf.empty() ? 0 : EV_WRITE));
    if (l->st == Link::St::Connecting) want = EV_READ | EV_WRITE | EV_PERSIST;
    if (want != l->events && l->ev != nullptr) {
        event_del(l->ev);
        event_assign(l->ev, worker_->base(), l->fd, want, &PeerLinks::on_io, l);
        event_add(l->ev, nullptr);
        l->events = want;
    }
}

// Cuts complete replies off the front of the link's buffer. False if the link failed.
bool PeerLinks::parse_replies(Link* l) {
    std::string& r = l->rbuf;
    size_t done = 0;  // bytes of r consumed; erased once at the end, not per reply
    for (;;) {
        if (l->st == Link::St::Challenge || l->st == Link::St::Auth) {
            size_t eol = r.find("\r\n");
            if (eol == std::string::npos) return true;
            std::string line = r.substr(0, eol);
            r.erase(0, eol + 2);
            if (l->st == Link::St::Challenge) {
                if (line.rfind("CHALLENGE ", 0) != 0) {
                    fail_link(l, "peer refused: " + line);
                    return false;
                }
                l->wbuf += "cluster auth " + repl::hmac_hex(secret_, line.substr(10)) +
                           (l->binary ? "\r\ncluster peer binary\r\n" : "\r\ncluster peer\r\n") +
                           l->held;
                l->held.clear();
                l->st = Link::St::Auth;
                l->ok_lines = 2;
                continue;  // written when handle_io finishes this round
            }
            if (line != "OK") {
                fail_link(l, "peer refused: " + line);
                return false;
            }
            if (--l->ok_lines == 0) l->st = Link::St::Ready;
            continue;
        }
        if (l->waiters.empty()) {
            r.clear();
            return true;
        }
        Waiter w = l->waiters.front();
        size_t pos = done;
        size_t end = std::string::npos;  // where the reply ends (before the marker)
        size_t next = 0;                 // where the following reply starts
        if (w.binary) {
            while (pos + bin::kHeaderLen <= r.size()) {
                uint32_t bodylen = bin::load_be32(r.data() + pos + 8);
                size_t total = bin::kHeaderLen + bodylen;
                if (pos + total > r.size()) break;
                uint32_t opaque;
                std::memcpy(&opaque, r.data() + pos + 12, 4);
                if (static_cast<uint8_t>(r[pos + 1]) == bin::Noop && opaque == w.marker) {
                    end = pos;
                    next = pos + total;
                    break;
                }
                pos += total;
            }
        } else {
            for (;;) {
                size_t eol = r.find("\r\n", pos);
                if (eol == std::string::npos) break;
                std::string_view line(r.data() + pos, eol - pos);
                if (line == "MN") {
                    end = pos;
                    next = eol + 2;
                    break;
                }
                size_t data = 0;
                const bool value = line.rfind("VALUE ", 0) == 0;
                const bool va = !value && line.rfind("VA ", 0) == 0;
                if (value) {
                    data = nth_number(line, 3);
                } else if (va) {
                    data = nth_number(line, 1);
                }
                if (data == SIZE_MAX) {
                    fail_link(l, "bad reply");
                    return false;
                }
                pos = eol + 2 + (value || va ? data + 2 : 0);
                if (pos > r.size()) break;
            }
        }
        if (end == std::string::npos) break;  // not all here yet
        std::string reply(r, done, end - done);
        done = next;
        l->waiters.pop_front();
        part_done(w.job, l->node, std::move(reply), false);
        if (l->fd < 0) return false;  // part_done failed the link (it cleared the buffer)
    }
    r.erase(0, done);
    return true;
}

// A peer's NOT_MY_BUCKET whose epoch is below the map held here: the peer has not got the
// map that makes it the owner yet (a coordinator installs a map on one server after another).
// Above it: this server has not got the map that moved the bucket away from the peer yet.
PeerLinks::Behind PeerLinks::who_is_behind(const ForwardJob& job, std::string_view r) const {
    std::string_view words;
    if (job.kind == ForwardJob::Kind::Binary) {
        if (r.size() < bin::kHeaderLen || be16(r.data() + 6) != 0x07) return Behind::None;
        size_t skip = bin::kHeaderLen + static_cast<uint8_t>(r[4]) + be16(r.data() + 2);
        if (skip > r.size()) return Behind::None;
        words = r.substr(skip);
    } else {
        constexpr std::string_view kText = "SERVER_ERROR ";
        if (r.substr(0, kText.size()) != kText) return Behind::None;
        words = r.substr(kText.size());
        size_t eol = words.find("\r\n");
        if (eol == std::string_view::npos || eol + 2 != words.size()) return Behind::None;
        words = words.substr(0, eol);
    }
    constexpr std::string_view kNmb = "NOT_MY_BUCKET ";
    if (words.substr(0, kNmb.size()) != kNmb) return Behind::None;
    size_t sp = words.rfind(' ');
    uint64_t epoch = 0;
    auto res = std::from_chars(words.data() + sp + 1, words.data() + words.size(), epoch);
    if (res.ec != std::errc() || res.ptr != words.data() + words.size()) return Behind::None;
    const uint64_t mine = worker_->ctx().cluster->epoch();
    // The same epoch: the peer moved the bucket on by a state change (a handover under way
    // there) or this server routed by a map it has replaced since; routed again either way.
    return epoch < mine ? Behind::Peer : Behind::Self;
}

void PeerLinks::part_done(ForwardJob* job, const std::string& node, std::string bytes,
                          bool failed) {
    if (job == nullptr) return;  // its client went away
    const Behind behind = failed || worker_->ctx().settings.forward_park_ms == 0
                              ? Behind::None
                              : who_is_behind(*job, bytes);
    if (behind != Behind::None && (job->park_until_us == 0 || mono_us() < job->park_until_us)) {
        // Peer behind: sent again every poll until the peer has the map, within a short bound
        // of its own (a peer that stays behind, cut off from the coordinator, costs little).
        // This server behind: parked until its next map (a planned move's switch reaches
        // the servers one after another), then routed by it.
        if (job->park_until_us == 0) {
            job->park_ms = std::min(worker_->ctx().settings.forward_park_ms, kBehindMs);
        }
        // Peer: no generation is 0 once a map is held, so it is retried at once. Self: the
        // generation it was routed at stays, so it waits for a change since then.
        if (behind == Behind::Peer) job->route_gen = 0;
        job->park_why.clear();
        worker_->ctx().cluster->forward_peer_behind.fetch_add(1, std::memory_order_relaxed);
        if (job->kind == ForwardJob::Kind::MultiGet) {
            for (std::string& o : job->owner) {
                if (o == node) o = ForwardJob::kUnrouted;
            }
        } else {
            job->node.clear();
        }
        if (--job->outstanding == 0) finish(job);
        return;
    }
    if (failed) {
        // The part needs an owner again: after the next map (parking), or it fails.
        worker_->ctx().cluster->forward_errors.fetch_add(1, std::memory_order_relaxed);
        job->park_why = "forward to " + node + " failed: " + bytes;
        if (job->kind == ForwardJob::Kind::MultiGet) {
            for (std::string& o : job->owner) {
                if (o == node) o = ForwardJob::kUnrouted;
            }
        } else {
            job->node.clear();
        }
    } else if (job->kind == ForwardJob::Kind::MultiGet) {
        // Keep each VALUE block under its key for reassembly in request order.
        size_t pos = 0;
        while (pos < bytes.size()) {
            size_t eol = bytes.find("\r\n", pos);
            if (eol == std::string::npos) break;
            std::string_view line(bytes.data() + pos, eol - pos);
            if (line.rfind("VALUE ", 0) != 0) {
                pos = eol + 2;  // END
                continue;
            }
            size_t ks = 6, ke = line.find(' ', ks);
            std::string key(line.substr(ks, ke - ks));
            size_t n = nth_number(line, 3);
            size_t stop = eol + 2 + n + 2;
            if (n == SIZE_MAX || stop > bytes.size()) break;
            job->blocks[key] = bytes.substr(pos, stop - pos);
            pos = stop;
        }
        for (std::string& o : job->owner) {
            if (o == node) o.clear();  // answered
        }
    } else {
        job->reply = std::move(bytes);
    }
    if (--job->outstanding == 0) finish(job);
}

void PeerLinks::finish(ForwardJob* job) {
    if (job->conn == nullptr) return;
    if (job->needs_route()) {
        const unsigned park_ms =
            job->park_ms != 0 ? job->park_ms : worker_->ctx().settings.forward_park_ms;
        if (park_ms > 0 && (job->park_until_us == 0 || mono_us() < job->park_until_us)) {
            return park(job);
        }
        if (job->park_until_us != 0) {  // parked before, routed again, failed after the bound
            worker_->ctx().cluster->forward_park_timeouts.fetch_add(1, std::memory_order_relaxed);
        }
        worker_->dispatcher().fail_parked(job);
    }
    job->conn->forward_done(job);
}

void PeerLinks::park(ForwardJob* job) {
    if (job->park_until_us == 0) {
        const unsigned park_ms =
            job->park_ms != 0 ? job->park_ms : worker_->ctx().settings.forward_park_ms;
        job->park_until_us = mono_us() + int64_t{park_ms} * 1000;
        worker_->ctx().cluster->forward_parked.fetch_add(1, std::memory_order_relaxed);
    }
    job->parked = true;
    parked_.push_back(job);
    job->conn->forward_parked(true);
    if (park_timer_ == nullptr) {
        park_timer_ = event_new(worker_->base(), -1, EV_PERSIST, &PeerLinks::on_park_timer, this);
    }
    if (!park_timer_on_) {
        timeval tick{0, kParkPoll.count() * 1000};
        event_add(park_timer_, &tick);
        park_timer_on_ = true;
    }
}

void PeerLinks::on_park_timer(evutil_socket_t, short, void* arg) {
    static_cast<PeerLinks*>(arg)->check_parked();
}

// Every few ms while requests are parked: a request whose map changed is routed again (and
// its connection resumes), one past its bound gets its error.
void PeerLinks::check_parked() {
    Cluster* cl = worker_->ctx().cluster;
    const uint64_t gen = cl->generation();
    const int64_t now = mono_us();
    std::vector<ForwardJob*> list;
    list.swap(parked_);
    // Connections with a request still waiting: their later requests wait behind it (a read
    // of a bucket pending here is served at once, and must not overtake a write before it).
    std::vector<const Conn*> waiting;
    auto behind = [&](const ForwardJob* j) {
        return std::find(waiting.begin(), waiting.end(), j->conn) != waiting.end();
    };
    for (ForwardJob* job : list) {
        if (job == nullptr) continue;  // its client went away
        if ((job->route_gen == gen || behind(job)) && now < job->park_until_us) {
            parked_.push_back(job);
            waiting.push_back(job->conn);
            continue;
        }
        job->parked = false;
        job->conn->forward_parked(false);
        if (job->route_gen == gen || behind(job)) {  // the bound passed, and no new map
            cl->forward_park_timeouts.fetch_add(1, std::memory_order_relaxed);
            worker_->dispatcher().fail_parked(job);
            job->conn->forward_done(job);
            continue;
        }
        switch (worker_->dispatcher().reroute(job)) {
            case Dispatcher::Reroute::Wait:
                if (now < job->park_until_us) {
                    waiting.push_back(job->conn);
                    park(job);
                } else {
                    cl->forward_park_timeouts.fetch_add(1, std::memory_order_relaxed);
                    worker_->dispatcher().fail_parked(job);
                    job->conn->forward_done(job);
                }
                break;
            case Dispatcher::Reroute::Send:
                cl->forward_park_resumed.fetch_add(1, std::memory_order_relaxed);
                submit(job);
                break;
            case Dispatcher::Reroute::Done:
                cl->forward_park_resumed.fetch_add(1, std::memory_order_relaxed);
                job->conn->forward_done(job);
                break;
        }
    }
    if (parked_.empty() && park_timer_on_) {
        event_del(park_timer_);
        park_timer_on_ = false;
    }
}

void PeerLinks::fail_link(Link* l, const std::string& why) {
    std::deque<Waiter> waiters;
    waiters.swap(l->waiters);
    if (l->ev != nullptr) {
        event_free(l->ev);
        l->ev = nullptr;
    }
    tls::finish(l->ssl);
    l->ssl = nullptr;
    if (l->fd >= 0) ::close(l->fd);
    l->fd = -1;
    l->events = 0;
    l->st = Link::St::Idle;
    l->held.clear();
    l->wbuf.clear();
    l->rbuf.clear();
    for (Waiter& w : waiters) part_done(w.job, l->node, why, true);
}

}  // namespace mcm::server
