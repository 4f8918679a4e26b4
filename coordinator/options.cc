#include "coordinator/options.h"

#include <getopt.h>
#include <unistd.h>

#include <cerrno>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "coordinator/etcd/url.h"
#include "replication/auth.h"
#include "replication/bucket_map.h"

namespace mcm::coord {

namespace {

template <typename T>
bool number(const std::string& s, T lo, T hi, T* out) {
    T v{};
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo || v > hi) return false;
    *out = v;
    return true;
}

enum OptId {
    kSecretFile = 1000, kState, kBuckets, kReplicas, kHeartbeat, kDeadAfter, kListen,
    kPortFile, kNode, kControl, kDeadOnRefused, kTakeover, kTakeoverHook, kTakeoverHookTimeout,
    kStandby, kEtcdLeaseTtl, kId, kAdvertise, kPeerTlsCert, kPeerTlsKey, kPeerTlsCa,
    kEtcdCacert, kEtcdCert, kEtcdKey,
};

const option kLong[] = {
    {"secret-file", required_argument, nullptr, kSecretFile},
    {"state", required_argument, nullptr, kState},
    {"buckets", required_argument, nullptr, kBuckets},
    {"replicas", required_argument, nullptr, kReplicas},
    {"heartbeat-ms", required_argument, nullptr, kHeartbeat},
    {"dead-after-ms", required_argument, nullptr, kDeadAfter},
    {"listen", required_argument, nullptr, kListen},
    {"port-file", required_argument, nullptr, kPortFile},
    {"node", required_argument, nullptr, kNode},
    {"control", required_argument, nullptr, kControl},
    {"dead-on-refused", required_argument, nullptr, kDeadOnRefused},
    {"takeover", required_argument, nullptr, kTakeover},
    {"takeover-hook", required_argument, nullptr, kTakeoverHook},
    {"takeover-hook-timeout-ms", required_argument, nullptr, kTakeoverHookTimeout},
    {"standby", required_argument, nullptr, kStandby},
    {"etcd-lease-ttl", required_argument, nullptr, kEtcdLeaseTtl},
    {"id", required_argument, nullptr, kId},
    {"advertise", required_argument, nullptr, kAdvertise},
    {"peer-tls-cert", required_argument, nullptr, kPeerTlsCert},
    {"peer-tls-key", required_argument, nullptr, kPeerTlsKey},
    {"peer-tls-ca", required_argument, nullptr, kPeerTlsCa},
    {"etcd-cacert", required_argument, nullptr, kEtcdCacert},
    {"etcd-cert", required_argument, nullptr, kEtcdCert},
    {"etcd-key", required_argument, nullptr, kEtcdKey},
    {"verbose", no_argument, nullptr, 'v'},
    {"help", no_argument, nullptr, 'h'},
    {nullptr, 0, nullptr, 0},
};

bool parse_node(const std::string& v, Options* o, std::string* err) {
    size_t eq = v.find('=');
    NodeAddr n;
    if (eq == std::string::npos || !repl::valid_node_name(v.substr(0, eq)) ||
        !parse_hostport(v.substr(eq + 1), &n.host, &n.port, false)) {
        *err = "--node wants NAME=HOST:PORT (name: letters, digits, -_.), got '" + v + "'";
        return false;
    }
    n.name = v.substr(0, eq);
    for (const NodeAddr& x : o->nodes) {
        if (x.name == n.name) {
            *err = "--node " + n.name + " given twice";
            return false;
        }
    }
    o->nodes.push_back(std::move(n));
    return true;
}

bool apply(int id, const std::string& v, Options* o, std::string* err) {
    auto bad = [&](const char* opt, const char* want) {
        *err = std::string(opt) + " wants " + want + ", got '" + v + "'";
        return false;
    };
    switch (id) {
        case kSecretFile: o->secret_file = v; return true;
        case kPeerTlsCert: o->peer_tls_cert = v; return true;
        case kPeerTlsKey: o->peer_tls_key = v; return true;
        case kPeerTlsCa: o->peer_tls_ca = v; return true;
        case kEtcdCacert: o->etcd_cacert = v; return true;
        case kEtcdCert: o->etcd_cert = v; return true;
        case kEtcdKey: o->etcd_key = v; return true;
        case kState:
            if (v.empty()) return bad("--state", "a path or etcd://HOST:PORT[,...]/PREFIX");
            if (etcd::is_etcd_url(v)) {
                etcd::Url u;
                if (!etcd::parse_url(v, &u, err)) {
                    *err = "--state: " + *err;
                    return false;
                }
            }
            o->state_path = v;
            return true;
        case kEtcdLeaseTtl:
            return number<uint32_t>(v, 1, 600, &o->etcd_lease_ttl_s) ||
                   bad("--etcd-lease-ttl", "1..600 (seconds)");
        case kId:
            if (!repl::valid_node_name(v)) return bad("--id", "a name (letters, digits, -_.)");
            o->id = v;
            return true;
        case kAdvertise: {
            std::string h;
            uint16_t p = 0;
            if (!parse_hostport(v, &h, &p, false)) return bad("--advertise", "HOST:PORT");
            o->advertise = v;
            return true;
        }
        case kBuckets:
            return number<uint32_t>(v, 1, 65536, &o->buckets) || bad("--buckets", "1..65536");
        case kReplicas:
            return number<uint32_t>(v, 0, 8, &o->replicas) || bad("--replicas", "0..8");
        case kHeartbeat:
            return number<uint32_t>(v, 10, 10000, &o->heartbeat_ms) ||
                   bad("--heartbeat-ms", "10..10000");
        case kDeadAfter:
            return number<uint32_t>(v, 50, 60000, &o->dead_after_ms) ||
                   bad("--dead-after-ms", "50..60000");
        case kListen:
            return parse_hostport(v, &o->listen_host, &o->listen_port, true) ||
                   bad("--listen", "HOST:PORT");
        case kPortFile: o->port_file = v; return true;
        case kNode: return parse_node(v, o, err);
        case kDeadOnRefused:
            if (v != "on" && v != "off") return bad("--dead-on-refused", "on or off");
            o->dead_on_refused = v == "on";
            return true;
        case kStandby:
            if (v != "on" && v != "off") return bad("--standby", "on or off");
            o->standby = v == "on";
            return true;
        case kTakeover:
            if (v == "auto") o->takeover = Options::Takeover::Auto;
            else if (v == "off") o->takeover = Options::Takeover::Off;
            else if (v == "listen") o->takeover = Options::Takeover::Listen;
            else if (v == "hook") o->takeover = Options::Takeover::Hook;
            else return bad("--takeover", "auto, off, listen or hook");
            return true;
        case kTakeoverHook:
            if (v.empty()) return bad("--takeover-hook", "a path");
            o->takeover_hook = v;
            return true;
        case kTakeoverHookTimeout:
            return number<uint32_t>(v, 100, 600000, &o->takeover_hook_timeout_ms) ||
                   bad("--takeover-hook-timeout-ms", "100..600000");
        case kControl: {
            Options tmp;
            if (!parse_node(v, &tmp, err)) {
                *err = "--control wants NAME=HOST:PORT, got '" + v + "'";
                return false;
            }
            o->control.push_back(tmp.nodes[0]);
            return true;
        }
    }
    *err = "unknown option";
    return false;
}

// The lease arithmetic must leave the servers' "coordinator gone" rule a margin over
// heartbeat jitter (doc/coordinator.md, Settings).
bool check_timing(const Options& o, std::string* err) {
    if (o.quiet_ms() * 2 < static_cast<int64_t>(o.heartbeat_ms) * 3 + 50) {
        *err = "--dead-after-ms " + std::to_string(o.dead_after_ms) +
               " is too short for --heartbeat-ms " + std::to_string(o.heartbeat_ms) +
               ": the quiet threshold (lease - heartbeat - 150 = " +
               std::to_string(o.quiet_ms()) +
               " ms) must be at least 1.5 heartbeats + 25 ms; dead-after must be about 5x "
               "heartbeat or more";
        return false;
    }
    return true;
}

}  // namespace

bool parse_hostport(const std::string& s, std::string* host, uint16_t* port, bool allow_zero) {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    uint16_t p = 0;
    if (!number<uint16_t>(s.substr(colon + 1), allow_zero ? 0 : 1, 65535, &p)) return false;
    std::string h = s.substr(0, colon);
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    for (char c : h) {  // printable ASCII, no space: servers' maps refuse other hosts
        if (c < 0x21 || c > 0x7e) return false;
    }
    *host = h;
    *port = p;
    return true;
}

ParseResult parse_options(int argc, char** argv, Options* o, std::string* err) {
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":vh", kLong, nullptr)) != -1) {
        if (c == 'h') return ParseResult::Help;
        if (c == 'v') {
            o->verbose = true;
            continue;
        }
        if (c == '?' || c == ':') {
            const char* arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
            *err = std::string(c == ':' ? "missing value for " : "unknown option ") + arg;
            return ParseResult::Error;
        }
        if (!apply(c, optarg, o, err)) return ParseResult::Error;
    }
    if (optind < argc) {
        *err = std::string("unexpected argument ") + argv[optind];
        return ParseResult::Error;
    }
    if (o->secret_file.empty()) {
        *err = "--secret-file is required";
        return ParseResult::Error;
    }
    if (!repl::read_secret_file(o->secret_file, &o->secret, err)) return ParseResult::Error;
    if (!check_timing(*o, err)) return ParseResult::Error;
    int tls_files = !o->peer_tls_cert.empty() + !o->peer_tls_key.empty() + !o->peer_tls_ca.empty();
    if (tls_files != 0 && tls_files != 3) {
        *err = "peer TLS needs all of --peer-tls-cert, --peer-tls-key and --peer-tls-ca";
        return ParseResult::Error;
    }
    if (o->etcd_cert.empty() != o->etcd_key.empty()) {
        *err = "--etcd-cert and --etcd-key go together";
        return ParseResult::Error;
    }
    if (!o->etcd_cert.empty() && o->etcd_cacert.empty()) {
        *err = "--etcd-cert needs --etcd-cacert (the CA etcd's certificate is checked against)";
        return ParseResult::Error;
    }
    if (!o->etcd_cacert.empty() && !etcd::is_etcd_url(o->state_path)) {
        *err = "--etcd-cacert needs --state etcd://...";
        return ParseResult::Error;
    }
    for (const std::string* f : {&o->etcd_cacert, &o->etcd_cert, &o->etcd_key}) {
        if (!f->empty() && access(f->c_str(), R_OK) != 0) {
            *err = "cannot read " + *f + ": " + strerror(errno);
            return ParseResult::Error;
        }
    }
    if (o->takeover == Options::Takeover::Hook && o->takeover_hook.empty()) {
        *err = "--takeover hook needs --takeover-hook PATH";
        return ParseResult::Error;
    }
    return ParseResult::Ok;
}

std::string usage() {
    return "usage: mc-coordinator --secret-file PATH [options]\n"
           "  --secret-file PATH   the cluster secret (at least 16 bytes; required)\n"
           "  --state PATH         state file (default ./mc-coordinator.state)\n"
           "  --state etcd://HOST:PORT[,HOST:PORT...]/PREFIX  the state in etcd under PREFIX;\n"
           "                         any number of coordinators elect a leader there\n"
           "  --etcd-lease-ttl S   the leader's etcd lease, seconds (default 3): a dead\n"
           "                         leader is replaced within about this long\n"
           "  --id NAME            this coordinator's name among its peers (etcd; default\n"
           "                         the advertised address)\n"
           "  --advertise HOST:PORT  where peers and mcctl reach this admin API (etcd;\n"
           "                         default the --listen address and its bound port)\n"
           "  --buckets N          bucket count of a new cluster (default 1024)\n"
           "  --replicas R         replicas per bucket (default 1)\n"
           "  --heartbeat-ms MS    heartbeat interval (default 100)\n"
           "  --dead-after-ms MS   silence before a server is declared dead (default 500)\n"
           "  --listen HOST:PORT   admin API address (default 127.0.0.1:11300; port 0: any)\n"
           "  --port-file PATH     write the admin port there once listening\n"
           "  --node NAME=HOST:PORT  a server of a new cluster (repeat; first start only)\n"
           "  --control NAME=HOST:PORT  reach server NAME at this address instead of its map\n"
           "                         address (repeat)\n"
           "  --dead-on-refused on|off  fail a server over at once when its link closed and\n"
           "                         its own address refuses connections (default on)\n"
           "  --takeover auto|off|listen|hook  who answers on a dead server's address until\n"
           "                         it is back in sync (default auto: hook if --takeover-hook,\n"
           "                         else listen for loopback addresses, else off)\n"
           "  --takeover-hook PATH  run PATH acquire|release <dead-node> <host:port> <survivor>\n"
           "  --takeover-hook-timeout-ms MS  kill a hook still running after MS (default 5000)\n"
           "  --standby on|off     listen mode: a survivor listens behind each live server's\n"
           "                         address in advance, so it answers there the moment the\n"
           "                         server dies (default on)\n"
           "  --peer-tls-cert PATH, --peer-tls-key PATH, --peer-tls-ca PATH  reach the servers\n"
           "                         over TLS with this certificate, verifying theirs against\n"
           "                         the CA (their -o peer_tls_*; all three or none)\n"
           "  --etcd-cacert PATH   reach etcd over https, its certificate checked against\n"
           "                         this CA (PEM)\n"
           "  --etcd-cert PATH, --etcd-key PATH  this coordinator's client certificate for\n"
           "                         etcd (its --client-cert-auth)\n"
           "  -v, --verbose        log every decision input\n"
           "  -h, --help           this text\n";
}

}  // namespace mcm::coord
