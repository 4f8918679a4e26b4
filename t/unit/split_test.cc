// Every parser, fed every prefix of its input: a prefix that does not hold the whole request
// asks for more, never parses something else; the whole input parses the same as always.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "proto/base64.h"
#include "proto/binary.h"
#include "proto/text_parser.h"

using namespace mcm::proto;

namespace {

const std::vector<std::string> kTextLines = {
    "get a\r\n",
    "get a b c d e f\r\n",
    "gets k1 k2\r\n",
    "gat 10 a b\r\n",
    "set foo 5 100 3\r\n",
    "cas foo 0 0 1 99 noreply\r\n",
    "append k 0 0 10\r\n",
    "incr n 18446744073709551615\r\n",
    "delete k 0 noreply\r\n",
    "touch k -1\r\n",
    "flush_all 10 noreply\r\n",
    "verbosity 1\r\n",
    "stats detail dump\r\n",
    "version\n",
    "bogus command here\r\n",
    "mg foo s v f t c k O9 h l q\r\n",
    "mg Zm9v b k v\r\n",
    "ms foo 3 T0 F5 C12 I MA c k O1 q\r\n",
    "ms k 2 Tx F1x\r\n",
    "md k q I T30 C5 k O5\r\n",
    "ma cnt N0 J10 D5 MD v t c k O7\r\n",
    "me k b\r\n",
    "mn\r\n",
    "mg k v v\r\n",
    "mg\r\n",
};

std::string describe(const Request& r) {
    std::string d = std::to_string(static_cast<int>(r.cmd)) + "/" +
                    std::to_string(static_cast<int>(r.error)) + "/" + std::string(r.key) + "/" +
                    std::string(r.keys) + "/" + std::to_string(r.flags) + "/" +
                    std::to_string(r.exptime) + "/" + std::to_string(r.value_len) + "/" +
                    std::to_string(r.cas_unique) + "/" + std::to_string(r.delta) + "/" +
                    std::to_string(r.noreply) + "/" + std::to_string(r.swallow);
    if (r.cmd >= Cmd::MetaGet && r.cmd <= Cmd::MetaDebug) {
        d += "/" + std::to_string(r.meta.flags) + "/" + std::string(r.meta.tokens) + "/" +
             std::to_string(r.meta.ttl) + "/" + std::to_string(r.meta.compare_cas) + "/" +
             std::to_string(r.meta.delta) + "/" + std::to_string(r.meta.initial) + "/" +
             std::string(1, r.meta.mode ? r.meta.mode : '-');
    }
    return d;
}

std::string bin_req(uint8_t op, const std::string& key, const std::string& ext,
                    const std::string& val, uint64_t cas = 0) {
    std::string h(24, '\0');
    h[0] = static_cast<char>(0x80);
    h[1] = static_cast<char>(op);
    bin::store_be16(&h[2], static_cast<uint16_t>(key.size()));
    h[4] = static_cast<char>(ext.size());
    bin::store_be32(&h[8], static_cast<uint32_t>(ext.size() + key.size() + val.size()));
    bin::store_be32(&h[12], 0xabcdef01u);
    bin::store_be64(&h[16], cas);
    return h + ext + key + val;
}

}  // namespace

TEST(Split, TextLinesAtEveryByte) {
    for (const std::string& line : kTextLines) {
        Request whole;
        size_t used = 0;
        ASSERT_EQ(parse_command(line, &whole, &used), ParseStatus::Ok) << line;
        ASSERT_EQ(used, line.size()) << line;
        const std::string want = describe(whole);
        for (size_t cut = 0; cut < line.size(); ++cut) {
            std::string part = line.substr(0, cut);
            Request r;
            size_t u = 0;
            EXPECT_EQ(parse_command(part, &r, &u), ParseStatus::NeedMore) << line << " @" << cut;
        }
        // With the next command already behind it, the same request and the same length.
        std::string two = line + "get next\r\n";
        Request again;
        ASSERT_EQ(parse_command(two, &again, &used), ParseStatus::Ok);
        EXPECT_EQ(used, line.size()) << line;
        EXPECT_EQ(describe(again), want) << line;
    }
}

TEST(Split, BinaryRequestsAtEveryByte) {
    const std::vector<std::string> reqs = {
        bin_req(bin::Get, "key", "", ""),
        bin_req(bin::Set, "key", std::string("\0\0\0\5\0\0\0\0", 8), "value", 7),
        bin_req(bin::Increment, "n", std::string(20, '\1'), ""),
        bin_req(bin::Noop, "", "", ""),
        bin_req(bin::Stat, "settings", "", ""),
        bin_req(bin::Touch, std::string(250, 'k'), std::string(4, '\0'), ""),
    };
    for (const std::string& in : reqs) {
        bin::BinRequest whole;
        size_t used = 0;
        ASSERT_EQ(bin::parse_binary(in, &whole, &used), ParseStatus::Ok);
        const size_t header_part = 24 + whole.extlen + whole.keylen;
        EXPECT_EQ(used, header_part);
        for (size_t cut = 1; cut < header_part; ++cut) {
            bin::BinRequest r;
            size_t u = 0;
            EXPECT_EQ(bin::parse_binary(in.substr(0, cut), &r, &u), ParseStatus::NeedMore)
                << "op " << int(whole.opcode) << " @" << cut;
        }
        uint32_t opaque;
        std::memcpy(&opaque, in.data() + 12, 4);
        EXPECT_EQ(whole.opaque, opaque);  // echoed byte for byte
        EXPECT_EQ(whole.value_len(), in.size() - header_part);
    }
}

TEST(Split, BinaryBadMagicCloses) {
    std::string in = bin_req(bin::Noop, "", "", "");
    in[0] = 0x81;
    bin::BinRequest r;
    size_t u = 0;
    EXPECT_EQ(bin::parse_binary(in, &r, &u), ParseStatus::Close);
}

TEST(Base64, RoundTripAndStrictness) {
    for (size_t n = 1; n < 40; ++n) {
        std::string raw;
        for (size_t i = 0; i < n; ++i) raw.push_back(static_cast<char>((i * 37 + n) & 0xff));
        std::string enc(base64_encoded_size(n), '\0');
        ASSERT_EQ(base64_encode(raw, enc.data()), enc.size());
        std::string dec(enc.size(), '\0');
        ASSERT_EQ(base64_decode(enc, dec.data()), n);
        EXPECT_EQ(dec.substr(0, n), raw);
    }
    char out[16];
    EXPECT_EQ(base64_decode("Zm9v", out), 3u);
    EXPECT_EQ(std::string(out, 3), "foo");
    EXPECT_EQ(base64_decode("YQ==", out), 1u);
    EXPECT_EQ(base64_decode("YQ", out), 0u);      // unpadded
    EXPECT_EQ(base64_decode("Zm9v=", out), 0u);   // not a multiple of 4
    EXPECT_EQ(base64_decode("!!!!", out), 0u);    // outside the alphabet
    EXPECT_EQ(base64_decode("Y===", out), 0u);    // too much padding
    EXPECT_EQ(base64_decode("YQ==YQ==", out), 0u);  // padding in the middle
    EXPECT_EQ(base64_decode("", out), 0u);
}
