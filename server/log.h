// Logging to stderr, filtered by -v/-vv/-vvv (or the `verbosity` command). LOG checks the
// level before formatting anything, so a disabled level costs one relaxed load.
// TODO(mcm): workers should log into a per-thread ring drained by a logger thread instead of
// writing stderr themselves; today only error paths and -vv connection events log.
#pragma once

#include <atomic>

namespace mcm::server {

enum class LogLevel : int {
    Warn = 0,   // always shown: a module failed, a server error
    Info = 1,   // -v: lifecycle, errors of one request
    Debug = 2,  // -vv: connection events
    Trace = 3,  // -vvv: internal state
};

extern std::atomic<int> g_log_level;

inline void log_set_level(int level) noexcept {
    g_log_level.store(level, std::memory_order_relaxed);
}
inline bool log_enabled(LogLevel l) noexcept {
    return static_cast<int>(l) <= g_log_level.load(std::memory_order_relaxed);
}

void log_write(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace mcm::server

#define LOG(level, ...)                                                               \
    do {                                                                              \
        if (::mcm::server::log_enabled(level)) ::mcm::server::log_write(__VA_ARGS__); \
    } while (0)
