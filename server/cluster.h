// Managed mode on one server: the bucket map it holds, each bucket's local state, the cluster
// secret and the counters of `stats cluster`. Request threads read bucket states without
// locks (one relaxed atomic load); the map itself changes rarely and is read under a mutex by
// the control and forwarding paths. See doc/managed.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "replication/bucket_map.h"
#include "server/settings.h"

namespace mcm::server {

class Cluster {
public:
    explicit Cluster(const Settings& s);

    uint32_t nbuckets() const noexcept { return nbuckets_; }
    const std::string& node_id() const noexcept { return node_id_; }
    uint32_t bucket(std::string_view key) const noexcept {
        return repl::bucket_of(key, nbuckets_);
    }
    repl::BucketState state(uint32_t b) const noexcept {
        return static_cast<repl::BucketState>(states_[b].load(std::memory_order_relaxed));
    }
    uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }
    std::shared_ptr<const repl::BucketMap> map() const;

    enum class Install : uint8_t { Ok, Stale, Invalid };
    // A new map: its epoch must be above the one held (the same epoch is accepted only for
    // the identical map). Bucket states follow it: active where it names this node, replica
    // where it lists this node as a replica, dead elsewhere.
    Install install(const repl::BucketMap& m, std::string* err);
    void set_states(uint32_t first, uint32_t last, repl::BucketState s) noexcept;
    void reset() noexcept;  // every bucket dead, no map (the epoch stays: older maps stay refused)

    // Challenge-response: HMAC-SHA256(secret, nonce) in hex.
    std::string new_nonce() const;
    bool verify(std::string_view nonce, std::string_view proof_hex) const;

    // Counters for `stats cluster`.
    std::atomic<uint64_t> forwarded{0};
    std::atomic<uint64_t> forward_errors{0};
    std::atomic<uint64_t> not_my_bucket{0};
    std::atomic<uint64_t> maps_installed{0};
    std::atomic<uint64_t> maps_refused{0};
    std::atomic<uint64_t> auth_failures{0};
    std::atomic<int64_t> last_control_unix{0};

private:
    std::string node_id_;
    std::string secret_;
    uint32_t nbuckets_;
    std::unique_ptr<std::atomic<uint8_t>[]> states_;
    std::atomic<uint64_t> epoch_{0};
    mutable std::mutex mu_;
    std::shared_ptr<const repl::BucketMap> map_;  // guarded by mu_
};

}  // namespace mcm::server
