// Command-line settings: memcached 1.6's flags and -o suboptions, parsed once at startup on the
// main thread, then shared read-only (workers get a const reference). Parsing may throw or
// print; nothing here runs on the data path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tls/peer.h"
#include "tls/server.h"
#include "replication/cluster_view.h"  // repl::AckMode

namespace mcm::server {

enum class Protocol : uint8_t { Auto, Ascii, Binary };

struct Settings {
    // Network
    int port = 11211;                 // -p; 0 disables TCP; -1 binds an OS-picked port
    int udp_port = 0;                 // -U; 0 = off (memcached 1.6 default), -1 = any
    std::string socket_path;          // -s: unix socket; when set TCP/UDP are off
    int access_mask = 0700;           // -a: unix socket permissions (octal)
    std::vector<std::string> listen;  // -l (comma separated, may repeat); empty = all (INADDR_ANY)
    int backlog = 1024;               // -b
    int max_conns = 1024;             // -c
    // Memory
    size_t max_bytes = 64ull << 20;  // -m (megabytes on the command line)
    bool evict_to_free = true;       // false with -M
    size_t item_size_max = 1 << 20;  // -I (accepts k/m suffix)
    double factor = 1.25;            // -f
    int chunk_size = 48;             // -n
    bool lock_memory = false;        // -k
    // Threads and fairness
    int num_threads = 4;      // -t
    int reqs_per_event = 20;  // -R
    // Protocol
    bool use_cas = true;                         // false with -C
    Protocol binding_protocol = Protocol::Auto;  // -B (auto|ascii|binary)
    bool shutdown_enabled = false;               // -A
    bool flush_enabled = true;                   // -F disables flush_all
    int verbose = 0;                             // -v -vv -vvv
    char prefix_delimiter = ':';                 // -D (stats detail prefixes)
    bool detail_enabled = false;                 // -D turns stats detail on
    // Process
    bool daemonize = false;           // -d
    std::string username;             // -u
    std::string pid_file;             // -P
    bool maxcore = false;             // -r: raise core file limit
    bool large_memory_pages = false;  // -L
    // -o suboptions
    unsigned hashpower_init = 0;    // -o hashpower=N (0 = default)
    bool lru_crawler = true;        // -o no_lru_crawler turns off
    unsigned idle_timeout = 0;      // -o idle_timeout=N
    // -o io_engine=uring|epoll: the workers' network loop (doc/performance.md, io_uring).
    // uring (the default: it measures better) falls back to epoll, with one log line, where
    // the kernel refuses io_uring.
    enum class IoEngine : uint8_t { Epoll, Uring };
    IoEngine io_engine = IoEngine::Uring;
    size_t read_buf_mem_limit = 0;  // -o read_buf_mem_limit (given in MB, kept in bytes;
                                    // accepted and shown, not enforced)
    unsigned tail_repair_time = 0;
    bool hash_algorithm_default = true;  // -o hash_algorithm=... (accepted names only)
    bool lru_maintainer = true;          // -o no_lru_maintainer
    bool maxconns_fast = true;           // -o maxconns_fast / no_maxconns_fast
    unsigned slab_chunk_max = 0;         // -o slab_chunk_max (accepted, stats only); after
                                         // parsing: the effective value (default 524288)
    bool modern = true;
    std::string hash_algorithm = "murmur3";  // -o hash_algorithm: the name given (memcached's
                                             // default murmur3; the store always uses xxh3)
    bool hash_expand = true;                 // false with -o no_hashexpand
    unsigned lru_crawler_sleep = 100;        // -o lru_crawler_sleep: microseconds between items
    unsigned lru_crawler_tocrawl = 0;        // -o lru_crawler_tocrawl: items per pass, 0 = all
    bool slab_reassign = true;               // -o slab_reassign / no_slab_reassign (stats only)
    int slab_automove = 1;                   // -o slab_automove[=0..2] / no_slab_automove
    // -o watcher_logbuf_size / worker_logbuf_size (KB on the command line, as memcached):
    // what a watcher may have waiting; the worker figure is shown only (no per-worker
    // buffers here: lines go to the watchers' buffers directly).
    uint32_t watcher_logbuf_bytes = 256 * 1024;
    uint32_t worker_logbuf_bytes = 64 * 1024;
    unsigned slab_automove_window = 30;      // -o slab_automove_window (>2; stats only)
    bool temp_lru = false;                   // set by -o temporary_ttl (stats only: one LRU)
    unsigned temporary_ttl = 61;             // -o temporary_ttl (stats only)
    bool dump_enabled = true;                // false with -X: stats cachedump, lru_crawler metadump refused
    bool watch_enabled = true;               // false with -W: watch refused

    // Managed mode (doc/managed.md): on when node_id is given; needs the secret file.
    std::string node_id;              // -o node_id=NAME
    std::string cluster_secret_file;  // -o cluster_secret_file=PATH
    std::string cluster_secret;       // its contents (read at startup, trailing newline cut)
    tls::PeerTlsConfig peer_tls;      // -o peer_tls_cert/_key/_ca: peer links over TLS
    unsigned buckets = 1024;          // -o buckets=N
    bool bucket_forward = true;       // -o bucket_forward=0 answers NOT_MY_BUCKET instead
    unsigned forward_park_ms = 200;  // -o forward_park_ms: how long a request whose owner
                                      // is unreachable or unknown waits for a new map
    bool managed() const noexcept { return !node_id.empty(); }
    // Replication (doc/replication.md).
    using ReplAck = repl::AckMode;
    ReplAck repl_ack = ReplAck::None;  // -o repl_ack=none|delete|all
    unsigned repl_ack_timeout_ms = 500;  // -o repl_ack_timeout: longest wait for an ack
    size_t repl_backlog = 64 * 1024 * 1024;  // -o repl_backlog_mb: all buckets' backlogs
    unsigned repl_hint_rate = 20000;  // -o repl_hint_rate: read hints a second per link (0: off)
    unsigned repl_hint_ms = 200;      // -o repl_hint_ms: how often they are shipped

    // TLS for clients (-Z and -o ssl_*, as memcached 1.6; doc/protocol.md, TLS).
    bool ssl_enabled = false;              // -Z: TCP listeners speak TLS (not those "notls:")
    tls::ServerTlsConfig ssl;              // -o ssl_chain_cert, ssl_key, ... (the context)
    size_t ssl_wbuf_size = 16 * 1024;      // -o ssl_wbuf_size (KB on the command line)

    // Debug build only: enables the `debug` command (time travel, fault points).
    bool debug_commands = false;
};

// What parse_command_line decided.
enum class ParseOutcome : uint8_t {
    Run,        // start the server with the settings
    ExitOk,     // -h or -V printed what was asked; exit 0
    ExitError,  // a message was printed to stderr; exit with a non-zero code
};

// Parse argv into *out as memcached 1.6 does. Prints usage/version/errors itself (stdout for
// -h/-V, stderr for errors). Never exits the process.
ParseOutcome parse_command_line(int argc, char** argv, Settings* out);

// The -h text, memcached's format ("-p, --port=<num>      TCP port to listen on ...").
std::string usage_text();

}  // namespace mcm::server
