#include "coordinator/admin.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "coordinator/clock.h"
#include "coordinator/log.h"
#include "coordinator/metrics.h"

namespace mcm::coord {

using nlohmann::json;

AdminApi::AdminApi(event_base* base, Coordinator* c, std::string secret)
    : base_(base), c_(c), secret_(std::move(secret)) {}

AdminApi::~AdminApi() {
    if (http_ != nullptr) evhttp_free(http_);
}

bool AdminApi::listen(const std::string& host, uint16_t port, std::string* err) {
    http_ = evhttp_new(base_);
    evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(http_, 64 * 1024);
    evhttp_set_timeout(http_, 10);
    evhttp_set_gencb(http_, handle_cb, this);
    evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(http_, host.c_str(), port);
    if (bound == nullptr) {
        *err = "cannot listen on " + host + ":" + std::to_string(port);
        return false;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(bound), reinterpret_cast<sockaddr*>(&ss),
                    &len) != 0) {
        *err = "getsockname failed";
        return false;
    }
    port_ = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    return true;
}

void AdminApi::handle_cb(evhttp_request* req, void* arg) {
    static_cast<AdminApi*>(arg)->handle(req);
}

void AdminApi::handle(evhttp_request* req) {
    std::string method;
    switch (evhttp_request_get_command(req)) {
        case EVHTTP_REQ_GET: method = "GET"; break;
        case EVHTTP_REQ_POST: method = "POST"; break;
        case EVHTTP_REQ_DELETE: method = "DELETE"; break;
        default: return error(req, 405, "method not allowed");
    }
    std::string path = evhttp_request_get_uri(req);
    path = path.substr(0, path.find('?'));
    evbuffer* in = evhttp_request_get_input_buffer(req);
    std::string body(evbuffer_get_length(in), '\0');
    evbuffer_copyout(in, body.data(), body.size());
    route(req, method, path, body);
}

void AdminApi::route(evhttp_request* req, const std::string& method, const std::string& path,
                     const std::string& body) {
    if (method == "GET") {
        if (path == "/status") return reply(req, 200, status_json(*c_));
        if (path == "/map") return reply(req, 200, map_json(*c_));
        if (path == "/metrics") {
            return reply(req, 200, metrics_text(*c_), "text/plain; version=0.0.4");
        }
        if (path == "/auth") return reply(req, 200, json{{"challenge", new_challenge()}}.dump());
        return error(req, 404, "no such resource");
    }
    const std::string nodes = "/nodes", nodes_slash = "/nodes/", fo = "/failover/";
    const std::string drain_suffix = "/drain";
    const bool drain = method == "POST" && path.rfind(nodes_slash, 0) == 0 &&
                       path.size() > nodes_slash.size() + drain_suffix.size() &&
                       path.compare(path.size() - drain_suffix.size(), drain_suffix.size(),
                                    drain_suffix) == 0;
    bool known = (method == "POST" && path == nodes) ||
                 (method == "DELETE" && path.rfind(nodes_slash, 0) == 0) ||
                 (method == "POST" && path.rfind(fo, 0) == 0) || drain ||
                 (method == "POST" && (path == "/rebalance" || path == "/rebalance/cancel"));
    if (!known) return error(req, 404, "no such resource");
    std::string why;
    if (!authorized(req, method, path, body, &why)) return error(req, 401, why);
    if (method == "POST" && path == nodes) {
        json j = json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j.contains("addr") ||
            !j["name"].is_string() || !j["addr"].is_string()) {
            return error(req, 400, "body wants {\"name\": ..., \"addr\": \"host:port\"}");
        }
        bool rebalance = true;  // the new server gets its share of actives once it caught up
        if (j.contains("rebalance")) {
            if (!j["rebalance"].is_boolean()) return error(req, 400, "rebalance wants true/false");
            rebalance = j["rebalance"].get<bool>();
        }
        return outcome(req, c_->add_node(j["name"], j["addr"], rebalance));
    }
    if (path == "/rebalance/cancel") return outcome(req, c_->cancel_rebalance());
    if (path == "/rebalance" || drain) {
        json j = body.empty() ? json::object() : json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return error(req, 400, "body wants a JSON object");
        uint32_t planned = 0;
        Coordinator::Outcome o;
        if (drain) {
            if (j.contains("remove") && !j["remove"].is_boolean()) {
                return error(req, 400, "remove wants true/false");
            }
            std::string name = path.substr(nodes_slash.size(),
                                           path.size() - nodes_slash.size() - drain_suffix.size());
            o = c_->drain_node(name, j.value("remove", false), &planned);
        } else {
            if (j.contains("parallel") && (!j["parallel"].is_number_unsigned() ||
                                           j["parallel"].get<uint64_t>() == 0 ||
                                           j["parallel"].get<uint64_t>() > 64)) {
                return error(req, 400, "parallel wants 1..64");
            }
            o = c_->start_rebalance(j.value("parallel", 0u), "requested by the operator",
                                    &planned);
        }
        if (o.http != 200) return error(req, o.http, o.error);
        return reply(req, 200, json{{"planned", planned}}.dump());
    }
    if (method == "DELETE") return outcome(req, c_->remove_node(path.substr(nodes_slash.size())));
    return outcome(req, c_->failover_node(path.substr(fo.size())));
}

std::string AdminApi::new_challenge() {
    int64_t now = mono_ms();
    for (auto it = challenges_.begin(); it != challenges_.end();) {
        it = it->second < now ? challenges_.erase(it) : std::next(it);
    }
    // Bounded: the oldest goes when a client asks for many and uses none.
    while (challenges_.size() >= kMaxChallenges) {
        auto oldest = challenges_.begin();
        for (auto it = challenges_.begin(); it != challenges_.end(); ++it) {
            if (it->second < oldest->second) oldest = it;
        }
        challenges_.erase(oldest);
    }
    std::string ch = random_hex(32);
    challenges_[ch] = now + kChallengeMs;
    return ch;
}

bool AdminApi::authorized(evhttp_request* req, const std::string& method,
                          const std::string& path, const std::string& body, std::string* why) {
    const char* h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    std::string v = h == nullptr ? "" : h;
    const std::string scheme = "MC-HMAC ";
    size_t sp = v.find(' ', scheme.size());
    if (v.rfind(scheme, 0) != 0 || sp == std::string::npos) {
        *why = "needs Authorization: MC-HMAC <challenge> <proof> (GET /auth for a challenge)";
        return false;
    }
    std::string ch = v.substr(scheme.size(), sp - scheme.size()), proof = v.substr(sp + 1);
    auto it = challenges_.find(ch);
    if (it == challenges_.end() || it->second < mono_ms()) {
        if (it != challenges_.end()) challenges_.erase(it);
        *why = "unknown, expired or used challenge";
        return false;
    }
    challenges_.erase(it);  // good for one try
    std::string want = hmac_hex(secret_, ch + "\n" + method + "\n" + path + "\n" + body);
    if (want.empty() || !equal_ct(want, proof)) {
        *why = "authentication failed";
        return false;
    }
    return true;
}

void AdminApi::reply(evhttp_request* req, int code, const std::string& body, const char* type) {
    evkeyvalq* out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", type);
    evbuffer* buf = evbuffer_new();
    evbuffer_add(buf, body.data(), body.size());
    const char* reason = code == 200   ? "OK"
                         : code == 400 ? "Bad Request"
                         : code == 401 ? "Unauthorized"
                         : code == 404 ? "Not Found"
                         : code == 409 ? "Conflict"
                                       : "Error";
    evhttp_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
}

void AdminApi::error(evhttp_request* req, int code, const std::string& msg) {
    reply(req, code, json{{"error", msg}}.dump() + "\n");
}

void AdminApi::outcome(evhttp_request* req, const Coordinator::Outcome& o) {
    if (o.http != 200) return error(req, o.http, o.error);
    CLOG_DEBUG("admin call done, epoch %llu", static_cast<unsigned long long>(c_->map().epoch));
    reply(req, 200, json{{"ok", true}, {"epoch", c_->map().epoch}}.dump() + "\n");
}

}  // namespace mcm::coord
