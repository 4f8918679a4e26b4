#include "coordinator/server.h"

#include <algorithm>

namespace mcm::coord {

const char* Server::health(int64_t now_ms, int64_t heartbeat_ms, int64_t start_ms) const {
    switch (phase) {
        case Phase::Dead: return joining && answered ? "resetting" : "dead";
        case Phase::Resetting: return "resetting";
        case Phase::CatchingUp: return "catching_up";
        case Phase::Live: break;
    }
    // Never heard from since the coordinator started: not known to be up yet.
    if (!answered) return "suspect";
    return silence_ms(now_ms, start_ms) <= 2 * heartbeat_ms ? "up" : "suspect";
}

void Server::note_answer(int64_t now_ms, int64_t heartbeat_ms) {
    if (!answered || (now_ms - last_answer_ms) * 2 > heartbeat_ms * 3) contact_since_ms = now_ms;
    answered = true;
    last_answer_ms = now_ms;
}

void Server::take_report(const HbReply& h, uint32_t nbuckets, int64_t now_ms) {
    reported = true;
    epoch = h.epoch;
    boot_id = h.boot_id;
    fenced = h.fenced;
    lease_left_ms = h.lease_left_ms;
    token = h.token;
    std::vector<ReplicaReport> before = std::move(replicas);
    replicas.assign(nbuckets, ReplicaReport{});
    active_seqno.assign(nbuckets, 0);
    replicas_in_sync = 0;
    for (const HbReply::Replica& r : h.replicas) {
        if (r.bucket >= nbuckets) continue;
        int64_t since = r.in_sync ? now_ms
                        : r.bucket < before.size() ? before[r.bucket].in_sync_ms
                                                   : 0;
        // The server's own word on when it was last in sync: it covers a time this
        // coordinator did not see (it was not leading, or not running).
        if (!r.in_sync && r.synced_ago_ms >= 0) since = std::max(since, now_ms - r.synced_ago_ms);
        replicas[r.bucket] = ReplicaReport{r.applied, r.in_sync, true, since};
        replicas_in_sync += r.in_sync;
    }
    handoffs.clear();
    for (const HbReply::Active& a : h.actives) {
        if (a.bucket < nbuckets) active_seqno[a.bucket] = a.seqno;
        if (a.handoff) handoffs.push_back(a.bucket);
    }
}

}  // namespace mcm::coord
