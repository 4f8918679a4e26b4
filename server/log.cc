// stderr logger: one line per call, written with a single fputs so lines do not interleave.
#include "server/log.h"

#include <cstdarg>
#include <cstdio>

namespace mcm::server {

std::atomic<int> g_log_level{0};

void log_write(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len =
        static_cast<size_t>(n) < sizeof(buf) - 2 ? static_cast<size_t>(n) : sizeof(buf) - 2;
    buf[len] = '\n';
    buf[len + 1] = '\0';
    fputs(buf, stderr);
}

}  // namespace mcm::server
