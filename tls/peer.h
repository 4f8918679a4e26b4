// The cluster's own TLS (doc/managed.md, "Peer TLS"): every server and every coordinator holds a
// certificate signed by the cluster's CA, and both ends of every peer link (forwarding,
// replication, the coordinator's connections) verify the other's. The HMAC challenge still runs
// on top: TLS proves a peer belongs to the cluster's PKI, the secret that it may give orders.
//
// A peer says it is one in its ClientHello (ALPN "mcm-peer"), so a server needs no second port:
// on a plain port a connection whose first byte opens a TLS record is a peer's; on a -Z port the
// client-hello callback moves a peer's handshake from the clients' context to this one.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <string>

namespace mcm::tls {

// ALPN protocol name of a peer link, as it goes on the wire (length-prefixed).
inline constexpr unsigned char kPeerAlpn[] = {8, 'm', 'c', 'm', '-', 'p', 'e', 'e', 'r'};

struct PeerTlsConfig {
    std::string ca_file;    // the cluster's CA (PEM): what a peer's certificate must chain to
    std::string cert_file;  // this process's certificate chain (PEM)
    std::string key_file;   // its private key (PEM)
    bool enabled() const noexcept { return !cert_file.empty(); }
};

class PeerTls {
public:
    // Loads the files; null with *err set ("peer_tls_cert: <reason>") when one is bad.
    static std::unique_ptr<PeerTls> create(const PeerTlsConfig& cfg, std::string* err);
    ~PeerTls();
    PeerTls(const PeerTls&) = delete;
    PeerTls& operator=(const PeerTls&) = delete;

    // A client-side session on a connected (or connecting) socket: offers ALPN "mcm-peer",
    // presents this process's certificate and verifies the other end's. Null on failure.
    // fd < 0: no socket yet (a libevent OpenSSL bufferevent sets it when it connects).
    SSL* dial(int fd) const;
    // A server-side session for a connection known to be a peer's (a plain port saw a TLS
    // record): it demands a certificate that chains to the CA.
    SSL* accept(int fd) const;
    // In a client-hello callback of another context (a -Z port's): if the hello offers ALPN
    // "mcm-peer", moves the session to the peer context (certificate, CA, verification) and
    // returns true.
    bool adopt_if_peer(SSL* ssl) const;
    // The accepting side's context (a new reference: SSL_CTX_free it), for a connection that
    // opened with a TLS record on a plain port.
    SSL_CTX* acquire_server_ctx() const { return server_ctx(); }
    // Reads the files again (refresh_certs); the sessions already open keep their context.
    bool reload(std::string* err);

    const PeerTlsConfig& config() const noexcept { return cfg_; }

private:
    explicit PeerTls(PeerTlsConfig cfg) : cfg_(std::move(cfg)) {}
    SSL_CTX* client_ctx() const;  // new references; SSL_CTX_free them
    SSL_CTX* server_ctx() const;

    PeerTlsConfig cfg_;
    mutable std::mutex mu_;
    SSL_CTX* client_ = nullptr;
    SSL_CTX* server_ = nullptr;
};

// True if a session's hello (client-hello callback) offers ALPN "mcm-peer".
bool hello_offers_peer_alpn(SSL* ssl);
// True if the connection verified a certificate from the other end (a peer's session after
// its handshake).
bool peer_verified(const SSL* ssl);
// True if a completed session is a peer's: ALPN "mcm-peer" agreed (only the peer context
// agrees to it) and a verified certificate.
bool is_peer_session(const SSL* ssl);
// A client-hello callback for a -Z port's context (SSL_CTX_set_client_hello_cb, arg: the
// PeerTls): moves a peer's hello to the peer context.
int peer_hello_cb(SSL* ssl, int* alert, void* arg);
// The first queued OpenSSL error as text, and the queue cleared ("" if none).
std::string last_error();

}  // namespace mcm::tls
