// Listening sockets and accept(). Runs on the main thread only.
#include "server/listener.h"
#include "server/managed/standby.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include <cerrno>
#include <functional>
#include <cstdlib>
#include <cstring>

#include "proto/errors.h"
#include "server/log.h"
#include "server/worker.h"

namespace mcm::server {

namespace {

bool set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

}  // namespace

Listener::~Listener() {
    if (req_ev_ != nullptr) event_free(req_ev_);
    if (req_fd_ >= 0) ::close(req_fd_);
    for (auto& s : socks_) {
        if (s->ev != nullptr) event_free(s->ev);
        ctx_.conns.remove(s->fd);
        ::close(s->fd);
    }
}

bool Listener::add_socket(int fd, bool is_unix, std::string name, const std::string& takeover,
                          bool tls) {
    auto s = std::make_unique<Sock>();
    s->owner = this;
    s->fd = fd;
    s->is_unix = is_unix;
    s->tls = tls;
    s->name = std::move(name);
    s->takeover = takeover;
    s->info.addr = (is_unix ? "unix:" : "tcp:") + s->name;
    s->info.is_listener = true;
    s->info.state.store("conn_listening");
    s->info.last_cmd_time.store(ctx_.clock.now());
    s->ev = event_new(base_, fd, EV_READ | EV_PERSIST, &Listener::on_accept, s.get());
    if (s->ev == nullptr || event_add(s->ev, nullptr) != 0) return false;
    ctx_.conns.add(fd, &s->info);
    // memcached counts a listener in total_connections and connection_structures, not in
    // curr_connections.
    ctx_.gstats.total_conns.fetch_add(1);
    ctx_.gstats.conn_structures.fetch_add(1);
    socks_.push_back(std::move(s));
    return true;
}

// One socket per address of host:port (AF_UNSPEC, like memcached), bound, non-blocking; each
// goes to use() with its family, "addr:port" text and the port the kernel gave. An address
// the machine cannot bind (no IPv6, say) is skipped; one already in use fails the whole call.
bool Listener::bind_all(const char* host, int port, int socktype,
                        const std::function<bool(int fd, int family, const std::string& addr,
                                                 int bound_port)>& use,
                        std::string* why) {
    addrinfo hints{};
    hints.ai_flags = AI_PASSIVE;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port < 0 ? 0 : port);
    addrinfo* ai = nullptr;
    int err = getaddrinfo(host, portbuf, &hints, &ai);
    if (err != 0) {
        if (why != nullptr) {
            *why = std::string("cannot resolve: ") + gai_strerror(err);
        } else if (err != EAI_SYSTEM) {
            fprintf(stderr, "getaddrinfo(): %s\n", gai_strerror(err));
        } else {
            perror("getaddrinfo()");
        }
        return false;
    }
    bool ok = false;
    for (addrinfo* a = ai; a != nullptr; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        // Managed mode: another server of the cluster may hold this address for us while we
        // are down (address takeover), and we hold others' the same way: every TCP listener
        // of a managed server shares its port (doc/managed.md, Address takeover).
        if (socktype == SOCK_STREAM && ctx_.settings.managed()) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        }
        if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (!set_nonblock(fd) || bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
            int e = errno;
            bool in_use = e == EADDRINUSE;
            ::close(fd);
            if (why != nullptr) *why = std::string("bind: ") + strerror(e);
            if (!in_use) continue;  // e.g. IPv6 unavailable: memcached skips such addresses too
            if (why == nullptr) perror("bind()");
            freeaddrinfo(ai);
            return false;
        }
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
        char hostbuf[INET6_ADDRSTRLEN] = "";
        int bound_port = 0;
        if (ss.ss_family == AF_INET) {
            auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
            inet_ntop(AF_INET, &sin->sin_addr, hostbuf, sizeof(hostbuf));
            bound_port = ntohs(sin->sin_port);
        } else {
            auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
            inet_ntop(AF_INET6, &sin6->sin6_addr, hostbuf, sizeof(hostbuf));
            bound_port = ntohs(sin6->sin6_port);
        }
        if (!use(fd, ss.ss_family, std::string(hostbuf) + ":" + std::to_string(bound_port),
                 bound_port)) {
            freeaddrinfo(ai);
            return false;
        }
        ok = true;
    }
    freeaddrinfo(ai);
    return ok;
}

bool Listener::listen_tcp(const char* host, int port, FILE* portfile,
                          const std::string& takeover, bool tls) {
    std::string why;
    bool ok = bind_all(host, port, SOCK_STREAM,
                    [&](int fd, int family, const std::string& addr, int bound_port) {
                        int one = 1;
                        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                        if (listen(fd, ctx_.settings.backlog) != 0) {
                            if (takeover.empty()) perror("listen()");
                            why = std::string("listen: ") + strerror(errno);
                            ::close(fd);
                            return false;
                        }
                        // Managed mode (standby.h): a standby's listener steers the
                        // address's connections to its first listener, the owner's; a
                        // server's own listener, joining behind a standby after a restart,
                        // lifts that so that it gets its share before the standby leaves.
                        if (ctx_.settings.managed()) {
                            std::string e;
                            bool set = takeover.empty() ? reuseport_share(fd, &e)
                                                        : reuseport_first_wins(fd, &e);
                            if (!set) {
                                fprintf(stderr, "warning: %s: %s (address standby off)\n",
                                        addr.c_str(), e.c_str());
                            }
                        }
                        if (portfile != nullptr) {
                            fprintf(portfile, "TCP INET%s: %d\n", family == AF_INET6 ? "6" : "",
                                    bound_port);
                        }
                        if (takeover.empty()) ports_.push_back(bound_port);
                        if (!add_socket(fd, false, addr, takeover, tls)) {
                            ::close(fd);
                            return false;
                        }
                        return true;
                    }, takeover.empty() ? nullptr : &why);
    if (!ok && !takeover.empty()) {
        // A partial success (one address of several) is undone: all or nothing.
        (void)do_unlisten(takeover, false);
        last_takeover_error_ = why.empty() ? "cannot listen" : why;
    }
    return ok;
}

// -U: one datagram socket per address, read by every worker (each through its own dup, so
// a worker closes what it registered). The port file gets "UDP INET: <port>" as memcached's.
bool Listener::listen_udp(const char* host, int port, FILE* portfile) {
    return bind_all(host, port, SOCK_DGRAM,
                    [&](int fd, int family, const std::string& name, int bound_port) {
                        if (portfile != nullptr) {
                            fprintf(portfile, "UDP INET%s: %d\n", family == AF_INET6 ? "6" : "",
                                    bound_port);
                        }
                        for (Worker* w : ctx_.workers) {
                            int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
                            if (copy >= 0) w->hand_over(NewConn{copy, false, "udp:" + name, true});
                        }
                        ::close(fd);
                        return true;
                    });
}

bool Listener::listen_unix(const std::string& path, int mask) {
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) {
        fprintf(stderr, "socket path too long: %s\n", path.c_str());
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket()");
        return false;
    }
    // A stale socket file from an earlier run is removed, as memcached does.
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    mode_t old = umask(static_cast<mode_t>(~mask & 0777));
    int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    umask(old);
    if (rc != 0) {
        perror("bind()");
        ::close(fd);
        return false;
    }
    if (!set_nonblock(fd) || listen(fd, ctx_.settings.backlog) != 0) {
        perror("listen()");
        ::close(fd);
        return false;
    }
    return add_socket(fd, true, path);
}

bool Listener::setup() {
    const Settings& s = ctx_.settings;
    if (s.managed()) {
        req_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (req_fd_ < 0) {
            perror("eventfd()");
            return false;
        }
        req_ev_ = event_new(base_, req_fd_, EV_READ | EV_PERSIST, &Listener::on_request, this);
        if (req_ev_ == nullptr || event_add(req_ev_, nullptr) != 0) return false;
    }
    if (!s.socket_path.empty()) {
        if (!listen_unix(s.socket_path, s.access_mask)) {
            fprintf(stderr, "failed to listen on UNIX socket: %s\n", s.socket_path.c_str());
            return false;
        }
        return true;
    }
    // -p 0: no TCP, as memcached; UDP and the port file are still set up.
    const char* pf_name = getenv("MEMCACHED_PORT_FILENAME");
    std::string tmp_name;
    FILE* pf = nullptr;
    if (pf_name != nullptr) {
        tmp_name = std::string(pf_name) + ".lck";
        pf = fopen(tmp_name.c_str(), "a");
        if (pf == nullptr) {
            fprintf(stderr, "Failed to open \"%s\": %s\n", tmp_name.c_str(), strerror(errno));
            return false;
        }
    }
    bool ok = true;
    if (s.listen.empty()) {
        if (s.port != 0) ok = listen_tcp(nullptr, s.port, pf, "", s.ssl_enabled);
        if (ok && s.udp_port != 0) ok = listen_udp(nullptr, s.udp_port, pf);
    } else {
        for (const std::string& l : s.listen) {
            // "host", "host:port", "[v6]:port"; "notls:" before it: plain TCP under -Z
            std::string host = l;
            bool tls = s.ssl_enabled;
            if (host.rfind("notls:", 0) == 0) {
                host.erase(0, 6);
                tls = false;
            }
            int port = s.port;
            if (!host.empty() && host[0] == '[') {
                size_t rb = host.find(']');
                if (rb != std::string::npos) {
                    if (rb + 1 < host.size() && host[rb + 1] == ':') {
                        port = atoi(host.c_str() + rb + 2);
                    }
                    host = host.substr(1, rb - 1);
                }
            } else {
                size_t colon = host.find(':');
                if (colon != std::string::npos && host.find(':', colon + 1) == std::string::npos) {
                    port = atoi(host.c_str() + colon + 1);
                    host = host.substr(0, colon);
                }
            }
            if ((s.port != 0 && !listen_tcp(host.c_str(), port, pf, "", tls)) ||
                (s.udp_port != 0 && !listen_udp(host.c_str(), s.udp_port, pf))) {
                ok = false;
                break;
            }
        }
    }
    if (!ok) {
        fprintf(stderr, "failed to listen on TCP port %d: %s\n", s.port, strerror(errno));
    }
    if (pf != nullptr) {
        fclose(pf);
        if (rename(tmp_name.c_str(), pf_name) != 0) {
            fprintf(stderr, "Failed to rename \"%s\" to \"%s\": %s\n", tmp_name.c_str(), pf_name,
                    strerror(errno));
            return false;
        }
    }
    return ok;
}

// ---- address takeover ----------------------------------------------------------------------

namespace {

// "host:port" or "[v6]:port", port 1..65535.
bool split_hostport(const std::string& a, std::string* host, int* port) {
    size_t colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= a.size()) return false;
    std::string h = a.substr(0, colon);
    if (h.front() == '[') {
        if (h.size() < 3 || h.back() != ']') return false;
        h = h.substr(1, h.size() - 2);
    } else if (h.find(':') != std::string::npos) {
        return false;
    }
    int p = 0;
    for (size_t i = colon + 1; i < a.size(); ++i) {
        if (a[i] < '0' || a[i] > '9' || p > 65535) return false;
        p = p * 10 + (a[i] - '0');
    }
    if (p < 1 || p > 65535) return false;
    *host = h;
    *port = p;
    return true;
}

}  // namespace

std::string Listener::takeover_listen(const std::string& hostport) {
    return run_request(Request::Op::Listen, hostport);
}

std::string Listener::takeover_unlisten(const std::string& hostport) {
    return run_request(Request::Op::Unlisten, hostport);
}

void Listener::takeover_unlisten_all() { (void)run_request(Request::Op::UnlistenAll, ""); }

std::string Listener::steer_own() { return run_request(Request::Op::Steer, ""); }

std::vector<std::string> Listener::takeover_addrs() const {
    std::lock_guard<std::mutex> g(req_mu_);
    return takeovers_;
}

void Listener::close_requests() {
    std::lock_guard<std::mutex> g(req_mu_);
    requests_closed_ = true;
    req_cv_.notify_all();
}

// The caller's thread waits while the main thread binds or closes (bind and close are quick;
// the main loop only accepts and ticks the clock).
std::string Listener::run_request(Request::Op op, const std::string& addr) {
    if (req_fd_ < 0) return "SERVER_ERROR takeover needs managed mode";
    Request r;
    r.op = op;
    r.addr = addr;
    std::unique_lock<std::mutex> lk(req_mu_);
    if (requests_closed_) return "SERVER_ERROR shutting down";
    requests_.push_back(&r);
    uint64_t one = 1;
    (void)!::write(req_fd_, &one, sizeof(one));
    (void)req_cv_.wait_for(lk, std::chrono::seconds(2), [&] { return r.done || requests_closed_; });
    if (r.done) return r.result;
    auto it = std::find(requests_.begin(), requests_.end(), &r);
    if (it != requests_.end()) {
        // Not taken (the loop is stopping or stuck): take it back so nobody writes to r.
        requests_.erase(it);
        return "SERVER_ERROR the listener did not answer";
    }
    // The main thread is serving it right now: that is quick, and it will write to r.
    req_cv_.wait(lk, [&] { return r.done; });
    return r.result;
}

void Listener::on_request(evutil_socket_t fd, short, void* arg) {
    uint64_t v;
    (void)!::read(fd, &v, sizeof(v));
    static_cast<Listener*>(arg)->serve_requests();
}

void Listener::serve_requests() {
    for (;;) {
        Request* r = nullptr;
        {
            std::lock_guard<std::mutex> g(req_mu_);
            if (requests_.empty()) return;
            r = requests_.front();
            requests_.pop_front();
        }
        // r stays valid: once it is off the queue its owner waits for done.
        std::string result;
        switch (r->op) {
            case Request::Op::Listen: result = do_listen(r->addr); break;
            case Request::Op::Unlisten: result = do_unlisten(r->addr, false); break;
            case Request::Op::UnlistenAll: result = do_unlisten("", true); break;
            case Request::Op::Steer: result = do_steer(); break;
        }
        std::lock_guard<std::mutex> g(req_mu_);
        r->result = std::move(result);
        r->done = true;
        req_cv_.notify_all();
    }
}

std::string Listener::do_listen(const std::string& addr) {
    std::string host;
    int port = 0;
    if (!split_hostport(addr, &host, &port)) return "CLIENT_ERROR bad address: want host:port";
    {
        std::lock_guard<std::mutex> g(req_mu_);
        if (std::find(takeovers_.begin(), takeovers_.end(), addr) != takeovers_.end()) {
            return "";  // already listening there: the same answer again
        }
    }
    last_takeover_error_.clear();
    if (!listen_tcp(host.c_str(), port, nullptr, addr, ctx_.settings.ssl_enabled)) {
        return "SERVER_ERROR cannot listen on " + addr + ": " + last_takeover_error_;
    }
    LOG(LogLevel::Info, "takeover: listening on %s", addr.c_str());
    std::lock_guard<std::mutex> g(req_mu_);
    takeovers_.push_back(addr);
    return "";
}

std::string Listener::do_steer() {
    for (const auto& s : socks_) {
        if (s->is_unix || !s->takeover.empty()) continue;
        std::string e;
        if (!reuseport_first_wins(s->fd, &e)) return "SERVER_ERROR " + s->name + ": " + e;
    }
    return "";
}

std::string Listener::do_unlisten(const std::string& addr, bool all) {
    bool found = false;
    for (size_t i = 0; i < socks_.size();) {
        Sock* s = socks_[i].get();
        if (s->takeover.empty() || (!all && s->takeover != addr)) {
            ++i;
            continue;
        }
        found = true;
        if (s->ev != nullptr) event_free(s->ev);
        ctx_.conns.remove(s->fd);
        ::close(s->fd);
        socks_.erase(socks_.begin() + static_cast<long>(i));
    }
    std::lock_guard<std::mutex> g(req_mu_);
    size_t before = takeovers_.size();
    if (all) {
        takeovers_.clear();
    } else {
        takeovers_.erase(std::remove(takeovers_.begin(), takeovers_.end(), addr), takeovers_.end());
    }
    if (found || before != takeovers_.size()) {
        LOG(LogLevel::Info, "takeover: stopped listening on %s", all ? "every address" : addr.c_str());
        return "";
    }
    return "CLIENT_ERROR not listening on " + addr;
}

void Listener::on_accept(evutil_socket_t, short, void* arg) {
    auto* s = static_cast<Sock*>(arg);
    s->owner->accept_one(s);
}

void Listener::accept_one(Sock* s) {
    // Drain the accept queue; each accepted socket goes to the next worker.
    for (int i = 0; i < 64; ++i) {
        int fd = accept4(s->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == EMFILE || errno == ENFILE) {
                LOG(LogLevel::Warn, "Too many open connections");
                ctx_.gstats.listen_disabled_num.fetch_add(1);
                return;
            }
            perror("accept()");
            return;
        }
        ctx_.gstats.total_conns.fetch_add(1, std::memory_order_relaxed);
        s->info.last_cmd_time.store(ctx_.clock.now(), std::memory_order_relaxed);
        // memcached's maxconns_fast: over the limit, say so and hang up at once. memcached
        // keeps reserved_fds (20) plus the descriptors it already holds (the standard streams
        // and the listener) out of -c: it takes maxconns - 24 clients, and so do we.
        int64_t curr = ctx_.gstats.curr_conns.load(std::memory_order_relaxed);
        if (curr + ctx_.reserved_fds.load() + 4 >= ctx_.settings.max_conns) {
            ssize_t w = ::write(fd, proto::kTooManyConns.data(), proto::kTooManyConns.size());
            (void)w;
            ::close(fd);
            ctx_.gstats.rejected_conns.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        if (!s->is_unix) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        ctx_.gstats.curr_conns.fetch_add(1, std::memory_order_relaxed);
        ctx_.gstats.conn_structures.fetch_add(1, std::memory_order_relaxed);
        Worker* w = ctx_.workers[next_worker_++ % ctx_.workers.size()];
        NewConn nc{fd, s->is_unix, s->info.addr};
        nc.tls = s->tls;
        w->hand_over(std::move(nc));
    }
}

}  // namespace mcm::server
