// Managed mode's bucket function (doc/managed.md test vectors) and the map's text form.
#include "replication/bucket_map.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <string>

using namespace mcm::repl;

TEST(Buckets, Crc32Vectors) {
    // zlib's CRC-32 of the key bytes, then mod B (doc/managed.md lists the same).
    EXPECT_EQ(bucket_of("", 1024), 0u);
    EXPECT_EQ(bucket_of("a", 1u << 31), 0xe8b7be43u % (1u << 31));
    EXPECT_EQ(bucket_of("foo", 1024), 0x8c736521u % 1024);
    EXPECT_EQ(bucket_of("hello world", 1024), 0x0d4a1185u % 1024);
    EXPECT_EQ(bucket_of("123456789", 4294967295u), 0xcbf43926u);  // the CRC-32 check value
    EXPECT_EQ(bucket_of(std::string_view("\0\xff", 2), 1), 0u);
}

TEST(Buckets, SameCrcAsZlib) {
    std::mt19937 rng(42);
    for (int n = 0; n < 2000; ++n) {
        std::string s(static_cast<size_t>(rng() % 300), '\0');
        for (char& c : s) c = static_cast<char>(rng());
        uLong want = crc32(0L, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size()));
        ASSERT_EQ(crc32_ieee(s), static_cast<uint32_t>(want)) << s.size();
    }
}

TEST(Buckets, MapRoundTrip) {
    std::string text =
        "MAP 7 16\r\nNODE a 127.0.0.1:11211\r\nNODE b 10.0.0.2:11212\r\n"
        "RANGE 0 7 a b\r\nRANGE 8 14 b a\r\nEND\r\n";
    BucketMap m;
    std::string err;
    ASSERT_TRUE(BucketMap::parse(text, &m, &err)) << err;
    EXPECT_EQ(m.epoch, 7u);
    EXPECT_EQ(m.nbuckets, 16u);
    EXPECT_EQ(m.nodes[1].host, "10.0.0.2");
    EXPECT_EQ(m.nodes[1].port, 11212);
    EXPECT_EQ(m.active[3], 0);
    EXPECT_EQ(m.replicas[3], std::vector<uint16_t>{1});
    EXPECT_EQ(m.active[15], kNoNode);  // in no range: no owner
    EXPECT_EQ(m.format(), text);
    // "\n" endings and blank lines are fine too
    BucketMap m2;
    ASSERT_TRUE(BucketMap::parse("MAP 1 4\nNODE x h:1\n\nRANGE 0 3 x\n", &m2, &err)) << err;
    EXPECT_EQ(m2.format(), "MAP 1 4\r\nNODE x h:1\r\nRANGE 0 3 x\r\nEND\r\n");
}

TEST(Buckets, MapErrors) {
    BucketMap m;
    std::string err;
    EXPECT_FALSE(BucketMap::parse("", &m, &err));
    EXPECT_FALSE(BucketMap::parse("NODE a h:1\r\n", &m, &err));                  // no MAP first
    EXPECT_FALSE(BucketMap::parse("MAP 1 0\r\n", &m, &err));                     // no buckets
    EXPECT_FALSE(BucketMap::parse("MAP 1 4\r\nRANGE 0 3 a\r\n", &m, &err));      // unknown node
    EXPECT_FALSE(BucketMap::parse("MAP 1 4\r\nNODE a h:1\r\nRANGE 0 4 a\r\n", &m, &err));
    EXPECT_FALSE(BucketMap::parse("MAP 1 4\r\nNODE a h:1\r\nRANGE 0 1 a\r\nRANGE 1 2 a\r\n",
                                  &m, &err));  // overlap
    EXPECT_NE(err.find("bucket 1 given twice"), std::string::npos);
    EXPECT_FALSE(BucketMap::parse("MAP 1 4\r\nNODE a h:1\r\nRANGE 0 1 a a\r\n", &m, &err));
    EXPECT_FALSE(BucketMap::parse("MAP 1 4\r\nNODE a h:x\r\n", &m, &err));      // bad port
    EXPECT_FALSE(BucketMap::parse("MAP 1 4\r\nNODE a h:1\r\nNODE a h:2\r\n", &m, &err));
    EXPECT_FALSE(BucketMap::parse("MAP 1 4\r\nBOGUS\r\n", &m, &err));
}

TEST(Buckets, States) {
    BucketState s;
    for (const char* n : {"active", "replica", "pending", "dead"}) {
        ASSERT_TRUE(parse_state(n, &s));
        EXPECT_EQ(state_name(s), n);
    }
    EXPECT_FALSE(parse_state("alive", &s));
}
