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
struct Url {
    std::vector<Endpoint> endpoints;
    std::string prefix;
};
bool is_etcd_url(const std::string& s);
bool parse_url(const std::string& s, Url* out, std::string* err);

}  // namespace mcm::coord::etcd
