// The coordinator's planner (coordinator/planner.h): even spread of the first map, failover
// promotes the in-sync replica with the highest seqno, no bucket left without an owner, a
// replica never equals its active, rejoin + trim never drops the last in-sync replica.
#include "coordinator/hb_reply.h"
#include "coordinator/planner.h"

#include <gtest/gtest.h>

#include <algorithm>

using namespace mcm::coord;
using mcm::repl::kNoNode;

namespace {

std::vector<BucketMap::Node> nodes(int n) {
    std::vector<BucketMap::Node> v;
    for (int i = 0; i < n; ++i) v.push_back({"n" + std::to_string(i), "127.0.0.1",
                                             static_cast<uint16_t>(11211 + i)});
    return v;
}

View all_live(const BucketMap& m) {
    View v;
    v.live.assign(m.nodes.size(), true);
    v.reports.assign(m.nodes.size(), std::vector<ReplicaReport>(m.nbuckets));
    return v;
}

// Every replica listed in the map reports in sync at `seq`.
void sync_all(const BucketMap& m, View* v, uint64_t seq = 5) {
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        for (uint16_t r : m.replicas[b]) v->reports[r][b] = {seq, true, true};
    }
}

void check_valid(const BucketMap& m) {
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        ASSERT_NE(m.active[b], kNoNode) << "bucket " << b << " has no owner";
        const auto& r = m.replicas[b];
        ASSERT_EQ(std::count(r.begin(), r.end(), m.active[b]), 0) << "bucket " << b;
        for (uint16_t x : r) ASSERT_EQ(std::count(r.begin(), r.end(), x), 1) << "bucket " << b;
    }
    // The text form round-trips (the servers parse it).
    BucketMap back;
    std::string err;
    ASSERT_TRUE(BucketMap::parse(m.format(), &back, &err)) << err;
    ASSERT_TRUE(same_assignment(m, back));
}

}  // namespace

TEST(Planner, FirstMapSpreadsEvenly) {
    for (int n : {1, 2, 3, 4, 5, 7}) {
        for (uint32_t r : {0u, 1u, 2u}) {
            BucketMap m = first_map(nodes(n), 1024, r, 3);
            check_valid(m);
            EXPECT_EQ(m.epoch, 3u);
            uint32_t reff = std::min<uint32_t>(r, n - 1);
            Load l = load_of(m);
            for (int i = 0; i < n; ++i) {
                EXPECT_NEAR(l.actives[i], 1024.0 / n, 1.0) << n << " " << r;
                EXPECT_NEAR(l.replicas[i], reff * 1024.0 / n, reff * 1.0 + 1) << n << " " << r;
            }
            for (uint32_t b = 0; b < 1024; ++b) EXPECT_EQ(m.replicas[b].size(), reff);
        }
    }
}

TEST(Planner, FirstMapSpreadsOneNodesReplicasOverAllOthers) {
    const int n = 5;
    BucketMap m = first_map(nodes(n), 1024, 1, 1);
    // The replicas of node 0's actives: every other node gets about a quarter.
    std::vector<int> got(n, 0);
    for (uint32_t b = 0; b < 1024; ++b) {
        if (m.active[b] == 0) ++got[m.replicas[b][0]];
    }
    EXPECT_EQ(got[0], 0);
    for (int i = 1; i < n; ++i) EXPECT_NEAR(got[i], 1024.0 / n / (n - 1), 1.0);
    // Deterministic.
    EXPECT_EQ(m.format(), first_map(nodes(n), 1024, 1, 1).format());
}

TEST(Planner, FailoverPromotesHighestInSyncSeqno) {
    BucketMap m = first_map(nodes(4), 64, 2, 10);
    View v = all_live(m);
    v.live[0] = false;
    // Bucket 0 is active on n0 with replicas r1, r2: r1 ahead but not in sync, r2 behind
    // in sync... then the in-sync one wins; among two in sync the higher seqno wins.
    uint16_t r1 = m.replicas[0][0], r2 = m.replicas[0][1];
    v.reports[r1][0] = {100, false, true};
    v.reports[r2][0] = {50, true, true};
    uint16_t s1 = m.replicas[1][0], s2 = m.replicas[1][1];
    v.reports[s1][1] = {70, true, true};
    v.reports[s2][1] = {90, true, true};
    FailoverPlan p = plan_failover(m, 0, v);
    ASSERT_TRUE(p.changed);
    EXPECT_EQ(p.map.epoch, 11u);
    EXPECT_EQ(p.map.active[0], r2);
    EXPECT_EQ(p.map.active[1], s2);
    EXPECT_EQ(p.moved, 16u);
    check_valid(p.map);
    for (uint32_t b = 0; b < 64; ++b) {
        EXPECT_NE(p.map.active[b], 0) << b;
        for (uint16_t x : p.map.replicas[b]) EXPECT_NE(x, 0) << b;
    }
}

TEST(Planner, FailoverWithoutInSyncReplicaGoesColdToLeastActive) {
    BucketMap m = first_map(nodes(3), 30, 1, 1);
    View v = all_live(m);  // nobody in sync
    v.live[1] = false;
    FailoverPlan p = plan_failover(m, 1, v);
    EXPECT_EQ(p.moved, 10u);
    EXPECT_EQ(p.cold, 10u);
    check_valid(p.map);
    Load l = load_of(p.map);
    EXPECT_EQ(l.actives[1], 0u);
    EXPECT_EQ(l.actives[0], 15u);
    EXPECT_EQ(l.actives[2], 15u);
}

TEST(Planner, FailoverSpreadsADeadNodesLoadEvenly) {
    BucketMap m = first_map(nodes(5), 1024, 1, 1);
    View v = all_live(m);
    sync_all(m, &v);
    v.live[2] = false;
    FailoverPlan p = plan_failover(m, 2, v);
    EXPECT_EQ(p.cold, 0u);
    check_valid(p.map);
    Load l = load_of(p.map);
    for (int i : {0, 1, 3, 4}) EXPECT_NEAR(l.actives[i], 256.0, 2.0) << i;
}

TEST(Planner, TwoNodesDieNoBucketLeftOwnerless) {
    BucketMap m = first_map(nodes(5), 256, 1, 1);
    View v = all_live(m);
    sync_all(m, &v);
    v.live[1] = false;
    v.live[3] = false;
    FailoverPlan p1 = plan_failover(m, 1, v);
    FailoverPlan p2 = plan_failover(p1.map, 3, v);
    check_valid(p2.map);
    for (uint32_t b = 0; b < 256; ++b) {
        EXPECT_TRUE(v.is_live(p2.map.active[b])) << b;
    }
    EXPECT_EQ(p2.map.epoch, 3u);
    BucketMap r;
    ASSERT_TRUE(plan_restore(p2.map, v, 1, &r));
    check_valid(r);
    for (uint32_t b = 0; b < 256; ++b) {
        ASSERT_EQ(r.replicas[b].size(), 1u);
        EXPECT_TRUE(v.is_live(r.replicas[b][0]));
    }
    BucketMap again;
    EXPECT_FALSE(plan_restore(r, v, 1, &again));
}

TEST(Planner, RestoreSpreadsNewReplicas) {
    BucketMap m = first_map(nodes(4), 1024, 1, 1);
    View v = all_live(m);
    sync_all(m, &v);
    v.live[0] = false;
    FailoverPlan p = plan_failover(m, 0, v);
    BucketMap r;
    ASSERT_TRUE(plan_restore(p.map, v, 1, &r));
    EXPECT_EQ(r.epoch, p.map.epoch + 1);
    check_valid(r);
    Load l = load_of(r);
    for (int i : {1, 2, 3}) EXPECT_NEAR(l.replicas[i], 1024.0 / 3, 3.0) << i;
}

TEST(Planner, RejoinAddsExtraReplicasThenTrimKeepsInSyncOnes) {
    const uint32_t B = 1024;
    BucketMap m = first_map(nodes(3), B, 1, 1);
    View v = all_live(m);
    sync_all(m, &v);
    v.live[1] = false;
    FailoverPlan p = plan_failover(m, 1, v);
    BucketMap restored;
    ASSERT_TRUE(plan_restore(p.map, v, 1, &restored));
    sync_all(restored, &v);

    // n1 comes back, reset: no actives, about R*B/N extra replicas.
    v.live[1] = true;
    v.reports[1].assign(B, {});
    BucketMap joined;
    ASSERT_TRUE(plan_rejoin(restored, 1, v, 1, &joined));
    check_valid(joined);
    Load l = load_of(joined);
    EXPECT_EQ(l.actives[1], 0u);
    EXPECT_NEAR(l.replicas[1], B / 3.0, 1.0);

    // Not yet in sync: nothing may be trimmed.
    BucketMap t;
    EXPECT_FALSE(plan_trim(joined, v, 1, &t));
    // Half of them in sync: only those buckets lose their surplus replica.
    uint32_t n_sync = 0;
    for (uint32_t b = 0; b < B; ++b) {
        if (std::count(joined.replicas[b].begin(), joined.replicas[b].end(), 1) &&
            (n_sync++ % 2 == 0)) {
            v.reports[1][b] = {5, true, true};
        }
    }
    ASSERT_TRUE(plan_trim(joined, v, 1, &t));
    check_valid(t);
    for (uint32_t b = 0; b < B; ++b) {
        size_t in_sync = 0;
        for (uint16_t x : t.replicas[b]) in_sync += v.in_sync(x, b);
        EXPECT_GE(in_sync, 1u) << "bucket " << b << " lost its last in-sync replica";
        EXPECT_LE(t.replicas[b].size(), 2u);
    }
    sync_all(t, &v);
    BucketMap t2;
    ASSERT_TRUE(plan_trim(t, v, 1, &t2));
    Load l2 = load_of(t2);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(l2.replicas[i], B / 3.0, 3.0) << i;
    for (uint32_t b = 0; b < B; ++b) EXPECT_EQ(t2.replicas[b].size(), 1u);
    EXPECT_FALSE(plan_trim(t2, v, 1, &t));
}

TEST(Planner, AddAndRemoveNode) {
    BucketMap m = first_map(nodes(2), 16, 1, 4);
    BucketMap added = with_node(m, {"n9", "127.0.0.1", 1});
    EXPECT_EQ(added.epoch, 5u);
    EXPECT_EQ(added.node_index("n9"), 2);
    BucketMap removed;
    std::string err;
    EXPECT_FALSE(without_node(added, 0, &removed, &err));
    ASSERT_TRUE(without_node(added, 2, &removed, &err)) << err;
    EXPECT_TRUE(same_assignment(removed, m));
}

TEST(Planner, OrphansGoToTheLeastLoadedLiveNode) {
    BucketMap m = first_map(nodes(3), 30, 1, 1);
    View v = all_live(m);
    v.live.assign(3, false);  // every server restarted at once
    FailoverPlan p = plan_failover(m, 0, v);
    p = plan_failover(p.map, 1, v);
    p = plan_failover(p.map, 2, v);
    BucketMap o;
    EXPECT_EQ(plan_orphans(p.map, v, &o), 0u);  // nobody live yet
    v.live.assign(3, true);
    ASSERT_EQ(plan_orphans(p.map, v, &o), 30u);
    EXPECT_EQ(o.epoch, p.map.epoch + 1);
    check_valid(o);
    Load l = load_of(o);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(l.actives[i], 10u);
}

// plan_balance (issue 13): the target map of a planned rebalance.
namespace {

std::vector<bool> all_eligible(const BucketMap& m) { return std::vector<bool>(m.nodes.size(), true); }

uint32_t eligible_count(const std::vector<bool>& e) {
    return static_cast<uint32_t>(std::count(e.begin(), e.end(), true));
}

// Valid and even: one eligible active, r' distinct eligible replicas besides it, nothing on a
// node that is not eligible, each eligible node within floor/ceil of its share.
void check_balanced(const BucketMap& m, const BucketMap& t, const std::vector<bool>& elig,
                    uint32_t r) {
    const uint32_t E = eligible_count(elig), B = t.nbuckets;
    const uint32_t rr = std::min(r, E - 1);
    ASSERT_EQ(t.epoch, m.epoch);
    ASSERT_EQ(t.nodes.size(), m.nodes.size());
    check_valid(t);
    for (uint32_t b = 0; b < B; ++b) {
        ASSERT_TRUE(elig[t.active[b]]) << "bucket " << b;
        ASSERT_EQ(t.replicas[b].size(), rr) << "bucket " << b;
        for (uint16_t x : t.replicas[b]) ASSERT_TRUE(elig[x]) << "bucket " << b;
    }
    Load l = load_of(t);
    for (size_t n = 0; n < t.nodes.size(); ++n) {
        if (!elig[n]) {
            EXPECT_EQ(l.actives[n] + l.replicas[n], 0u) << "node " << n;
            continue;
        }
        EXPECT_GE(l.actives[n], B / E) << "node " << n;
        EXPECT_LE(l.actives[n], (B + E - 1) / E) << "node " << n;
        EXPECT_GE(l.replicas[n], B * rr / E) << "node " << n;
        EXPECT_LE(l.replicas[n], (B * rr + E - 1) / E) << "node " << n;
    }
}

uint32_t actives_moved(const BucketMap& a, const BucketMap& b) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < a.nbuckets; ++i) n += a.active[i] != b.active[i];
    return n;
}

// Buckets whose active moved to a node that held no copy of them (a full copy, not a handover).
uint32_t cold_moves(const BucketMap& a, const BucketMap& b) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < a.nbuckets; ++i) {
        const auto& r = a.replicas[i];
        n += a.active[i] != b.active[i] && !std::count(r.begin(), r.end(), b.active[i]);
    }
    return n;
}

}  // namespace

TEST(PlanBalance, BalancedMapIsItsOwnTarget) {
    for (int n : {1, 2, 3, 4, 5, 7}) {
        for (uint32_t B : {16u, 1000u, 1024u}) {
            for (uint32_t r : {0u, 1u, 2u, 3u}) {
                BucketMap m = first_map(nodes(n), B, r, 7);
                BucketMap t = plan_balance(m, all_eligible(m), r);
                check_balanced(m, t, all_eligible(m), r);
                // first_map's replica spread is within one of even, not always floor/ceil
                // (7 nodes); then only replicas move, a few.
                const uint32_t rr = std::min<uint32_t>(r, n - 1);
                Load l = load_of(m);
                bool even = true;
                for (int i = 0; i < n; ++i) {
                    even = even && l.replicas[i] >= B * rr / n &&
                           l.replicas[i] <= (B * rr + n - 1) / n;
                }
                EXPECT_EQ(m.active, t.active);
                if (even) {
                    EXPECT_TRUE(same_assignment(m, t)) << n << " " << B << " " << r;
                    EXPECT_EQ(buckets_differing(m, t), 0u);
                } else {
                    EXPECT_LE(buckets_differing(m, t), static_cast<uint32_t>(n)) << B << " " << r;
                }
            }
        }
    }
}

TEST(PlanBalance, NewNodeGetsItsShareAndNoMore) {
    const uint32_t B = 1024;
    for (uint32_t r : {1u, 2u}) {
        BucketMap m = with_node(first_map(nodes(3), B, r, 1), {"n3", "127.0.0.1", 1});
        BucketMap t = plan_balance(m, all_eligible(m), r);
        check_balanced(m, t, all_eligible(m), r);
        Load l = load_of(t);
        EXPECT_EQ(l.actives[3], B / 4);
        EXPECT_EQ(l.replicas[3], r * B / 4);
        // Only the new node's share moves: B/4 actives, and the r*B/4 replicas it takes are
        // on other buckets (never on its own actives), so B/4 + r*B/4 buckets is the least.
        EXPECT_EQ(actives_moved(m, t), B / 4) << r;
        EXPECT_EQ(buckets_differing(m, t), B / 4 + r * B / 4) << r;
        // Every moved active goes to the new node, and its old owner keeps a copy.
        for (uint32_t b = 0; b < B; ++b) {
            if (m.active[b] == t.active[b]) continue;
            EXPECT_EQ(t.active[b], 3);
        }
    }
}

TEST(PlanBalance, DrainingNodeEndsEmptyAndItsActivesAreHandedOver) {
    const uint32_t B = 1024;
    for (uint32_t r : {1u, 2u}) {
        BucketMap m = first_map(nodes(4), B, r, 1);
        std::vector<bool> elig{true, true, false, true};
        BucketMap t = plan_balance(m, elig, r);
        check_balanced(m, t, elig, r);
        // Only the drained node's actives move, each to one of its replicas.
        EXPECT_EQ(actives_moved(m, t), B / 4) << r;
        EXPECT_EQ(cold_moves(m, t), 0u) << r;
        for (uint32_t b = 0; b < B; ++b) {
            if (m.active[b] != 2) {
                EXPECT_EQ(t.active[b], m.active[b]) << b;
            }
        }
    }
}

TEST(PlanBalance, NodeBackFromFailoverGetsItsActivesByHandover) {
    const uint32_t B = 1024;
    BucketMap m = first_map(nodes(3), B, 1, 1);
    View v = all_live(m);
    sync_all(m, &v);
    v.live[1] = false;
    FailoverPlan p = plan_failover(m, 1, v);
    BucketMap restored, joined, trimmed;
    ASSERT_TRUE(plan_restore(p.map, v, 1, &restored));
    v.live[1] = true;
    ASSERT_TRUE(plan_rejoin(restored, 1, v, 1, &joined));
    sync_all(joined, &v);
    ASSERT_TRUE(plan_trim(joined, v, 1, &trimmed));
    ASSERT_EQ(load_of(trimmed).actives[1], 0u);

    BucketMap t = plan_balance(trimmed, all_eligible(trimmed), 1);
    check_balanced(trimmed, t, all_eligible(trimmed), 1);
    EXPECT_NEAR(load_of(t).actives[1], B / 3.0, 1.0);
    // n1 is a replica of about B/3 buckets: each of its actives is a handover, and the old
    // owner stays as the replica (it has the data).
    EXPECT_EQ(actives_moved(trimmed, t), load_of(t).actives[1]);
    EXPECT_EQ(cold_moves(trimmed, t), 0u);
    uint32_t kept_old_owner = 0;
    for (uint32_t b = 0; b < B; ++b) {
        if (trimmed.active[b] != t.active[b]) kept_old_owner += t.replicas[b][0] == trimmed.active[b];
    }
    EXPECT_EQ(kept_old_owner, actives_moved(trimmed, t));
}

TEST(PlanBalance, ReplicasCappedAtEligibleNodesMinusOne) {
    BucketMap m = first_map(nodes(3), 300, 1, 1);
    BucketMap t = plan_balance(m, all_eligible(m), 5);
    check_balanced(m, t, all_eligible(m), 5);
    for (uint32_t b = 0; b < 300; ++b) EXPECT_EQ(t.replicas[b].size(), 2u);
    // One node left: it holds every active and there is nowhere for a replica.
    BucketMap one = plan_balance(m, {false, true, false}, 2);
    check_balanced(m, one, {false, true, false}, 2);
    EXPECT_EQ(load_of(one).actives[1], 300u);
}

TEST(PlanBalance, UnevenBucketCount) {
    for (uint32_t r : {0u, 1u, 2u}) {
        // 1000 buckets over 3 nodes, as the leftovers of a 4-node map that lost one.
        BucketMap m = first_map(nodes(4), 1000, r, 1);
        std::vector<bool> elig{true, false, true, true};
        BucketMap t = plan_balance(m, elig, r);
        check_balanced(m, t, elig, r);
        // With r = 2 on 3 nodes every node holds every bucket: a node's replicas are the
        // buckets it is not active for, so the node with 334 actives has 666 replicas.
        Load l = load_of(t);
        for (int n : {0, 2, 3}) {
            if (r == 2) {
                EXPECT_EQ(l.actives[n] + l.replicas[n], 1000u) << n;
            }
        }
    }
}

TEST(PlanBalance, NoEligibleNodeLeavesTheMap) {
    BucketMap m = first_map(nodes(2), 16, 1, 1);
    EXPECT_TRUE(same_assignment(plan_balance(m, {false, false}, 1), m));
}

TEST(PlanBalance, BucketsDiffering) {
    BucketMap a = first_map(nodes(3), 8, 2, 1), b = a;
    EXPECT_EQ(buckets_differing(a, b), 0u);
    std::reverse(b.replicas[0].begin(), b.replicas[0].end());  // order does not count
    EXPECT_EQ(buckets_differing(a, b), 0u);
    b.active[1] = b.replicas[1][0];
    b.replicas[1][0] = a.active[1];
    b.replicas[2].pop_back();
    EXPECT_EQ(buckets_differing(a, b), 2u);
}

// Random maps, holes and all: valid, even, deterministic, and a fixed point (the target of the
// target is the target, so a rebalance that finished has nothing left to do).
TEST(PlanBalance, RandomMapsPropertyTest) {
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    auto rnd = [&](uint64_t n) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        return n ? seed % n : 0;
    };
    for (int iter = 0; iter < 500; ++iter) {
        const int N = 1 + static_cast<int>(rnd(12));
        const uint32_t B = 1 + static_cast<uint32_t>(rnd(iter % 10 == 0 ? 4096 : 600));
        const uint32_t r = static_cast<uint32_t>(rnd(4));
        BucketMap m;
        m.epoch = 9;
        m.nbuckets = B;
        m.nodes = nodes(N);
        m.active.assign(B, kNoNode);
        m.replicas.assign(B, {});
        // Skewed: a few nodes hold most, some buckets have no active, replica counts vary.
        for (uint32_t b = 0; b < B; ++b) {
            if (rnd(20) == 0) continue;
            m.active[b] = static_cast<uint16_t>(rnd(2) ? rnd(N) : rnd(1 + N / 3));
            for (uint64_t k = rnd(4); k > 0; --k) {
                uint16_t x = static_cast<uint16_t>(rnd(N));
                if (x != m.active[b] && !std::count(m.replicas[b].begin(), m.replicas[b].end(), x)) {
                    m.replicas[b].push_back(x);
                }
            }
        }
        std::vector<bool> elig(N);
        for (int n = 0; n < N; ++n) elig[n] = rnd(5) != 0;
        if (eligible_count(elig) == 0) elig[rnd(N)] = true;

        BucketMap t = plan_balance(m, elig, r);
        SCOPED_TRACE("iter " + std::to_string(iter) + " N " + std::to_string(N) + " B " +
                     std::to_string(B) + " r " + std::to_string(r));
        check_balanced(m, t, elig, r);
        EXPECT_EQ(t.format(), plan_balance(m, elig, r).format());
        BucketMap t2 = plan_balance(t, elig, r);
        EXPECT_TRUE(same_assignment(t, t2));
        // Stability in the small: an active stays unless its node is gone or over its share.
        Load before = load_of(m);
        const uint32_t E = eligible_count(elig);
        for (uint32_t b = 0; b < B; ++b) {
            uint16_t a = m.active[b];
            if (a != kNoNode && elig[a] && before.actives[a] <= B / E) {
                EXPECT_EQ(t.active[b], a) << "bucket " << b;
            }
        }
    }
}

TEST(PlanBalance, LargeMapsAreQuick) {
    // 16384 buckets over 64 nodes, 4 of them draining, r = 2: the target in well under a
    // second (the coordinator plans on its event loop).
    BucketMap m = first_map(nodes(64), 16384, 2, 1);
    std::vector<bool> elig(64, true);
    for (int n : {3, 17, 40, 63}) elig[n] = false;
    BucketMap t = plan_balance(m, elig, 2);
    check_balanced(m, t, elig, 2);
    // All but a handful of the 1024 drained actives are handovers: the others' ceilings
    // (273 actives) leave room for 17 each, and a drained block's replicas sit on a few
    // neighbours, not all of which have room for as many as they hold.
    EXPECT_EQ(actives_moved(m, t), 1024u);
    EXPECT_LE(cold_moves(m, t), 10u);
    BucketMap grown = with_node(t, {"n64", "127.0.0.1", 1});
    std::vector<bool> elig2(65, true);
    for (int n : {3, 17, 40, 63}) elig2[n] = false;
    BucketMap t2 = plan_balance(grown, elig2, 2);
    check_balanced(grown, t2, elig2, 2);
}

// A replica whose active's stream ended says how long ago it was in sync (a fifth word of
// its R line), so a coordinator that took over after the active died can still promote it
// warm (doc/coordinator.md, "Server commands").
TEST(HeartbeatReply, ReplicaSyncedAgo) {
    HbReply h;
    std::string err;
    std::vector<std::string> lines = {"HB n2 7 fedcba9876543209 1 0 0", "R 1 9 0 250", "R 2 4 1",
                                      "R 3 0 0"};
    ASSERT_TRUE(parse_hb(lines, &h, &err)) << err;
    ASSERT_EQ(h.replicas.size(), 3u);
    EXPECT_EQ(h.replicas[0].synced_ago_ms, 250);
    EXPECT_EQ(h.replicas[1].synced_ago_ms, -1);
    EXPECT_EQ(h.replicas[2].synced_ago_ms, -1);
    EXPECT_EQ(format_hb(h), lines);
    // Only beside "not in sync", a number, within a day; never on A or H lines.
    for (const char* bad : {"R 1 9 1 250", "R 1 9 0 x", "R 1 9 0 86400001", "R 1 9 0 -5",
                            "A 1 9 0 250", "R 1 9 0 250 1"}) {
        lines = {"HB n2 7 fedcba9876543209 1 0 0", bad};
        EXPECT_FALSE(parse_hb(lines, &h, &err)) << bad;
    }
}
