// Listening sockets (TCP on each -l address, or one unix socket with -s) on the main thread's
// event loop. Accepts, enforces -c like memcached (refuses with "ERROR Too many open
// connections"), and deals connections round-robin to the workers.
#pragma once

#include <event2/event.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/context.h"

namespace mcm::server {

class Listener {
public:
    Listener(ServerContext& ctx, event_base* base) noexcept : ctx_(ctx), base_(base) {}
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    // Bind every configured socket. On failure prints why (memcached's wording) and returns
    // false. Writes "TCP INET: <port>" lines to $MEMCACHED_PORT_FILENAME as memcached does, so
    // tests can bind port -1 (an OS-picked port) and learn it.
    bool setup();
    // Bound TCP ports (after setup), for tests and logging.
    const std::vector<int>& tcp_ports() const noexcept { return ports_; }

private:
    struct Sock {
        Listener* owner;
        int fd;
        bool is_unix;
        std::string name;  // "127.0.0.1:11211" or the unix path
        event* ev;
        ConnInfo info;
    };
    bool listen_tcp(const char* host, int port, FILE* portfile);
    bool listen_unix(const std::string& path, int mask);
    bool add_socket(int fd, bool is_unix, std::string name);
    static void on_accept(evutil_socket_t fd, short what, void* arg);
    void accept_one(Sock* s);
    bool listen_udp(const char* host, int port, FILE* portfile);
    bool bind_all(const char* host, int port, int socktype,
                  const std::function<bool(int fd, int family, const std::string& addr,
                                           int bound_port)>& use);

    ServerContext& ctx_;
    event_base* base_;
    std::vector<std::unique_ptr<Sock>> socks_;
    std::vector<int> ports_;
    size_t next_worker_ = 0;
};

}  // namespace mcm::server
