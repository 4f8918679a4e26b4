// What the replication thread needs from the server it runs in, and nothing more: its
// settings as plain values, and the cluster state (the map, bucket states, the coordinator's
// lease) through a narrow interface that server::Cluster implements. replication/ includes
// nothing from server/ but the store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "replication/bucket_map.h"

namespace mcm::tls {
class PeerTls;
}

namespace mcm::repl {

// -o repl_ack: which writes wait for a replica's acknowledgement.
enum class AckMode : uint8_t { None, Delete, All };

struct ReplConfig {
    std::string node_id;          // this server's name in the map
    std::string secret;           // the cluster secret (HMAC key of the link handshake)
    uint32_t nbuckets = 1024;
    size_t backlog_bytes = 64 * 1024 * 1024;  // all buckets' backlogs together
    AckMode ack = AckMode::None;
    uint32_t ack_timeout_ms = 500;
    // Read hints (hints.h): per link at most hint_rate hints a second (0: none sent), shipped
    // every hint_ms.
    uint32_t hint_rate = 20000;
    uint32_t hint_ms = 200;
    // The longest frame a peer may send (a record of the largest item, with room to spare);
    // a longer length closes the link before its bytes are buffered.
    uint32_t max_frame = 4u << 20;
    // Peer TLS (tls/peer.h): links dial with it, null for plain TCP. Outlives the replicator.
    const tls::PeerTls* peer_tls = nullptr;
};

// The coordinator as this server last heard it (fencing, doc/coordinator.md).
struct CoordinatorView {
    bool leased = false;       // some heartbeat ever granted a lease
    bool lease_valid = false;  // and it has not run out
    uint32_t silent_ms = 0;    // since the last heartbeat that granted one (if leased)
    uint32_t quiet_ms = 0;     // the coordinator's "gone" threshold
};

class ClusterView {
public:
    virtual ~ClusterView() = default;
    // The map held (null before the first or after a reset); the caller keeps it alive.
    virtual std::shared_ptr<const BucketMap> map() const noexcept = 0;
    virtual BucketState state(uint32_t b) const noexcept = 0;
    virtual uint64_t epoch() const noexcept = 0;

    // Buckets a map made active here wait as Pending (reads served, writes held) until the
    // replication thread has given each its history, backlog and sequence number; then it
    // calls activate(b), which makes it Active if the map held still says so.
    virtual void take_activations(std::vector<std::pair<uint32_t, BucketState>>* out) = 0;
    virtual void activate(uint32_t b) noexcept = 0;
    // Buckets a planned handover took from this server to a map that lists it as a replica:
    // it held the whole history up to the handover, so it continues as a replica from there.
    virtual void take_demotions(std::vector<uint32_t>* out) = 0;
    // Whether b is pending for a planned handover (still active here, writes held).
    virtual bool in_handoff(uint32_t b) const noexcept = 0;

    // Changes whenever the map, a bucket's state or a reset changed anything: the replication
    // thread reconciles its links and subscriptions when it moves (and now and then anyway).
    virtual uint64_t generation() const noexcept = 0;
    // Counts `cluster reset`s: every item was dropped, so what this server held as a replica
    // is gone and must not be resumed from.
    virtual uint64_t resets() const noexcept = 0;

    virtual CoordinatorView coordinator() const noexcept = 0;
    // Whether active buckets are served now (the lease, or the "gone" rule).
    virtual bool serving_now() const noexcept = 0;
    // The "coordinator is gone" rule holds until this time (CLOCK_MONOTONIC microseconds;
    // 0: it does not hold).
    virtual void set_gone_until(int64_t mono_us) noexcept = 0;
};

}  // namespace mcm::repl
