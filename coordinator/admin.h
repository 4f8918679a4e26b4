// The admin API (doc/coordinator.md, contract): evhttp on --listen, JSON bodies, mutating
// calls authenticated with one-use HMAC challenges. Lives on the coordinator's loop; calls the
// Coordinator for every decision while this process leads. A follower (etcd backend) answers
// reads itself and redirects every mutating call to the leader (307, Location).
#pragma once

#include <event2/event.h>
#include <event2/http.h>

#include <cstdint>
#include <map>
#include <string>

#include "coordinator/coordinator.h"
#include "coordinator/supervisor.h"

namespace mcm::coord {

class AdminApi {
public:
    AdminApi(event_base* base, Supervisor* sup, std::string secret);
    ~AdminApi();
    AdminApi(const AdminApi&) = delete;
    AdminApi& operator=(const AdminApi&) = delete;

    // Binds host:port (0: the OS picks). False with *err.
    bool listen(const std::string& host, uint16_t port, std::string* err);
    uint16_t port() const { return port_; }

private:
    static constexpr int64_t kChallengeMs = 60000;
    static constexpr size_t kMaxChallenges = 1024;

    static void handle_cb(evhttp_request* req, void* arg);
    void handle(evhttp_request* req);
    void route(evhttp_request* req, const std::string& method, const std::string& path,
               const std::string& body);
    std::string new_challenge();
    // Checks (and consumes) the Authorization header of a mutating call.
    bool authorized(evhttp_request* req, const std::string& method, const std::string& path,
                    const std::string& body, std::string* why);
    void reply(evhttp_request* req, int code, const std::string& body,
               const char* type = "application/json");
    void error(evhttp_request* req, int code, const std::string& msg);
    void outcome(evhttp_request* req, Coordinator* c, const Coordinator::Outcome& o);
    void follower(evhttp_request* req, bool mutating, const std::string& path, int kind);

    event_base* base_;
    Supervisor* sup_;
    std::string secret_;
    evhttp* http_ = nullptr;
    uint16_t port_ = 0;
    std::map<std::string, int64_t> challenges_;  // challenge -> expiry (mono ms)
};

}  // namespace mcm::coord
