// The admin API's requests (coordinator/admin.cc) as data: which call a method and path name,
// the arguments its JSON body gives, and the Authorization header's parts. Pure: no libevent,
// no Coordinator; fuzz/coord_admin_fuzz.cc and the unit tests feed it arbitrary bytes. The
// HTTP framing itself is libevent's (evhttp), which hands AdminApi the method, URI and body.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mcm::coord {

struct AdminCall {
    enum class Kind : uint8_t {
        NotFound,         // 404: no such resource
        Status,           // GET /status
        Map,              // GET /map
        Metrics,          // GET /metrics
        Auth,             // GET /auth: a challenge
        AddNode,          // POST /nodes {"name", "addr", "rebalance"?}: name, addr, rebalance
        RemoveNode,       // DELETE /nodes/<name>: name
        Failover,         // POST /failover/<name>: name
        Drain,            // POST /nodes/<name>/drain {"remove"?}: name, remove
        Rebalance,        // POST /rebalance {"parallel"?}: parallel (0: the default)
        CancelRebalance,  // POST /rebalance/cancel
    };
    Kind kind = Kind::NotFound;
    // A call that changes something: it needs the Authorization header, checked before the
    // body is judged (bad_body is answered only to an authorized caller).
    bool mutating = false;
    std::string bad_body;  // non-empty: 400 with this message
    std::string name, addr;
    bool rebalance = true;
    bool remove = false;
    uint32_t parallel = 0;
    bool operator==(const AdminCall&) const = default;
};

// The path of a request URI: everything before the first '?'.
std::string admin_path(std::string_view uri);
// method: "GET", "POST" or "DELETE"; path: admin_path() of the URI.
AdminCall parse_admin_call(const std::string& method, const std::string& path,
                           const std::string& body);
// "MC-HMAC <challenge> <proof>": false unless it has the scheme and a space after the
// challenge (the challenge may be empty, the proof anything).
bool parse_auth_header(std::string_view v, std::string* challenge, std::string* proof);
// What the proof signs: challenge, method, path and body, newline-separated.
std::string admin_signed_text(const std::string& challenge, const std::string& method,
                              const std::string& path, const std::string& body);

}  // namespace mcm::coord
