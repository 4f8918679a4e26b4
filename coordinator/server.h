// The coordinator's record of one server: its link, what its last heartbeat said, and the
// contact bookkeeping the health rules read. Owned by the Coordinator (one per member); lives
// on the loop thread. No decisions here: coordinator.cc makes them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/hb_reply.h"
#include "coordinator/link.h"
#include "coordinator/planner.h"

namespace mcm::coord {

// Where a server stands in the coordinator's decisions:
//
//   Live --silent dead_after_ms, or restarted--> Dead --answers again--> Resetting
//   Resetting --reset + map + extra replicas--> CatchingUp --all its replicas in sync--> Live
//   Resetting/CatchingUp --silent dead_after_ms, or restarted--> Dead
//
// A Live server shows as `up` or `suspect` depending on how recently it answered.
enum class Phase { Live, Dead, Resetting, CatchingUp };

struct Server {
    std::string name;
    std::string host;
    uint16_t port = 0;
    bool joining = false;  // added by the admin API and not yet caught up
    // Draining (mcctl drain / remove-node): a rebalance moves everything it holds elsewhere;
    // Remove: then it leaves the map. rebalance_on_join: added with a rebalance to follow.
    enum class Drain { None, Drain, Remove } drain = Drain::None;
    bool rebalance_on_join = false;
    std::unique_ptr<ServerLink> link;
    Phase phase = Phase::Live;

    // Contact: when it last answered a heartbeat, and since when with no gap over 1.5 beats.
    bool answered = false;  // since the coordinator started
    int64_t last_answer_ms = 0;
    int64_t contact_since_ms = 0;
    // When the last acknowledged `cluster lease` was sent (0: none yet on this link).
    int64_t lease_sent_ms = 0;
    // When its last `cluster lease` reply arrived. That reply carries the token the next
    // heartbeat grants a lease from, so it is hearing from the server just as a heartbeat
    // reply is: silence (and so the dead timeout) counts from the later of the two, or a
    // lease could outlive the failover (doc/coordinator.md, Why fencing is safe).
    int64_t last_token_ms = 0;
    int64_t dead_since_ms = 0;

    // Heartbeats on the current connection.
    bool hb_in_flight = false;
    uint64_t hb_seq = 0;       // heartbeats sent, ever
    uint64_t dead_hb_seq = 0;  // hb_seq when declared dead: later answers mean it is back
    uint64_t token = 0;

    // The last heartbeat reply.
    bool reported = false;
    uint64_t epoch = 0;
    std::string boot_id;  // as last reported
    bool fenced = false;
    uint64_t lease_left_ms = 0;
    std::vector<ReplicaReport> replicas;  // per bucket, from R lines
    std::vector<uint64_t> active_seqno;   // per bucket, from A lines
    std::vector<uint32_t> handoffs;       // buckets it reported pending for a handover (H)
    uint32_t replicas_in_sync = 0;

    // Work in flight on the link.
    bool push_in_flight = false;
    bool fetch_in_flight = false;
    bool needs_failover = false;  // restarted or lost its map: to be treated as dead
    bool back = false;            // Dead, and answered a heartbeat sent after that
    bool bad_hb_logged = false;   // one warning per server for unreadable heartbeat replies
    std::string known_boot;       // the boot id the state file records
    // Proof of death (doc/coordinator.md, Failover on proof): when the link's closing was
    // followed by a refused connection to the server's own address (0: no proof).
    int64_t gone_proof_ms = 0;
    bool probing = false;
    uint64_t answered_seq = 0;   // hb_seq of the last heartbeat it answered
    uint64_t drain_seq = 0;      // a proven death waits for an answer to a later heartbeat
    int probe_attempt = 0;       // the next probe's attempt number
    int64_t probe_retry_ms = 0;  // when to probe again (0: not to)

    // `up`, `suspect`, `dead`, `resetting` or `catching_up`.
    const char* health(int64_t now_ms, int64_t heartbeat_ms, int64_t start_ms) const;
    // Milliseconds since it last answered a heartbeat or a lease (since start_ms if never).
    int64_t silence_ms(int64_t now_ms, int64_t start_ms) const {
        return now_ms - (answered ? std::max(last_answer_ms, last_token_ms) : start_ms);
    }
    // Records an answer: contact_since restarts after a gap over 1.5 heartbeats.
    void note_answer(int64_t now_ms, int64_t heartbeat_ms);
    // Replaces the per-bucket reports with those of h.
    void take_report(const HbReply& h, uint32_t nbuckets, int64_t now_ms);
};

}  // namespace mcm::coord
