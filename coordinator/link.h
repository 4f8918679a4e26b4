// One persistent, authenticated control connection from the coordinator to one server
// (libevent bufferevent). Commands queue on it and their replies are matched in order. Owned
// by the Coordinator's Server record; lives on the coordinator's single event loop thread.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "coordinator/leadership.h"

namespace mcm::tls {
class PeerTls;
}

namespace mcm::coord {

// Peer TLS (--peer-tls-*): every link and every probe that asks a server who it is then runs
// over TLS with this. Set once at startup, before any link; null (the default) for plain TCP.
void set_peer_tls(const tls::PeerTls* t);

class ServerLink {
public:
    // Idle --start--> Connecting --connected--> Authenticating --OK--> Ready
    //   Connecting/Authenticating/Ready --error, timeout, close--> Backoff --100 ms--> Connecting
    //   any --stop--> Idle
    enum class State { Idle, Connecting, Authenticating, Ready, Backoff };
    // Line: one reply line. Block: a header line and the lines up to END (an error line alone
    // ends it too).
    enum class Kind { Line, Block };
    // ok is false when the link failed or timed out before the reply; lines are the reply
    // (END taken off). Runs exactly once, on the loop thread.
    using Done = std::function<void(bool ok, const std::vector<std::string>& lines)>;
    struct Events {
        std::function<void()> on_ready;                     // authenticated (a new connection)
        // A Ready link closed; peer_closed: the server's side ended it (EOF or a reset),
        // not a timeout or the coordinator's own decision.
        std::function<void(const std::string& why, bool peer_closed)> on_down;
    };

    ServerLink(event_base* base, std::string name, std::string host, uint16_t port,
               std::string secret, Events ev);
    ~ServerLink();
    ServerLink(const ServerLink&) = delete;
    ServerLink& operator=(const ServerLink&) = delete;

    void start();
    void stop();
    // Closes the connection (failing what is queued) and reconnects after the backoff.
    void reset(const std::string& why);
    State state() const { return state_; }
    bool ready() const { return state_ == State::Ready; }
    size_t in_flight() const { return queue_.size(); }
    const std::string& name() const { return name_; }

    // With a Leadership, send() refuses (false) while this process does not lead: a deposed
    // coordinator sends servers nothing, not even a heartbeat.
    void set_leadership(const Leadership* l) { lead_ = l; }
    // Queues a command on a Ready link (false if not ready or not leading: done is not
    // called).
    bool send(std::string wire, Kind kind, int64_t timeout_ms, Done done);
    // Fails the link when its head command or the connect is overdue (the coordinator's tick).
    void check_timeouts(int64_t now_ms);

private:
    struct Pending {
        Kind kind;
        int64_t deadline_ms;
        Done done;
        std::vector<std::string> lines;
    };
    static constexpr int64_t kConnectTimeoutMs = 1000;
    static constexpr int64_t kBackoffMs = 100;
    static constexpr size_t kMaxLine = 1 << 20;

    void connect();
    void close_and_fail(const std::string& why, bool reconnect, bool peer_closed = false);
    void check_identity();
    void authenticate();
    void write(const std::string& wire, Kind kind, int64_t timeout_ms, Done done);
    void on_read();
    bool take_line(const std::string& line);
    static void read_cb(bufferevent* bev, void* arg);
    static void event_cb(bufferevent* bev, short what, void* arg);
    static void backoff_cb(evutil_socket_t, short, void* arg);

    event_base* base_;
    std::string name_, host_;
    uint16_t port_;
    std::string secret_;
    Events ev_;
    State state_ = State::Idle;
    bufferevent* bev_ = nullptr;
    event* backoff_ = nullptr;
    int64_t connect_deadline_ms_ = 0;
    std::deque<Pending> queue_;
    uint64_t generation_ = 0;  // bumped on every close: callbacks check it to stop early
    bool wrong_node_logged_ = false;
    std::string setup_failure_;  // the last reason logged for a link that did not get up
    const Leadership* lead_ = nullptr;
};

// Whether anything listens at host:port: a non-blocking connect from the loop thread, done
// within timeout_ms. Refused is an answer from the address itself (RST to the SYN);
// Accepted means something listens; Other is anything else (a timeout, no route, a name
// that does not resolve). With expect_node, an accepted connection is asked `stats cluster`
// and Elsewhere means another node answered (its node_id is not expect_node): a standby
// holds the address, which it only gets once the node's own listener is closed
// (server/managed/standby.h). A node that does not answer in time is Other.
enum class ProbeResult { Refused, Accepted, Elsewhere, Other };
void probe_address(event_base* base, const std::string& host, uint16_t port, int64_t timeout_ms,
                   std::function<void(ProbeResult)> done, const std::string& expect_node = "");
// Frees every probe still under way without calling it back (at shutdown).
void cancel_probes();

}  // namespace mcm::coord
