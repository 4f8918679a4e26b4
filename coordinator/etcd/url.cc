#include "coordinator/etcd/url.h"

#include "coordinator/options.h"

namespace mcm::coord::etcd {

bool is_etcd_url(const std::string& s) { return s.rfind("etcd://", 0) == 0; }

bool parse_url(const std::string& s, Url* out, std::string* err) {
    if (!is_etcd_url(s)) {
        *err = "an etcd state wants etcd://HOST:PORT[,HOST:PORT...]/PREFIX";
        return false;
    }
    std::string rest = s.substr(7);
    size_t slash = rest.find('/');
    if (slash == std::string::npos) {
        *err = "etcd URL " + s + " has no /PREFIX";
        return false;
    }
    Url u;
    std::string hosts = rest.substr(0, slash);
    u.prefix = rest.substr(slash);
    while (u.prefix.size() > 1 && u.prefix.back() == '/') u.prefix.pop_back();
    if (u.prefix.size() < 2) {
        *err = "etcd URL " + s + ": the prefix is empty (one cluster per prefix)";
        return false;
    }
    for (char c : u.prefix) {  // it shows in logs and JSON: printable ASCII, no space
        if (c < 0x21 || c > 0x7e) {
            *err = "etcd URL " + s + ": the prefix wants printable ASCII without spaces";
            return false;
        }
    }
    size_t pos = 0;
    while (pos <= hosts.size()) {
        size_t comma = hosts.find(',', pos);
        std::string one = hosts.substr(pos, comma == std::string::npos ? std::string::npos
                                                                        : comma - pos);
        Endpoint ep;
        if (!parse_hostport(one, &ep.host, &ep.port, false)) {
            *err = "etcd URL " + s + ": bad endpoint '" + one + "' (HOST:PORT)";
            return false;
        }
        u.endpoints.push_back(std::move(ep));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    *out = std::move(u);
    return true;
}

}  // namespace mcm::coord::etcd
