// The coordinator's log: one line per event on stderr, each with a UTC timestamp. Single
// threaded (the coordinator runs one event loop), so no ring and no lock.
#pragma once

namespace mcm::coord {

void log_set_verbose(bool on) noexcept;
bool log_verbose() noexcept;
// level is a short tag ("INFO", "WARN", "CRIT", "DEBUG"); DEBUG lines only with -v.
void log_line(const char* level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace mcm::coord

#define CLOG_INFO(...) ::mcm::coord::log_line("INFO", __VA_ARGS__)
#define CLOG_WARN(...) ::mcm::coord::log_line("WARN", __VA_ARGS__)
#define CLOG_CRIT(...) ::mcm::coord::log_line("CRIT", __VA_ARGS__)
#define CLOG_DEBUG(...)                                                          \
    do {                                                                         \
        if (::mcm::coord::log_verbose()) ::mcm::coord::log_line("DEBUG", __VA_ARGS__); \
    } while (0)
