// memcached 1.6.18's command line: the same short and long options (getopt_long), the same -o
// suboption names, the same validation and messages. Options memcached has that this server does
// not offer are refused by name, never silently ignored. One table drives parsing and -h for the
// options, another for the suboptions. Startup code: prints, may throw inside, never exits.
#include "server/settings.h"

#include <getopt.h>

#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string_view>

#if __has_include("config.h")
#include "config.h"
#include "replication/auth.h"
#include "replication/bucket_map.h"
#endif

namespace mcm::server {

namespace {

#if defined(VERSION_STRING)
constexpr const char* kVersion = VERSION_STRING;
#elif defined(PACKAGE_VERSION)
constexpr const char* kVersion = PACKAGE_VERSION;
#else
constexpr const char* kVersion = "1.6.18";
#endif

constexpr size_t kItemSizeMin = 1024;
constexpr size_t kItemSizeLimit = 1024 * 1024 * 1024;
constexpr size_t kSlabPageSize = 1024 * 1024;  // memcached's slab_page_size, fixed at 1 MB
constexpr size_t kMegabyte = 1024 * 1024;
constexpr int kHighThreadCount = 64;
constexpr int kHashPowerMin = 12;
constexpr int kHashPowerMax = 32;
constexpr int kTailRepairMin = 10;
constexpr int kCrawlerSleepMax = 1000000;
constexpr int kPortMax = 65535;
constexpr size_t kHelpColumn = 26;  // where help text starts, as in memcached -h

// Thrown after the reason was printed; parse_command_line turns it into ExitError.
struct Refused {};

[[noreturn]] __attribute__((format(printf, 1, 2))) void refuse(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    throw Refused{};
}

__attribute__((format(printf, 1, 2))) void warn(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("WARNING: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

// Everything the handlers share while one command line is parsed.
struct ParseState {
    Settings& s;
    bool chunk_max_given = false;  // -o slab_chunk_max was given
    bool tcp_port_given = false;   // -p
    bool udp_port_given = false;   // -U
    size_t chunk_max = kSlabPageSize / 2;
    ParseOutcome stop = ParseOutcome::Run;  // ExitOk once -h or -V has printed
};

// memcached reads most numbers with atoi(): blanks, a sign, digits, and whatever follows is
// dropped ("64m" is 64, "abc" is 0). Read them the same way, so a command line memcached accepts
// means the same here, but say on stderr what was dropped, and refuse what does not fit an int.
int read_int(const char* what, const char* text, int base = 10) {
    errno = 0;
    char* end = nullptr;
    long long v = strtoll(text, &end, base);
    if (errno == ERANGE || v < INT_MIN || v > INT_MAX) {
        refuse("Number out of range for %s: \"%s\"", what, text);
    }
    if (end == text || *end != '\0') {
        warn("%s \"%s\" is read as %lld%s", what, text, v, base == 8 ? " (octal)" : "");
    }
    return static_cast<int>(v);
}

// memcached's safe_strtoul/safe_strtol: the whole value is a number (trailing blanks allowed).
bool read_strict(const char* text, bool allow_negative, long long lo, long long hi,
                 long long* out) {
    if (!allow_negative && strchr(text, '-') != nullptr) return false;
    errno = 0;
    char* end = nullptr;
    long long v = strtoll(text, &end, 10);
    if (errno == ERANGE || end == text) return false;
    while (*end == ' ' || *end == '\t' || *end == '\n') ++end;
    if (*end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// ---- options -----------------------------------------------------------------------------------

void set_listen(ParseState& st, const char* arg) {
    std::string_view all(arg);
    bool any = false;
    while (!all.empty()) {
        size_t comma = all.find(',');
        std::string_view one = all.substr(0, comma);
        all = comma == std::string_view::npos ? std::string_view() : all.substr(comma + 1);
        if (one.empty()) continue;
        any = true;
        bool seen = false;
        for (const std::string& l : st.s.listen) seen = seen || l == one;
        if (!seen) st.s.listen.emplace_back(one);
    }
    if (!any) refuse("-l needs an address to listen on");
}

void set_protocol(ParseState& st, const char* arg) {
    if (strcmp(arg, "auto") == 0) {
        st.s.binding_protocol = Protocol::Auto;
    } else if (strcmp(arg, "ascii") == 0) {
        st.s.binding_protocol = Protocol::Ascii;
    } else if (strcmp(arg, "binary") == 0) {
        st.s.binding_protocol = Protocol::Binary;
    } else {
        refuse(
            "Invalid value for binding protocol: %s\n -- should be one of auto, binary, or ascii",
            arg);
    }
}

// -I: memcached strips one k/m suffix (either case) and reads the rest with atoi.
void set_item_size(ParseState& st, const char* arg) {
    std::string digits(arg);
    size_t unit = 1;
    char last = digits.empty() ? '\0' : digits.back();
    if (last == 'k' || last == 'K') unit = 1024;
    if (last == 'm' || last == 'M') unit = kMegabyte;
    if (unit != 1) digits.pop_back();
    long long v = read_int("-I", digits.c_str());
    st.s.item_size_max = v < 0 ? 0 : static_cast<size_t>(v) * unit;
}

void set_memory(ParseState& st, const char* arg) {
    int mb = read_int("-m", arg);
    if (mb < 0) refuse("Memory limit cannot be negative: -m %s", arg);
    st.s.max_bytes = static_cast<size_t>(mb) * kMegabyte;
}

void set_udp_port(ParseState& st, const char* arg) {
    st.s.udp_port = read_int("-U", arg);  // -1: a port the kernel picks, as with -p -1
    st.udp_port_given = true;
}

void set_threads(ParseState& st, const char* arg) {
    st.s.num_threads = read_int("-t", arg);
    if (st.s.num_threads <= 0) refuse("Number of threads must be greater than 0");
    if (st.s.num_threads > kHighThreadCount) {
        fprintf(stderr,
                "WARNING: Setting a high number of workerthreads is not recommended.\n"
                " Set this value to the number of cores in your machine or less.\n");
    }
}

void set_factor(ParseState& st, const char* arg) {
    char* end = nullptr;
    double f = strtod(arg, &end);  // memcached: atof
    if (end == arg || *end != '\0') warn("-f \"%s\" is read as %g", arg, end == arg ? 0.0 : f);
    if (end == arg || !std::isfinite(f) || f <= 1.0) refuse("Factor must be greater than 1");
    st.s.factor = f;
}

void set_delimiter(ParseState& st, const char* arg) {
    if (arg[0] == '\0') refuse("No delimiter specified");
    if (arg[1] != '\0') warn("-D \"%s\": only the first character is used", arg);
    st.s.prefix_delimiter = arg[0];
    st.s.detail_enabled = true;
}

void set_verbose(ParseState& st, const char* arg) {
    if (arg == nullptr) {  // -v, --verbose
        ++st.s.verbose;
        return;
    }
    long long level = 0;  // --verbose=N: N levels at once
    if (!read_strict(arg, false, 0, 16, &level)) {
        refuse("--verbose=%s: the level must be a number from 0 to 16", arg);
    }
    st.s.verbose += static_cast<int>(level);
}

void print_usage(ParseState& st, const char*) {
    std::string text = usage_text();
    fputs(text.c_str(), stdout);
    fflush(stdout);
    st.stop = ParseOutcome::ExitOk;
}

void print_version(ParseState& st, const char*) {
    printf("memcached %s\n", kVersion);
    fflush(stdout);
    st.stop = ParseOutcome::ExitOk;
}

void parse_suboptions(ParseState& st, const char* arg);

enum class Arg : uint8_t {
    None,
    Required,
    Optional,  // only in the long form (--verbose=2); the short form takes none (-vvv)
};

// One row per option of memcached 1.6.18, in its -h order. `help_flags` null: not listed by -h.
// `refusal` set: the option exists in memcached but is refused here with that reason.
struct OptionSpec {
    char letter;            // 0: a help-only line (-vv, -vvv)
    const char* long_name;  // nullptr: short form only
    Arg arg;
    const char* help_flags;
    const char* help;  // '\n' starts a continuation line
    void (*apply)(ParseState&, const char*);
    const char* refusal;
};

const OptionSpec kOptions[] = {
    {'p', "port", Arg::Required, "-p, --port=<num>",
     "TCP port to listen on (default: 11211); 0 turns TCP off,\n-1 lets the kernel pick one",
     [](ParseState& st, const char* a) {
         st.s.port = read_int("-p", a);
         st.tcp_port_given = true;
     },
     nullptr},
    {'U', "udp-port", Arg::Required, "-U, --udp-port=<num>",
     "UDP port to listen on (default: 0, off)", set_udp_port, nullptr},
    {'s', "unix-socket", Arg::Required, "-s, --unix-socket=<file>",
     "listen on this UNIX socket only (no TCP, no UDP)",
     [](ParseState& st, const char* a) { st.s.socket_path = a; }, nullptr},
    {'a', "unix-mask", Arg::Required, "-a, --unix-mask=<mask>",
     "permissions of the UNIX socket, in octal (default: 700)",
     [](ParseState& st, const char* a) { st.s.access_mask = read_int("-a", a, 8); }, nullptr},
    {'A', "enable-shutdown", Arg::None, "-A, --enable-shutdown",
     "allow the ascii \"shutdown\" command",
     [](ParseState& st, const char*) { st.s.shutdown_enabled = true; }, nullptr},
    {'Z', "enable-ssl", Arg::None, "-Z, --enable-ssl",
     "enable TLS/SSL on the TCP listeners (-o ssl_*); \"-l notls:<addr>\"\nkeeps one plain",
     [](ParseState& st, const char*) { st.s.ssl_enabled = true; }, nullptr},
    {'l', "listen", Arg::Required, "-l, --listen=<addr>",
     "address to listen on (default: INADDR_ANY, every interface);\nrepeat -l or separate "
     "addresses with commas; <addr>:<port> works too",
     set_listen, nullptr},
    {'d', "daemon", Arg::None, "-d, --daemon", "detach and run in the background",
     [](ParseState& st, const char*) { st.s.daemonize = true; }, nullptr},
    {'r', "enable-coredumps", Arg::None, "-r, --enable-coredumps",
     "raise the core file size limit as far as allowed",
     [](ParseState& st, const char*) { st.s.maxcore = true; }, nullptr},
    {'u', "user", Arg::Required, "-u, --user=<user>", "run as <user> (needed when started as root)",
     [](ParseState& st, const char* a) { st.s.username = a; }, nullptr},
    {'m', "memory-limit", Arg::Required, "-m, --memory-limit=<num>",
     "memory for items, in megabytes (default: 64)", set_memory, nullptr},
    {'M', "disable-evictions", Arg::None, "-M, --disable-evictions",
     "answer an error when memory is full instead of evicting",
     [](ParseState& st, const char*) { st.s.evict_to_free = false; }, nullptr},
    {'c', "conn-limit", Arg::Required, "-c, --conn-limit=<num>",
     "most connections open at once (default: 1024)",
     [](ParseState& st, const char* a) {
         st.s.max_conns = read_int("-c", a);
         if (st.s.max_conns <= 0) refuse("Maximum connections must be greater than 0");
     },
     nullptr},
    {'k', "lock-memory", Arg::None, "-k, --lock-memory", "lock all paged memory into RAM",
     [](ParseState& st, const char*) { st.s.lock_memory = true; }, nullptr},
    {'v', "verbose", Arg::Optional, "-v, --verbose",
     "verbose: errors and warnings from the event loop", set_verbose, nullptr},
    {0, nullptr, Arg::None, "-vv", "more verbose: client connections and commands too", nullptr,
     nullptr},
    {0, nullptr, Arg::None, "-vvv", "most verbose: internal state transitions too", nullptr,
     nullptr},
    {'h', "help", Arg::None, "-h, --help", "print this help and exit", print_usage, nullptr},
    {'i', "license", Arg::None, nullptr, nullptr, nullptr,
     "no license text is bundled with this server"},
    {'V', "version", Arg::None, "-V, --version", "print the version and exit", print_version,
     nullptr},
    {'P', "pidfile", Arg::Required, "-P, --pidfile=<file>",
     "write the process id to <file> (with -d)",
     [](ParseState& st, const char* a) { st.s.pid_file = a; }, nullptr},
    {'f', "slab-growth-factor", Arg::Required, "-f, --slab-growth-factor=<num>",
     "ratio between item size classes (default: 1.25)", set_factor, nullptr},
    {'n', "slab-min-size", Arg::Required, "-n, --slab-min-size=<bytes>",
     "smallest size class for key+value+flags (default: 48)",
     [](ParseState& st, const char* a) {
         st.s.chunk_size = read_int("-n", a);
         if (st.s.chunk_size <= 0) refuse("Chunk size must be greater than 0");
     },
     nullptr},
    {'L', "enable-largepages", Arg::None, "-L, --enable-largepages",
     "use large memory pages where the system offers them",
     [](ParseState& st, const char*) { st.s.large_memory_pages = true; },
     "large memory pages are not supported by this server"},
    {'D', nullptr, Arg::Required, "-D <char>",
     "the character between key prefix and id in per-prefix stats\n(default: \":\"); giving "
     "-D also turns \"stats detail\" on",
     set_delimiter, nullptr},
    {'t', "threads", Arg::Required, "-t, --threads=<num>", "worker threads (default: 4)",
     set_threads, nullptr},
    {'R', "max-reqs-per-event", Arg::Required, "-R, --max-reqs-per-event",
     "requests served for one connection before the others get a\nturn (default: 20)",
     [](ParseState& st, const char* a) {
         st.s.reqs_per_event = read_int("-R", a);
         if (st.s.reqs_per_event <= 0) {
             refuse("Number of requests per event must be greater than 0");
         }
     },
     nullptr},
    {'C', "disable-cas", Arg::None, "-C, --disable-cas", "turn CAS off",
     [](ParseState& st, const char*) { st.s.use_cas = false; }, nullptr},
    {'b', "listen-backlog", Arg::Required, "-b, --listen-backlog=<num>",
     "length of the queue of connections not yet accepted\n(default: 1024)",
     [](ParseState& st, const char* a) { st.s.backlog = read_int("-b", a); }, nullptr},
    {'B', "protocol", Arg::Required, "-B, --protocol=<name>",
     "protocol - one of ascii, binary, or auto (default: auto-negotiate)", set_protocol,
     nullptr},
    {'I', "max-item-size", Arg::Required, "-I, --max-item-size=<num>",
     "largest item, k or m suffix allowed (default: 1m, min: 1k,\nmax: 1024m, and at most "
     "half of -m)",
     set_item_size, nullptr},
    {'S', "enable-sasl", Arg::None, nullptr, nullptr, nullptr,
     "SASL authentication is not supported by this server"},
    {'F', "disable-flush-all", Arg::None, "-F, --disable-flush-all", "refuse the flush_all command",
     [](ParseState& st, const char*) { st.s.flush_enabled = false; }, nullptr},
    {'X', "disable-dumping", Arg::None, "-X, --disable-dumping",
     "disable stats cachedump and lru_crawler metadump",
     [](ParseState& st, const char*) { st.s.dump_enabled = false; }, nullptr},
    {'W', "disable-watch", Arg::None, "-W, --disable-watch",
     "disable watch commands (live logging)",
     [](ParseState& st, const char*) { st.s.watch_enabled = false; }, nullptr},
    {'Y', "auth-file", Arg::Required, nullptr, nullptr, nullptr,
     "ascii authentication files are not supported by this server"},
    {'e', "memory-file", Arg::Required, nullptr, nullptr, nullptr,
     "memory files (restartable cache) are not supported by this server"},
    {'o', "extended", Arg::Required, "-o, --extended",
     "comma separated list of extended options, most of which\nhave a no_ form that turns "
     "them off:",
     parse_suboptions, nullptr},
    {'N', "napi-ids", Arg::Required, nullptr, nullptr, nullptr,
     "NAPI ID based thread selection is not supported by this server"},
};

// ---- -o suboptions -----------------------------------------------------------------------------

// value is nullptr when the suboption came without "=...".
const char* need(const char* value, const char* missing) {
    if (value == nullptr) refuse("%s", missing);
    return value;
}

void sub_hashpower(ParseState& st, const char* value) {
    int v = read_int("hashpower", need(value, "Missing numeric argument for hashpower"));
    if (v < kHashPowerMin) refuse("Initial hashtable multiplier of %d is too low", v);
    if (v > kHashPowerMax) {
        refuse(
            "Initial hashtable multiplier of %d is too high\n"
            "Choose a value based on \"STAT hash_power_level\" from a running instance",
            v);
    }
    st.s.hashpower_init = static_cast<unsigned>(v);
}

void sub_slab_automove(ParseState& st, const char* value) {
    int v = value == nullptr ? 1 : read_int("slab_automove", value);
    if (v < 0 || v > 2) refuse("slab_automove must be between 0 and 2");
    st.s.slab_automove = v;
}

void sub_tail_repair_time(ParseState& st, const char* value) {
    int v =
        read_int("tail_repair_time", need(value, "Missing numeric argument for tail_repair_time"));
    if (v < kTailRepairMin) refuse("Cannot set tail_repair_time to less than 10 seconds");
    st.s.tail_repair_time = static_cast<unsigned>(v);
}

void sub_hash_algorithm(ParseState& st, const char* value) {
    need(value, "Missing hash_algorithm argument");
    if (strcmp(value, "jenkins") != 0 && strcmp(value, "murmur3") != 0 &&
        strcmp(value, "xxh3") != 0) {
        refuse("Unknown hash_algorithm option (jenkins, murmur3, xxh3)");
    }
    st.s.hash_algorithm = value;
    st.s.hash_algorithm_default = false;
}

void sub_lru_crawler_sleep(ParseState& st, const char* value) {
    int v = read_int("lru_crawler_sleep", need(value, "Missing lru_crawler_sleep value"));
    if (v < 0 || v > kCrawlerSleepMax) refuse("LRU crawler sleep must be between 0 and 1 second");
    st.s.lru_crawler_sleep = static_cast<unsigned>(v);
}

void sub_lru_crawler_tocrawl(ParseState& st, const char* value) {
    long long v = 0;
    if (!read_strict(need(value, "Missing lru_crawler_tocrawl value"), false, 0, UINT32_MAX, &v)) {
        refuse("lru_crawler_tocrawl takes a numeric 32bit value");
    }
    st.s.lru_crawler_tocrawl = static_cast<unsigned>(v);
}

void sub_idle_timeout(ParseState& st, const char* value) {
    int v = read_int("idle_timeout", need(value, "Missing numeric argument for idle_timeout"));
    if (v < 0) refuse("idle_timeout cannot be negative: %d", v);
    st.s.idle_timeout = static_cast<unsigned>(v);
}

// ---- managed mode ----

void sub_node_id(ParseState& st, const char* value) {
    std::string id = need(value, "Missing node_id value");
    if (id.empty() || id.size() > 64) refuse("node_id must be 1 to 64 characters");
    if (!repl::valid_node_name(id)) {
        refuse("node_id may only hold letters, digits, '-', '_' and '.': %s", id.c_str());
    }
    st.s.node_id = id;
}

void sub_cluster_secret_file(ParseState& st, const char* value) {
    st.s.cluster_secret_file = need(value, "Missing cluster_secret_file path");
}

void sub_peer_tls_cert(ParseState& st, const char* value) {
    st.s.peer_tls.cert_file = need(value, "Missing peer_tls_cert path");
}

void sub_peer_tls_key(ParseState& st, const char* value) {
    st.s.peer_tls.key_file = need(value, "Missing peer_tls_key path");
}

void sub_peer_tls_ca(ParseState& st, const char* value) {
    st.s.peer_tls.ca_file = need(value, "Missing peer_tls_ca path");
}

void sub_buckets(ParseState& st, const char* value) {
    int v = read_int("buckets", need(value, "Missing numeric argument for buckets"));
    if (v < 1 || v > 65536) refuse("buckets must be from 1 to 65536: %d", v);
    st.s.buckets = static_cast<unsigned>(v);
}

void sub_bucket_forward(ParseState& st, const char* value) {
    int v = read_int("bucket_forward", need(value, "Missing bucket_forward value (0 or 1)"));
    if (v != 0 && v != 1) refuse("bucket_forward must be 0 or 1");
    st.s.bucket_forward = v == 1;
}

void sub_io_engine(ParseState& st, const char* value) {
    std::string_view v = need(value, "Missing argument for io_engine");
    if (v == "epoll") {
        st.s.io_engine = Settings::IoEngine::Epoll;
    } else if (v == "uring" || v == "io_uring") {
        st.s.io_engine = Settings::IoEngine::Uring;
    } else {
        refuse("io_engine must be epoll or uring: %s", value);
    }
}

void sub_forward_park_ms(ParseState& st, const char* value) {
    int v = read_int("forward_park_ms", need(value, "Missing forward_park_ms value"));
    if (v < 0 || v > 60000) refuse("forward_park_ms must be from 0 to 60000: %d", v);
    st.s.forward_park_ms = static_cast<unsigned>(v);
}

void sub_repl_ack(ParseState& st, const char* value) {
    std::string v = need(value, "Missing repl_ack value (none, delete or all)");
    if (v == "none") {
        st.s.repl_ack = Settings::ReplAck::None;
    } else if (v == "delete") {
        st.s.repl_ack = Settings::ReplAck::Delete;
    } else if (v == "all") {
        st.s.repl_ack = Settings::ReplAck::All;
    } else {
        refuse("repl_ack must be none, delete or all: %s", v.c_str());
    }
}

void sub_repl_ack_timeout(ParseState& st, const char* value) {
    int v = read_int("repl_ack_timeout", need(value, "Missing repl_ack_timeout value"));
    if (v < 1 || v > 60000) refuse("repl_ack_timeout must be from 1 to 60000 ms: %d", v);
    st.s.repl_ack_timeout_ms = static_cast<unsigned>(v);
}

void sub_repl_backlog_mb(ParseState& st, const char* value) {
    int v = read_int("repl_backlog_mb", need(value, "Missing repl_backlog_mb value"));
    if (v < 1 || v > 65536) refuse("repl_backlog_mb must be from 1 to 65536: %d", v);
    st.s.repl_backlog = static_cast<size_t>(v) * 1024 * 1024;
}

void sub_repl_hint_rate(ParseState& st, const char* value) {
    int v = read_int("repl_hint_rate", need(value, "Missing repl_hint_rate value"));
    if (v < 0 || v > 10000000) refuse("repl_hint_rate must be from 0 to 10000000: %d", v);
    st.s.repl_hint_rate = static_cast<unsigned>(v);
}

void sub_repl_hint_ms(ParseState& st, const char* value) {
    int v = read_int("repl_hint_ms", need(value, "Missing repl_hint_ms value"));
    if (v < 10 || v > 10000) refuse("repl_hint_ms must be from 10 to 10000: %d", v);
    st.s.repl_hint_ms = static_cast<unsigned>(v);
}

void sub_slab_chunk_max(ParseState& st, const char* value) {
    long long v = 0;
    if (!read_strict(need(value, "Missing slab_chunk_max argument"), true, INT_MIN, INT_MAX, &v)) {
        refuse("could not parse argument to slab_chunk_max");
    }
    if (v <= 0) refuse("slab_chunk_max must be greater than 0 (bytes)");
    st.chunk_max = static_cast<size_t>(v);
    st.chunk_max_given = true;
}

void sub_read_buf_mem_limit(ParseState& st, const char* value) {
    long long v = 0;
    if (!read_strict(need(value, "Missing read_buf_mem_limit argument"), false, 0, UINT32_MAX,
                     &v)) {
        refuse("could not parse argument to read_buf_mem_limit");
    }
    st.s.read_buf_mem_limit = static_cast<size_t>(v) * 1024 * 1024;  // megabytes
}

// memcached reads these two with atoi(): a non-number is 0.
void sub_slab_automove_window(ParseState& st, const char* value) {
    int v = std::atoi(need(value, "Missing slab_automove_window argument"));
    if (v < 3) refuse("slab_automove_window must be > 2");
    st.s.slab_automove_window = static_cast<unsigned>(v);
}

// memcached's checks: an unsigned number of kilobytes.
uint32_t logbuf_kb(const char* value, const char* name) {
    const std::string n(name);
    const char* v = need(value, ("Missing " + n + " argument").c_str());
    char* end = nullptr;
    errno = 0;
    unsigned long kb = std::strtoul(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || kb > UINT32_MAX / 1024) {
        refuse("could not parse argument to %s", name);
    }
    return static_cast<uint32_t>(kb * 1024);
}

void sub_watcher_logbuf_size(ParseState& st, const char* value) {
    st.s.watcher_logbuf_bytes = logbuf_kb(value, "watcher_logbuf_size");
}

void sub_worker_logbuf_size(ParseState& st, const char* value) {
    st.s.worker_logbuf_bytes = logbuf_kb(value, "worker_logbuf_size");
}

void sub_temporary_ttl(ParseState& st, const char* value) {
    st.s.temporary_ttl = static_cast<unsigned>(std::atoi(need(value, "Missing temporary_ttl argument")));
    st.s.temp_lru = true;
}

// ---- TLS (memcached's -o ssl_* words and checks) ----

void sub_ssl_path(const char* value, const char* name, std::string* to) {
    *to = need(value, (std::string("Missing ") + name + " argument").c_str());
}

// memcached's safe_strtoul: the whole value an unsigned number.
unsigned long ssl_number(const char* value, const char* name) {
    const char* v = need(value, (std::string("Missing ") + name + " argument").c_str());
    long long n = 0;
    if (!read_strict(v, false, 0, UINT32_MAX, &n)) refuse("could not parse argument to %s", name);
    return static_cast<unsigned long>(n);
}

void sub_ssl_verify_mode(ParseState& st, const char* value) {
    unsigned long v = ssl_number(value, "ssl_verify_mode");
    if (v > static_cast<unsigned long>(tls::kVerifyModeMax)) {
        refuse("Invalid ssl_verify_mode. Use help to see valid options.");
    }
    st.s.ssl.verify_mode = static_cast<int>(v);
}

void sub_ssl_min_version(ParseState& st, const char* value) {
    unsigned long v = ssl_number(value, "ssl_min_version");
    if (v > static_cast<unsigned long>(tls::kMinVersionMax)) {
        refuse("Invalid ssl_min_version. Use help to see valid options.");
    }
    st.s.ssl.min_version = static_cast<int>(v);
}

void sub_ssl_keyformat(ParseState& st, const char* value) {
    st.s.ssl.keyformat = static_cast<int>(ssl_number(value, "ssl_keyformat"));
}

void sub_ssl_wbuf_size(ParseState& st, const char* value) {
    unsigned long kb = ssl_number(value, "ssl_wbuf_size");
    if (kb == 0 || kb > 1024 * 1024) refuse("could not parse argument to ssl_wbuf_size");
    st.s.ssl_wbuf_size = kb * 1024;
}

// memcached's 1.4-era defaults.
void sub_no_modern(ParseState& st, const char*) {
    if (!st.chunk_max_given) st.chunk_max = kSlabPageSize;
    st.s.slab_reassign = false;
    st.s.slab_automove = 0;
    st.s.maxconns_fast = false;
    st.s.lru_maintainer = false;
    st.s.lru_crawler = false;
    st.s.hash_algorithm = "jenkins";
    st.s.hash_algorithm_default = false;
    st.s.modern = false;
}

constexpr const char* kNoSegmentedLru =
    "the segmented LRU (hot/warm/cold/temp) is not part of this server";
constexpr const char* kNoSlabs = "slab tuning has nothing to act on here: memory is not in slabs";

// One row per suboption memcached 1.6.18 knows (an unknown name gets memcached's own message).
// `help` null: accepted or refused without a line in -h. `refusal` set: refused with that reason.
struct SuboptionSpec {
    const char* name;
    const char* help;
    void (*apply)(ParseState&, const char* value);
    const char* refusal;
};

constexpr const char* kNotYet = "not implemented by this server yet";

const SuboptionSpec kSuboptions[] = {
    {"maxconns_fast",
     "over the -c limit, answer an error and close new connections\nat once (default: on)",
     [](ParseState& st, const char*) { st.s.maxconns_fast = true; }, nullptr},
    {"no_maxconns_fast", nullptr, [](ParseState& st, const char*) { st.s.maxconns_fast = false; },
     nullptr},
    {"hashpower",
     "initial hash table size as a power of 2, from 12 to 32 (default:\ngrow as needed); see "
     "\"STAT hash_power_level\"",
     sub_hashpower, nullptr},
    {"no_hashexpand", "never grow the hash table",
     [](ParseState& st, const char*) { st.s.hash_expand = false; }, nullptr},
    {"tail_repair_time", "seconds, at least 10; accepted, nothing to repair here",
     sub_tail_repair_time, kNotYet},
    {"hash_algorithm", "jenkins, murmur3 or xxh3; accepted names, the table always uses\nxxh3",
     sub_hash_algorithm, nullptr},
    {"lru_crawler", nullptr, [](ParseState& st, const char*) { st.s.lru_crawler = true; }, nullptr},
    {"no_lru_crawler", "stop the background reclaimer of expired items",
     [](ParseState& st, const char*) { st.s.lru_crawler = false; }, nullptr},
    {"lru_crawler_sleep", "microseconds the reclaimer rests between items (default: 100)",
     sub_lru_crawler_sleep, kNotYet},
    {"lru_crawler_tocrawl", "items the reclaimer checks per pass, 0 for all (default: 0)",
     sub_lru_crawler_tocrawl, kNotYet},
    {"read_buf_mem_limit",
     "megabytes for connection buffers; accepted and shown in stats\nsettings, not enforced (default: 0)",
     sub_read_buf_mem_limit, nullptr},
    {"lru_maintainer", nullptr, [](ParseState& st, const char*) { st.s.lru_maintainer = true; },
     nullptr},
    {"no_lru_maintainer", "accepted: there is no segmented LRU to maintain here",
     [](ParseState& st, const char*) { st.s.lru_maintainer = false; }, nullptr},
    {"idle_timeout", "close connections idle this many seconds, 0 for never (default: 0)",
     sub_idle_timeout, nullptr},
    {"io_engine",
     "the workers' network loop: uring (io_uring, default; falls back to\nepoll where the kernel "
     "refuses it) or epoll (libevent)",
     sub_io_engine, nullptr},
    {"node_id", "managed mode: this server's name in the cluster map (doc/managed.md)",
     sub_node_id, nullptr},
    {"cluster_secret_file", "managed mode: file holding the secret that control commands\nprove",
     sub_cluster_secret_file, nullptr},
    {"peer_tls_cert",
     "managed mode: this server's certificate (PEM); with peer_tls_key and\npeer_tls_ca, peer "
     "links run over TLS, verified both ways",
     sub_peer_tls_cert, nullptr},
    {"peer_tls_key", "managed mode: the private key of peer_tls_cert (PEM)", sub_peer_tls_key,
     nullptr},
    {"peer_tls_ca", "managed mode: the cluster's CA (PEM) every peer's certificate must\nchain to",
     sub_peer_tls_ca, nullptr},
    {"buckets", "managed mode: number of buckets (default: 1024)", sub_buckets, nullptr},
    {"bucket_forward",
     "managed mode: 1 forwards a request for another server's bucket\n(default), 0 answers "
     "NOT_MY_BUCKET",
     sub_bucket_forward, nullptr},
    {"forward_park_ms",
     "managed mode: how long a request whose owner is unreachable or\nunknown waits for a new "
     "map, in ms (default: 200; 0: fail at once)",
     sub_forward_park_ms, nullptr},
    {"repl_ack",
     "managed mode: none (default), delete or all: which writes wait for\none replica's "
     "acknowledgement before the reply",
     sub_repl_ack, nullptr},
    {"repl_ack_timeout", "managed mode: longest wait for that acknowledgement, in ms\n(default: 500)",
     sub_repl_ack_timeout, nullptr},
    {"repl_backlog_mb", "managed mode: memory for replication backlogs, all buckets\n(default: 64)",
     sub_repl_backlog_mb, nullptr},
    {"repl_hint_rate",
     "managed mode: read hints a second per replication link, telling\nreplicas which keys are "
     "read (default: 20000; 0: off)",
     sub_repl_hint_rate, nullptr},
    {"repl_hint_ms", "managed mode: how often read hints are sent, in ms (default: 200)",
     sub_repl_hint_ms, nullptr},
    {"slab_chunk_max", "largest chunk in bytes (default: 524288); -I must be a multiple\nof it",
     sub_slab_chunk_max, nullptr},
    {"no_chunked_items", nullptr, [](ParseState& st, const char*) { st.chunk_max = kSlabPageSize; },
     nullptr},
    {"slab_reassign", "accepted: memory is not divided into slabs",
     [](ParseState& st, const char*) { st.s.slab_reassign = true; }, nullptr},
    {"no_slab_reassign", nullptr, [](ParseState& st, const char*) { st.s.slab_reassign = false; },
     nullptr},
    {"slab_automove", "0, 1 or 2; accepted: memory is not divided into slabs", sub_slab_automove,
     nullptr},
    {"no_slab_automove", nullptr, [](ParseState& st, const char*) { st.s.slab_automove = 0; },
     nullptr},
    {"modern", "today's defaults (nothing to change)",
     [](ParseState& st, const char*) { st.s.modern = true; }, nullptr},
    {"no_modern", "1.4-era defaults: no reclaimer, no maxconns_fast, jenkins", sub_no_modern,
     nullptr},
    {"ssl_chain_cert", "certificate chain file in PEM format",
     [](ParseState& st, const char* v) { sub_ssl_path(v, "ssl_chain_cert", &st.s.ssl.chain_cert); },
     nullptr},
    {"ssl_key", "private key, if not part of the -ssl_chain_cert",
     [](ParseState& st, const char* v) { sub_ssl_path(v, "ssl_key", &st.s.ssl.key); }, nullptr},
    {"ssl_keyformat", "private key format (1 PEM, 2 DER) (default: 1, PEM)", sub_ssl_keyformat,
     nullptr},
    {"ssl_verify_mode",
     "client certificate verification: 0 none (default), 1 request,\n2 require, 3 once",
     sub_ssl_verify_mode, nullptr},
    {"ssl_ciphers", "cipher list (OpenSSL's syntax, TLS 1.2 and below)",
     [](ParseState& st, const char* v) { sub_ssl_path(v, "ssl_ciphers", &st.s.ssl.ciphers); },
     nullptr},
    {"ssl_ca_cert", "PEM file of the CAs client certificates are checked against",
     [](ParseState& st, const char* v) { sub_ssl_path(v, "ssl_ca_cert", &st.s.ssl.ca_cert); },
     nullptr},
    {"ssl_wbuf_size", "kilobytes of each TLS connection's write buffer (default: 16)",
     sub_ssl_wbuf_size, nullptr},
    {"ssl_session_cache", "server-side TLS session cache (resumption)",
     [](ParseState& st, const char*) { st.s.ssl.session_cache = true; }, nullptr},
    {"ssl_kernel_tls", "kernel TLS offload where OpenSSL and the kernel offer it",
     [](ParseState& st, const char*) { st.s.ssl.kernel_tls = true; }, nullptr},
    {"ssl_min_version",
     "oldest protocol accepted: 0 TLSv1.0, 1 TLSv1.1, 2 TLSv1.2 (default),\n3 TLSv1.3",
     sub_ssl_min_version, nullptr},
    {"inline_ascii_resp", nullptr, [](ParseState&, const char*) {}, nullptr},  // no-op in 1.6
    {"no_inline_ascii_resp", nullptr, [](ParseState&, const char*) {}, nullptr},
    {"resp_obj_mem_limit", nullptr,
     [](ParseState&, const char*) {
         fprintf(stderr,
                 "DEPRECATED: resp_obj_mem_limit no longer used. See read_buf_mem_limit,\n");
     },
     nullptr},
    {"no_drop_privileges", nullptr, [](ParseState&, const char*) {}, nullptr},  // none dropped
    // memcached-debug builds take it (memcached's test harness always passes it); nothing is
    // dropped here, so it changes nothing.
    {"relaxed_privileges", nullptr, [](ParseState&, const char*) {}, nullptr},
    {"drop_privileges", nullptr, nullptr,
     "dropping privileges with seccomp is not implemented by this server"},
    {"hot_lru_pct", nullptr, nullptr, kNoSegmentedLru},
    {"warm_lru_pct", nullptr, nullptr, kNoSegmentedLru},
    {"hot_max_factor", nullptr, nullptr, kNoSegmentedLru},
    {"warm_max_factor", nullptr, nullptr, kNoSegmentedLru},
    // Accepted for memcached's command lines; there is one LRU per class, so no TTL gets a
    // separate one, but the value is shown in stats settings as memcached shows it.
    {"temporary_ttl", nullptr, sub_temporary_ttl, nullptr},
    {"slab_automove_ratio", nullptr, nullptr, kNoSlabs},
    {"slab_automove_window", nullptr, sub_slab_automove_window, nullptr},  // stats only
    {"slab_sizes", nullptr, nullptr, kNoSlabs},
    {"track_sizes", nullptr, nullptr, "\"stats sizes\" is not offered by this server"},
    {"watcher_logbuf_size", nullptr, sub_watcher_logbuf_size, nullptr},
    {"worker_logbuf_size", nullptr, sub_worker_logbuf_size, nullptr},
    {"sock_cookie_id", nullptr, nullptr, "socket marks (SO_MARK) are not supported by this server"},
    {"slab_automove_freeratio", nullptr, nullptr, "extstore is not supported by this server"},
};

// Whole families refused by prefix.
struct RefusedFamily {
    const char* prefix;
    const char* refusal;
};

const RefusedFamily kRefusedFamilies[] = {
    {"ext_", "extstore is not supported by this server"},
    {"proxy_", "the proxy is not supported by this server"},
};

void apply_suboption(ParseState& st, std::string_view item) {
    size_t eq = item.find('=');
    std::string name(item.substr(0, eq));
    std::string value_buf;
    const char* value = nullptr;
    if (eq != std::string_view::npos) {
        value_buf = std::string(item.substr(eq + 1));
        value = value_buf.c_str();
    }
    for (const SuboptionSpec& sub : kSuboptions) {
        if (name != sub.name) continue;
        if (sub.refusal != nullptr) refuse("-o %s: %s", sub.name, sub.refusal);
        sub.apply(st, value);
        return;
    }
    for (const RefusedFamily& f : kRefusedFamilies) {
        if (name.rfind(f.prefix, 0) == 0) refuse("-o %s: %s", name.c_str(), f.refusal);
    }
    refuse("Illegal suboption \"%s\"", std::string(item).c_str());
}

// memcached walks the list with getsubopt(): an empty item before the end is an illegal
// suboption "", a trailing comma ends the list.
void parse_suboptions(ParseState& st, const char* arg) {
    std::string_view rest(arg);
    while (!rest.empty()) {
        size_t comma = rest.find(',');
        apply_suboption(st, rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
}

// ---- the whole command line --------------------------------------------------------------------

const OptionSpec* find_option(int letter) {
    for (const OptionSpec& o : kOptions) {
        if (o.letter != 0 && o.letter == letter) return &o;
    }
    return nullptr;
}

// memcached's checks once every option is read, in its order and words.
void check_together(ParseState& st) {
    Settings& s = st.s;
    // memcached: a UDP port given without -p is the TCP port too (-U -1: both picked).
    if (st.udp_port_given && s.udp_port != 0 && !st.tcp_port_given) s.port = s.udp_port;
    if (s.item_size_max < kItemSizeMin) refuse("Item max size cannot be less than 1024 bytes.");
    if (s.item_size_max > s.max_bytes / 2) {
        refuse("Cannot set item size limit higher than 1/2 of memory max.");
    }
    if (s.item_size_max > kItemSizeLimit) {
        refuse("Cannot set item size limit higher than a gigabyte.");
    }
    if (s.item_size_max > kMegabyte && !st.chunk_max_given) st.chunk_max = kSlabPageSize / 2;
    if (st.chunk_max > s.item_size_max) {
        refuse("slab_chunk_max (bytes: %zu) cannot be larger than -I (item_size_max %zu)",
               st.chunk_max, s.item_size_max);
    }
    if (s.item_size_max % st.chunk_max != 0) {
        refuse("-I (item_size_max: %zu) must be evenly divisible by slab_chunk_max (bytes: %zu)",
               s.item_size_max, st.chunk_max);
    }
    if (kSlabPageSize % st.chunk_max != 0) {
        refuse("slab_chunk_max (bytes: %zu) must divide evenly into %zu (slab_page_size)",
               st.chunk_max, kSlabPageSize);
    }
    s.slab_chunk_max = static_cast<unsigned>(st.chunk_max);
    // memcached's item lock table grows with -t; an initial hash table must be larger.
    if (s.hashpower_init != 0) {
        unsigned lock_power = s.num_threads < 3 ? 10 : s.num_threads < 4 ? 11
                              : s.num_threads < 5 ? 12 : 13;
        if (s.hashpower_init <= lock_power) {
            refuse("Hash table power size (%u) cannot be equal to or less than item lock table "
                   "(%u)\nItem lock table grows with `-t N` (worker threadcount)\nHash table "
                   "grows with `-o hashpower=N` ",
                   s.hashpower_init, lock_power);
        }
    }
    // TLS: memcached's checks, in its words.
    for (const std::string& l : s.listen) {
        if (!s.ssl_enabled && l.rfind("notls:", 0) == 0) {
            refuse("'notls' option is valid only when SSL is enabled");
        }
    }
    if (s.ssl_enabled && s.port == 0) refuse("ERROR: You cannot enable SSL without a TCP port.");
    // memcached refuses ports above 65535; below -1 its listener fails later, so say it now.
    if (s.port > kPortMax || s.port < -1) refuse("ERROR: Invalid port number %d.", s.port);
}

// Managed mode needs its name and its secret together; the secret is read here so a bad
// path fails at startup, not at the first control command.
void check_managed(ParseState& st) {
    Settings& s = st.s;
    const auto& pt = s.peer_tls;
    if (!pt.cert_file.empty() || !pt.key_file.empty() || !pt.ca_file.empty()) {
        if (s.node_id.empty()) refuse("peer_tls_cert, peer_tls_key and peer_tls_ca need node_id (managed mode)");
        if (pt.cert_file.empty() || pt.key_file.empty() || pt.ca_file.empty()) {
            refuse("peer TLS needs all of peer_tls_cert, peer_tls_key and peer_tls_ca");
        }
    }
    if (s.node_id.empty() && s.cluster_secret_file.empty()) return;
    if (s.node_id.empty()) refuse("cluster_secret_file needs node_id (managed mode)");
    if (s.cluster_secret_file.empty()) refuse("node_id needs cluster_secret_file (managed mode)");
    std::string err;
    if (!repl::read_secret_file(s.cluster_secret_file, &s.cluster_secret, &err)) {
        refuse("cluster_secret_file: %s", err.c_str());
    }
}

ParseOutcome parse(int argc, char** argv, ParseState& st) {
    std::string shortopts;
    std::vector<option> longopts;
    for (const OptionSpec& o : kOptions) {
        if (o.letter == 0) continue;
        shortopts += o.letter;
        if (o.arg == Arg::Required) shortopts += ':';
        if (o.long_name != nullptr) {
            int has_arg = o.arg == Arg::Required   ? required_argument
                          : o.arg == Arg::Optional ? optional_argument
                                                   : no_argument;
            longopts.push_back({o.long_name, has_arg, nullptr, o.letter});
        }
    }
    longopts.push_back({nullptr, 0, nullptr, 0});

    optind = 0;  // glibc: 0 re-initialises getopt completely (parsing may run more than once)
    opterr = 1;  // getopt prints its own message for an unknown option or a missing argument
    int c;
    while ((c = getopt_long(argc, argv, shortopts.c_str(), longopts.data(), nullptr)) != -1) {
        const OptionSpec* o = find_option(c);
        if (o == nullptr) refuse("Illegal argument \"%c\"", c);  // '?' after getopt's message
        if (o->refusal != nullptr) {
            if (o->long_name != nullptr) {
                refuse("-%c (--%s): %s", o->letter, o->long_name, o->refusal);
            }
            refuse("-%c: %s", o->letter, o->refusal);
        }
        o->apply(st, optarg);
        if (st.stop != ParseOutcome::Run) return st.stop;
    }
    // memcached never looks at arguments that are not options; neither do we, but say so.
    for (int i = optind; i < argc; ++i) {
        warn("ignoring \"%s\": not an option (memcached ignores it too)", argv[i]);
    }
    check_together(st);
    check_managed(st);
    return ParseOutcome::Run;
}

// Appends `flags` padded to the help column, then `help` with continuation lines indented.
void append_help(std::string* out, std::string_view flags, std::string_view help) {
    out->append(flags);
    if (flags.size() + 1 > kHelpColumn) {
        out->push_back(' ');
    } else {
        out->append(kHelpColumn - flags.size(), ' ');
    }
    for (char ch : help) {
        out->push_back(ch);
        if (ch == '\n') out->append(kHelpColumn, ' ');
    }
    out->push_back('\n');
}

}  // namespace

std::string usage_text() {
    std::string out = std::string("memcached ") + kVersion + "\n";
    for (const OptionSpec& o : kOptions) {
        if (o.help_flags != nullptr && o.refusal == nullptr) append_help(&out, o.help_flags, o.help);
    }
    for (const SuboptionSpec& sub : kSuboptions) {
        if (sub.help != nullptr && sub.refusal == nullptr) {
            append_help(&out, "   - " + std::string(sub.name) + ":", sub.help);
        }
    }
    out +=
        "\nmemcached options this server refuses at startup, with a message: SASL (-S),\n"
        "authentication files (-Y), memory files (-e), NAPI ids (-N), the license text "
        "(-i),\nand the extstore, "
        "proxy,\nsegmented LRU and slab tuning suboptions, large pages (-L), and the tail_repair_time,\nlru_crawler_sleep, lru_crawler_tocrawl and read_buf_mem_limit suboptions.\n";
    return out;
}

ParseOutcome parse_command_line(int argc, char** argv, Settings* out) {
    try {
        ParseState st{*out};
        return parse(argc, argv, st);
    } catch (const Refused&) {
        return ParseOutcome::ExitError;
    } catch (const std::bad_alloc&) {
        fprintf(stderr, "Failed to allocate memory\n");
        return ParseOutcome::ExitError;
    } catch (const std::exception& e) {
        fprintf(stderr, "Error reading the command line: %s\n", e.what());
        return ParseOutcome::ExitError;
    } catch (...) {
        fprintf(stderr, "Error reading the command line\n");
        return ParseOutcome::ExitError;
    }
}

}  // namespace mcm::server
