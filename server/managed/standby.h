// Address standby (doc/managed.md, "Address takeover"): every TCP listener of a managed
// server is bound with SO_REUSEPORT (listener.cc), so servers of one machine can listen on
// the same address. A standby (a server the coordinator asks to `cluster listen` on another
// server's address while that server is alive) gives the address's group a steering program
// that hands every new connection to the group's first socket, the owner's: the standby gets
// nothing while the owner's socket is open. When the owner dies the kernel drops its socket
// from the group, the standby's becomes the first, and new connections go to it at once, so
// clients never see a refused connection. A restarted owner's listener lifts the program as
// it joins (connections are then spread by the kernel's hash), so the coordinator and its
// peers can reach it with a few tries while the standby still holds the address; once it is
// back in sync the standby leaves, and a new standby placed behind it steers again.
#pragma once

#include <string>

namespace mcm::server {

// After listen(): steer every connection of the address's group to its first socket (the
// program belongs to the group).
bool reuseport_first_wins(int fd, std::string* err) noexcept;
// After listen(): the group's connections spread by hash again (no program). A group without
// one is left as it is.
bool reuseport_share(int fd, std::string* err) noexcept;

}  // namespace mcm::server
