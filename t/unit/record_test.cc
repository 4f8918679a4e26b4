// Replication records: encoding round trips at every split, and the per-bucket backlog's
// resume rule (the records after a sequence number, or "gone: backfill").
#include "replication/record.h"

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
    std::vector<std::string_view> out;
    EXPECT_TRUE(b.since(0, &out));  // empty: nothing to send, nothing missing
    EXPECT_TRUE(out.empty());
    for (uint64_t s = 1; s <= 10; ++s) b.append(s, std::string(100, char('a' + s)));
    EXPECT_EQ(b.records(), 10u);
    EXPECT_TRUE(b.since(7, &out));
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0], std::string(100, char('a' + 8)));
    out.clear();
    EXPECT_TRUE(b.since(10, &out));  // up to date
    EXPECT_TRUE(out.empty());
    for (uint64_t s = 11; s <= 14; ++s) b.append(s, std::string(100, char('a' + s)));
    EXPECT_EQ(b.records(), 10u);
    EXPECT_EQ(b.dropped(), 4u);
    EXPECT_EQ(b.first_seqno(), 5u);
    EXPECT_FALSE(b.since(3, &out));  // 4 is gone: backfill
    EXPECT_TRUE(b.since(4, &out));   // everything after 4 is still here
    EXPECT_EQ(out.size(), 10u);
    EXPECT_LE(b.bytes(), 1000u);
}
