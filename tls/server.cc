#include "tls/server.h"

#include <openssl/err.h>

#include <cerrno>
#include <cstdio>

namespace mcm::tls {
namespace {

constexpr char kSessionIdContext[] = "memcached";  // the same scope as memcached's sessions

int ex_index() {
    static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return idx;
}

// ssl_session_cache: counts each session the server makes (stats ssl_new_sessions); OpenSSL
// keeps the session itself (return 0: no reference taken here).
int on_new_session(SSL* ssl, SSL_SESSION*) {
    auto* self = static_cast<ServerTls*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index()));
    if (self != nullptr) self->new_sessions.fetch_add(1, std::memory_order_relaxed);
    return 0;
}

// memcached hands OpenSSL a null path when an option was not given; the C library then says
// "Bad address". The same words here, without giving OpenSSL a null pointer.
std::string null_path_error() {
    char buf[256];
    ERR_error_string_n(ERR_SYSTEM_FLAG | EFAULT, buf, sizeof(buf));
    return buf;
}

}  // namespace

const char* min_version_name(int v) noexcept {
    switch (v) {
        case 0: return "tlsv1.0";
        case 1: return "tlsv1.1";
        case 2: return "tlsv1.2";
        case 3: return "tlsv1.3";
        default: return "unknown";
    }
}

int verify_flags(int mode) noexcept {
    switch (mode) {
        case 1: return SSL_VERIFY_PEER;
        case 2: return SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        case 3: return SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
        default: return SSL_VERIFY_NONE;
    }
}

std::string first_error() {
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

namespace {
// The first error goes into the message; the rest of the queue to stderr, as memcached.
std::string take_errors() {
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
    ERR_print_errors_fp(stderr);
    return buf;
}
}  // namespace

SSL_CTX* ServerTls::build(std::string* err) {
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) {
        *err = "Error creating the SSL context: " + take_errors();
        return nullptr;
    }
    auto fail = [&](std::string msg) -> SSL_CTX* {
        *err = std::move(msg);
        SSL_CTX_free(ctx);
        return nullptr;
    };
    static const int kVersions[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION};
    int mv = cfg_.min_version < 0 || cfg_.min_version > kMinVersionMax ? 2 : cfg_.min_version;
    SSL_CTX_set_min_proto_version(ctx, kVersions[mv]);
    // Renegotiation is refused, as memcached closes a connection that tries it.
    uint64_t opts = SSL_OP_NO_RENEGOTIATION;
#ifdef SSL_OP_ENABLE_KTLS
    if (cfg_.kernel_tls) opts |= SSL_OP_ENABLE_KTLS;
#endif
    SSL_CTX_set_options(ctx, opts);
    // Replies are written from a buffer that may move between retries; a partial write is
    // a success (the rest is written on the next turn).
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (cfg_.chain_cert.empty()) {
        return fail(std::string("Error loading the certificate chain: (null) : ") +
                    null_path_error());
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg_.chain_cert.c_str()) != 1) {
        std::string e = take_errors();
        return fail("Error loading the certificate chain: " + cfg_.chain_cert + " : " + e);
    }
    if (cfg_.key.empty()) {
        return fail(std::string("Error loading the key: (null) : ") + null_path_error());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg_.key.c_str(), cfg_.keyformat) != 1) {
        std::string e = take_errors();
        return fail("Error loading the key: " + cfg_.key + " : " + e);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_print_errors_fp(stderr);
        return fail("Error validating the certificate");
    }
    if (!cfg_.ca_cert.empty()) {
        if (SSL_CTX_load_verify_locations(ctx, cfg_.ca_cert.c_str(), nullptr) != 1) {
            std::string e = take_errors();
            return fail("Error loading the CA certificate: " + cfg_.ca_cert + " : " + e);
        }
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg_.ca_cert.c_str());
        if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, verify_flags(cfg_.verify_mode), nullptr);
    if (!cfg_.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, cfg_.ciphers.c_str()) != 1) {
        ERR_clear_error();
        return fail("Error setting the provided cipher(s): " + cfg_.ciphers);
    }
    if (cfg_.session_cache) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(kSessionIdContext),
                                       sizeof(kSessionIdContext) - 1);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    }
    SSL_CTX_set_ex_data(ctx, ex_index(), this);
    if (hook_) hook_(ctx);
    return ctx;
}

std::unique_ptr<ServerTls> ServerTls::create(const ServerTlsConfig& cfg, std::string* err) {
    std::unique_ptr<ServerTls> t(new ServerTls(cfg));
    t->ctx_ = t->build(err);
    if (t->ctx_ == nullptr) return nullptr;
    return t;
}

ServerTls::~ServerTls() { SSL_CTX_free(ctx_); }

bool ServerTls::refresh(std::string* err) {
    SSL_CTX* fresh = build(err);
    if (fresh == nullptr) return false;
    {
        std::lock_guard<std::mutex> g(mu_);
        std::swap(ctx_, fresh);
    }
    SSL_CTX_free(fresh);  // the old one: open sessions hold their own references
    return true;
}

SSL_CTX* ServerTls::acquire() const {
    std::lock_guard<std::mutex> g(mu_);
    SSL_CTX_up_ref(ctx_);
    return ctx_;
}

void ServerTls::set_context_hook(std::function<void(SSL_CTX*)> hook) {
    hook_ = std::move(hook);
    std::lock_guard<std::mutex> g(mu_);
    if (hook_ && ctx_ != nullptr) hook_(ctx_);
}

SSL* new_server_session(SSL_CTX* ctx, int fd) {
    SSL* ssl = SSL_new(ctx);
    if (ssl == nullptr) {
        ERR_clear_error();
        return nullptr;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        return nullptr;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

}  // namespace mcm::tls
