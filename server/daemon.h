// Process set-up that memcached does before serving: file limits for -c, core dumps (-r),
// dropping root (-u), detaching (-d), the pid file (-P), signals. Startup code on the main
// thread; prints memcached's messages and returns false on failure.
#pragma once

#include "server/settings.h"

namespace mcm::server {

bool raise_limits(const Settings& s);     // RLIMIT_NOFILE for -c, RLIMIT_CORE for -r
bool drop_privileges(const Settings& s);  // -u, and refusing root without it
bool daemonize(const Settings& s);        // -d
bool write_pid_file(const Settings& s);   // -P
void remove_pid_file(const Settings& s);

}  // namespace mcm::server
