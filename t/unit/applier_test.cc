// Records from an active store's writes, encoded, decoded and applied to a replica store,
// leave the replica item for item equal to the active (value, flags, exptime, CAS unique);
// applying them again changes nothing.
#include "replication/applier.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "replication/bucket_map.h"

using namespace mcm;
using store::AllocStatus;
using store::StoreOp;
using store::StoreStatus;

namespace {

constexpr int64_t kActiveStart = 1'700'000'000;
constexpr int64_t kReplicaStart = 1'700'000'100;  // another process, another start time
std::vector<std::string>* g_stream;
store::Clock* g_active_clock;

void capture(void*, const store::Mutation& m) noexcept {
    repl::encode(repl::from_mutation(m, *g_active_clock), &g_stream->emplace_back());
}

StoreStatus put(store::Store& st, const std::string& k, const std::string& v,
                StoreOp op = StoreOp::Set, uint64_t cas = 0, uint32_t flags = 0,
                store::RelTime exp = 0) {
    store::ItemRef it;
    if (st.alloc(k, flags, exp, static_cast<uint32_t>(v.size()), &it) != AllocStatus::Ok) {
        return StoreStatus::NoMemory;
    }
    std::memcpy(it->value(), v.data(), v.size());
    std::memcpy(it->value() + v.size(), "\r\n", 2);
    return st.store(it, op, cas);
}

struct State {
    bool present;
    std::string value;
    uint32_t flags;
    uint64_t cas;
    int64_t exp_unix;
    bool stale;
};

State state(store::Store& st, store::Clock& clock, const std::string& k) {
    store::Lookup l = st.peek(k);
    if (!l.item) return {false, "", 0, 0, 0, false};
    const store::Item* it = l.item.get();
    return {true, std::string(it->value(), it->value_len()), it->client_flags, it->cas,
            it->exptime == 0 ? 0 : clock.process_started() + it->exptime,
            it->has(store::Item::kStale)};
}

}  // namespace

TEST(Applier, ReplicaEqualsActive) {
    store::Clock ac(kActiveStart), rc(kReplicaStart);
    ac.set_now(500);
    rc.set_now(400);  // same wall time: 1'700'000'500
    g_active_clock = &ac;
    std::vector<std::string> stream;
    g_stream = &stream;
    store::Config cfg;
    cfg.nbuckets = 16;
    cfg.bucket_fn = &repl::bucket_of;
    store::Config acfg = cfg;
    acfg.on_mutation = &capture;
    store::Store active(acfg, ac), replica(cfg, rc);

    std::mt19937 rng(7);
    std::vector<std::string> keys;
    for (int i = 0; i < 40; ++i) keys.push_back("key" + std::to_string(i));
    for (int i = 0; i < 3000; ++i) {
        const std::string& k = keys[rng() % keys.size()];
        switch (rng() % 9) {
            case 0: put(active, k, std::string(rng() % 50, char('a' + rng() % 26)), StoreOp::Set, 0, rng(), rng() % 3 ? 0 : 1000); break;
            case 1: put(active, k, "added", StoreOp::Add); break;
            case 2: put(active, k, "+tail", StoreOp::Append); break;
            case 3: put(active, k, std::to_string(rng() % 1000)); break;
            case 4: { uint64_t v; (void)active.delta(k, rng() % 2, rng() % 100, &v); break; }
            case 5: (void)active.touch(k, 2000); break;
            case 6: (void)active.remove(k); break;
            case 7: {
                store::MetaDeleteArgs a;
                a.invalidate = true;
                (void)active.meta_delete(k, a);
                break;
            }
            case 8: {
                store::Lookup l = active.peek(k);
                if (l.item) put(active, k, "swapped", StoreOp::Cas, l.item->cas);
                break;
            }
        }
    }
    repl::Applier applier(replica, rc, 16);
    size_t applied = 0;
    auto apply_new = [&] {
        for (; applied < stream.size(); ++applied) {
            repl::Record r;
            ASSERT_EQ(repl::decode(stream[applied], &r), stream[applied].size());
            ASSERT_EQ(applier.apply(r), repl::Applied::Done);
        }
    };
    auto compare = [&](int min_present) {
        int present = 0, marked = 0;
        for (const std::string& k : keys) {
            State a = state(active, ac, k), b = state(replica, rc, k);
            present += a.present;
            marked += a.stale || a.exp_unix != 0;
            EXPECT_EQ(a.present, b.present) << k;
            EXPECT_EQ(a.value, b.value) << k;
            EXPECT_EQ(a.flags, b.flags) << k;
            EXPECT_EQ(a.cas, b.cas) << k;  // gets/cas keep working after a failover
            EXPECT_EQ(a.exp_unix, b.exp_unix) << k;
            EXPECT_EQ(a.stale, b.stale) << k;
        }
        EXPECT_GE(present, min_present);  // the comparison covered real items
        return marked;
    };
    apply_new();
    ASSERT_GT(stream.size(), 2000u);
    EXPECT_GT(compare(25), 0);  // stale or expiring items among them
    active.flush(0);            // a barrier in every bucket...
    for (int i = 0; i < 20; ++i) put(active, keys[i], "after flush " + std::to_string(i));
    apply_new();
    compare(20);
    for (const std::string& bytes : stream) {  // everything again: nothing changes
        repl::Record r;
        ASSERT_EQ(repl::decode(bytes, &r), bytes.size());
        ASSERT_EQ(applier.apply(r), repl::Applied::Duplicate);
    }
    compare(20);
    for (uint32_t b = 0; b < 16; ++b) EXPECT_EQ(applier.applied_seqno(b), active.bucket_seqno(b));
    // A write on the replica after a failover takes a unique above every one it received.
    ASSERT_EQ(put(replica, "fresh", "x"), StoreStatus::Stored);
    uint64_t highest = 0;
    for (const std::string& k : keys) highest = std::max(highest, state(replica, rc, k).cas);
    EXPECT_GT(state(replica, rc, "fresh").cas, highest);
}

TEST(Applier, DelayedFlushEmptiesTheBucketWhenDue) {
    store::Clock c(kActiveStart);
    store::Config cfg;
    cfg.nbuckets = 4;
    cfg.bucket_fn = &repl::bucket_of;
    store::Store st(cfg, c);
    repl::Applier applier(st, c, 4);
    repl::Record set;
    set.kind = repl::RecordKind::Set;
    set.key = "k";
    set.value = "v";
    set.bucket = repl::bucket_of("k", 4);
    set.seqno = 1;
    ASSERT_EQ(applier.apply(set), repl::Applied::Done);
    repl::Record r;
    r.kind = repl::RecordKind::Flush;
    r.bucket = set.bucket;
    r.seqno = 2;
    r.flush_delay = kActiveStart + 1000;  // unix time the flush takes effect
    EXPECT_EQ(applier.apply(r), repl::Applied::Done);
    EXPECT_EQ(applier.pending_flush(set.bucket), kActiveStart + 1000);
    EXPECT_EQ(applier.run_due_flushes(kActiveStart + 999), 0u);
    EXPECT_TRUE(st.peek("k").item);
    EXPECT_EQ(applier.run_due_flushes(kActiveStart + 1000), 1u);
    EXPECT_FALSE(st.peek("k").item);
    EXPECT_EQ(applier.pending_flush(set.bucket), 0);
    // An immediate flush cancels a pending delayed one, as a later flush_all does in memcached.
    r.seqno = 3;
    ASSERT_EQ(applier.apply(r), repl::Applied::Done);
    r.seqno = 4;
    r.flush_delay = 0;
    ASSERT_EQ(applier.apply(r), repl::Applied::Done);
    EXPECT_EQ(applier.pending_flush(set.bucket), 0);
    // A backfilled item (sequence number 0) is applied whatever the bucket has seen.
    set.seqno = 0;
    EXPECT_EQ(applier.apply(set), repl::Applied::Done);
    EXPECT_EQ(applier.applied_seqno(set.bucket), 4u);
    EXPECT_TRUE(st.peek("k").item);
}
