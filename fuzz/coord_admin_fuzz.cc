// libFuzzer target: the coordinator's admin API requests past libevent's HTTP framing
// (coordinator/admin_parse.cc: parse_admin_call with the JSON bodies, parse_auth_header,
// admin_path). Input: a first byte picking the method (GET, POST, DELETE), then the URI up to
// the first newline, then the body; the same bytes are also read as an Authorization header.
// Checks:
//   - the call's kind fits the method and path (a name comes from the path, as given);
//     only mutating calls have a body verdict; parallel is 0 or 1..64;
//   - a call with a good body, given the canonical body for its arguments, parses to the same
//     call (JSON in, arguments out, and back);
//   - an Authorization header that parses rebuilds to one that parses to the same parts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "coordinator/admin_parse.h"

using namespace mcm::coord;
using Kind = AdminCall::Kind;
using nlohmann::json;

namespace {

std::string canonical_body(const AdminCall& c) {
    switch (c.kind) {
        case Kind::AddNode:
            return json{{"name", c.name}, {"addr", c.addr}, {"rebalance", c.rebalance}}.dump();
        case Kind::Drain: return json{{"remove", c.remove}}.dump();
        case Kind::Rebalance:
            return c.parallel == 0 ? std::string("{}") : json{{"parallel", c.parallel}}.dump();
        default: return "";
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static const char* const kMethods[] = {"GET", "POST", "DELETE"};
    const std::string method = kMethods[data[0] % 3];
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    const size_t nl = rest.find('\n');
    const std::string_view uri = rest.substr(0, nl);
    const std::string body(nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1));
    const std::string path = admin_path(uri);
    if (path.find('?') != std::string::npos || path.size() > uri.size()) std::abort();

    const AdminCall c = parse_admin_call(method, path, body);
    const bool get_kind = c.kind == Kind::Status || c.kind == Kind::Map ||
                          c.kind == Kind::Metrics || c.kind == Kind::Auth;
    if (get_kind != (method == "GET" && c.kind != Kind::NotFound)) std::abort();
    if (c.mutating != (!get_kind && c.kind != Kind::NotFound)) std::abort();
    if (!c.mutating && !c.bad_body.empty()) std::abort();
    if (c.parallel > 64) std::abort();
    switch (c.kind) {
        case Kind::RemoveNode:
            if (method != "DELETE" || path != "/nodes/" + c.name) std::abort();
            break;
        case Kind::Failover:
            if (method != "POST" || path != "/failover/" + c.name) std::abort();
            break;
        case Kind::Drain:
            if (method != "POST" || c.name.empty() || path != "/nodes/" + c.name + "/drain") {
                std::abort();
            }
            break;
        case Kind::AddNode:
        case Kind::Rebalance:
        case Kind::CancelRebalance:
            if (method != "POST") std::abort();
            break;
        default: break;
    }
    if (c.mutating && c.bad_body.empty()) {
        const std::string canon = canonical_body(c);
        if (!canon.empty()) {
            const AdminCall c2 = parse_admin_call(method, path, canon);
            if (!(c2 == c)) std::abort();
        }
    }

    std::string ch, proof;
    if (parse_auth_header(rest, &ch, &proof)) {
        if (ch.find(' ') != std::string::npos) std::abort();
        std::string ch2, proof2;
        if (!parse_auth_header("MC-HMAC " + ch + " " + proof, &ch2, &proof2) || ch2 != ch ||
            proof2 != proof) {
            std::abort();
        }
        if (admin_signed_text(ch, method, path, body).size() !=
            ch.size() + method.size() + path.size() + body.size() + 3) {
            std::abort();
        }
    }
    return 0;
}
