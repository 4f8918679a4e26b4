// Parsed requests: what the text parser produces and the dispatcher consumes. Plain data: every
// string_view points into the caller's read buffer, which the caller keeps unchanged until the
// command has been executed (see server/conn.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace mcm::proto {

// Every command of the text protocol: X(enumerator, wire name, flags).
// kStore: a value follows the command line. kKeys: get family (one or more keys).
#define MCM_TEXT_COMMANDS(X)              \
    X(Get, "get", kKeys)                  \
    X(Gets, "gets", kKeys)                \
    X(Gat, "gat", kKeys)                  \
    X(Gats, "gats", kKeys)                \
    X(Set, "set", kStore)                 \
    X(Add, "add", kStore)                 \
    X(Replace, "replace", kStore)         \
    X(Append, "append", kStore)           \
    X(Prepend, "prepend", kStore)         \
    X(Cas, "cas", kStore)                 \
    X(Delete, "delete", 0)                \
    X(Incr, "incr", 0)                    \
    X(Decr, "decr", 0)                    \
    X(Touch, "touch", 0)                  \
    X(FlushAll, "flush_all", 0)           \
    X(Version, "version", 0)              \
    X(Verbosity, "verbosity", 0)          \
    X(Quit, "quit", 0)                    \
    X(Shutdown, "shutdown", 0)            \
    X(Stats, "stats", 0)                  \
    X(CacheMemlimit, "cache_memlimit", 0) \
    X(Debug, "debug", 0)                  \
    X(Cluster, "cluster", 0)              \
    X(MetaGet, "mg", 0)                   \
    X(MetaSet, "ms", kStore)              \
    X(MetaDelete, "md", 0)                \
    X(MetaArith, "ma", 0)                 \
    X(MetaNoop, "mn", 0)                  \
    X(MetaDebug, "me", 0)                 \
    X(LruCrawler, "lru_crawler", 0)       \
    X(Watch, "watch", 0)                  \
    X(Slabs, "slabs", 0)                  \
    X(RefreshCerts, "refresh_certs", 0)

enum class Cmd : uint8_t {
#define MCM_X(e, name, flags) e,
    MCM_TEXT_COMMANDS(MCM_X)
#undef MCM_X
        Error,  // the line was answered with an error (Request::error); nothing to execute
};

inline constexpr uint8_t kStore = 1;
inline constexpr uint8_t kKeys = 2;

constexpr uint8_t cmd_flags(Cmd c) noexcept {
    switch (c) {
#define MCM_X(e, name, flags) \
    case Cmd::e: return flags;
        MCM_TEXT_COMMANDS(MCM_X)
#undef MCM_X
        default: return 0;
    }
}

constexpr std::string_view cmd_name(Cmd c) noexcept {
    switch (c) {
#define MCM_X(e, name, flags) \
    case Cmd::e: return name;
        MCM_TEXT_COMMANDS(MCM_X)
#undef MCM_X
        default: return "error";
    }
}

// Errors the parser answers itself. The wire text is in errors.h.
enum class Err : uint8_t {
    None,
    Error,                // ERROR (unknown command, wrong token count)
    BadFormat,            // CLIENT_ERROR bad command line format
    BadDeleteFormat,      // CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]
    InvalidExptime,       // CLIENT_ERROR invalid exptime argument
    InvalidDelta,         // CLIENT_ERROR invalid numeric delta argument
    BadCommandLine,       // CLIENT_ERROR bad command line
    StatsDetailUsage,     // CLIENT_ERROR usage: stats detail on|off|dump
    InvalidShutdownMode,  // CLIENT_ERROR invalid shutdown mode
    // Meta commands (memcached's wording, including its inconsistencies).
    InvalidFlag,             // CLIENT_ERROR invalid flag
    DuplicateFlag,           // CLIENT_ERROR duplicate flag
    InvalidOrDuplicateFlag,  // CLIENT_ERROR invalid or duplicate flag (md, ma)
    BadToken,                // CLIENT_ERROR bad token in command line format
    DecodingKey,             // CLIENT_ERROR error decoding key
    FlagsAreTooLong,         // CLIENT_ERROR options flags are too long (mg)
    FlagsTooLong,            // CLIENT_ERROR options flags too long (ms, md, ma)
    OpaqueTooLong,           // CLIENT_ERROR opaque token too long
    MTokenLength,            // CLIENT_ERROR incorrect length for M token
    InvalidMsMode,           // CLIENT_ERROR invalid mode for ms M token
    InvalidMaMode,           // CLIENT_ERROR invalid mode for ma M token
    InvalidInitial,          // CLIENT_ERROR invalid numeric initial value
    InvalidDeltaValue,       // CLIENT_ERROR invalid numeric delta value
};

// Meta command flags: one bit per flag letter.
constexpr uint64_t meta_bit(char c) noexcept { return uint64_t{1} << (c - 'A'); }

// What a meta command line asked for. Only meaningful when Request::cmd is a Meta* command;
// the meta parser sets every field (no initializers: the text fast path does not pay for it).
struct Meta {
    uint64_t flags;           // meta_bit(letter) for every flag present
    std::string_view tokens;  // the flag tokens as sent, for replies in request order
    int32_t ttl;              // T
    int32_t vivify_ttl;       // N
    int32_t recache_ttl;      // R
    uint32_t client_flags;    // F
    uint64_t compare_cas;     // C
    uint64_t new_cas;         // E
    uint64_t delta;           // D (ma; default 1)
    uint64_t initial;         // J (ma; default 0)
    char mode;                // M (0 if absent)
    bool has(char c) const noexcept { return flags & meta_bit(c); }
};

inline constexpr size_t kKeyBufSize = 256;

// A parsed command. Which fields are meaningful depends on cmd:
//   storage:  key flags exptime value_len (cas_unique for cas)
//   get family: keys (rest of the line; iterate with KeyCursor), exptime for gat/gats
//   delete/touch/incr/decr: key (+ exptime / delta)
//   flush_all: exptime (delay, 0 if absent)   verbosity: level   cache_memlimit: memlimit
//   stats / shutdown / debug: args (the text after the command name, trimmed)
//   meta commands: key (decoded when flag b), meta; ms: value_len
// Copies keep key valid when it points into key_buf.
struct Request {
    Request() noexcept = default;
    Request(const Request& o) noexcept { *this = o; }
    Request& operator=(const Request& o) noexcept;

    Cmd cmd = Cmd::Error;
    Err error = Err::None;
    bool noreply = false;
    bool close = false;  // the parser decided to hang up (see ParseStatus::Close)
    std::string_view key;
    std::string_view keys;
    std::string_view args;
    uint32_t flags = 0;
    int32_t exptime = 0;    // as memcached reads it: a 32-bit signed integer
    int32_t value_len = 0;  // bytes of data before the closing "\r\n"
    uint64_t cas_unique = 0;
    uint64_t delta = 0;
    uint32_t level = 0;     // verbosity
    uint32_t memlimit = 0;  // cache_memlimit, megabytes
    bool memlimit_ok = false;
    uint32_t swallow = 0;  // with Cmd::Error: value bytes to discard after the line (ms)
    std::string_view raw;  // the whole command line as received, newline included
    Meta meta;             // meta commands
    char key_buf[kKeyBufSize];  // a base64 key (flag b) decoded; key points here then
};

inline Request& Request::operator=(const Request& o) noexcept {
    if (this == &o) return *this;
    cmd = o.cmd;
    error = o.error;
    noreply = o.noreply;
    close = o.close;
    key = o.key;
    keys = o.keys;
    args = o.args;
    flags = o.flags;
    exptime = o.exptime;
    value_len = o.value_len;
    cas_unique = o.cas_unique;
    delta = o.delta;
    level = o.level;
    memlimit = o.memlimit;
    memlimit_ok = o.memlimit_ok;
    swallow = o.swallow;
    raw = o.raw;
    meta = o.meta;
    if (key.data() >= o.key_buf && key.data() < o.key_buf + kKeyBufSize) {
        std::memcpy(key_buf, o.key_buf, key.size());
        key = std::string_view(key_buf, key.size());
    }
    return *this;
}

// Iterates the space-separated keys of a get-family line without copying.
class KeyCursor {
public:
    explicit KeyCursor(std::string_view keys) noexcept : rest_(keys) {}
    // Next key, or false at the end of the line.
    bool next(std::string_view* key) noexcept {
        size_t i = 0;
        while (i < rest_.size() && rest_[i] == ' ') ++i;
        if (i == rest_.size()) return false;
        size_t j = rest_.find(' ', i);
        if (j == std::string_view::npos) j = rest_.size();
        *key = rest_.substr(i, j - i);
        rest_ = rest_.substr(j);
        return true;
    }

private:
    std::string_view rest_;
};

}  // namespace mcm::proto
