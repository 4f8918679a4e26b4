// Listening sockets (TCP on each -l address, or one unix socket with -s) on the main thread's
// event loop. Accepts, enforces -c like memcached (refuses with "ERROR Too many open
// connections"), and deals connections round-robin to the workers.
#pragma once

#include <event2/event.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
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

    // Address takeover (managed mode, doc/managed.md): an extra TCP listener on another
    // server's client address ("host:port" or "[v6]:port"), serving the normal protocols,
    // bound with SO_REUSEPORT so that server can bind it again when it comes back. Callable
    // from any thread: the work runs on the main thread, the caller waits for it (at most
    // 2 s). Returns "" on success, else the reason (a "CLIENT_ERROR ..." or
    // "SERVER_ERROR ..." line without the line end).
    std::string takeover_listen(const std::string& hostport);
    std::string takeover_unlisten(const std::string& hostport);
    // Closes every takeover listener (cluster reset). Any thread.
    void takeover_unlisten_all();
    // Before a standby joins this server's address (standby.h): this server's own TCP
    // listeners steer their group's connections to its first socket, so the standby's
    // listener never gets a connection, not even between its listen() and its own setting.
    // Any thread. "" on success, else the reason.
    std::string steer_own();
    // The addresses taken over now, in the order they were taken. Any thread.
    std::vector<std::string> takeover_addrs() const;
    // After the main loop stopped: requests fail at once rather than wait.
    void close_requests();

private:
    struct Sock {
        Listener* owner;
        int fd;
        bool is_unix;
        bool tls = false;  // -Z and not "notls:": accepted connections start TLS
        std::string name;  // "127.0.0.1:11211" or the unix path
        event* ev;
        ConnInfo info;
        std::string takeover;  // the address as asked for ("" for the configured ones)
    };
    struct Request {
        enum class Op { Listen, Unlisten, UnlistenAll, Steer } op = Op::Listen;
        std::string addr;
        bool done = false;
        std::string result;
    };
    bool listen_tcp(const char* host, int port, FILE* portfile, const std::string& takeover = "",
                    bool tls = false);
    std::string run_request(Request::Op op, const std::string& addr);
    static void on_request(evutil_socket_t fd, short what, void* arg);
    void serve_requests();
    std::string do_listen(const std::string& addr);
    std::string do_unlisten(const std::string& addr, bool all);
    std::string do_steer();
    bool listen_unix(const std::string& path, int mask);
    bool add_socket(int fd, bool is_unix, std::string name, const std::string& takeover = "",
                    bool tls = false);
    static void on_accept(evutil_socket_t fd, short what, void* arg);
    void accept_one(Sock* s);
    bool listen_udp(const char* host, int port, FILE* portfile);
    bool bind_all(const char* host, int port, int socktype,
                  const std::function<bool(int fd, int family, const std::string& addr,
                                           int bound_port)>& use,
                  std::string* why = nullptr);

    ServerContext& ctx_;
    event_base* base_;
    std::vector<std::unique_ptr<Sock>> socks_;
    std::vector<int> ports_;
    size_t next_worker_ = 0;
    // Takeover requests from worker threads, served on the main thread (eventfd wake-up).
    int req_fd_ = -1;
    event* req_ev_ = nullptr;
    mutable std::mutex req_mu_;
    std::condition_variable req_cv_;
    std::deque<Request*> requests_;
    bool requests_closed_ = false;
    std::vector<std::string> takeovers_;  // under req_mu_
    std::string last_takeover_error_;     // main thread
};

}  // namespace mcm::server
