// Leader election among coordinators on etcd (doc/coordinator.md, "State in etcd").
//
// Each coordinator holds an etcd lease (TTL --etcd-lease-ttl) and registers itself under
// PREFIX/coordinators/<id> with it. The leader is whoever created PREFIX/leader, a key tied
// to its lease, through a transaction that succeeds only while the key is absent. The lease
// is kept alive every sixth of the TTL; the leader counts itself leader only until
//   (start of the last keepalive that etcd answered) + TTL - margin (a tenth, >= 300 ms),
// which always ends before etcd expires the lease and lets another coordinator create the
// key. A leader cut off from etcd (or paused) thus stops acting before anyone else can start.
//
// Two threads of its own, each with its own etcd client: one campaigns and keeps the lease
// alive, one asks every member for its status (for `mcctl status`). The loop thread only
// reads atomics and a snapshot under a mutex.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/etcd/client.h"
#include "coordinator/leadership.h"

namespace mcm::coord::etcd {

struct ElectionConfig {
    Url url;
    std::string id;     // this coordinator's name among its peers
    std::string admin;  // its admin API address (host:port), where followers redirect writes
    int64_t ttl_s = 3;
};

// Keys under the prefix (doc/coordinator.md).
std::string leader_key(const std::string& prefix);
std::string state_key(const std::string& prefix);
std::string epoch_key(const std::string& prefix);
std::string coordinators_key(const std::string& prefix);  // the directory, with its '/'

struct PeerInfo {
    std::string id, admin;
    int64_t since_unix_ms = 0;
};

struct MemberHealth {
    std::string endpoint;
    bool ok = false;
    std::string version, error;
    bool raft_leader = false;  // this member is etcd's raft leader
    uint64_t raft_term = 0;
    int64_t db_size = 0;
};

// What `mcctl status` shows of the control plane.
struct ElectionView {
    std::string id, admin;
    bool leading = false;
    std::string leader_id, leader_admin;  // empty: no leader known
    int64_t leader_since_unix_ms = 0;
    int64_t lease_id = 0, ttl_s = 0;
    std::vector<PeerInfo> coordinators;  // every registered coordinator, this one included
    std::vector<MemberHealth> etcd;
    std::string last_error;
    int64_t last_etcd_ok_ms_ago = -1;  // -1: never
    uint64_t elections_won = 0, leadership_lost = 0;
    int64_t epoch = -1;  // the epoch key as last read (-1: unknown)
};

class Elector : public Leadership {
public:
    explicit Elector(ElectionConfig c);
    ~Elector() override;  // stops the threads and revokes the lease (a quick hand-over)
    Elector(const Elector&) = delete;
    Elector& operator=(const Elector&) = delete;

    void start();
    void stop();

    bool leading(int64_t now_ms) const override { return now_ms < lead_until_ms_.load(); }
    // Bumped on every election won: a coordinator built for one term is torn down when the
    // term changes, even if leadership was regained in between.
    uint64_t term() const { return term_.load(); }
    // The lease this process leads with (0 when not leading).
    int64_t lease() const { return leading(mono_now()) ? lease_.load() : 0; }
    int64_t lead_until_ms() const override { return lead_until_ms_.load(); }
    // The loop thread's watchdog: when the loop has not called this for half a TTL, the
    // lease is not kept alive (a stuck loop must not keep the leadership).
    void alive(int64_t now_ms) { loop_alive_ms_.store(now_ms); }
    // The loop thread gives up the leadership now (its state write was fenced): the lease is
    // revoked and a new one campaigns.
    void resign(const std::string& why);
    ElectionView view() const;
    const ElectionConfig& config() const { return cfg_; }

private:
    static int64_t mono_now();
    void run();
    void run_health();
    void lose(const std::string& why);
    void note_error(const std::string& e);
    void note_ok();
    // Sleeps ms or until stopped (false) or, with or_resign, until resign() is called.
    bool wait(int64_t ms, bool or_resign = true);

    ElectionConfig cfg_;
    std::thread thread_, health_thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool resign_ = false;
    std::string resign_why_;

    std::atomic<int64_t> lead_until_ms_{0};
    std::atomic<int64_t> lease_{0};
    std::atomic<uint64_t> term_{0};
    std::atomic<int64_t> loop_alive_ms_{0};

    mutable std::mutex view_mu_;  // guards view_
    ElectionView view_;
    int64_t last_ok_ms_ = 0;      // under view_mu_
};

}  // namespace mcm::coord::etcd
