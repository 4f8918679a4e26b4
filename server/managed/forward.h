// One-hop forwarding of managed mode: a request for a bucket active on another server goes
// there over this worker's pooled, pipelined, authenticated link to that server, and the reply
// comes back to the client connection in its place. See doc/managed.md.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mcm::server {

class Conn;
class Worker;

// What a client connection waits for. Owned by the connection.
struct ForwardJob {
    enum class Kind : uint8_t { Text, MultiGet, Binary };
    Kind kind = Kind::Text;
    Conn* conn = nullptr;     // null once the client is gone: replies are then dropped
    std::string request;      // Text/Binary: the request as the client sent it
    size_t value_pending = 0;  // bytes of the client's value still to append to request
    size_t hole = 0;           // the reply's place in the client's output
    std::string node;         // Text/Binary: the target server
    std::string host;
    uint16_t port = 0;
    // MultiGet: the keys in request order, who owns each ("" = here), and what came back.
    std::string get_cmd;       // "get", "gets", "gat 10", "gats 10"
    std::vector<std::string> keys;
    std::vector<std::string> owner;
    std::map<std::string, std::pair<std::string, uint16_t>> addr;  // node -> host, port
    std::map<std::string, std::string> blocks;  // key -> "VALUE ...\r\n<data>\r\n"
    int outstanding = 0;
    std::string reply;  // Text/Binary: the relayed bytes
    uint8_t bin_opcode = 0;   // Binary: for an error response of our own
    uint32_t bin_opaque = 0;
    std::string error;  // the failure the client gets, if any
    uint16_t bin_status = 0x86;  // Binary: the status of that failure
    // Text noreply (not meta q, not binary quiet): the client gets nothing, success or
    // failure, as from a local command (the request goes to the owner without noreply).
    bool silent = false;
    uint64_t ack_token = 0;  // repl_ack: a local reply waiting for a replica (reply holds it)

    // Parking (-o forward_park_ms): a request whose owner could not be reached, or which had
    // no owner in the map, waits for the next map instead of failing. Text/Binary: node is
    // empty while the request needs an owner. MultiGet: owner[i] is kUnrouted for a key that
    // needs one, and "" for a key read here or already answered.
    static constexpr const char* kUnrouted = "*";  // no node name has a '*'
    bool parked = false;
    bool from_peer = false;       // came on a peer link: never forwarded, only waits here
    unsigned park_ms = 0;         // the bound, when not -o forward_park_ms (a pending write)
    uint64_t route_gen = 0;       // the cluster generation the request was last routed with
    int64_t park_until_us = 0;    // the bound (CLOCK_MONOTONIC), set when first parked
    std::string park_why;         // the last forward failure ("" = the map named no owner)
    uint32_t park_bucket = 0;     // a bucket without owner, for NOT_MY_BUCKET at the bound
    bool needs_route() const noexcept;
};

class PeerLinks {
public:
    PeerLinks(Worker* worker, const std::string& secret) noexcept;
    ~PeerLinks();
    PeerLinks(const PeerLinks&) = delete;
    PeerLinks& operator=(const PeerLinks&) = delete;

    // Start a job (its request is complete). The job's connection hears back through
    // Conn::forward_done when every part has answered or failed.
    void submit(ForwardJob* job);
    // The connection is closing: forget its job.
    void cancel(ForwardJob* job) noexcept;
    // Requests waiting for a new map right now (this worker).
    size_t parked() const noexcept { return parked_.size(); }

    static constexpr auto kTimeout = std::chrono::milliseconds(1000);
    // How often a worker with parked requests looks for a new map (the cluster generation).
    static constexpr auto kParkPoll = std::chrono::milliseconds(2);
    // How long a request is sent again to an owner whose map is older than ours.
    static constexpr unsigned kBehindMs = 250;

private:
    struct Link;
    struct Waiter {
        ForwardJob* job;
        bool binary;
        uint32_t marker;  // binary: the opaque of the closing NOOP
        std::chrono::steady_clock::time_point deadline;
    };
    Link* link(const std::string& node, const std::string& host, uint16_t port, bool binary);
    void send(Link* l, ForwardJob* job, std::string_view bytes, bool binary);
    // Requests are written to a link once per loop iteration, after every connection that
    // was ready had its turn: the forwards of all of them go out in one send per peer.
    void schedule_flush(Link* l);
    static void on_flush(evutil_socket_t fd, short what, void* arg);
    static void on_io(evutil_socket_t fd, short what, void* arg);
    static void on_timer(evutil_socket_t fd, short what, void* arg);
    void handle_io(Link* l, short what);
    bool parse_replies(Link* l);
    void part_done(ForwardJob* job, const std::string& node, std::string bytes, bool failed);
    void fail_link(Link* l, const std::string& why);
    // A peer's NOT_MY_BUCKET: Peer when its epoch is below the map held here, Self when it
    // is above (a newer map is on its way here), None for any other reply.
    enum class Behind { None, Peer, Self };
    Behind who_is_behind(const ForwardJob& job, std::string_view reply) const;
    void finish(ForwardJob* job);  // every part is back: deliver, or park what failed
    void park(ForwardJob* job);
    static void on_park_timer(evutil_socket_t fd, short what, void* arg);
    void check_parked();

    Worker* worker_;
    std::string secret_;
    std::map<std::string, std::unique_ptr<Link>> links_;
    std::vector<Link*> dirty_;  // links with requests written since the last flush
    event* flush_ev_ = nullptr;
    bool flush_armed_ = false;
    event* timer_ = nullptr;
    uint32_t next_marker_ = 1;
    // Parked jobs in the order they parked; a cancelled one becomes null. A timer of a few
    // ms runs while any is parked: it retries those whose map changed and fails those past
    // their bound.
    std::vector<ForwardJob*> parked_;
    event* park_timer_ = nullptr;
    bool park_timer_on_ = false;
};

}  // namespace mcm::server
