// The etcd backend's parts against a real etcd (Debian's etcd-server), started here on free
// ports in a temporary directory and stopped by its PID: the gateway client, the election,
// and the fencing of state writes. Pure parts (URL, encodings, transaction bodies) first.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "coordinator/clock.h"
#include "coordinator/etcd/client.h"
#include "coordinator/etcd/election.h"
#include "coordinator/etcd/store.h"

extern char** environ;

namespace mcm::coord::etcd {
namespace {

using nlohmann::json;

// ---- pure parts -------------------------------------------------------------------------

TEST(EtcdUrl, Parses) {
    Url u;
    std::string err;
    ASSERT_TRUE(parse_url("etcd://127.0.0.1:2379,10.0.0.2:2380/mcm/prod/", &u, &err)) << err;
    ASSERT_EQ(u.endpoints.size(), 2u);
    EXPECT_EQ(u.endpoints[0], (Endpoint{"127.0.0.1", 2379}));
    EXPECT_EQ(u.endpoints[1], (Endpoint{"10.0.0.2", 2380}));
    EXPECT_EQ(u.prefix, "/mcm/prod");
    ASSERT_TRUE(parse_url("etcd://[::1]:2379/x", &u, &err)) << err;
    EXPECT_EQ(u.endpoints[0].host, "::1");
}

TEST(EtcdUrl, Refuses) {
    Url u;
    std::string err;
    for (const char* bad : {"etcd://127.0.0.1:2379", "etcd://127.0.0.1:2379/", "etcd:///x",
                            "etcd://127.0.0.1/x", "etcd://127.0.0.1:0/x", "etcd://a:1,,b:2/x",
                            "http://127.0.0.1:2379/x", "/var/lib/state", "etcd://a:99999/x"}) {
        EXPECT_FALSE(parse_url(bad, &u, &err)) << bad;
        EXPECT_FALSE(err.empty()) << bad;
    }
    EXPECT_FALSE(parse_url("etcd://a:1/x y", &u, &err));
    EXPECT_FALSE(parse_url("etcd://a:1/x\xff", &u, &err));
    EXPECT_TRUE(is_etcd_url("etcd://a:1/x"));
    EXPECT_FALSE(is_etcd_url("./etcd://a:1/x"));
}

TEST(EtcdEncoding, Base64AndPrefixEnd) {
    std::string out;
    for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                          std::string("\0\xff\x80 x", 5)}) {
        ASSERT_TRUE(b64decode(b64encode(s), &out));
        EXPECT_EQ(out, s);
    }
    EXPECT_FALSE(b64decode("abc", &out));
    EXPECT_EQ(prefix_end("/a/"), "/a0");
    EXPECT_EQ(prefix_end(std::string("a\xff", 2)), "b");
    EXPECT_EQ(prefix_end(std::string("\xff", 1)), std::string(1, '\0'));
}

TEST(EtcdTxn, Body) {
    Txn t;
    t.if_lease("/p/leader", 42).if_mod_revision("/p/state", 7).put("/p/state", "S").otherwise().get(
        "/p/leader");
    json b = t.body();
    ASSERT_EQ(b["compare"].size(), 2u);
    EXPECT_EQ(b["compare"][0]["target"], "LEASE");
    EXPECT_EQ(b["compare"][0]["lease"], "42");
    EXPECT_EQ(b["compare"][0]["key"], b64encode("/p/leader"));
    EXPECT_EQ(b["compare"][1]["target"], "MOD");
    EXPECT_EQ(b["compare"][1]["mod_revision"], "7");
    ASSERT_EQ(b["success"].size(), 1u);
    EXPECT_EQ(b["success"][0]["request_put"]["value"], b64encode("S"));
    ASSERT_EQ(b["failure"].size(), 1u);
    EXPECT_TRUE(b["failure"][0].contains("request_range"));
}

// ---- a real etcd ------------------------------------------------------------------------

uint16_t free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

class EtcdServer {
public:
    bool start(std::string* why) {
        if (access("/usr/bin/etcd", X_OK) != 0) {
            *why = "no /usr/bin/etcd (Debian's etcd-server)";
            return false;
        }
        char tmpl[] = "/tmp/mcm-etcd-test-XXXXXX";
        if (mkdtemp(tmpl) == nullptr) {
            *why = "mkdtemp failed";
            return false;
        }
        dir_ = tmpl;
        for (int attempt = 0; attempt < 5; ++attempt) {
            port_ = free_port();
            uint16_t peer = free_port();
            std::string c = "http://127.0.0.1:" + std::to_string(port_);
            std::string p = "http://127.0.0.1:" + std::to_string(peer);
            std::string log = dir_ + "/etcd.log";
            std::vector<std::string> args = {"/usr/bin/etcd",
                                             "--name", "e0",
                                             "--data-dir", dir_ + "/data" + std::to_string(attempt),
                                             "--listen-client-urls", c,
                                             "--advertise-client-urls", c,
                                             "--listen-peer-urls", p,
                                             "--initial-advertise-peer-urls", p,
                                             "--initial-cluster", "e0=" + p};
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                             0600);
            posix_spawn_file_actions_adddup2(&fa, 1, 2);
            int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
            posix_spawn_file_actions_destroy(&fa);
            if (rc != 0) {
                *why = "cannot start etcd";
                return false;
            }
            Client cl({{"127.0.0.1", port_}}, 300);
            const int64_t deadline = mono_ms() + 10000;
            std::string err;
            while (mono_ms() < deadline) {
                std::optional<KeyValue> kv;
                if (cl.get("/probe", &kv, &err)) return true;
                int status = 0;
                if (waitpid(pid_, &status, WNOHANG) == pid_) break;  // a port clash: again
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            stop();
        }
        *why = "etcd did not come up (see " + dir_ + "/etcd.log)";
        keep_ = true;
        return false;
    }
    void stop() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            int status = 0;
            waitpid(pid_, &status, 0);
            pid_ = -1;
        }
    }
    ~EtcdServer() {
        stop();
        if (!dir_.empty() && !keep_) std::filesystem::remove_all(dir_);
    }
    std::vector<Endpoint> endpoints() const { return {{"127.0.0.1", port_}}; }

private:
    std::string dir_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
    bool keep_ = false;  // its log tells why it failed
};

class EtcdTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        server_ = new EtcdServer;
        missing_ = access("/usr/bin/etcd", X_OK) != 0;
        if (!server_->start(&why_)) {
            delete server_;
            server_ = nullptr;
        }
    }
    static void TearDownTestSuite() {
        delete server_;
        server_ = nullptr;
    }
    void SetUp() override {
        // Without etcd installed the suite is skipped; installed and not starting is a failure.
        if (server_ == nullptr && missing_) GTEST_SKIP() << why_;
        ASSERT_NE(server_, nullptr) << why_;
        prefix_ = "/unit/" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
    }
    Url url() const { return Url{server_->endpoints(), prefix_}; }
    ElectionConfig config(const std::string& id) const {
        ElectionConfig c;
        c.url = url();
        c.id = id;
        c.admin = "127.0.0.1:1";
        c.ttl_s = 2;
        return c;
    }
    static bool wait_until(const std::function<bool()>& cond, int64_t ms) {
        const int64_t deadline = mono_ms() + ms;
        while (mono_ms() < deadline) {
            if (cond()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return cond();
    }
    static EtcdServer* server_;
    static std::string why_;
    static bool missing_;
    std::string prefix_;
};
EtcdServer* EtcdTest::server_ = nullptr;
std::string EtcdTest::why_;
bool EtcdTest::missing_ = false;

// Feeds electors' loop watchdogs, as the coordinator's event loop does, until destroyed.
class Feeder {
public:
    explicit Feeder(std::vector<Elector*> e) : e_(std::move(e)), t_([this] {
        while (!stop_.load()) {
            for (Elector* x : e_) x->alive(mono_ms());
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }) {}
    ~Feeder() {
        stop_.store(true);
        t_.join();
    }

private:
    std::vector<Elector*> e_;
    std::atomic<bool> stop_{false};
    std::thread t_;
};

// Says "leading" whatever etcd thinks: to show that etcd's own comparison fences a write,
// with the local clock check out of the way.
struct AlwaysLeading : Leadership {
    bool leading(int64_t) const override { return true; }
    int64_t lead_until_ms() const override { return mono_ms() + 60000; }
};

TEST_F(EtcdTest, ClientBasics) {
    Client c(server_->endpoints(), 1000);
    std::string err;
    ASSERT_TRUE(c.put(prefix_ + "/a", "1", 0, &err)) << err;
    ASSERT_TRUE(c.put(prefix_ + "/b", std::string("\0two", 4), 0, &err)) << err;
    std::optional<KeyValue> kv;
    ASSERT_TRUE(c.get(prefix_ + "/b", &kv, &err)) << err;
    ASSERT_TRUE(kv);
    EXPECT_EQ(kv->value, std::string("\0two", 4));
    EXPECT_GT(kv->mod_revision, 0);
    ASSERT_TRUE(c.get(prefix_ + "/none", &kv, &err)) << err;
    EXPECT_FALSE(kv);
    std::vector<KeyValue> all;
    ASSERT_TRUE(c.get_prefix(prefix_ + "/", &all, &err)) << err;
    EXPECT_EQ(all.size(), 2u);

    // A transaction whose comparison fails runs the other branch.
    Txn t;
    t.if_create_revision(prefix_ + "/a", 0).put(prefix_ + "/a", "2").otherwise().get(prefix_ + "/a");
    TxnResult r;
    ASSERT_TRUE(c.txn(t, &r, &err)) << err;
    EXPECT_FALSE(r.succeeded);
    ASSERT_EQ(r.gets.size(), 1u);
    ASSERT_TRUE(r.gets[0]);
    EXPECT_EQ(r.gets[0]->value, "1");

    // Leases: granted, kept alive, revoked (then the keepalive says 0 and keys go).
    int64_t id = 0, ttl = 0;
    ASSERT_TRUE(c.lease_grant(3, &id, &ttl, &err)) << err;
    EXPECT_GE(ttl, 3);
    ASSERT_TRUE(c.put(prefix_ + "/leased", "x", id, &err)) << err;
    ASSERT_TRUE(c.lease_keepalive(id, &ttl, &err)) << err;
    EXPECT_GT(ttl, 0);
    ASSERT_TRUE(c.lease_revoke(id, &err)) << err;
    ASSERT_TRUE(c.lease_keepalive(id, &ttl, &err)) << err;
    EXPECT_EQ(ttl, 0);
    ASSERT_TRUE(c.get(prefix_ + "/leased", &kv, &err)) << err;
    EXPECT_FALSE(kv);
    // A put on a lease that is gone is refused with etcd's error.
    EXPECT_FALSE(c.put(prefix_ + "/leased", "x", id, &err));
    EXPECT_NE(err.find("lease"), std::string::npos) << err;

    MemberStatus st;
    ASSERT_TRUE(c.status(server_->endpoints()[0], &st, &err)) << err;
    EXPECT_FALSE(st.version.empty());
    EXPECT_EQ(st.leader_id, st.member_id);
}

TEST_F(EtcdTest, UnreachableEndpointIsSkipped) {
    // A dead endpoint first: the call goes on to the live one within its budget.
    std::vector<Endpoint> eps = {{"127.0.0.1", free_port()}, server_->endpoints()[0]};
    Client c(eps, 1000);
    std::string err;
    ASSERT_TRUE(c.put(prefix_ + "/k", "v", 0, &err)) << err;
    EXPECT_EQ(c.current(), server_->endpoints()[0]);
    Client dead({{"127.0.0.1", free_port()}}, 300);
    const int64_t t0 = mono_ms();
    EXPECT_FALSE(dead.put(prefix_ + "/k", "v", 0, &err));
    EXPECT_LT(mono_ms() - t0, 1000);
}

TEST_F(EtcdTest, OneLeaderAndAQuickHandOver) {
    auto a = std::make_unique<Elector>(config("a"));
    auto b = std::make_unique<Elector>(config("b"));
    Feeder feed({a.get(), b.get()});
    a->start();
    ASSERT_TRUE(wait_until([&] { return a->leading(mono_ms()); }, 3000));
    b->start();
    // b registers and sees a lead, and never leads itself while a does.
    ASSERT_TRUE(wait_until([&] { return b->view().leader_id == "a"; }, 3000));
    for (int i = 0; i < 20; ++i) {
        EXPECT_FALSE(b->leading(mono_ms()));
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_TRUE(wait_until([&] { return a->view().coordinators.size() == 2; }, 3000));
    const uint64_t b_term = b->term();
    // A graceful stop revokes the lease: b takes over at its next look (100 ms), not after
    // the TTL.
    const int64_t t0 = mono_ms();
    a->stop();
    ASSERT_TRUE(wait_until([&] { return b->leading(mono_ms()); }, 2000));
    EXPECT_LT(mono_ms() - t0, 1000);
    EXPECT_EQ(b->term(), b_term + 1);
}

TEST_F(EtcdTest, LeaderWhoseLeaseIsRevokedStepsDown) {
    Elector a(config("a"));
    Feeder feed({&a});
    a.start();
    ASSERT_TRUE(wait_until([&] { return a.leading(mono_ms()); }, 3000));
    const int64_t lease = a.lease();
    ASSERT_NE(lease, 0);
    Client c(server_->endpoints(), 1000);
    std::string err;
    ASSERT_TRUE(c.lease_revoke(lease, &err)) << err;
    ASSERT_TRUE(wait_until([&] { return !a.leading(mono_ms()); }, 1000));
    EXPECT_EQ(a.view().leadership_lost, 1u);
    // It campaigns again with a new lease, and wins (nobody else runs).
    ASSERT_TRUE(wait_until([&] { return a.leading(mono_ms()); }, 3000));
    EXPECT_NE(a.lease(), lease);
    EXPECT_EQ(a.term(), 2u);
}

TEST_F(EtcdTest, StuckLoopLosesTheLeadership) {
    // The loop thread's watchdog is never fed after the start: the lease is not kept alive,
    // and the leadership ends by the clock.
    Elector a(config("a"));
    a.start();
    ASSERT_TRUE(wait_until([&] { return a.leading(mono_ms()); }, 3000));
    ASSERT_TRUE(wait_until([&] { return !a.leading(mono_ms()); }, 4000));
}

State some_state(uint64_t epoch) {
    State s;
    s.cluster_id = "c";
    s.secret_check = "x";
    s.buckets = 4;
    s.replicas = 1;
    s.epoch = epoch;
    s.map_text = "epoch " + std::to_string(epoch);
    return s;
}

TEST_F(EtcdTest, StateWritesAreFencedByTheLeaderLease) {
    Client c(server_->endpoints(), 1000);
    std::string err;
    int64_t lease_a = 0, ttl = 0;
    ASSERT_TRUE(c.lease_grant(5, &lease_a, &ttl, &err)) << err;
    ASSERT_TRUE(c.put(leader_key(prefix_), R"({"id":"a"})", lease_a, &err)) << err;
    AlwaysLeading yes;
    EtcdStateStore store(url(), &yes, lease_a);
    State got;
    ASSERT_EQ(store.load(&got, &err), StateStore::Load::Missing) << err;
    ASSERT_TRUE(store.save(some_state(5), &err)) << err;
    ASSERT_EQ(store.load(&got, &err), StateStore::Load::Ok) << err;
    EXPECT_EQ(got.epoch, 5u);

    // Another coordinator's lease takes the leader key (a's was revoked: a is deposed but
    // this store is told it still leads). etcd refuses its write.
    ASSERT_TRUE(c.lease_revoke(lease_a, &err)) << err;
    int64_t lease_b = 0;
    ASSERT_TRUE(c.lease_grant(5, &lease_b, &ttl, &err)) << err;
    ASSERT_TRUE(c.put(leader_key(prefix_), R"({"id":"b"})", lease_b, &err)) << err;
    EtcdStateStore store_b(url(), &yes, lease_b);
    ASSERT_EQ(store_b.load(&got, &err), StateStore::Load::Ok) << err;
    ASSERT_TRUE(store_b.save(some_state(6), &err)) << err;

    EXPECT_FALSE(store.save(some_state(6), &err));
    EXPECT_TRUE(store.fenced());
    EXPECT_NE(err.find("fenced"), std::string::npos) << err;
    std::optional<KeyValue> kv;
    ASSERT_TRUE(c.get(epoch_key(prefix_), &kv, &err)) << err;
    ASSERT_TRUE(kv);
    EXPECT_EQ(kv->value, "6");
    ASSERT_EQ(store_b.load(&got, &err), StateStore::Load::Ok) << err;
    EXPECT_EQ(got.map_text, "epoch 6");  // b's map, not a's
    c.lease_revoke(lease_b, &err);
}

TEST_F(EtcdTest, StateWrittenBySomeoneElseFencesTheStaleWriter) {
    Client c(server_->endpoints(), 1000);
    std::string err;
    int64_t lease = 0, ttl = 0;
    ASSERT_TRUE(c.lease_grant(5, &lease, &ttl, &err)) << err;
    ASSERT_TRUE(c.put(leader_key(prefix_), R"({"id":"a"})", lease, &err)) << err;
    AlwaysLeading yes;
    EtcdStateStore one(url(), &yes, lease), two(url(), &yes, lease);
    State got;
    ASSERT_EQ(one.load(&got, &err), StateStore::Load::Missing);
    ASSERT_EQ(two.load(&got, &err), StateStore::Load::Missing);
    ASSERT_TRUE(one.save(some_state(1), &err)) << err;
    // two read before one wrote: its write would overwrite epoch 1 with another epoch 1.
    EXPECT_FALSE(two.save(some_state(1), &err));
    EXPECT_TRUE(two.fenced());
    // An epoch below the one it read is refused before etcd is asked.
    ASSERT_TRUE(one.save(some_state(2), &err)) << err;
    EXPECT_FALSE(one.save(some_state(1), &err));
    c.lease_revoke(lease, &err);
}

TEST_F(EtcdTest, StoreRefusesWithoutLeadership) {
    Elector a(config("a"));  // never started: never leads
    EtcdStateStore store(url(), &a, 1);
    std::string err;
    EXPECT_FALSE(store.save(some_state(1), &err));
    EXPECT_TRUE(store.fenced());
}

}  // namespace
}  // namespace mcm::coord::etcd
