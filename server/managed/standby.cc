// See standby.h.
#include "server/managed/standby.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

namespace mcm::server {

bool reuseport_first_wins(int fd, std::string* err) noexcept {
    // One classic BPF instruction: return 0, the index of the group's first socket. When the
    // first socket closes, the kernel moves the last one into its place, so with one owner
    // and one standby the standby becomes index 0.
    sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0}};
    sock_fprog prog{};
    prog.len = 1;
    prog.filter = code;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) == 0) {
        return true;
    }
    if (err) *err = std::string("SO_ATTACH_REUSEPORT_CBPF: ") + std::strerror(errno);
    return false;
}

bool reuseport_share(int fd, std::string* err) noexcept {
    int zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof(zero)) == 0 ||
        errno == ENOENT) {
        return true;
    }
    if (err) *err = std::string("SO_DETACH_REUSEPORT_BPF: ") + std::strerror(errno);
    return false;
}

}  // namespace mcm::server
