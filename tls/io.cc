#include "tls/io.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>

namespace mcm::tls {
namespace {

// Maps a failed SSL_read/SSL_write to recv/send's answer.
ssize_t failed(SSL* ssl, int rc) noexcept {
    int e = SSL_get_error(ssl, rc);
    switch (e) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            errno = EAGAIN;
            return -1;
        case SSL_ERROR_ZERO_RETURN:
            return 0;  // the other end's close_notify
        case SSL_ERROR_SYSCALL:
            ERR_clear_error();
            if (errno == 0) errno = ECONNRESET;  // end of stream without close_notify
            return -1;
        default:
            ERR_clear_error();
            errno = EPROTO;
            return -1;
    }
}

}  // namespace

ssize_t recv(int fd, SSL* ssl, void* buf, size_t n) noexcept {
    if (ssl == nullptr) return ::recv(fd, buf, n, MSG_DONTWAIT);
    errno = 0;
    int rc = SSL_read(ssl, buf, static_cast<int>(n > INT_MAX ? INT_MAX : n));
    return rc > 0 ? rc : failed(ssl, rc);
}

ssize_t send(int fd, SSL* ssl, const void* buf, size_t n) noexcept {
    if (ssl == nullptr) return ::send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == 0) return 0;
    errno = 0;
    int rc = SSL_write(ssl, buf, static_cast<int>(n > INT_MAX ? INT_MAX : n));
    return rc > 0 ? rc : failed(ssl, rc);
}

Hs handshake(SSL* ssl) noexcept {
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) return Hs::Done;
    switch (SSL_get_error(ssl, rc)) {
        case SSL_ERROR_WANT_READ: return Hs::WantRead;
        case SSL_ERROR_WANT_WRITE: return Hs::WantWrite;
        default: return Hs::Failed;
    }
}

void finish(SSL* ssl) noexcept {
    if (ssl == nullptr) return;
    if (SSL_is_init_finished(ssl)) SSL_shutdown(ssl);
    ERR_clear_error();
    SSL_free(ssl);
}

}  // namespace mcm::tls
