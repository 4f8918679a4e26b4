// mc-coordinator's command line (doc/coordinator.md, Options). Parsing only: no sockets, no
// files other than the secret file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace mcm::coord {

struct NodeAddr {
    std::string name;
    std::string host;
    uint16_t port = 0;
};

struct Options {
    std::string secret_file;
    std::string secret;  // read from secret_file by parse_options
    std::string state_path = "./mc-coordinator.state";  // or etcd://HOST:PORT[,...]/PREFIX
    uint32_t etcd_lease_ttl_s = 3;
    std::string id;         // among coordinators (etcd); "" -> the advertised address
    std::string advertise;  // the admin API's address for peers; "" -> listen host and port
    uint32_t buckets = 1024;
    uint32_t replicas = 1;
    uint32_t heartbeat_ms = 100;
    uint32_t dead_after_ms = 500;
    std::string listen_host = "127.0.0.1";
    uint16_t listen_port = 11300;
    std::string port_file;
    std::vector<NodeAddr> nodes;  // initial membership (first start only)
    // --control NAME=HOST:PORT: reach NAME there rather than at its map address (a
    // management network, or a fault proxy in tests); the map keeps the address peers use.
    std::vector<NodeAddr> control;
    bool verbose = false;
    // --dead-on-refused on|off: a server whose link closed and whose own address then refuses
    // connections is gone: failed over at once rather than after dead_after_ms of silence.
    bool dead_on_refused = true;
    bool standby = true;  // --standby: a survivor listens behind each server's address
    // --takeover: who answers on a dead server's address (doc/coordinator.md, Address
    // takeover). Auto: Hook when --takeover-hook is given, else Listen for loopback
    // addresses, else Off.
    enum class Takeover { Auto, Off, Listen, Hook };
    Takeover takeover = Takeover::Auto;
    std::string takeover_hook;
    // --peer-tls-cert/--peer-tls-key/--peer-tls-ca: reach servers over TLS, verified both ways
    // (the servers' -o peer_tls_*; doc/managed.md, Peer TLS).
    std::string peer_tls_cert, peer_tls_key, peer_tls_ca;
    // --etcd-cacert/--etcd-cert/--etcd-key: etcd over https (etcd::TlsFiles).
    std::string etcd_cacert, etcd_cert, etcd_key;
    uint32_t takeover_hook_timeout_ms = 5000;

    // The lease a renewal grants, from a token the server issued one round trip earlier:
    // shorter than dead_after_ms by a tenth (at least 50 ms), so a server the coordinator
    // declares dead has lost its lease before its buckets move (doc/coordinator.md, Fencing).
    uint32_t lease_ms() const {
        return dead_after_ms - std::max<uint32_t>(50, dead_after_ms / 10);
    }
    // The servers' "coordinator gone" silence threshold: when the coordinator dies, every
    // server has been silent at least lease - heartbeat - (jitter + report age, 150 ms) by
    // the time the first lease runs out; while it lives, silences stay under ~1.5 heartbeats.
    int64_t quiet_ms() const {
        return static_cast<int64_t>(lease_ms()) - static_cast<int64_t>(heartbeat_ms) - 150;
    }
};

enum class ParseResult { Ok, Help, Error };

// Fills *o from argv; on Error *err holds one line saying what is wrong.
ParseResult parse_options(int argc, char** argv, Options* o, std::string* err);
std::string usage();

// "host:port" with a port 1..65535 (0 too when allow_zero).
bool parse_hostport(const std::string& s, std::string* host, uint16_t* port, bool allow_zero);

}  // namespace mcm::coord
