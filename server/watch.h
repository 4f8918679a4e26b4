// `watch`: connections that asked for a stream of log lines (memcached's logger watchers).
// A watcher's socket leaves its worker and is served by one watch thread, which writes each
// watcher's buffered lines as its socket takes them. Producers (workers, the evictor) append
// lines under the hub's mutex; a watcher whose buffer is full loses lines, counted and later
// reported as one "skipped=<n>" line, so a slow watcher never slows the server.
//
// The hot path: a request checks watching(flag), one relaxed atomic load, before it formats
// anything; with no watcher the mask is 0.
#pragma once

#include <openssl/ssl.h>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace mcm::server::watch {

// memcached's watch flags. Only fetchers, mutations and evictions produce lines here; the
// others are accepted (memcached's argument check) and stream nothing.
enum : uint32_t {
    kFetchers = 1,
    kMutations = 2,
    kEvictions = 4,
    kRawCmds = 8,
    kSysEvents = 16,
    kConnEvents = 32,
    kProxyReqs = 64,
    kProxyEvents = 128,
    kProxyUser = 256,
};

// Bytes a watcher may have waiting before new lines are dropped: -o watcher_logbuf_size
// (KB, memcached's option), 256 KB unless given; set once at startup.
extern size_t g_watcher_buf_bytes;

extern std::atomic<uint32_t> g_mask;  // union of the flags of all watchers

inline bool watching(uint32_t flag) noexcept {
    return (g_mask.load(std::memory_order_relaxed) & flag) != 0;
}

// The arguments of `watch` (after the command word): memcached's flag names, none meaning
// fetchers. False for an unknown name.
bool parse_flags(std::string_view args, uint32_t* flags) noexcept;

// Queue one event to every watcher of flag. body is the line after memcached's
// "ts=<sec>.<usec> gid=<n> " prefix, without the newline; the prefix and "\n" are added here.
void emit(uint32_t flag, std::string_view body) noexcept;

// Take over a connected socket: it is sent first (the "OK"), then the lines of flags until
// it closes. Registered before first is sent, so no event after the client's OK is lost.
void adopt(int fd, SSL* ssl, uint32_t flags, std::string_view first);

// memcached's URI-encoding of keys in log lines (and in lru_crawler metadump): bytes other
// than letters, digits, '-', '.', '_' and '~' become %XX.
void uri_encode(std::string_view in, std::string* out);

}  // namespace mcm::server::watch
