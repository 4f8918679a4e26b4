// The parsers the fuzz targets cover (doc/fuzzing.md): regression tests with the inputs that
// crashed them (also in fuzz/corpus/<target>/crash-*), and the pure parse functions that were
// factored out of socket code so they could be fuzzed (cluster commands, admin API calls,
// the coordinator's one-line replies).
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "coordinator/admin_parse.h"
#include "coordinator/hb_reply.h"
#include "coordinator/state.h"
#include "replication/applier.h"
#include "replication/bucket_map.h"
#include "replication/record.h"
#include "replication/stream.h"
#include "server/managed/cluster_parse.h"

using namespace mcm;

namespace {

std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int c : b) s.push_back(static_cast<char>(c));
    return s;
}

}  // namespace

// fuzz/corpus/repl_frame/crash-empty-record: a Record frame with an empty payload. decode()
// reads it as "need more" (0 bytes), which equalled the payload's size, so the link applied a
// default record: a Set of the empty key in bucket 0.
TEST(FuzzRegress, EmptyRecordFrameIsNoRecord) {
    const std::string in = bytes({0x05, 0, 0, 0, 0x00, 0x1f, 0, 0, 0x04, 0x01, 0, 0, 0, 0x04});
    std::string_view rest(in);
    repl::FrameType t;
    std::string_view payload;
    size_t used = repl::next_frame(rest, &t, &payload);
    ASSERT_EQ(used, 9u);  // an unknown type (0), skipped
    rest.remove_prefix(used);
    used = repl::next_frame(rest, &t, &payload);
    ASSERT_EQ(used, 5u);
    ASSERT_EQ(t, repl::FrameType::Record);
    ASSERT_TRUE(payload.empty());
    repl::RecordView rv;
    EXPECT_EQ(repl::decode(payload, &rv), 0u);  // "need more": not a record
    EXPECT_FALSE(repl::decode_whole(payload, &rv));
    // A whole record decodes; one byte more or less does not.
    repl::Record r;
    r.key = "k";
    r.value = "v";
    std::string enc;
    repl::encode(r, &enc);
    EXPECT_TRUE(repl::decode_whole(enc, &rv));
    EXPECT_FALSE(repl::decode_whole(std::string_view(enc).substr(0, enc.size() - 1), &rv));
    EXPECT_FALSE(repl::decode_whole(enc + "x", &rv));
}

// fuzz/corpus/repl_apply/crash-misfiled-record: a Set naming bucket 2 for a key of another
// bucket was filed under bucket 2 (the store trusts the hint): counted there, not found by
// its key. Now refused.
TEST(FuzzRegress, ApplierRefusesARecordOfAnotherBucket) {
    store::Clock c(1'700'000'000);
    store::Config cfg;
    cfg.nbuckets = 4;
    cfg.bucket_fn = &repl::bucket_of;
    store::Store st(cfg, c);
    repl::Applier applier(st, c, 4);
    repl::Record r;
    r.kind = repl::RecordKind::Set;
    r.key = "foo";
    r.value = "filed elsewhere";
    r.seqno = 1;
    r.bucket = (repl::bucket_of("foo", 4) + 1) % 4;
    EXPECT_EQ(applier.apply(r), repl::Applied::Misfiled);
    EXPECT_EQ(applier.applied_seqno(r.bucket), 0u);
    EXPECT_FALSE(st.peek("foo").item);
    r.kind = repl::RecordKind::Delete;
    EXPECT_EQ(applier.apply(r), repl::Applied::Misfiled);
    r.bucket = repl::bucket_of("foo", 4);
    r.kind = repl::RecordKind::Set;
    EXPECT_EQ(applier.apply(r), repl::Applied::Done);
    EXPECT_TRUE(st.peek("foo").item);
    // A flush names a bucket, no key.
    repl::Record f;
    f.kind = repl::RecordKind::Flush;
    f.bucket = r.bucket;
    f.seqno = 2;
    EXPECT_EQ(applier.apply(f), repl::Applied::Done);
    EXPECT_FALSE(st.peek("foo").item);
}

// fuzz/corpus/coord_hb/crash-hb-id-not-utf8: a heartbeat whose node id is not UTF-8. Its
// ids go into the state file and /status (JSON), whose writer threw: the coordinator died.
TEST(FuzzRegress, HeartbeatIdsMustBeNodeNames) {
    coord::HbReply h;
    std::string err;
    std::vector<std::string> lines = {"HB n2\xd9\xd9\xd9\xd9\xd9\xd9\xd9 0 fedcba9876543209 1 0 1"};
    EXPECT_FALSE(coord::parse_hb(lines, &h, &err));
    lines = {"HB n2 0 fedcba98\xff 1 0 1"};
    EXPECT_FALSE(coord::parse_hb(lines, &h, &err));
    lines = {"HB n2 0 fedcba9876543209 1 0 1", "A 0 17 1", "H 2 5 0", "R 1 9 1"};
    ASSERT_TRUE(coord::parse_hb(lines, &h, &err)) << err;
    EXPECT_EQ(coord::format_hb(h), lines);
    // And should one get through some other way, the state still saves.
    coord::State s;
    s.members.push_back({"n2", "127.0.0.1:1", false, "", "\xd9\xd9"});
    coord::State back;
    ASSERT_TRUE(coord::FileStateStore::from_json(coord::FileStateStore::to_json(s), &back, &err));
    EXPECT_EQ(back.members.at(0).boot_id, "\xef\xbf\xbd\xef\xbf\xbd");  // U+FFFD twice
}

// fuzz/coord_state: numbers of the state file that are floats, negative or too large were
// cast as they were (undefined behaviour); they are refused now.
TEST(FuzzRegress, StateNumbersMustBeWholeAndInRange) {
    coord::State s;
    s.buckets = 64;
    s.replicas = 1;
    s.epoch = 7;
    const std::string good = coord::FileStateStore::to_json(s);
    coord::State back;
    std::string err;
    ASSERT_TRUE(coord::FileStateStore::from_json(good, &back, &err)) << err;
    EXPECT_EQ(back.epoch, 7u);
    auto with = [&](const std::string& key, const std::string& value) {
        std::string t = good;
        const std::string k = "\"" + key + "\": ";
        size_t at = t.find(k);
        EXPECT_NE(at, std::string::npos) << key;
        size_t end = t.find_first_of(",\n}", at + k.size());
        return t.replace(at + k.size(), end - at - k.size(), value);
    };
    for (const char* bad : {"2e+30", "-1", "1.5", "\"7\""}) {
        EXPECT_FALSE(coord::FileStateStore::from_json(with("buckets", bad), &back, &err)) << bad;
        EXPECT_FALSE(coord::FileStateStore::from_json(with("epoch", bad), &back, &err)) << bad;
    }
    EXPECT_FALSE(coord::FileStateStore::from_json(with("replicas", "8888888888"), &back, &err));
    EXPECT_FALSE(coord::FileStateStore::from_json(with("format", "1e300"), &back, &err));
    EXPECT_TRUE(coord::FileStateStore::from_json(with("epoch", "18446744073709551615"), &back,
                                                 &err)) << err;
    EXPECT_EQ(back.epoch, UINT64_MAX);
}

TEST(FuzzRegress, MapNamesAndHostsAreAscii) {
    repl::BucketMap m;
    std::string err;
    EXPECT_TRUE(repl::BucketMap::parse("MAP 1 2\r\nNODE a-1.x [::1]:7\r\nRANGE 0 1 a-1.x\r\nEND\r\n",
                                       &m, &err)) << err;
    EXPECT_FALSE(repl::BucketMap::parse("MAP 1 2\r\nNODE a\xff h:7\r\nEND\r\n", &m, &err));
    EXPECT_FALSE(repl::BucketMap::parse("MAP 1 2\r\nNODE a h\x01:7\r\nEND\r\n", &m, &err));
    EXPECT_FALSE(repl::BucketMap::parse("MAP 1 2\r\nNODE a h\xc3\xa9:7\r\nEND\r\n", &m, &err));
}

TEST(ClusterParse, Commands) {
    using K = server::ClusterCmd::Kind;
    struct Case {
        const char* args;
        K kind;
        bool auth;
    } cases[] = {
        {"map", K::Map, false},
        {"map x", K::Unknown, false},
        {"auth", K::AuthChallenge, false},
        {"auth abc", K::AuthProof, false},
        {"auth a b", K::Unknown, false},
        {"setmap 10", K::SetMap, true},
        {"setmap x", K::Unknown, false},
        {"state 0-3 active", K::State, true},
        {"state all bogus", K::BadState, true},
        {"state 3-0 dead", K::BadRange, true},
        {"state 16 dead", K::BadRange, true},
        {"drop 15", K::Drop, true},
        {"drop", K::BadRange, true},
        {"reset", K::Reset, true},
        {"reset now", K::Unknown, true},
        {"peer", K::Peer, true},
        {"peer binary", K::Peer, true},
        {"peer text", K::Unknown, true},
        {"repl n2 abc", K::Repl, true},
        {"repl n2 abc me", K::Repl, true},
        {"repl n2 abc other", K::ReplElsewhere, true},
        {"dump 3", K::Dump, true},
        {"dump 0-1", K::BadRange, true},
        {"hb 60000 1 2", K::Heartbeat, true},
        {"hb 60001 1 2", K::BadHeartbeat, true},
        {"lease 10 x 2", K::BadHeartbeat, true},
        {"listen 1.2.3.4:5", K::Listen, true},
        {"unlisten 1.2.3.4:5", K::Unlisten, true},
        {"steer", K::Steer, true},
        {"handoff 3 7", K::Handoff, true},
        {"handoff 0-15 cancel", K::HandoffCancel, true},
        {"handoff 0-16 cancel", K::Unknown, true},
        {"applied 15", K::Applied, true},
        {"applied 16", K::Unknown, true},
        {"", K::Unknown, false},
        {"nonsense", K::Unknown, false},
    };
    for (const Case& c : cases) {
        server::ClusterCmd cmd = server::parse_cluster_command(c.args, 16, "me");
        EXPECT_EQ(cmd.kind, c.kind) << c.args;
        EXPECT_EQ(cmd.needs_auth, c.auth) << c.args;
        std::string f = server::format_cluster_command(cmd);
        if (!f.empty()) {
            server::ClusterCmd again = server::parse_cluster_command(f, 16, "me");
            EXPECT_EQ(again.kind, cmd.kind) << c.args;
            EXPECT_EQ(server::format_cluster_command(again), f) << c.args;
        }
    }
    server::ClusterCmd all = server::parse_cluster_command("  state   all  replica ", 16, "me");
    EXPECT_EQ(all.first, 0u);
    EXPECT_EQ(all.last, 15u);
    EXPECT_EQ(all.state, repl::BucketState::Replica);
    server::ClusterCmd hb = server::parse_cluster_command("hb 3000 18446744073709551615 7", 16, "me");
    EXPECT_EQ(hb.token, UINT64_MAX);
    EXPECT_EQ(hb.quiet_ms, 7u);
}

// An epoch past 2^64 read as 0 (from_chars leaves the value alone when out of range): a
// server still at epoch 0 took it for its own.
TEST(ClusterParse, HandoffEpochOutOfRangeIsRefused) {
    server::ClusterCmd c =
        server::parse_cluster_command("handoff 0 99999999999999999999999", 16, "me");
    EXPECT_EQ(c.kind, server::ClusterCmd::Kind::Unknown);
}

TEST(AdminParse, Calls) {
    using K = coord::AdminCall::Kind;
    EXPECT_EQ(coord::parse_admin_call("GET", coord::admin_path("/status?x"), "").kind, K::Status);
    EXPECT_EQ(coord::parse_admin_call("GET", "/nodes", "").kind, K::NotFound);
    coord::AdminCall a = coord::parse_admin_call("POST", "/nodes", R"({"name":"n4","addr":"h:1"})");
    EXPECT_EQ(a.kind, K::AddNode);
    EXPECT_TRUE(a.mutating);
    EXPECT_TRUE(a.bad_body.empty());
    EXPECT_EQ(a.name, "n4");
    EXPECT_TRUE(a.rebalance);
    a = coord::parse_admin_call("POST", "/nodes", R"({"name":"n4","addr":"h:1","rebalance":1})");
    EXPECT_EQ(a.bad_body, "rebalance wants true/false");
    EXPECT_FALSE(coord::parse_admin_call("POST", "/nodes", "[").bad_body.empty());
    a = coord::parse_admin_call("POST", "/nodes/n2/drain", R"({"remove":true})");
    EXPECT_EQ(a.kind, K::Drain);
    EXPECT_EQ(a.name, "n2");
    EXPECT_TRUE(a.remove);
    EXPECT_EQ(coord::parse_admin_call("POST", "/nodes//drain", "").kind, K::NotFound);
    EXPECT_EQ(coord::parse_admin_call("DELETE", "/nodes/n2/drain", "").name, "n2/drain");
    EXPECT_EQ(coord::parse_admin_call("POST", "/failover/n3", "").name, "n3");
    EXPECT_EQ(coord::parse_admin_call("POST", "/rebalance", R"({"parallel":8})").parallel, 8u);
    EXPECT_FALSE(coord::parse_admin_call("POST", "/rebalance", R"({"parallel":65})").bad_body.empty());
    EXPECT_FALSE(coord::parse_admin_call("POST", "/rebalance", R"({"parallel":1.5})").bad_body.empty());
    EXPECT_EQ(coord::parse_admin_call("POST", "/rebalance/cancel", "").kind, K::CancelRebalance);
    std::string ch, proof;
    EXPECT_TRUE(coord::parse_auth_header("MC-HMAC abc def", &ch, &proof));
    EXPECT_EQ(ch, "abc");
    EXPECT_EQ(proof, "def");
    EXPECT_FALSE(coord::parse_auth_header("MC-HMAC abc", &ch, &proof));
    EXPECT_FALSE(coord::parse_auth_header("Basic abc def", &ch, &proof));
}

TEST(HbReply, OneLineReplies) {
    uint64_t v = 0;
    EXPECT_TRUE(coord::parse_handoff_reply("HANDOFF 3 1200", &v));
    EXPECT_EQ(v, 1200u);
    EXPECT_FALSE(coord::parse_handoff_reply("HANDOFF 3 12x", &v));
    EXPECT_FALSE(coord::parse_handoff_reply("CLIENT_ERROR bucket not active here", &v));
    coord::AppliedReply a = coord::parse_applied_reply("APPLIED 3 replica 1200 1 10 4096");
    EXPECT_TRUE(a.seven && a.applied && a.has_seqno && a.has_bytes);
    EXPECT_EQ(a.state, "replica");
    EXPECT_EQ(a.seqno, 1200u);
    EXPECT_EQ(a.bytes, 4096u);
    a = coord::parse_applied_reply("APPLIED 3 replica x 1 10 y");
    EXPECT_TRUE(a.seven && !a.has_seqno && !a.has_bytes);
    EXPECT_FALSE(coord::parse_applied_reply("APPLIED 3").seven);
    EXPECT_TRUE(coord::parse_lease_reply("LEASE 77 2900", &v));
    EXPECT_EQ(v, 77u);
    EXPECT_FALSE(coord::parse_lease_reply("LEASE x 2900", &v));
}
