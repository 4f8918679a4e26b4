// Where the coordinator's etcd state lives: etcd://HOST:PORT[,HOST:PORT...]/PREFIX. Pure
// parsing (the option parser checks --state with it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mcm::coord::etcd {

struct Endpoint {
    std::string host;
    uint16_t port = 0;
    std::string str() const { return host + ":" + std::to_string(port); }
    bool operator==(const Endpoint&) const = default;
};

// etcd://HOST:PORT[,HOST:PORT...]/PREFIX. The prefix keeps its leading '/', has no trailing
// one, and is not empty: one cluster per prefix.
// etcd's client TLS (--etcd-cacert, --etcd-cert, --etcd-key, as etcdctl names them): with a
// CA, every endpoint is reached over https and its certificate verified against the CA; with
// a certificate and key too, this process proves itself (etcd's --client-cert-auth).
struct TlsFiles {
    std::string ca, cert, key;
    bool on() const noexcept { return !ca.empty(); }
};

struct Url {
    std::vector<Endpoint> endpoints;
    std::string prefix;
    TlsFiles tls;  // not part of the text: from the options
};
bool is_etcd_url(const std::string& s);
bool parse_url(const std::string& s, Url* out, std::string* err);

}  // namespace mcm::coord::etcd
