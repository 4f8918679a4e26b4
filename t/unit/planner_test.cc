// The coordinator's planner (coordinator/planner.h): even spread of the first map, failover
// promotes the in-sync replica with the highest seqno, no bucket left without an owner, a
// replica never equals its active, rejoin + trim never drops the last in-sync replica.
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
