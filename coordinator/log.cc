#include "coordinator/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace mcm::coord {

namespace {
bool g_verbose = false;  // set once by main before the loop starts
}

void log_set_verbose(bool on) noexcept { g_verbose = on; }
bool log_verbose() noexcept { return g_verbose; }

void log_line(const char* level, const char* fmt, ...) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tm t;
    gmtime_r(&ts.tv_sec, &t);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ mc-coordinator %s %s\n",
            t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
            ts.tv_nsec / 1000000, level, msg);
}

}  // namespace mcm::coord
