#include "server/watch.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tls/io.h"

namespace mcm::server::watch {

std::atomic<uint32_t> g_mask{0};
size_t g_watcher_buf_bytes = 256 * 1024;

namespace {

struct Watcher {
    int fd = -1;
    SSL* ssl = nullptr;  // a -Z connection's session, which came along
    uint32_t flags = 0;
    std::string buf;  // lines not yet written
    uint64_t skipped = 0;
    std::atomic<bool> dead{false};
};

// The watchers and the thread that writes to them. Never destroyed: the thread runs until
// the process exits, and a static destructor racing it would be worse than the leak.
struct Hub {
    std::mutex mu;
    std::vector<Watcher*> ws;
    std::atomic<uint64_t> gid{0};
    bool started = false;

    void recompute_mask() {  // under mu
        uint32_t m = 0;
        for (const Watcher* w : ws) m |= w->flags;
        g_mask.store(m, std::memory_order_relaxed);
    }

    void run() {
        std::vector<pollfd> pfds;
        std::vector<Watcher*> snap;
        std::string chunk;
        for (;;) {
            {
                std::lock_guard<std::mutex> g(mu);
                snap = ws;
            }
            pfds.clear();
            for (Watcher* w : snap) {
                std::lock_guard<std::mutex> g(mu);
                short ev = POLLIN;
                if (!w->buf.empty()) ev |= POLLOUT;
                pfds.push_back({w->fd, ev, 0});
            }
            // Short timeout: new lines are picked up within 10 ms without a wakeup per line.
            int rc = ::poll(pfds.data(), pfds.size(), 10);
            if (rc < 0 && errno != EINTR) continue;
            bool changed = false;
            for (size_t i = 0; i < snap.size(); ++i) {
                Watcher* w = snap[i];
                short re = pfds[i].revents;
                if (re & (POLLERR | POLLHUP | POLLNVAL)) {
                    w->dead = true;
                } else if (re & POLLIN) {
                    char junk[512];  // a watcher's further input is read and ignored
                    ssize_t n = tls::recv(w->fd, w->ssl, junk, sizeof junk);
                    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) w->dead = true;
                }
                if (!w->dead) {
                    {
                        std::lock_guard<std::mutex> g(mu);
                        chunk.swap(w->buf);
                    }
                    size_t off = 0;
                    while (off < chunk.size()) {
                        ssize_t n = tls::send(w->fd, w->ssl, chunk.data() + off, chunk.size() - off);
                        if (n > 0) {
                            off += static_cast<size_t>(n);
                        } else if (n < 0 && errno == EINTR) {
                            continue;
                        } else {
                            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) w->dead = true;
                            break;
                        }
                    }
                    std::lock_guard<std::mutex> g(mu);
                    if (off < chunk.size() && !w->dead) {  // the unsent rest goes first
                        w->buf.insert(0, chunk, off, std::string::npos);
                    }
                    if (w->buf.empty() && w->skipped != 0) {  // caught up: say what was lost
                        char sk[40];
                        int n = std::snprintf(sk, sizeof sk, "skipped=%llu\n",
                                              static_cast<unsigned long long>(w->skipped));
                        w->buf.append(sk, static_cast<size_t>(n));
                        w->skipped = 0;
                    }
                    chunk.clear();
                }
                if (w->dead) changed = true;
            }
            if (changed) {
                std::lock_guard<std::mutex> g(mu);
                for (size_t i = 0; i < ws.size();) {
                    if (ws[i]->dead) {
                        tls::finish(ws[i]->ssl);
                        ::close(ws[i]->fd);
                        delete ws[i];
                        ws[i] = ws.back();
                        ws.pop_back();
                    } else {
                        ++i;
                    }
                }
                recompute_mask();
            }
            if (snap.empty()) {
                // Nothing to serve: wait without spinning until adopt() adds a watcher.
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, nullptr);
            }
        }
    }
};

Hub& hub() {
    static Hub* h = new Hub;
    return *h;
}

}  // namespace

bool parse_flags(std::string_view args, uint32_t* flags) noexcept {
    uint32_t f = 0;
    size_t n = 0;
    while (!args.empty()) {
        size_t sp = args.find(' ');
        std::string_view t = args.substr(0, sp);
        args = sp == std::string_view::npos ? std::string_view() : args.substr(sp + 1);
        if (t.empty()) continue;
        ++n;
        if (t == "fetchers") {
            f |= kFetchers;
        } else if (t == "mutations") {
            f |= kMutations;
        } else if (t == "evictions") {
            f |= kEvictions;
        } else if (t == "rawcmds") {
            f |= kRawCmds;
        } else if (t == "sysevents") {
            f |= kSysEvents;
        } else if (t == "connevents") {
            f |= kConnEvents;
        } else if (t == "proxyreqs") {
            f |= kProxyReqs;
        } else if (t == "proxyevents") {
            f |= kProxyEvents;
        } else if (t == "proxyuser") {
            f |= kProxyUser;
        } else {
            return false;
        }
    }
    *flags = n == 0 ? kFetchers : f;
    return true;
}

void emit(uint32_t flag, std::string_view body) noexcept {
    Hub& h = hub();
    timeval tv;
    gettimeofday(&tv, nullptr);
    uint64_t gid = h.gid.fetch_add(1, std::memory_order_relaxed) + 1;
    char pre[64];
    // memcached prints the microseconds without zero padding; so does this.
    int pn = std::snprintf(pre, sizeof pre, "ts=%lld.%lld gid=%llu ",
                           static_cast<long long>(tv.tv_sec), static_cast<long long>(tv.tv_usec),
                           static_cast<unsigned long long>(gid));
    size_t len = static_cast<size_t>(pn) + body.size() + 1;
    std::lock_guard<std::mutex> g(h.mu);
    for (Watcher* w : h.ws) {
        if ((w->flags & flag) == 0 || w->dead) continue;
        if (w->buf.size() + len + 32 > g_watcher_buf_bytes) {
            ++w->skipped;
            continue;
        }
        if (w->skipped != 0) {
            char sk[40];
            int n = std::snprintf(sk, sizeof sk, "skipped=%llu\n",
                                  static_cast<unsigned long long>(w->skipped));
            w->buf.append(sk, static_cast<size_t>(n));
            w->skipped = 0;
        }
        w->buf.append(pre, static_cast<size_t>(pn));
        w->buf.append(body);
        w->buf.push_back('\n');
    }
}

void adopt(int fd, SSL* ssl, uint32_t flags, std::string_view first) {
    Hub& h = hub();
    auto* w = new Watcher;
    w->fd = fd;
    w->ssl = ssl;
    // What a send could not take goes back to the front of buf and is sent again from a
    // string that may have moved and grown.
    if (ssl != nullptr) SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    w->flags = flags;
    w->buf.assign(first);
    std::lock_guard<std::mutex> g(h.mu);
    h.ws.push_back(w);
    h.recompute_mask();
    if (!h.started) {
        h.started = true;
        std::thread([&h] { h.run(); }).detach();
    }
}

void uri_encode(std::string_view in, std::string* out) {
    static const char kHex[] = "0123456789ABCDEF";
    for (unsigned char c : in) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out->push_back(static_cast<char>(c));
        } else {
            out->push_back('%');
            out->push_back(kHex[c >> 4]);
            out->push_back(kHex[c & 15]);
        }
    }
}

}  // namespace mcm::server::watch
