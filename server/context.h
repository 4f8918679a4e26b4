// What every worker shares: settings (read-only), the store, the clock, global counters, the
// registry of open connections (for `stats conns`). Created by main() before the workers and
// destroyed after they have stopped.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "server/prefix_stats.h"
#include "server/settings.h"
#include "server/stats.h"
#include "server/store/clock.h"
#include "server/store/store.h"

namespace mcm::repl {
class Replicator;
}

namespace mcm::tls {
class PeerTls;
class ServerTls;
}

namespace mcm::server {

class Worker;
class Cluster;
class Listener;

// One entry per open connection (client or listener), for `stats conns`. Connection setup and
// teardown take the mutex; the request path only stores into the atomics.
struct ConnInfo {
    std::string addr;         // "tcp:127.0.0.1:5555" or "unix:/path"
    std::string listen_addr;  // address of the listener it came through
    std::atomic<const char*> state{"conn_waiting"};
    std::atomic<uint32_t> last_cmd_time{0};
    bool is_listener = false;
    bool is_udp = false;  // a worker's UDP socket: listed as memcached lists them
    // TLS (Conn::start_tls): the connection is TLS, and (once the handshake is done) the
    // client presented a certificate that verified (against the context's CA).
    bool tls = false;
    std::atomic<bool> tls_peer_verified{false};
};

class ConnRegistry {
public:
    void add(int fd, ConnInfo* info) {
        std::lock_guard<std::mutex> g(mu_);
        conns_[fd] = info;
    }
    void remove(int fd) {
        std::lock_guard<std::mutex> g(mu_);
        conns_.erase(fd);
    }
    // fn runs under the registry lock; it must not add or remove connections.
    void for_each(const std::function<void(int, const ConnInfo&)>& fn) {
        std::lock_guard<std::mutex> g(mu_);
        for (auto& [fd, info] : conns_) fn(fd, *info);
    }

private:
    std::mutex mu_;
    std::map<int, ConnInfo*> conns_;
};

struct ServerContext {
    ServerContext(const Settings& s, store::Store& st, store::Clock& c) noexcept
        : settings(s), store(st), clock(c) {}

    const Settings& settings;
    store::Store& store;
    store::Clock& clock;
    GlobalStats gstats;
    ConnRegistry conns;
    PrefixStats prefix_stats;      // stats detail
    std::vector<Worker*> workers;  // set once before the workers start
    std::atomic<int> verbose{0};
    std::atomic<int> reserved_fds{20};
    int64_t started_unix = 0;  // wall-clock start, for uptime
    Cluster* cluster = nullptr;  // managed mode only
    repl::Replicator* replicator = nullptr;  // managed mode only
    Listener* listener = nullptr;  // set while the main loop runs (address takeover)
    tls::PeerTls* peer_tls = nullptr;  // -o peer_tls_*: peer links over TLS (refresh_certs reloads)
    tls::ServerTls* server_tls = nullptr;    // -Z: the clients' TLS context and its counters
};

}  // namespace mcm::server
