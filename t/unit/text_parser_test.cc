// Parser unit tests: field extraction, memcached's error choices, number rules, and the split
// property (every input cut at every byte parses to the same commands).
#include "proto/text_parser.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "proto/numbers.h"

using namespace mcm::proto;

namespace {

// The Request's views point into the input: keep every input alive for the whole test run.
Request parse_one(const std::string& input, ParseStatus* st = nullptr, size_t* used = nullptr) {
    static std::deque<std::string> inputs;
    const std::string& in = inputs.emplace_back(input);
    Request r;
    size_t consumed = 0;
    ParseStatus s = parse_command(in, &r, &consumed);
    if (st) *st = s;
    if (used) *used = consumed;
    return r;
}

}  // namespace

TEST(TextParser, Set) {
    Request r = parse_one("set foo 5 100 3\r\n");
    EXPECT_EQ(r.cmd, Cmd::Set);
    EXPECT_EQ(r.key, "foo");
    EXPECT_EQ(r.flags, 5u);
    EXPECT_EQ(r.exptime, 100);
    EXPECT_EQ(r.value_len, 3);
    EXPECT_FALSE(r.noreply);
}

TEST(TextParser, CasWithNoreply) {
    Request r = parse_one("cas k 1 2 3 18446744073709551615 noreply\r\n");
    EXPECT_EQ(r.cmd, Cmd::Cas);
    EXPECT_EQ(r.cas_unique, UINT64_MAX);
    EXPECT_TRUE(r.noreply);
}

TEST(TextParser, StorageErrors) {
    struct Case {
        const char* line;
        Err err;
        bool noreply;
    } cases[] = {
        {"set k 0 0\r\n", Err::Error, false},
        {"set k 0 0 1 noreply x\r\n", Err::Error, false},
        {"set k x 0 1\r\n", Err::BadFormat, false},
        {"set k x 0 1 noreply\r\n", Err::BadFormat, true},
        {"set k 0 0 -1\r\n", Err::BadFormat, false},
        {"set k -1 0 1\r\n", Err::BadFormat, false},
        {"cas k 0 0 1\r\n", Err::Error, false},
        {"cas k 0 0 1 x\r\n", Err::BadFormat, false},
    };
    for (const Case& c : cases) {
        Request r = parse_one(c.line);
        EXPECT_EQ(r.cmd, Cmd::Error) << c.line;
        EXPECT_EQ(r.error, c.err) << c.line;
        EXPECT_EQ(r.noreply, c.noreply) << c.line;
    }
    std::string long_key = "set " + std::string(251, 'k') + " 0 0 1\r\n";
    EXPECT_EQ(parse_one(long_key).error, Err::BadFormat);
    std::string ok_key = "set " + std::string(250, 'k') + " 0 0 1\r\n";
    EXPECT_EQ(parse_one(ok_key).cmd, Cmd::Set);
}

TEST(TextParser, Truncation) {
    // memcached keeps the low 32 bits of flags and exptime
    Request r = parse_one("set k 4294967296 4294967297 1\r\n");
    EXPECT_EQ(r.cmd, Cmd::Set);
    EXPECT_EQ(r.flags, 0u);
    EXPECT_EQ(r.exptime, 1);
}

TEST(TextParser, GetFamily) {
    Request r = parse_one("get a  b c\r\n");
    EXPECT_EQ(r.cmd, Cmd::Get);
    KeyCursor kc(r.keys);
    std::string_view k;
    std::vector<std::string> keys;
    while (kc.next(&k)) keys.emplace_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c"}));

    r = parse_one("gats 10 x\r\n");
    EXPECT_EQ(r.cmd, Cmd::Gats);
    EXPECT_EQ(r.exptime, 10);
    EXPECT_EQ(r.keys, "x");

    EXPECT_EQ(parse_one("get\r\n").error, Err::Error);
    EXPECT_EQ(parse_one("gat x k\r\n").error, Err::InvalidExptime);
    r = parse_one("gat 0\r\n");
    EXPECT_EQ(r.cmd, Cmd::Gat);
    EXPECT_TRUE(r.keys.empty());
}

TEST(TextParser, ManyKeysBeyondTokenLimit) {
    std::string line = "get";
    for (int i = 0; i < 100; ++i) line += " k" + std::to_string(i);
    Request r = parse_one(line + "\r\n");
    ASSERT_EQ(r.cmd, Cmd::Get);
    KeyCursor kc(r.keys);
    std::string_view k;
    int n = 0;
    while (kc.next(&k)) EXPECT_EQ(k, "k" + std::to_string(n++));
    EXPECT_EQ(n, 100);
}

TEST(TextParser, OtherCommands) {
    EXPECT_EQ(parse_one("delete k\r\n").cmd, Cmd::Delete);
    EXPECT_EQ(parse_one("delete k 0\r\n").cmd, Cmd::Delete);
    EXPECT_TRUE(parse_one("delete k 0 noreply\r\n").noreply);
    EXPECT_EQ(parse_one("delete k 1\r\n").error, Err::BadDeleteFormat);
    EXPECT_EQ(parse_one("delete k 0 0\r\n").error, Err::BadDeleteFormat);
    EXPECT_EQ(parse_one("incr k 5\r\n").delta, 5u);
    EXPECT_EQ(parse_one("decr k -1\r\n").error, Err::InvalidDelta);
    EXPECT_EQ(parse_one("touch k 9\r\n").exptime, 9);
    EXPECT_EQ(parse_one("touch k z\r\n").error, Err::InvalidExptime);
    EXPECT_EQ(parse_one("flush_all\r\n").exptime, 0);
    EXPECT_EQ(parse_one("flush_all 7\r\n").exptime, 7);
    EXPECT_TRUE(parse_one("flush_all noreply\r\n").noreply);
    EXPECT_EQ(parse_one("flush_all x\r\n").error, Err::InvalidExptime);
    EXPECT_EQ(parse_one("verbosity 2\r\n").level, 2u);
    EXPECT_EQ(parse_one("verbosity\r\n").error, Err::Error);
    EXPECT_EQ(parse_one("cache_memlimit 64\r\n").memlimit, 64u);
    EXPECT_EQ(parse_one("cache_memlimit x\r\n").error, Err::Error);
    EXPECT_EQ(parse_one("stats settings\r\n").args, "settings");
    EXPECT_EQ(parse_one("version\r\n").cmd, Cmd::Version);
    EXPECT_EQ(parse_one("quit\r\n").cmd, Cmd::Quit);
    EXPECT_EQ(parse_one("bget k\r\n").cmd, Cmd::Get);
    EXPECT_EQ(parse_one("x\r\n").error, Err::Error);
    EXPECT_EQ(parse_one("\r\n").error, Err::Error);
    EXPECT_EQ(parse_one("get\tk\r\n").error, Err::Error);
}

TEST(TextParser, LineEndingsAndLimits) {
    ParseStatus st;
    size_t used = 0;
    parse_one("get k\n", &st, &used);
    EXPECT_EQ(st, ParseStatus::Ok);
    EXPECT_EQ(used, 6u);
    parse_one("get k", &st);
    EXPECT_EQ(st, ParseStatus::NeedMore);
    parse_one("set " + std::string(3000, 'x'), &st);
    EXPECT_EQ(st, ParseStatus::Close);
    parse_one("get " + std::string(3000, 'x'), &st);
    EXPECT_EQ(st, ParseStatus::NeedMore);
    parse_one(std::string(101, ' ') + "get " + std::string(3000, 'x'), &st);
    EXPECT_EQ(st, ParseStatus::Close);
    parse_one("GET / HTTP/1.1\r\n", &st);
    EXPECT_EQ(st, ParseStatus::Close);
    Request r = parse_one("get / HTTP/1.1\r\n", &st);
    EXPECT_EQ(st, ParseStatus::Ok);
    EXPECT_EQ(r.cmd, Cmd::Get);
    r = parse_one(std::string("get a\0b\r\n", 9));
    EXPECT_EQ(r.keys, "a");
}

TEST(Numbers, MemcachedRules) {
    uint64_t u = 0;
    EXPECT_TRUE(parse_u64("18446744073709551615", &u));
    EXPECT_EQ(u, UINT64_MAX);
    EXPECT_FALSE(parse_u64("18446744073709551616", &u));
    EXPECT_FALSE(parse_u64("-1", &u));
    EXPECT_TRUE(parse_u64("-0", &u));
    EXPECT_TRUE(parse_u64(" \t42", &u));
    EXPECT_EQ(u, 42u);
    EXPECT_TRUE(parse_u64("42\tjunk", &u));
    EXPECT_FALSE(parse_u64("42x", &u));
    EXPECT_FALSE(parse_u64("", &u));
    EXPECT_FALSE(parse_u64("+", &u));
    EXPECT_TRUE(parse_u64("+7", &u));
    int64_t i = 0;
    EXPECT_TRUE(parse_i64("-9223372036854775808", &i));
    EXPECT_EQ(i, INT64_MIN);
    EXPECT_FALSE(parse_i64("9223372036854775808", &i));
    int32_t i32 = 0;
    EXPECT_TRUE(parse_i32("4294967295", &i32));
    EXPECT_EQ(i32, -1);
    uint32_t u32 = 0;
    EXPECT_TRUE(parse_u32("4294967297", &u32));
    EXPECT_EQ(u32, 1u);
}

namespace {

struct Parsed {
    Cmd cmd;
    Err err;
    std::string key;
    std::string keys;
    size_t at;
    bool operator==(const Parsed&) const = default;
};

// The connection's loop: parse at the offset, skip values of storage commands.
std::vector<Parsed> parse_all(const std::string& in, size_t* stopped_at) {
    std::vector<Parsed> out;
    size_t off = 0;
    while (off < in.size()) {
        Request r;
        size_t used = 0;
        ParseStatus st = parse_command(std::string_view(in).substr(off), &r, &used);
        if (st != ParseStatus::Ok) break;
        out.push_back({r.cmd, r.error, std::string(r.key), std::string(r.keys), off});
        off += used;
        if (r.cmd != Cmd::Error && (cmd_flags(r.cmd) & kStore)) {
            size_t vlen = static_cast<size_t>(r.value_len) + 2;
            if (off + vlen > in.size()) break;
            off += vlen;
        }
    }
    *stopped_at = off;
    return out;
}

}  // namespace

TEST(TextParser, EverySplitGivesTheSameCommands) {
    std::string keys;
    for (int i = 0; i < 10000; ++i) keys += " key" + std::to_string(i);
    std::vector<std::string> inputs = {
        "set a 1 2 3\r\nabc\r\nget a b\r\ndelete a noreply\r\nincr n 5\r\n",
        "cas k 0 0 5 77\r\nhello\r\ngets k\r\nbogus line\r\nflush_all 3\r\n",
        "get" + keys + "\r\nversion\r\n",
        "get " + std::string(3000, 'x') + "\r\nset k 0 0 0\r\n\r\n",
        "touch k 1\nverbosity 1\n\r\nstats\r\n",
    };
    for (const std::string& in : inputs) {
        size_t whole_end = 0;
        std::vector<Parsed> whole = parse_all(in, &whole_end);
        ASSERT_FALSE(whole.empty());
        // Cut at every byte (every 97th for the long ones): first the head alone, then all.
        size_t step = in.size() > 4000 ? 97 : 1;
        for (size_t cut = 1; cut < in.size(); cut += step) {
            size_t head_end = 0;
            std::vector<Parsed> head = parse_all(in.substr(0, cut), &head_end);
            ASSERT_LE(head.size(), whole.size());
            for (size_t i = 0; i < head.size(); ++i) {
                // the head may stop inside a storage value; everything before agrees
                ASSERT_EQ(head[i], whole[i]) << "cut " << cut;
            }
            size_t rest_end = 0;
            std::vector<Parsed> all = parse_all(in, &rest_end);
            ASSERT_EQ(all, whole);
        }
    }
}

// A NUL byte ends the line wherever it is (memcached parses a C string): before, inside and
// after tokens, and past the 23rd token.
TEST(TextParser, NulEndsTheLineAnywhere) {
    EXPECT_EQ(parse_one(std::string("\0get a\r\n", 8)).error, Err::Error);
    Request r = parse_one(std::string("get abc\0def ghi\r\n", 17));
    EXPECT_EQ(r.cmd, Cmd::Get);
    EXPECT_EQ(r.keys, "abc");
    r = parse_one(std::string("get abcdefghijklmnop qrs\0tuv\r\n", 30));
    EXPECT_EQ(r.keys, "abcdefghijklmnop qrs");
    r = parse_one(std::string("get a \0 b\r\n", 11));
    EXPECT_EQ(r.keys, "a ");
    r = parse_one(std::string("delete k\0 noreply\r\n", 19));
    EXPECT_EQ(r.cmd, Cmd::Delete);
    EXPECT_FALSE(r.noreply);
    std::string many = "get";
    for (int i = 0; i < 30; ++i) many += " k" + std::to_string(i);
    std::string withnul = many;
    withnul[many.find(" k25")] = '\0';
    r = parse_one(withnul + "\r\n");
    EXPECT_EQ(r.keys, many.substr(4, many.find(" k25") - 4));
    // long tokens (the eight-byte scan) and every NUL position in one
    std::string base = "set averyveryverylongkeyname 123456789 0 5";
    for (size_t i = 0; i < base.size(); ++i) {
        std::string l = base;
        l[i] = '\0';
        Request a = parse_one(l + "\r\n");
        Request b = parse_one(base.substr(0, i) + "\r\n");
        EXPECT_EQ(a.cmd, b.cmd) << i;
        EXPECT_EQ(a.error, b.error) << i;
        EXPECT_EQ(a.key, b.key) << i;
    }
}
