// Managed mode on one server: the bucket map it holds, each bucket's local state, the
// coordinator's lease (fencing), the cluster secret and the counters of `stats cluster`.
// Request threads read without locks: a bucket's state is one relaxed atomic load, the lease
// two more. The map is an immutable snapshot behind an atomic shared_ptr, read only off the
// local path (forwarding, the replication thread): a replaced map is freed when its last
// reader lets go, so a cluster that lives through many epochs does not accumulate them.
// See doc/managed.md and doc/coordinator.md.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "replication/bucket_map.h"
#include "replication/cluster_view.h"
#include "server/settings.h"

namespace mcm::server {

// CLOCK_MONOTONIC in microseconds: the clock leases are measured on (it runs on while the
// process is stopped, so a paused server wakes up with its lease already gone).
inline int64_t mono_us() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
}

// The request path's clock: CLOCK_MONOTONIC_COARSE (no hardware read) plus its resolution, so
// never earlier than mono_us(): a lease may end up to a tick early, never late.
int64_t mono_coarse_late_us() noexcept;

class Cluster final : public repl::ClusterView {
public:
    explicit Cluster(const Settings& s);

    uint32_t nbuckets() const noexcept { return nbuckets_; }
    const std::string& node_id() const noexcept { return node_id_; }
    const std::string& boot_id() const noexcept { return boot_id_; }
    uint32_t bucket(std::string_view key) const noexcept {
        return repl::bucket_of(key, nbuckets_);
    }
    repl::BucketState state(uint32_t b) const noexcept override {
        return static_cast<repl::BucketState>(states_[b].load(std::memory_order_relaxed));
    }
    uint64_t epoch() const noexcept override { return epoch_.load(std::memory_order_acquire); }
    // The map held (null before the first install or after reset).
    std::shared_ptr<const repl::BucketMap> map() const noexcept override {
        return map_.load(std::memory_order_acquire);
    }

    enum class Install : uint8_t { Ok, Stale, Invalid };
    // A new map: its epoch must be above the one held (the same epoch is accepted only for
    // the identical map). Bucket states follow it: replica where it lists this node as a
    // replica, dead elsewhere, active where it names this node, except that a bucket that
    // was not active here waits as pending until the replication thread has prepared it
    // (take_activations/activate).
    Install install(const repl::BucketMap& m, std::string* err);
    void set_states(uint32_t first, uint32_t last, repl::BucketState s) noexcept;
    void reset() noexcept;  // every bucket dead, no map (the epoch stays: older maps stay refused)

    // A planned handover (doc/coordinator.md, "Moving a bucket"): the bucket, active here
    // under map `epoch`, becomes pending (reads served, writes parked) until a map gives it
    // to another server or cancel_handoffs() takes it back. "" or the error line.
    std::string begin_handoff(uint32_t b, uint64_t epoch);
    // Active again, for the buckets of [first, last] pending for a handover; how many.
    uint32_t cancel_handoffs(uint32_t first, uint32_t last);
    bool in_handoff(uint32_t b) const noexcept override {
        return b < nbuckets_ && handoff_[b].load(std::memory_order_relaxed) != 0;
    }
    void take_demotions(std::vector<uint32_t>* out) override;

    void take_activations(std::vector<std::pair<uint32_t, repl::BucketState>>* out) override;
    void activate(uint32_t b) noexcept override;
    // Called (on the installing thread) when a map changed anything.
    void set_change_wake(void (*fn)(void*), void* ctx) noexcept {
        wake_fn_ = fn;
        wake_ctx_ = ctx;
    }

    // Fencing. serving(): whether active buckets may be served now. Never fenced until a
    // heartbeat granted a lease; then only while the lease runs or the "coordinator is gone"
    // rule holds (doc/coordinator.md).
    bool serving() const noexcept {
        if (!leased_.load(std::memory_order_relaxed)) return true;
        return serving_slow();
    }
    // A heartbeat granting lease_ms from issued_us (when the token it returned was issued).
    void grant_lease(int64_t issued_us, uint32_t lease_ms, uint32_t quiet_ms) noexcept;
    int64_t lease_left_ms() const noexcept;
    repl::CoordinatorView coordinator() const noexcept override;
    bool serving_now() const noexcept override { return serving(); }
    uint64_t resets() const noexcept override { return resets_.load(std::memory_order_acquire); }
    uint64_t generation() const noexcept override {
        return generation_.load(std::memory_order_acquire);
    }
    void set_gone_until(int64_t mono_us) noexcept override {
        gone_until_us_.store(mono_us, std::memory_order_relaxed);
    }

    // Challenge-response (replication/auth.h): the proof of a challenge from repl::random_hex32.
    bool verify(std::string_view nonce, std::string_view proof_hex) const;

    // Counters for `stats cluster`.
    std::atomic<uint64_t> forwarded{0};
    std::atomic<uint64_t> forward_errors{0};
    std::atomic<uint64_t> forward_parked{0};         // requests that waited for a new map
    std::atomic<uint64_t> forward_park_resumed{0};   // ... and were routed again by one
    std::atomic<uint64_t> forward_park_timeouts{0};  // ... and got their error at the bound
    std::atomic<uint64_t> forward_peer_behind{0};    // NOT_MY_BUCKET from a peer with an
                                                     // older map: sent again
    std::atomic<uint64_t> not_my_bucket{0};
    std::atomic<uint64_t> fenced_refusals{0};
    std::atomic<uint64_t> maps_installed{0};
    std::atomic<uint64_t> maps_refused{0};
    std::atomic<uint64_t> handoffs_begun{0};
    std::atomic<uint64_t> handoffs_cancelled{0};
    std::atomic<uint64_t> auth_failures{0};
    // Peer TLS on: cluster auth asked on a connection without a verified peer certificate.
    std::atomic<uint64_t> peer_tls_refused{0};
    // Peer TLS: handshakes of connections that opened with a TLS record on a plain port and
    // failed (a certificate the cluster's CA did not sign, none, a hang-up).
    std::atomic<uint64_t> peer_tls_handshake_errors{0};
    // `cluster repl` from a name that is not a peer in the current map (refused).
    std::atomic<uint64_t> repl_refused{0};
    std::atomic<uint64_t> heartbeats{0};
    std::atomic<int64_t> hb_gap_max_ms{0};  // longest renewal gap seen (grant_lease)
    std::atomic<int64_t> last_control_unix{0};

private:
    bool serving_slow() const noexcept;

    std::string node_id_;
    std::string secret_;
    std::string boot_id_;
    uint32_t nbuckets_;
    std::unique_ptr<std::atomic<uint8_t>[]> states_;
    std::unique_ptr<std::atomic<uint8_t>[]> handoff_;  // 1: pending for a handover
    std::atomic<uint64_t> epoch_{0};
    std::mutex mu_;  // serialises installs, resets and activations
    std::atomic<std::shared_ptr<const repl::BucketMap>> map_;
    // (bucket, its state before): guarded by mu_
    std::vector<std::pair<uint32_t, repl::BucketState>> activations_;
    std::vector<uint32_t> demotions_;  // handed over, now replicas here: guarded by mu_
    void (*wake_fn_)(void*) = nullptr;
    void* wake_ctx_ = nullptr;

    std::atomic<uint64_t> resets_{0};
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> leased_{false};
    std::atomic<int64_t> lease_end_us_{0};
    std::atomic<int64_t> gone_until_us_{0};
    std::atomic<int64_t> last_grant_us_{0};
    std::atomic<uint32_t> quiet_ms_{0};
};

}  // namespace mcm::server
