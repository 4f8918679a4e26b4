// Raw system calls for the request path. glibc's read() and sendmsg() are thread
// cancellation points and bracket every call with cancellation bookkeeping (~25 instructions);
// this server never cancels threads, so the worker calls the kernel directly. Same results
// and errno as the libc functions.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mcm::server {

inline ssize_t sys_read(int fd, void* buf, size_t n) noexcept {
    return static_cast<ssize_t>(syscall(SYS_read, fd, buf, n));
}

inline ssize_t sys_sendmsg(int fd, const struct msghdr* msg, int flags) noexcept {
    return static_cast<ssize_t>(syscall(SYS_sendmsg, fd, msg, flags));
}

}  // namespace mcm::server
