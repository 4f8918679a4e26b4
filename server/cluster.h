// Managed mode on one server: the bucket map it holds, each bucket's local state, the cluster
// secret and the counters of `stats cluster`. Request threads read without locks: a bucket's
// state is one relaxed atomic load, and the map is an immutable snapshot behind an atomic
// pointer. A replaced map is kept (not freed) until the server stops, so a reader never sees
// it disappear; maps change only when the coordinator installs one. See doc/managed.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

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
    // The map held (null before the first install or after reset). Valid until shutdown.
    const repl::BucketMap* map() const noexcept {
        return map_.load(std::memory_order_acquire);
    }

    enum class Install : uint8_t { Ok, Stale, Invalid };
    // A new map: its epoch must be above the one held (the same epoch is accepted only for
    // the identical map). Bucket states follow it: active where it names this node, replica
    // where it lists this node as a replica, dead elsewhere.
    Install install(const repl::BucketMap& m, std::string* err);
    void set_states(uint32_t first, uint32_t last, repl::BucketState s) noexcept;
    void reset() noexcept;  // every bucket dead, no map (the epoch stays: older maps stay refused)

    // Challenge-response: the proof is HMAC-SHA256(secret, challenge text), in hex.
    static std::string proof(const std::string& secret, std::string_view challenge);
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
    std::mutex mu_;  // serialises installs and resets
    std::atomic<const repl::BucketMap*> map_{nullptr};
    std::vector<std::unique_ptr<repl::BucketMap>> maps_;  // every map installed, owned here
};

}  // namespace mcm::server
