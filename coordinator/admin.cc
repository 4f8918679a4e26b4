#include "coordinator/admin.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "coordinator/admin_parse.h"
#include "coordinator/clock.h"
#include "coordinator/control_plane.h"
#include "coordinator/log.h"
#include "coordinator/metrics.h"

namespace mcm::coord {

using nlohmann::json;

AdminApi::AdminApi(event_base* base, Supervisor* sup, std::string secret)
    : base_(base), sup_(sup), secret_(std::move(secret)) {}

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
    std::string path = admin_path(evhttp_request_get_uri(req));
    evbuffer* in = evhttp_request_get_input_buffer(req);
    std::string body(evbuffer_get_length(in), '\0');
    evbuffer_copyout(in, body.data(), body.size());
    route(req, method, path, body);
}

// What the call is and what its body says come from parse_admin_call (admin_parse.cc, pure
// and fuzzed); this answers it.
void AdminApi::route(evhttp_request* req, const std::string& method, const std::string& path,
                     const std::string& body) {
    using Kind = AdminCall::Kind;
    const AdminCall c = parse_admin_call(method, path, body);
    Coordinator* const co = sup_->leader();
    if (co == nullptr && c.kind != Kind::Auth && c.kind != Kind::NotFound) {
        return follower(req, c.mutating, path, static_cast<int>(c.kind));
    }
    switch (c.kind) {
        case Kind::Status: {
            json j = json::parse(status_json(*co));
            j["role"] = "leader";
            j["control_plane"] = control_plane_json(*sup_);
            return reply(req, 200, j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
        }
        case Kind::Map: return reply(req, 200, map_json(*co));
        case Kind::Metrics:
            return reply(req, 200, metrics_text(*co) + control_plane_metrics(*sup_),
                         "text/plain; version=0.0.4");
        case Kind::Auth: return reply(req, 200, json{{"challenge", new_challenge()}}.dump());
        case Kind::NotFound: return error(req, 404, "no such resource");
        default: break;
    }
    std::string why;
    if (!authorized(req, method, path, body, &why)) return error(req, 401, why);
    if (!c.bad_body.empty()) return error(req, 400, c.bad_body);
    switch (c.kind) {
        case Kind::AddNode: return outcome(req, co, co->add_node(c.name, c.addr, c.rebalance));
        case Kind::CancelRebalance: return outcome(req, co, co->cancel_rebalance());
        case Kind::Rebalance:
        case Kind::Drain: {
            uint32_t planned = 0;
            Coordinator::Outcome o =
                c.kind == Kind::Drain
                    ? co->drain_node(c.name, c.remove, &planned)
                    : co->start_rebalance(c.parallel, "requested by the operator", &planned);
            if (o.http != 200) return error(req, o.http, o.error);
            return reply(req, 200, json{{"planned", planned}}.dump());
        }
        case Kind::RemoveNode: return outcome(req, co, co->remove_node(c.name));
        case Kind::Failover: return outcome(req, co, co->failover_node(c.name));
        default: return error(req, 404, "no such resource");
    }
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
    std::string ch, proof;
    if (!parse_auth_header(v, &ch, &proof)) {
        *why = "needs Authorization: MC-HMAC <challenge> <proof> (GET /auth for a challenge)";
        return false;
    }
    auto it = challenges_.find(ch);
    if (it == challenges_.end() || it->second < mono_ms()) {
        if (it != challenges_.end()) challenges_.erase(it);
        *why = "unknown, expired or used challenge";
        return false;
    }
    challenges_.erase(it);  // good for one try
    std::string want = hmac_hex(secret_, admin_signed_text(ch, method, path, body));
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
                         : code == 307 ? "Temporary Redirect"
                         : code == 503 ? "Service Unavailable"
                                       : "Error";
    evhttp_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
}

void AdminApi::error(evhttp_request* req, int code, const std::string& msg) {
    // (msg may quote a server's reply: not UTF-8 is written as U+FFFD, not thrown.)
    reply(req, code, json{{"error", msg}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

void AdminApi::outcome(evhttp_request* req, Coordinator* c, const Coordinator::Outcome& o) {
    if (o.http != 200) return error(req, o.http, o.error);
    CLOG_DEBUG("admin call done, epoch %llu", static_cast<unsigned long long>(c->map().epoch));
    reply(req, 200, json{{"ok", true}, {"epoch", c->map().epoch}}.dump() + "\n");
}

// A follower (etcd backend) answers reads from etcd and its own view, and sends every
// mutating call to the leader: 307 with Location, so the caller signs it again there (a
// challenge is good only where it was issued). No leader known: 503.
void AdminApi::follower(evhttp_request* req, bool mutating, const std::string& path, int kind) {
    using Kind = AdminCall::Kind;
    if (!mutating) {
        switch (static_cast<Kind>(kind)) {
            case Kind::Status: return reply(req, 200, follower_status_json(*sup_));
            case Kind::Map: {
                std::string out, err;
                if (!follower_map_json(*sup_, &out, &err)) {
                    return error(req, 503, "this coordinator follows and cannot read the map "
                                           "from etcd: " + err);
                }
                return reply(req, 200, out);
            }
            case Kind::Metrics:
                return reply(req, 200, control_plane_metrics(*sup_), "text/plain; version=0.0.4");
            default: return error(req, 404, "no such resource");
        }
    }
    const etcd::Elector* e = sup_->elector();
    const etcd::ElectionView v = e != nullptr ? e->view() : etcd::ElectionView{};
    if (v.leader_admin.empty() || v.leader_id == v.id) {
        return error(req, 503, "no coordinator leads right now (an election is under way, or "
                               "etcd is unreachable); try again");
    }
    const std::string location = "http://" + v.leader_admin + path;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", location.c_str());
    json j{{"error", "this coordinator follows; " + v.leader_id + " at " + v.leader_admin +
                         " leads"},
           {"leader", {{"id", v.leader_id}, {"admin", v.leader_admin}}}};
    reply(req, 307, j.dump() + "\n");
}

}  // namespace mcm::coord
