#include "tls/peer.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <cstring>

namespace mcm::tls {
namespace {

// The server side picks "mcm-peer" when the hello offers it (a peer context only ever sees
// peers); a hello without it still completes and is refused by the certificate check.
int select_peer_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void*) {
    unsigned char* sel = nullptr;
    if (SSL_select_next_proto(&sel, outlen, kPeerAlpn, sizeof(kPeerAlpn), in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

// One context with this process's certificate and the cluster's CA; server_side demands the
// other end's certificate.
SSL_CTX* build(const PeerTlsConfig& cfg, bool server_side, std::string* err) {
    SSL_CTX* ctx = SSL_CTX_new(server_side ? TLS_server_method() : TLS_client_method());
    if (ctx == nullptr) {
        *err = "peer TLS: " + last_error();
        return nullptr;
    }
    auto fail = [&](const std::string& what) {
        *err = what + ": " + last_error();
        SSL_CTX_free(ctx);
        return nullptr;
    };
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg.cert_file.c_str()) != 1) {
        return fail("peer_tls_cert " + cfg.cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        return fail("peer_tls_key " + cfg.key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) return fail("peer_tls_key does not match peer_tls_cert");
    if (SSL_CTX_load_verify_locations(ctx, cfg.ca_file.c_str(), nullptr) != 1) {
        return fail("peer_tls_ca " + cfg.ca_file);
    }
    if (server_side) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        SSL_CTX_set_alpn_select_cb(ctx, select_peer_alpn, nullptr);
        // Peer links are few and long-lived: no resumption, no tickets to write mid-stream.
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 0);
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.ca_file.c_str());
        if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        if (SSL_CTX_set_alpn_protos(ctx, kPeerAlpn, sizeof(kPeerAlpn)) != 0) {
            return fail("peer TLS ALPN");
        }
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

}  // namespace

std::string last_error() {
    unsigned long e = ERR_get_error();
    std::string out;
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        out = buf;
    }
    ERR_clear_error();
    return out.empty() ? "unknown TLS error" : out;
}

std::unique_ptr<PeerTls> PeerTls::create(const PeerTlsConfig& cfg, std::string* err) {
    std::unique_ptr<PeerTls> p(new PeerTls(cfg));
    if (!p->reload(err)) return nullptr;
    return p;
}

PeerTls::~PeerTls() {
    SSL_CTX_free(client_);
    SSL_CTX_free(server_);
}

bool PeerTls::reload(std::string* err) {
    if (cfg_.key_file.empty() || cfg_.ca_file.empty()) {
        *err = "peer TLS needs peer_tls_cert, peer_tls_key and peer_tls_ca";
        return false;
    }
    SSL_CTX* c = build(cfg_, false, err);
    if (c == nullptr) return false;
    SSL_CTX* s = build(cfg_, true, err);
    if (s == nullptr) {
        SSL_CTX_free(c);
        return false;
    }
    std::lock_guard<std::mutex> g(mu_);
    std::swap(client_, c);
    std::swap(server_, s);
    SSL_CTX_free(c);  // sessions made from the old contexts hold their own references
    SSL_CTX_free(s);
    return true;
}

SSL_CTX* PeerTls::client_ctx() const {
    std::lock_guard<std::mutex> g(mu_);
    SSL_CTX_up_ref(client_);
    return client_;
}

SSL_CTX* PeerTls::server_ctx() const {
    std::lock_guard<std::mutex> g(mu_);
    SSL_CTX_up_ref(server_);
    return server_;
}

namespace {

// A session of ctx (whose reference it consumes) on fd (none yet if fd < 0).
SSL* new_session(SSL_CTX* ctx, int fd, bool connect) {
    SSL* ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    if (ssl == nullptr) return nullptr;
    if (fd >= 0 && SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return nullptr;
    }
    if (connect) {
        SSL_set_connect_state(ssl);
    } else {
        SSL_set_accept_state(ssl);
    }
    return ssl;
}

}  // namespace

SSL* PeerTls::dial(int fd) const { return new_session(client_ctx(), fd, true); }

SSL* PeerTls::accept(int fd) const { return new_session(server_ctx(), fd, false); }

bool PeerTls::adopt_if_peer(SSL* ssl) const {
    if (!hello_offers_peer_alpn(ssl)) return false;
    SSL_CTX* ctx = server_ctx();
    SSL_set_SSL_CTX(ssl, ctx);  // takes its own reference
    SSL_CTX_free(ctx);
    // The verification mode is the session's own, copied from the first context: set it here.
    SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_set_num_tickets(ssl, 0);
    return true;
}

bool hello_offers_peer_alpn(SSL* ssl) {
    const unsigned char* p = nullptr;
    size_t len = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                  &len) != 1 ||
        len < 2) {
        return false;
    }
    size_t list = (static_cast<size_t>(p[0]) << 8) | p[1];
    if (list + 2 > len) return false;
    for (size_t i = 2; i < 2 + list;) {
        size_t n = p[i];
        if (i + 1 + n > 2 + list) return false;
        if (n + 1 == sizeof(kPeerAlpn) && std::memcmp(p + i, kPeerAlpn, sizeof(kPeerAlpn)) == 0) {
            return true;
        }
        i += 1 + n;
    }
    return false;
}

bool is_peer_session(const SSL* ssl) {
    const unsigned char* p = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return peer_verified(ssl) && len + 1 == sizeof(kPeerAlpn) &&
           std::memcmp(p, kPeerAlpn + 1, len) == 0;
}

int peer_hello_cb(SSL* ssl, int*, void* arg) {
    static_cast<const PeerTls*>(arg)->adopt_if_peer(ssl);
    return SSL_CLIENT_HELLO_SUCCESS;
}

bool peer_verified(const SSL* ssl) {
    return ssl != nullptr && SSL_get0_peer_certificate(ssl) != nullptr &&
           SSL_get_verify_result(ssl) == X509_V_OK;
}

}  // namespace mcm::tls
