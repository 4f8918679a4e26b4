#include "coordinator/etcd/client.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>

#include "coordinator/clock.h"
#include "proto/base64.h"

namespace mcm::coord::etcd {

using nlohmann::json;

// ---- encodings --------------------------------------------------------------------------

std::string b64encode(const std::string& s) {
    std::string out(proto::base64_encoded_size(s.size()), '\0');
    out.resize(proto::base64_encode(s, out.data()));
    return out;
}

bool b64decode(const std::string& s, std::string* out) {
    if (s.empty()) {
        out->clear();
        return true;
    }
    out->assign(s.size() / 4 * 3 + 3, '\0');
    size_t n = proto::base64_decode(s, out->data());
    if (n == 0) return false;
    out->resize(n);
    return true;
}

std::string prefix_end(const std::string& prefix) {
    std::string end = prefix;
    while (!end.empty()) {
        auto c = static_cast<unsigned char>(end.back());
        if (c < 0xff) {
            end.back() = static_cast<char>(c + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');  // every key
}

// ---- transactions -----------------------------------------------------------------------

namespace {

json compare(const std::string& key, const char* target, const char* field, int64_t v) {
    return json{{"key", b64encode(key)},
                {"target", target},
                {"result", "EQUAL"},
                {field, std::to_string(v)}};
}

// The gateway writes int64 fields as strings and leaves out zero values.
int64_t num(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return 0;
    if (it->is_number_integer()) return it->get<int64_t>();
    if (!it->is_string()) return 0;
    const std::string& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

uint64_t unum(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return 0;
    const std::string& s = it->get_ref<const std::string&>();
    uint64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

bool to_kv(const json& j, KeyValue* kv) {
    if (!b64decode(j.value("key", ""), &kv->key) || !b64decode(j.value("value", ""), &kv->value)) {
        return false;
    }
    kv->create_revision = num(j, "create_revision");
    kv->mod_revision = num(j, "mod_revision");
    kv->version = num(j, "version");
    kv->lease = num(j, "lease");
    return true;
}

size_t collect(char* data, size_t size, size_t n, void* arg) {
    auto* s = static_cast<std::string*>(arg);
    if (s->size() + size * n > (64u << 20)) return 0;  // a reply this large is not etcd's
    s->append(data, size * n);
    return size * n;
}

}  // namespace

Txn& Txn::if_lease(const std::string& key, int64_t lease) {
    compare_.push_back(compare(key, "LEASE", "lease", lease));
    return *this;
}
Txn& Txn::if_mod_revision(const std::string& key, int64_t rev) {
    compare_.push_back(compare(key, "MOD", "mod_revision", rev));
    return *this;
}
Txn& Txn::if_create_revision(const std::string& key, int64_t rev) {
    compare_.push_back(compare(key, "CREATE", "create_revision", rev));
    return *this;
}
Txn& Txn::put(const std::string& key, const std::string& value, int64_t lease) {
    json p{{"key", b64encode(key)}, {"value", b64encode(value)}};
    if (lease != 0) p["lease"] = std::to_string(lease);
    ops().push_back(json{{"request_put", std::move(p)}});
    return *this;
}
Txn& Txn::get(const std::string& key) {
    ops().push_back(json{{"request_range", {{"key", b64encode(key)}}}});
    return *this;
}
Txn& Txn::del(const std::string& key) {
    ops().push_back(json{{"request_delete_range", {{"key", b64encode(key)}}}});
    return *this;
}
Txn& Txn::otherwise() {
    failure_branch_ = true;
    return *this;
}
json Txn::body() const {
    return json{{"compare", compare_}, {"success", success_}, {"failure", failure_}};
}

// ---- the client -------------------------------------------------------------------------

Client::Client(std::vector<Endpoint> endpoints, int64_t timeout_ms, TlsFiles tls)
    : endpoints_(std::move(endpoints)), tls_(std::move(tls)), timeout_ms_(timeout_ms),
      curl_(curl_easy_init()) {}

Client::~Client() {
    if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Client::Post Client::post(const Endpoint& ep, const std::string& path, const std::string& body,
                          int64_t timeout_ms, std::string* reply, std::string* err) {
    CURL* c = static_cast<CURL*>(curl_);
    if (c == nullptr) {
        *err = "curl_easy_init failed";
        return Post::Bad;
    }
    std::string url = (tls_.on() ? "https://" : "http://") + ep.str() + path;
    reply->clear();
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(timeout_ms, 1)));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::max<int64_t>(timeout_ms, 1)));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, tls_.on() ? "https" : "http");
    if (tls_.on()) {
        // Verified against the CA only: etcd members are reached by address, and a member's
        // certificate names what its operator chose.
        curl_easy_setopt(c, CURLOPT_CAINFO, tls_.ca.c_str());
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
        if (!tls_.cert.empty()) {
            curl_easy_setopt(c, CURLOPT_SSLCERT, tls_.cert.c_str());
            curl_easy_setopt(c, CURLOPT_SSLKEY, tls_.key.c_str());
        }
    }
    curl_easy_setopt(c, CURLOPT_PROXY, "");  // never through $http_proxy: etcd is direct
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, reply);
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
        *err = ep.str() + ": " + curl_easy_strerror(rc);
        return Post::Unreachable;
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    // The gateway answers etcd's own errors with a JSON body (and a 4xx/5xx code); an
    // unavailable cluster is worth trying elsewhere.
    if (code == 503) {
        *err = ep.str() + ": HTTP 503 " + reply->substr(0, 200);
        return Post::Unreachable;
    }
    return Post::Ok;
}

bool Client::call(const std::string& path, const json& body, json* out, std::string* err) {
    const std::string text = body.dump();
    const int64_t deadline = mono_ms() + timeout_ms_;
    const size_t n = endpoints_.size();
    std::string reply, why;
    for (size_t tried = 0; tried < n; ++tried) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) break;
        // Share what is left among the endpoints not tried yet, so one that hangs does not
        // use up the whole budget.
        int64_t slice = tried + 1 == n ? left : std::max<int64_t>(left / int64_t(n - tried), 100);
        size_t i = (current_ + tried) % n;
        Post p = post(endpoints_[i], path, text, std::min(slice, left), &reply, &why);
        if (p == Post::Unreachable) continue;
        if (p == Post::Bad) break;
        current_ = i;
        try {
            *out = json::parse(reply);
        } catch (const std::exception& e) {
            *err = endpoints_[i].str() + ": not JSON: " + e.what();
            return false;
        }
        if (out->is_object() && out->contains("error")) {
            const json& e = (*out)["error"];
            *err = e.is_string() ? e.get<std::string>() : e.dump();
            return false;
        }
        if (!out->is_object()) {
            *err = endpoints_[i].str() + ": unexpected reply";
            return false;
        }
        return true;
    }
    *err = why.empty() ? "etcd: no time left" : why;
    return false;
}

bool Client::get(const std::string& key, std::optional<KeyValue>* out, std::string* err) {
    json r;
    if (!call("/v3/kv/range", json{{"key", b64encode(key)}}, &r, err)) return false;
    out->reset();
    if (r.contains("kvs") && r["kvs"].is_array() && !r["kvs"].empty()) {
        KeyValue kv;
        if (!to_kv(r["kvs"][0], &kv)) {
            *err = "etcd: bad base64 in a reply";
            return false;
        }
        *out = std::move(kv);
    }
    return true;
}

bool Client::get_prefix(const std::string& prefix, std::vector<KeyValue>* out,
                        std::string* err) {
    json r;
    json body{{"key", b64encode(prefix)}, {"range_end", b64encode(prefix_end(prefix))}};
    if (!call("/v3/kv/range", body, &r, err)) return false;
    out->clear();
    if (r.contains("kvs") && r["kvs"].is_array()) {
        for (const json& j : r["kvs"]) {
            KeyValue kv;
            if (!to_kv(j, &kv)) {
                *err = "etcd: bad base64 in a reply";
                return false;
            }
            out->push_back(std::move(kv));
        }
    }
    return true;
}

bool Client::put(const std::string& key, const std::string& value, int64_t lease,
                 std::string* err) {
    json body{{"key", b64encode(key)}, {"value", b64encode(value)}};
    if (lease != 0) body["lease"] = std::to_string(lease);
    json r;
    return call("/v3/kv/put", body, &r, err);
}

bool Client::txn(const Txn& t, TxnResult* out, std::string* err) {
    json r;
    if (!call("/v3/kv/txn", t.body(), &r, err)) return false;
    out->succeeded = r.value("succeeded", false);
    out->revision = r.contains("header") ? num(r["header"], "revision") : 0;
    out->gets.clear();
    if (r.contains("responses") && r["responses"].is_array()) {
        for (const json& resp : r["responses"]) {
            std::optional<KeyValue> got;
            if (resp.contains("response_range")) {
                const json& rr = resp["response_range"];
                if (rr.contains("kvs") && rr["kvs"].is_array() && !rr["kvs"].empty()) {
                    KeyValue kv;
                    if (!to_kv(rr["kvs"][0], &kv)) {
                        *err = "etcd: bad base64 in a reply";
                        return false;
                    }
                    got = std::move(kv);
                }
            }
            out->gets.push_back(std::move(got));
        }
    }
    return true;
}

bool Client::lease_grant(int64_t ttl_s, int64_t* id, int64_t* granted_ttl_s, std::string* err) {
    json r;
    if (!call("/v3/lease/grant", json{{"TTL", std::to_string(ttl_s)}}, &r, err)) return false;
    *id = num(r, "ID");
    *granted_ttl_s = num(r, "TTL");
    if (*id == 0 || *granted_ttl_s <= 0) {
        *err = "etcd: " + r.value("error", std::string("lease not granted"));
        return false;
    }
    return true;
}

bool Client::lease_keepalive(int64_t id, int64_t* ttl_s, std::string* err) {
    json r;
    if (!call("/v3/lease/keepalive", json{{"ID", std::to_string(id)}}, &r, err)) return false;
    // One message of the stream: {"result": {"ID", "TTL"}}; no TTL: the lease is gone.
    if (!r.contains("result") || !r["result"].is_object()) {
        *err = "etcd: unexpected keepalive reply";
        return false;
    }
    *ttl_s = num(r["result"], "TTL");
    return true;
}

bool Client::lease_revoke(int64_t id, std::string* err) {
    json r;
    return call("/v3/lease/revoke", json{{"ID", std::to_string(id)}}, &r, err);
}

bool Client::status(const Endpoint& ep, MemberStatus* out, std::string* err) {
    std::string reply;
    Post p = post(ep, "/v3/maintenance/status", "{}", timeout_ms_, &reply, err);
    if (p != Post::Ok) return false;
    try {
        json r = json::parse(reply);
        if (r.contains("error")) {
            *err = ep.str() + ": " + r["error"].dump();
            return false;
        }
        out->version = r.value("version", "");
        out->leader_id = unum(r, "leader");
        out->raft_term = unum(r, "raftTerm");
        out->db_size = num(r, "dbSize");
        out->member_id = r.contains("header") ? unum(r["header"], "member_id") : 0;
        out->errors.clear();
        if (r.contains("errors") && r["errors"].is_array()) {
            for (const json& e : r["errors"]) {
                if (e.is_string()) out->errors.push_back(e.get<std::string>());
            }
        }
        return true;
    } catch (const std::exception& e) {
        *err = ep.str() + ": not JSON: " + e.what();
        return false;
    }
}

}  // namespace mcm::coord::etcd
