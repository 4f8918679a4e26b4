// Replication records: encoding round trips at every split, and the per-bucket backlog's
// resume rule (the records after a sequence number, or "gone: backfill").
#include "replication/record.h"
#include "replication/stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace mcm::repl;

namespace {

Record sample(RecordKind k, uint64_t seq) {
    Record r;
    r.kind = k;
    r.bucket = 1023;
    r.seqno = seq;
    r.cas = 0x0102030405060708ull;
    r.flags = 0xfffffffeu;
    r.exptime_unix = 1'900'000'000;
    r.marks = kMarkStale | kMarkBinaryKey;
    r.flush_delay = -5;
    r.key = std::string("k\0\r\ney", 6);
    r.value = std::string("v\0a\r\nl", 6) + std::string(1000, 'x');
    return r;
}

bool same(const Record& a, const Record& b) {
    return a.kind == b.kind && a.bucket == b.bucket && a.seqno == b.seqno && a.cas == b.cas &&
           a.flags == b.flags && a.exptime_unix == b.exptime_unix && a.marks == b.marks &&
           a.flush_delay == b.flush_delay && a.key == b.key && a.value == b.value;
}

}  // namespace

TEST(Record, RoundTripEveryKindAndSplit) {
    for (RecordKind k : {RecordKind::Set, RecordKind::Touch, RecordKind::Delete,
                         RecordKind::Flush}) {
        Record in = sample(k, 42);
        std::string bytes;
        encode(in, &bytes);
        EXPECT_EQ(bytes.size(), kRecordHeader + in.key.size() + in.value.size());
        for (size_t cut = 0; cut < bytes.size(); ++cut) {
            Record part;
            ASSERT_EQ(decode(std::string_view(bytes).substr(0, cut), &part), 0u) << cut;
        }
        Record out;
        ASSERT_EQ(decode(bytes + "trailing", &out), bytes.size());
        EXPECT_TRUE(same(in, out));
    }
}

TEST(Record, StreamOfRecords) {
    std::string stream;
    for (uint64_t s = 1; s <= 50; ++s) {
        Record r = sample(s % 2 ? RecordKind::Set : RecordKind::Delete, s);
        r.value.resize(s);
        encode(r, &stream);
    }
    std::string_view in(stream);
    for (uint64_t s = 1; s <= 50; ++s) {
        Record r;
        size_t n = decode(in, &r);
        ASSERT_GT(n, 0u);
        ASSERT_NE(n, SIZE_MAX);
        EXPECT_EQ(r.seqno, s);
        EXPECT_EQ(r.value.size(), s);
        in.remove_prefix(n);
    }
    EXPECT_TRUE(in.empty());
}

TEST(Record, GarbageIsRefused) {
    std::string bytes;
    encode(sample(RecordKind::Set, 1), &bytes);
    std::string bad = bytes;
    bad[0] = 9;  // no such kind
    Record r;
    EXPECT_EQ(decode(bad, &r), SIZE_MAX);
    bad = bytes;
    bad[34] = static_cast<char>(0xff);  // key length 0x..ff > 250
    bad[35] = 0;
    EXPECT_EQ(decode(bad, &r), SIZE_MAX);
}

TEST(Backlog, ResumeOrBackfill) {
    Backlog b(10 * 100);  // room for ten 100-byte records
    std::string out;
    size_t n = 99;
    EXPECT_TRUE(b.copy_since(0, &out, &n));  // empty: nothing to send, nothing missing
    EXPECT_EQ(n, 0u);
    EXPECT_TRUE(out.empty());
    for (uint64_t s = 1; s <= 10; ++s) b.append(s, std::string(100, char('a' + s)));
    EXPECT_EQ(b.records(), 10u);
    EXPECT_TRUE(b.copy_since(7, &out, &n));
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(out, std::string(100, 'i') + std::string(100, 'j') + std::string(100, 'k'));
    out.clear();
    EXPECT_TRUE(b.copy_since(10, &out, &n));  // up to date
    EXPECT_EQ(n, 0u);
    EXPECT_TRUE(out.empty());
    for (uint64_t s = 11; s <= 14; ++s) b.append(s, std::string(100, char('a' + s)));
    EXPECT_EQ(b.records(), 10u);
    EXPECT_EQ(b.dropped(), 4u);
    EXPECT_EQ(b.first_seqno(), 5u);
    EXPECT_FALSE(b.copy_since(3, &out, &n));  // 4 is gone: backfill
    EXPECT_TRUE(out.empty());
    EXPECT_TRUE(b.copy_since(4, &out, &n));   // everything after 4 is still here
    EXPECT_EQ(n, 10u);
    EXPECT_EQ(out.size(), 1000u);
    EXPECT_EQ(out.substr(900), std::string(100, char('a' + 14)));
    EXPECT_LE(b.bytes(), 1000u);
}

TEST(Backlog, StartedMidwayHoldsNothingEarlier) {
    Backlog b(1000);
    b.append(41, "a", 100);
    b.append(42, "b", 200);
    std::string out;
    size_t n = 0;
    EXPECT_FALSE(b.copy_since(0, &out, &n));  // 1..40 were never here: backfill
    EXPECT_FALSE(b.copy_since(39, &out, &n));
    EXPECT_TRUE(b.copy_since(40, &out, &n));
    EXPECT_EQ(out, "ab");
    EXPECT_EQ(b.time_of(42), 200u);
    EXPECT_EQ(b.time_of(41), 100u);
    EXPECT_EQ(b.time_of(40), 0u);
    b.clear();
    EXPECT_EQ(b.records(), 0u);
    EXPECT_EQ(b.last_seqno(), 0u);
    b.append(7, "c");
    EXPECT_FALSE(b.copy_since(5, &out, &n));
    // A gap (a record the hook could not keep) makes everything before it gone.
    b.append(8, "d");
    b.append(10, "f");
    EXPECT_FALSE(b.copy_since(8, &out, &n));
    out.clear();
    EXPECT_TRUE(b.copy_since(9, &out, &n));
    EXPECT_EQ(out, "f");
}

// Records of odd sizes, in parts, wrapping around the ring many times: what comes out is
// always exactly what went in after the asked position, and the budget holds.
TEST(Backlog, WrapsAroundTheRing) {
    Backlog b(1024);
    std::vector<std::string> all(1);
    uint32_t x = 12345;
    for (uint64_t s = 1; s <= 2000; ++s) {
        x = x * 1103515245 + 12345;
        std::string head = "h" + std::to_string(s) + ":";
        std::string body((x >> 16) % 200, char('a' + s % 26));
        // an empty part as a delete's value comes: a view whose data() is null
        b.append(s, s * 10, {head, body.empty() ? std::string_view() : std::string_view(body)});
        all.push_back(head + body);
        ASSERT_LE(b.bytes(), 1024u);
        ASSERT_EQ(b.last_seqno(), s);
        for (uint64_t after = s > 12 ? s - 12 : 0; after <= s; ++after) {
            std::string out;
            size_t n = 0;
            if (!b.copy_since(after, &out, &n)) {
                ASSERT_LT(after + 1, b.first_seqno());
                continue;
            }
            std::string want;
            for (uint64_t k = after + 1; k <= s; ++k) want += all[k];
            ASSERT_EQ(out, want) << "after " << after << " at " << s;
            ASSERT_EQ(n, s - after);
            if (after < s) {
                ASSERT_EQ(b.time_of(after + 1), (after + 1) * 10);
            }
        }
    }
    b.append(2001, std::string(2000, 'x'));  // larger than the budget: not kept
    std::string out;
    size_t n = 0;
    EXPECT_FALSE(b.copy_since(2000, &out, &n));
    EXPECT_TRUE(b.copy_since(2001, &out, &n));
    EXPECT_EQ(b.records(), 0u);
    b.append(2002, "y");
    EXPECT_TRUE(b.copy_since(2001, &out, &n));
    EXPECT_EQ(out, "y");
    b.release();
    EXPECT_EQ(b.footprint(), 0u);
}

TEST(Stream, FramesRoundTripAndSplitAnywhere) {
    std::string w;
    frame_hello(&w, "node-a", "abcdef");
    frame_sub(&w, SubMsg{3, 0x1122334455667788ULL, 99});
    frame_stream(&w, StreamMsg{4, 7, 8, true});
    frame_backfill_end(&w, BackfillEndMsg{4, 8, 1000});
    std::string acks;
    ack_add(&acks, 1, 10);
    ack_add(&acks, 2, 20);
    frame_ack(&w, acks);
    frame_u64(&w, FrameType::Ping, 12345);
    frame_bucket(&w, FrameType::NotActive, 9);
    Record r;
    r.key = "key";
    r.value = "value";
    r.bucket = 5;
    r.seqno = 6;
    size_t at = begin_frame(&w, FrameType::Record);
    encode(r, &w);
    end_frame(&w, at);
    // Every prefix short of a whole frame asks for more; the whole stream parses in order.
    std::vector<FrameType> types;
    size_t pos = 0;
    while (pos < w.size()) {
        FrameType t;
        std::string_view p;
        size_t n = next_frame(std::string_view(w).substr(pos), &t, &p);
        ASSERT_NE(n, 0u);
        for (size_t cut = 0; cut < n; ++cut) {
            EXPECT_EQ(next_frame(std::string_view(w).substr(pos, cut), &t, &p), 0u);
        }
        n = next_frame(std::string_view(w).substr(pos), &t, &p);
        ASSERT_NE(n, 0u);
        ASSERT_NE(n, SIZE_MAX);
        types.push_back(t);
        switch (t) {
            case FrameType::Hello: {
                std::string name, proof;
                ASSERT_TRUE(parse_hello(p, &name, &proof));
                EXPECT_EQ(name, "node-a");
                EXPECT_EQ(proof, "abcdef");
                break;
            }
            case FrameType::Sub: {
                SubMsg m;
                ASSERT_TRUE(parse_sub(p, &m));
                EXPECT_EQ(m.bucket, 3u);
                EXPECT_EQ(m.history, 0x1122334455667788ULL);
                EXPECT_EQ(m.seqno, 99u);
                break;
            }
            case FrameType::Stream: {
                StreamMsg m;
                ASSERT_TRUE(parse_stream(p, &m));
                EXPECT_TRUE(m.backfill);
                EXPECT_EQ(m.seqno, 8u);
                break;
            }
            case FrameType::BackfillEnd: {
                BackfillEndMsg m;
                ASSERT_TRUE(parse_backfill_end(p, &m));
                EXPECT_EQ(m.items, 1000u);
                break;
            }
            case FrameType::Ack:
                ASSERT_EQ(p.size(), 24u);
                EXPECT_EQ(get_u32(p.data() + 12), 2u);
                EXPECT_EQ(get_u64(p.data() + 16), 20u);
                break;
            case FrameType::Record: {
                Record d;
                ASSERT_EQ(decode(p, &d), p.size());
                EXPECT_EQ(d.key, "key");
                EXPECT_EQ(d.value, "value");
                EXPECT_EQ(d.seqno, 6u);
                break;
            }
            default: break;
        }
        pos += n;
    }
    EXPECT_EQ(types.size(), 8u);
    // A zero length is not a frame.
    FrameType t;
    std::string_view p;
    EXPECT_EQ(next_frame(std::string_view("\0\0\0\0\1", 5), &t, &p), SIZE_MAX);
}
