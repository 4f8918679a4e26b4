// Reading and writing a peer link (or a handed-off connection) that may or may not be TLS, never blocking: the same results as
// recv(2)/send(2) (>0 bytes, 0 end of stream, -1 with errno; EAGAIN when it would block), so a
// link's code is the same either way. With ssl null these are the system calls.
#pragma once

#include <openssl/ssl.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace mcm::tls {

ssize_t recv(int fd, SSL* ssl, void* buf, size_t n) noexcept;
ssize_t send(int fd, SSL* ssl, const void* buf, size_t n) noexcept;

// One step of a handshake: Done, or what the socket must become before the next step.
enum class Hs : uint8_t { Done, WantRead, WantWrite, Failed };
Hs handshake(SSL* ssl) noexcept;

// Says goodbye (one close_notify, not waited for) and frees the session; the socket stays.
void finish(SSL* ssl) noexcept;

}  // namespace mcm::tls
