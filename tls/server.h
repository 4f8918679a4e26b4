// The clients' TLS (-Z, memcached 1.6's -o ssl_* options): one server context built from plain
// values, shared by every worker, swapped whole by refresh_certs. Knows nothing of the server's
// settings or connections: a connection takes a reference to the current context (acquire())
// and makes its session from it; the counters live here so that every context shares them.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace mcm::tls {

struct ServerTlsConfig {
    std::string chain_cert;  // ssl_chain_cert: PEM chain, server certificate first ("": none)
    std::string key;         // ssl_key ("": none)
    int keyformat = SSL_FILETYPE_PEM;  // ssl_keyformat: 1 PEM, 2 DER (ASN.1), as OpenSSL's
    int verify_mode = 0;     // ssl_verify_mode: 0 none, 1 request, 2 require, 3 once
    std::string ca_cert;     // ssl_ca_cert: PEM file of the CAs client certificates chain to
    std::string ciphers;     // ssl_ciphers: an OpenSSL cipher list (TLS 1.2 and below)
    int min_version = 2;     // ssl_min_version: 0 TLSv1.0, 1 TLSv1.1, 2 TLSv1.2, 3 TLSv1.3
    bool session_cache = false;  // ssl_session_cache: server-side cache, counts new sessions
    bool kernel_tls = false;     // ssl_kernel_tls: SSL_OP_ENABLE_KTLS (OpenSSL uses it if it can)
};

// The valid ssl_verify_mode / ssl_min_version numbers, and the names memcached shows.
constexpr int kVerifyModeMax = 3;
constexpr int kMinVersionMax = 3;
const char* min_version_name(int v) noexcept;  // "tlsv1.2"; "unknown" out of range
int verify_flags(int mode) noexcept;           // SSL_VERIFY_* bits of an ssl_verify_mode

class ServerTls {
public:
    // Builds the first context. Null with *err set to memcached's message ("Error loading the
    // key: <path> : <openssl error>") when a file or an option is bad; the rest of OpenSSL's
    // error queue, if any, went to stderr as memcached prints it.
    static std::unique_ptr<ServerTls> create(const ServerTlsConfig& cfg, std::string* err);
    ~ServerTls();
    ServerTls(const ServerTls&) = delete;
    ServerTls& operator=(const ServerTls&) = delete;

    // refresh_certs: builds a new context from the same files, read again, and swaps it in
    // (thread-safe). The old context lives on in the sessions made from it. On failure the
    // current context stays and *err holds memcached's message.
    bool refresh(std::string* err);
    // A new reference to the current context (SSL_CTX_free it once the session is made).
    SSL_CTX* acquire() const;
    // Run on every context built from now on, the current one included (e.g. a client-hello
    // callback that moves a cluster peer's handshake to the peer context). Startup only.
    void set_context_hook(std::function<void(SSL_CTX*)> hook);

    const ServerTlsConfig& config() const noexcept { return cfg_; }

    // Counters for `stats` (any thread).
    std::atomic<uint64_t> handshake_errors{0};
    std::atomic<uint64_t> new_sessions{0};  // with ssl_session_cache only
    // Server clock second of the last successful refresh; 0 = the certificates loaded at start
    // (so memcached's time_since_server_cert_refresh counts from the clock's zero).
    std::atomic<int64_t> last_refresh{0};

private:
    explicit ServerTls(ServerTlsConfig cfg) : cfg_(std::move(cfg)) {}
    SSL_CTX* build(std::string* err);

    ServerTlsConfig cfg_;
    std::function<void(SSL_CTX*)> hook_;
    mutable std::mutex mu_;
    SSL_CTX* ctx_ = nullptr;
};

// A server-side session (accept state) on an accepted socket, from ctx (any server context);
// null on failure. The caller drives the handshake (SSL_do_handshake, tls::handshake).
SSL* new_server_session(SSL_CTX* ctx, int fd);
// The first queued OpenSSL error as memcached words it ("error:0A00007C:SSL routines::..."),
// the queue cleared.
std::string first_error();

}  // namespace mcm::tls
