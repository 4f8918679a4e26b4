// A small, blocking client of etcd's v3 API through its JSON gateway (libcurl for HTTP,
// nlohmann-json for the bodies): ranges, puts, transactions, leases and member status. One
// Client per thread (it owns a curl handle); nothing here touches the event loop.
//
// Several endpoints may be given: a call goes to the one that answered last, and moves on to
// the next when that one cannot be reached or times out, all within the call's time budget.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/etcd/url.h"

namespace mcm::coord::etcd {

struct KeyValue {
    std::string key, value;
    int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

// A transaction: if every comparison holds, the success operations run, else the failure
// ones; range operations report what they found.
class Txn {
public:
    Txn& if_lease(const std::string& key, int64_t lease);          // key's lease == lease
    Txn& if_mod_revision(const std::string& key, int64_t rev);     // 0: key absent
    Txn& if_create_revision(const std::string& key, int64_t rev);  // 0: key absent
    Txn& put(const std::string& key, const std::string& value, int64_t lease = 0);
    Txn& get(const std::string& key);
    Txn& del(const std::string& key);
    Txn& otherwise();  // the operations after this go to the failure branch
    nlohmann::json body() const;

private:
    nlohmann::json& ops() { return failure_branch_ ? failure_ : success_; }
    nlohmann::json compare_ = nlohmann::json::array();
    nlohmann::json success_ = nlohmann::json::array();
    nlohmann::json failure_ = nlohmann::json::array();
    bool failure_branch_ = false;
};

struct TxnResult {
    bool succeeded = false;
    int64_t revision = 0;  // the store's revision after the transaction
    // One entry per operation of the branch that ran: what a get found (nullopt: absent, or
    // not a get).
    std::vector<std::optional<KeyValue>> gets;
};

struct MemberStatus {
    std::string version;
    uint64_t member_id = 0, leader_id = 0, raft_term = 0;
    int64_t db_size = 0;
    std::vector<std::string> errors;
};

class Client {
public:
    Client(std::vector<Endpoint> endpoints, int64_t timeout_ms, TlsFiles tls = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    void set_timeout(int64_t ms) { timeout_ms_ = ms; }

    // Each returns false with *err when no endpoint answered in time or etcd refused.
    bool get(const std::string& key, std::optional<KeyValue>* out, std::string* err);
    bool get_prefix(const std::string& prefix, std::vector<KeyValue>* out, std::string* err);
    bool put(const std::string& key, const std::string& value, int64_t lease, std::string* err);
    bool txn(const Txn& t, TxnResult* out, std::string* err);
    // The granted TTL may be longer than asked (etcd's minimum).
    bool lease_grant(int64_t ttl_s, int64_t* id, int64_t* granted_ttl_s, std::string* err);
    // *ttl_s is 0 when the lease has expired or was revoked.
    bool lease_keepalive(int64_t id, int64_t* ttl_s, std::string* err);
    bool lease_revoke(int64_t id, std::string* err);
    // One member's own view, asked of that member only.
    bool status(const Endpoint& ep, MemberStatus* out, std::string* err);

    const std::vector<Endpoint>& endpoints() const { return endpoints_; }
    // The endpoint that answered last.
    const Endpoint& current() const { return endpoints_[current_]; }

private:
    // POSTs body to path, trying endpoints in turn; *out is the reply's JSON. A reply carrying
    // etcd's {"error": ...} is a failure with that message.
    bool call(const std::string& path, const nlohmann::json& body, nlohmann::json* out,
              std::string* err);
    enum class Post { Ok, Unreachable, Bad };
    Post post(const Endpoint& ep, const std::string& path, const std::string& body,
              int64_t timeout_ms, std::string* reply, std::string* err);

    std::vector<Endpoint> endpoints_;
    TlsFiles tls_;
    size_t current_ = 0;
    int64_t timeout_ms_;
    void* curl_ = nullptr;  // CURL*
};

// The gateway's encodings, exposed for tests.
std::string b64encode(const std::string& s);
bool b64decode(const std::string& s, std::string* out);
// "key + 1" in etcd's sense: the end of the range of every key starting with prefix.
std::string prefix_end(const std::string& prefix);

}  // namespace mcm::coord::etcd
