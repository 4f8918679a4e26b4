// Daemon plumbing: rlimits, setuid, fork/setsid, pid file.
#include "server/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mcm::server {

bool raise_limits(const Settings& s) {
    if (s.maxcore) {
        rlimit rl{};
        if (getrlimit(RLIMIT_CORE, &rl) == 0) {
            rlimit want{RLIM_INFINITY, RLIM_INFINITY};
            if (setrlimit(RLIMIT_CORE, &want) != 0) {
                want.rlim_cur = want.rlim_max = rl.rlim_max;
                (void)setrlimit(RLIMIT_CORE, &want);
            }
        }
        rlimit check{};
        if (getrlimit(RLIMIT_CORE, &check) != 0 || check.rlim_cur == 0) {
            fprintf(stderr, "failed to ensure corefile creation\n");
            return false;
        }
    }
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "failed to getrlimit number of files\n");
        return false;
    }
    rlim_t want = static_cast<rlim_t>(s.max_conns);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (rl.rlim_max < want) rl.rlim_max = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            fprintf(stderr,
                    "failed to set rlimit for open files. Try starting as root or requesting "
                    "smaller maxconns value.\n");
            return false;
        }
    }
    return true;
}

bool drop_privileges(const Settings& s) {
    if (getuid() != 0 && geteuid() != 0) return true;
    if (s.username.empty()) {
        fprintf(stderr, "can't run as root without the -u switch\n");
        return false;
    }
    passwd* pw = getpwnam(s.username.c_str());
    if (pw == nullptr) {
        fprintf(stderr, "can't find the user %s to switch to\n", s.username.c_str());
        return false;
    }
    if (pw->pw_uid == 0) return true;  // -u root: stay root, as memcached allows
    if (setgroups(0, nullptr) < 0) {
        // memcached only warns when it cannot clear supplementary groups
        fprintf(stderr, "setgroups failed\n");
    }
    if (setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        fprintf(stderr, "failed to assume identity of user %s\n", s.username.c_str());
        return false;
    }
    return true;
}

bool daemonize(const Settings& s) {
    if (!s.daemonize) return true;
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return false;
    }
    if (pid > 0) _exit(EXIT_SUCCESS);
    if (setsid() == -1) {
        perror("setsid");
        return false;
    }
    // Like memcached's daemonize(): keep the working directory (for relative paths), point
    // stdio at /dev/null.
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO) close(fd);
    }
    return true;
}

bool write_pid_file(const Settings& s) {
    if (s.pid_file.empty()) return true;
    FILE* f = fopen(s.pid_file.c_str(), "w");
    if (f == nullptr) {
        fprintf(stderr, "Could not open the pid file %s for writing: %s\n", s.pid_file.c_str(),
                strerror(errno));
        return true;  // memcached carries on without a pid file
    }
    fprintf(f, "%ld\n", static_cast<long>(getpid()));
    if (fclose(f) != 0) {
        fprintf(stderr, "Could not close the pid file %s: %s\n", s.pid_file.c_str(),
                strerror(errno));
    }
    return true;
}

void remove_pid_file(const Settings& s) {
    if (s.pid_file.empty()) return;
    if (unlink(s.pid_file.c_str()) != 0) {
        fprintf(stderr, "Could not remove the pid file %s: %s\n", s.pid_file.c_str(),
                strerror(errno));
    }
}

}  // namespace mcm::server
