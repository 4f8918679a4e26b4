#include "coordinator/admin_parse.h"

#include <nlohmann/json.hpp>

namespace mcm::coord {

using nlohmann::json;
using Kind = AdminCall::Kind;

std::string admin_path(std::string_view uri) { return std::string(uri.substr(0, uri.find('?'))); }

AdminCall parse_admin_call(const std::string& method, const std::string& path,
                           const std::string& body) {
    AdminCall c;
    if (method == "GET") {
        if (path == "/status") c.kind = Kind::Status;
        if (path == "/map") c.kind = Kind::Map;
        if (path == "/metrics") c.kind = Kind::Metrics;
        if (path == "/auth") c.kind = Kind::Auth;
        return c;
    }
    const std::string nodes = "/nodes", nodes_slash = "/nodes/", fo = "/failover/";
    const std::string drain_suffix = "/drain";
    const bool drain = method == "POST" && path.rfind(nodes_slash, 0) == 0 &&
                       path.size() > nodes_slash.size() + drain_suffix.size() &&
                       path.compare(path.size() - drain_suffix.size(), drain_suffix.size(),
                                    drain_suffix) == 0;
    if (method == "POST" && path == nodes) {
        c.kind = Kind::AddNode;
    } else if (method == "DELETE" && path.rfind(nodes_slash, 0) == 0) {
        c.kind = Kind::RemoveNode;
        c.name = path.substr(nodes_slash.size());
    } else if (method == "POST" && path.rfind(fo, 0) == 0) {
        c.kind = Kind::Failover;
        c.name = path.substr(fo.size());
    } else if (drain) {
        c.kind = Kind::Drain;
        c.name = path.substr(nodes_slash.size(),
                             path.size() - nodes_slash.size() - drain_suffix.size());
    } else if (method == "POST" && path == "/rebalance") {
        c.kind = Kind::Rebalance;
    } else if (method == "POST" && path == "/rebalance/cancel") {
        c.kind = Kind::CancelRebalance;
    } else {
        return c;  // NotFound
    }
    c.mutating = true;
    if (c.kind == Kind::AddNode) {
        json j = json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j.contains("addr") ||
            !j["name"].is_string() || !j["addr"].is_string()) {
            c.bad_body = "body wants {\"name\": ..., \"addr\": \"host:port\"}";
            return c;
        }
        if (j.contains("rebalance")) {
            if (!j["rebalance"].is_boolean()) {
                c.bad_body = "rebalance wants true/false";
                return c;
            }
            c.rebalance = j["rebalance"].get<bool>();
        }
        c.name = j["name"].get<std::string>();
        c.addr = j["addr"].get<std::string>();
        return c;
    }
    if (c.kind == Kind::Rebalance || c.kind == Kind::Drain) {
        json j = body.empty() ? json::object() : json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            c.bad_body = "body wants a JSON object";
            return c;
        }
        if (c.kind == Kind::Drain) {
            if (j.contains("remove") && !j["remove"].is_boolean()) {
                c.bad_body = "remove wants true/false";
                return c;
            }
            c.remove = j.value("remove", false);
        } else {
            if (j.contains("parallel") && (!j["parallel"].is_number_unsigned() ||
                                           j["parallel"].get<uint64_t>() == 0 ||
                                           j["parallel"].get<uint64_t>() > 64)) {
                c.bad_body = "parallel wants 1..64";
                return c;
            }
            c.parallel = j.value("parallel", 0u);
        }
    }
    return c;
}

bool parse_auth_header(std::string_view v, std::string* challenge, std::string* proof) {
    const std::string_view scheme = "MC-HMAC ";
    size_t sp = v.find(' ', scheme.size());
    if (!v.starts_with(scheme) || sp == std::string_view::npos) return false;
    *challenge = std::string(v.substr(scheme.size(), sp - scheme.size()));
    *proof = std::string(v.substr(sp + 1));
    return true;
}

std::string admin_signed_text(const std::string& challenge, const std::string& method,
                              const std::string& path, const std::string& body) {
    return challenge + "\n" + method + "\n" + path + "\n" + body;
}

}  // namespace mcm::coord
