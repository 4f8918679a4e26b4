// memcached 1.6's command line: the same short and long options, the same -o suboption names,
// the same validation messages. Options memcached has and this server does not implement are
// refused by name (never silently ignored). Startup code: prints, never exits.
#include "server/settings.h"

#include <getopt.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "config.h"

namespace mcm::server {

namespace {

constexpr size_t kItemSizeMaxLower = 1024;
constexpr size_t kItemSizeMaxUpper = 1024 * 1024 * 1024;
constexpr size_t kSlabChunkMax = 512 * 1024;

// One row per option: short letter, long name, argument, and the help text shown by -h.
struct OptionHelp {
    const char* flags;
    const char* text;
};

constexpr OptionHelp kHelp[] = {
    {"-p, --port=<num>", "TCP port to listen on (default: 11211; -1 picks a free port)"},
    {"-U, --udp-port=<num>", "UDP port to listen on (default: 0, off; UDP not supported yet)"},
    {"-s, --unix-socket=<file>", "UNIX socket to listen on (disables network support)"},
    {"-a, --unix-mask=<mask>", "access mask for UNIX socket, in octal (default: 700)"},
    {"-A, --enable-shutdown", "enable ascii \"shutdown\" command"},
    {"-l, --listen=<addr>", "interface to listen on (default: INADDR_ANY)"},
    {"-d, --daemon", "run as a daemon"},
    {"-r, --enable-coredumps", "maximize core file limit"},
    {"-u, --user=<user>", "assume identity of <username> (only when run as root)"},
    {"-m, --memory-limit=<num>", "item memory in megabytes (default: 64)"},
    {"-M, --disable-evictions", "return error on memory exhausted instead of evicting"},
    {"-c, --conn-limit=<num>", "max simultaneous connections (default: 1024)"},
    {"-k, --lock-memory", "lock down all paged memory"},
    {"-v, --verbose", "verbose (print errors/warnings while in event loop)"},
    {"-vv", "very verbose (also print client connection events)"},
    {"-vvv", "extremely verbose (internal state transitions)"},
    {"-h, --help", "print this help and exit"},
    {"-V, --version", "print version and exit"},
    {"-P, --pidfile=<file>", "save PID in <file>, only used with -d option"},
    {"-f, --slab-growth-factor=<num>", "size class growth factor for stats (default: 1.25)"},
    {"-n, --slab-min-size=<bytes>", "min space used for key+value+flags (default: 48)"},
    {"-D <char>", "use <char> as the delimiter between key prefixes and IDs (stats detail)"},
    {"-t, --threads=<num>", "number of threads to use (default: 4)"},
    {"-R, --max-reqs-per-event", "maximum number of requests per event (default: 20)"},
    {"-C, --disable-cas", "disable use of CAS"},
    {"-b, --listen-backlog=<num>", "set the backlog queue limit (default: 1024)"},
    {"-B, --protocol=<name>", "protocol - one of ascii or auto (default: auto-negotiate)"},
    {"-I, --max-item-size=<num>", "adjusts max item size (default: 1m, min: 1k, max: 1024m)"},
    {"-F, --disable-flush-all", "disable flush_all command"},
    {"-X, --disable-dumping", "disable stats cachedump and lru_crawler metadump"},
    {"-W, --disable-watch", "disable watch commands (live logging)"},
    {"-o, --extended", "comma separated list of extended options:"},
};

constexpr OptionHelp kSubHelp[] = {
    {"maxconns_fast", "immediately close new connections after limit (default: enabled)"},
    {"hashpower", "initial hash table size as a power of 2 (12-32)"},
    {"hash_algorithm", "accepted for compatibility: murmur3, jenkins or xxh3 (xxh3 is used)"},
    {"no_lru_crawler", "disable the background reclaimer of expired items"},
    {"slab_reassign", "accepted: memory is not divided into slabs, nothing to reassign"},
    {"slab_automove", "accepted: memory is not divided into slabs, nothing to move"},
    {"modern", "enables options which will be default in future (currently nothing)"},
    {"no_modern", "accepted; nothing to turn off"},
};

const struct option kLongOptions[] = {
    {"port", required_argument, nullptr, 'p'},
    {"udp-port", required_argument, nullptr, 'U'},
    {"unix-socket", required_argument, nullptr, 's'},
    {"unix-mask", required_argument, nullptr, 'a'},
    {"enable-shutdown", no_argument, nullptr, 'A'},
    {"enable-ssl", no_argument, nullptr, 'Z'},
    {"listen", required_argument, nullptr, 'l'},
    {"daemon", no_argument, nullptr, 'd'},
    {"enable-coredumps", no_argument, nullptr, 'r'},
    {"user", required_argument, nullptr, 'u'},
    {"memory-limit", required_argument, nullptr, 'm'},
    {"disable-evictions", no_argument, nullptr, 'M'},
    {"conn-limit", required_argument, nullptr, 'c'},
    {"lock-memory", no_argument, nullptr, 'k'},
    {"verbose", optional_argument, nullptr, 'v'},
    {"help", no_argument, nullptr, 'h'},
    {"license", no_argument, nullptr, 'i'},
    {"version", no_argument, nullptr, 'V'},
    {"pidfile", required_argument, nullptr, 'P'},
    {"slab-growth-factor", required_argument, nullptr, 'f'},
    {"slab-min-size", required_argument, nullptr, 'n'},
    {"enable-largepages", no_argument, nullptr, 'L'},
    {"threads", required_argument, nullptr, 't'},
    {"max-reqs-per-event", required_argument, nullptr, 'R'},
    {"disable-cas", no_argument, nullptr, 'C'},
    {"listen-backlog", required_argument, nullptr, 'b'},
    {"protocol", required_argument, nullptr, 'B'},
    {"max-item-size", required_argument, nullptr, 'I'},
    {"enable-sasl", no_argument, nullptr, 'S'},
    {"disable-flush-all", no_argument, nullptr, 'F'},
    {"disable-dumping", no_argument, nullptr, 'X'},
    {"disable-watch", no_argument, nullptr, 'W'},
    {"auth-file", required_argument, nullptr, 'Y'},
    {"memory-file", required_argument, nullptr, 'e'},
    {"extended", required_argument, nullptr, 'o'},
    {nullptr, 0, nullptr, 0},
};

constexpr const char* kShortOptions = "a:Ap:s:U:m:Mc:khirVvdl:u:P:f:n:t:D:LR:Cb:B:I:SFXWY:e:o:Z";

// Options memcached offers that this server refuses, with the reason printed.
const char* unsupported_reason(int c) {
    switch (c) {
        case 'S': return "SASL authentication (-S) is not supported by this server";
        case 'Z': return "TLS (-Z) is not supported by this server yet";
        case 'Y': return "ASCII authentication files (-Y) are not supported by this server";
        case 'e': return "memory files (-e) are not supported by this server";
        case 'L': return "large memory pages (-L) are not supported by this server";
        case 'i': return "-i: no license text is bundled with this server";
        default: return nullptr;
    }
}

// atoi-like parse of a whole number, for flags memcached reads with atoi.
bool parse_int(const char* s, long long* out) {
    errno = 0;
    char* end = nullptr;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s) return false;
    *out = v;
    return true;
}

// -I: memcached strips one k/m suffix and reads the rest with atoi (so "2g" is 2 bytes).
bool parse_size(const char* s, size_t* out) {
    std::string buf(s);
    if (buf.empty()) return false;
    char unit = buf.back();
    size_t mult = 1;
    if (unit == 'k' || unit == 'K') {
        mult = 1024;
        buf.pop_back();
    } else if (unit == 'm' || unit == 'M') {
        mult = 1024 * 1024;
        buf.pop_back();
    }
    long long v = atoll(buf.c_str());
    *out = v < 0 ? 0 : static_cast<size_t>(v) * mult;
    return true;
}

// -o key[=value],...: returns false after printing why.
bool parse_suboptions(const std::string& list, Settings* s) {
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t comma = list.find(',', pos);
        std::string item =
            list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? list.size() + 1 : comma + 1;
        if (item.empty()) continue;
        std::string key = item.substr(0, item.find('='));
        bool has_value = item.find('=') != std::string::npos;
        std::string value = has_value ? item.substr(item.find('=') + 1) : "";
        auto need_value = [&]() {
            if (!has_value || value.empty()) {
                fprintf(stderr, "Missing numeric argument for %s\n", key.c_str());
                return false;
            }
            return true;
        };
        if (key == "maxconns_fast") {
            s->maxconns_fast = true;
        } else if (key == "no_maxconns_fast") {
            s->maxconns_fast = false;
        } else if (key == "hashpower") {
            if (!need_value()) return false;
            long long v = 0;
            if (!parse_int(value.c_str(), &v)) {
                fprintf(stderr, "Missing numeric argument for hashpower\n");
                return false;
            }
            if (v < 12) {
                fprintf(stderr, "Initial hashtable multiplier of %lld is too low\n", v);
                return false;
            }
            if (v > 32) {
                fprintf(stderr,
                        "Initial hashtable multiplier of %lld is too high\n"
                        "Choose a value based on \"STAT hash_power_level\" from a running "
                        "instance\n",
                        v);
                return false;
            }
            s->hashpower_init = static_cast<unsigned>(v);
        } else if (key == "hash_algorithm") {
            if (value != "jenkins" && value != "murmur3" && value != "xxh3") {
                fprintf(stderr, "Unknown hash_algorithm option (jenkins, murmur3, xxh3)\n");
                return false;
            }
        } else if (key == "lru_crawler") {
            s->lru_crawler = true;
        } else if (key == "no_lru_crawler") {
            s->lru_crawler = false;
        } else if (key == "slab_reassign" || key == "slab_automove" || key == "modern" ||
                   key == "no_modern") {
            // Accepted: see kSubHelp for why each has nothing left to do here.
        } else if (key.rfind("ext_", 0) == 0) {
            fprintf(stderr, "extstore (%s) is not supported by this server\n", key.c_str());
            return false;
        } else if (key.rfind("ssl_", 0) == 0) {
            fprintf(stderr, "TLS (%s) is not supported by this server yet\n", key.c_str());
            return false;
        } else if (key == "tail_repair_time" || key == "lru_crawler_sleep" ||
                   key == "lru_crawler_tocrawl" || key == "read_buf_mem_limit" ||
                   key == "lru_maintainer" || key == "no_lru_maintainer" || key == "hot_lru_pct" ||
                   key == "warm_lru_pct" || key == "hot_max_factor" || key == "warm_max_factor" ||
                   key == "temporary_ttl" || key == "idle_timeout" || key == "slab_chunk_max" ||
                   key == "watcher_logbuf_size" || key == "worker_logbuf_size" ||
                   key == "track_sizes" || key == "no_hashexpand" || key == "sock_cookie_id" ||
                   key == "slab_automove_freeratio" || key == "slab_sizes" ||
                   key == "slab_automove_ratio" || key == "slab_automove_window" ||
                   key == "inline_ascii_response" || key == "no_inline_ascii_response" ||
                   key == "proxy_config" || key == "lru_segmented" || key == "no_lru_segmented" ||
                   key == "drop_privileges" || key == "no_drop_privileges") {
            fprintf(stderr, "-o %s is not supported by this server\n", key.c_str());
            return false;
        } else {
            fprintf(stderr, "Illegal suboption \"%s\"\n", item.c_str());
            return false;
        }
    }
    return true;
}

}  // namespace

std::string usage_text() {
    std::string out = "memcached " VERSION "\n";
    char line[256];
    for (const OptionHelp& h : kHelp) {
        snprintf(line, sizeof(line), "%-25s %s\n", h.flags, h.text);
        out += line;
    }
    for (const OptionHelp& h : kSubHelp) {
        snprintf(line, sizeof(line), "   - %-18s %s\n", (std::string(h.flags) + ":").c_str(),
                 h.text);
        out += line;
    }
    return out;
}

ParseOutcome parse_command_line(int argc, char** argv, Settings* s) {
    optind = 0;  // glibc: restart scanning (parse_command_line may run more than once)
    opterr = 1;
    bool item_size_set = false;
    bool protocol_binary = false;
    int c;
    try {
        while ((c = getopt_long(argc, argv, kShortOptions, kLongOptions, nullptr)) != -1) {
            long long v = 0;
            if (const char* why = unsupported_reason(c)) {
                fprintf(stderr, "%s\n", why);
                return ParseOutcome::ExitError;
            }
            switch (c) {
                case 'p':
                    if (!parse_int(optarg, &v)) v = 0;
                    s->port = static_cast<int>(v);
                    break;
                case 'U':
                    if (!parse_int(optarg, &v)) v = 0;
                    if (v != 0) {
                        fprintf(stderr, "UDP (-U %lld) is not supported by this server yet\n", v);
                        return ParseOutcome::ExitError;
                    }
                    s->udp_port = 0;
                    break;
                case 's': s->socket_path = optarg; break;
                case 'a': s->access_mask = static_cast<int>(strtol(optarg, nullptr, 8)); break;
                case 'A': s->shutdown_enabled = true; break;
                case 'l': {
                    std::string l = optarg;
                    size_t pos = 0;
                    while (pos <= l.size()) {
                        size_t comma = l.find(',', pos);
                        std::string one = l.substr(
                            pos, comma == std::string::npos ? std::string::npos : comma - pos);
                        if (!one.empty()) s->listen.push_back(one);
                        pos = comma == std::string::npos ? l.size() + 1 : comma + 1;
                    }
                    break;
                }
                case 'd': s->daemonize = true; break;
                case 'r': s->maxcore = true; break;
                case 'u': s->username = optarg; break;
                case 'm':
                    if (!parse_int(optarg, &v) || v < 0) {
                        fprintf(stderr, "Invalid memory limit: %s\n", optarg);
                        return ParseOutcome::ExitError;
                    }
                    s->max_bytes = static_cast<size_t>(v) * 1024 * 1024;
                    break;
                case 'M': s->evict_to_free = false; break;
                case 'c':
                    if (!parse_int(optarg, &v) || v <= 0) {
                        fprintf(stderr, "Maximum connections must be greater than 0\n");
                        return ParseOutcome::ExitError;
                    }
                    s->max_conns = static_cast<int>(v);
                    break;
                case 'k': s->lock_memory = true; break;
                case 'v': ++s->verbose; break;
                case 'h': fputs(usage_text().c_str(), stdout); return ParseOutcome::ExitOk;
                case 'V': printf("memcached %s\n", VERSION); return ParseOutcome::ExitOk;
                case 'P': s->pid_file = optarg; break;
                case 'f': {
                    char* end = nullptr;
                    double f = strtod(optarg, &end);
                    if (end == optarg || f <= 1.0) {
                        fprintf(stderr, "Factor must be greater than 1\n");
                        return ParseOutcome::ExitError;
                    }
                    s->factor = f;
                    break;
                }
                case 'n':
                    if (!parse_int(optarg, &v) || v <= 0) {
                        fprintf(stderr, "Chunk size must be greater than 0\n");
                        return ParseOutcome::ExitError;
                    }
                    s->chunk_size = static_cast<int>(v);
                    break;
                case 'D':
                    if (optarg[0] == '\0' || optarg[1] != '\0') {
                        fprintf(stderr, "No delimiter specified\n");
                        return ParseOutcome::ExitError;
                    }
                    s->prefix_delimiter = optarg[0];
                    s->detail_enabled = true;
                    break;
                case 't':
                    if (!parse_int(optarg, &v) || v <= 0) {
                        fprintf(stderr, "Number of threads must be greater than 0\n");
                        return ParseOutcome::ExitError;
                    }
                    if (v > 64) {
                        fprintf(stderr,
                                "WARNING: Setting a high number of worker threads is not "
                                "recommended.\n Set this value to the number of cores in"
                                " your machine or less.\n");
                    }
                    s->num_threads = static_cast<int>(v);
                    break;
                case 'R':
                    if (!parse_int(optarg, &v) || v <= 0) {
                        fprintf(stderr, "Number of requests per event must be greater than 0\n");
                        return ParseOutcome::ExitError;
                    }
                    s->reqs_per_event = static_cast<int>(v);
                    break;
                case 'C': s->use_cas = false; break;
                case 'b':
                    if (!parse_int(optarg, &v) || v <= 0) {
                        fprintf(stderr, "Invalid listen backlog: %s\n", optarg);
                        return ParseOutcome::ExitError;
                    }
                    s->backlog = static_cast<int>(v);
                    break;
                case 'B':
                    if (strcmp(optarg, "auto") == 0) {
                        s->binding_protocol = Protocol::Auto;
                    } else if (strcmp(optarg, "ascii") == 0) {
                        s->binding_protocol = Protocol::Ascii;
                    } else if (strcmp(optarg, "binary") == 0) {
                        protocol_binary = true;
                    } else {
                        fprintf(stderr,
                                "Invalid value for binding protocol: %s\n"
                                " -- should be one of auto, binary, or ascii\n",
                                optarg);
                        return ParseOutcome::ExitError;
                    }
                    break;
                case 'I':
                    if (!parse_size(optarg, &s->item_size_max)) {
                        fprintf(stderr, "Invalid max item size: %s\n", optarg);
                        return ParseOutcome::ExitError;
                    }
                    item_size_set = true;
                    break;
                case 'F': s->flush_enabled = false; break;
                case 'X':
                case 'W':
                    // Disable commands this server does not offer: nothing left to disable.
                    break;
                case 'o':
                    if (!parse_suboptions(optarg, s)) return ParseOutcome::ExitError;
                    break;
                default:
                    fprintf(stderr, "Illegal argument \"%c\"\n", c);
                    return ParseOutcome::ExitError;
            }
        }
        if (optind < argc) {
            fprintf(stderr, "Illegal argument \"%s\"\n", argv[optind]);
            return ParseOutcome::ExitError;
        }
    } catch (const std::exception& e) {
        fprintf(stderr, "error parsing the command line: %s\n", e.what());
        return ParseOutcome::ExitError;
    }
    if (protocol_binary) {
        fprintf(stderr, "The binary protocol (-B binary) is not supported by this server yet\n");
        return ParseOutcome::ExitError;
    }
    (void)item_size_set;
    // memcached's cross-checks, in its order and words.
    if (s->item_size_max < kItemSizeMaxLower) {
        fprintf(stderr, "Item max size cannot be less than 1024 bytes.\n");
        return ParseOutcome::ExitError;
    }
    if (s->item_size_max > s->max_bytes / 2) {
        fprintf(stderr, "Cannot set item size limit higher than 1/2 of memory max.\n");
        return ParseOutcome::ExitError;
    }
    if (s->item_size_max > kItemSizeMaxUpper) {
        fprintf(stderr, "Cannot set item size limit higher than a gigabyte.\n");
        return ParseOutcome::ExitError;
    }
    // memcached keeps whole chunks of slab_chunk_max (512 KiB) and refuses a smaller -I.
    if (s->item_size_max < kSlabChunkMax) {
        fprintf(stderr,
                "slab_chunk_max (bytes: %zu) cannot be larger than -I (item_size_max %zu)\n",
                kSlabChunkMax, s->item_size_max);
        return ParseOutcome::ExitError;
    }
    return ParseOutcome::Run;
}

}  // namespace mcm::server
