#include "replication/bucket_map.h"

#include <cctype>

#include <charconv>
#include <cstring>
#include <cstdio>

namespace mcm::repl {

namespace {

// zlib's CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), slicing by 8. zlib's own
// crc32() spends ~500 instructions on a short key before its first byte (measured with
// callgrind); this takes ~40 for a 12-byte key. t/unit/bucket_map_test.cc checks it against
// zlib on random inputs.
struct CrcTables {
    uint32_t t[8][256];
    constexpr CrcTables() : t() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; ++i) {
            for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
        }
    }
};
constexpr CrcTables kCrc;

}  // namespace

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "crc32_ieee reads words little-endian");

uint32_t crc32_ieee(std::string_view data) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    size_t n = data.size();
    uint32_t c = 0xffffffffu;
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);  // little-endian x86-64: byte 0 is the low byte
        v ^= c;
        c = kCrc.t[7][v & 0xff] ^ kCrc.t[6][(v >> 8) & 0xff] ^ kCrc.t[5][(v >> 16) & 0xff] ^
            kCrc.t[4][(v >> 24) & 0xff] ^ kCrc.t[3][(v >> 32) & 0xff] ^
            kCrc.t[2][(v >> 40) & 0xff] ^ kCrc.t[1][(v >> 48) & 0xff] ^ kCrc.t[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n-- > 0) c = (c >> 8) ^ kCrc.t[0][(c ^ *p++) & 0xff];
    return c ^ 0xffffffffu;
}

uint32_t bucket_of(std::string_view key, uint32_t nbuckets) noexcept {
    return crc32_ieee(key) % nbuckets;
}

std::string_view state_name(BucketState s) noexcept {
    switch (s) {
        case BucketState::Active: return "active";
        case BucketState::Replica: return "replica";
        case BucketState::Pending: return "pending";
        case BucketState::Dead: return "dead";
    }
    return "dead";
}

bool parse_state(std::string_view name, BucketState* out) noexcept {
    for (BucketState s : {BucketState::Dead, BucketState::Active, BucketState::Replica,
                          BucketState::Pending}) {
        if (name == state_name(s)) {
            *out = s;
            return true;
        }
    }
    return false;
}

bool valid_node_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
            return false;
        }
    }
    return true;
}

std::vector<std::string_view> split_words(std::string_view line) {
    std::vector<std::string_view> w;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') ++i;
        size_t j = i;
        while (j < line.size() && line[j] != ' ') ++j;
        if (j > i) w.push_back(line.substr(i, j - i));
        i = j;
    }
    return w;
}

int BucketMap::node_index(std::string_view name) const noexcept {
    for (size_t i = 0; i < nodes.size(); ++i) {
        if (nodes[i].name == name) return static_cast<int>(i);
    }
    return -1;
}

std::string BucketMap::format() const {
    std::string out = "MAP " + std::to_string(epoch) + " " + std::to_string(nbuckets) + "\r\n";
    for (const Node& n : nodes) {
        out += "NODE " + n.name + " " + n.host + ":" + std::to_string(n.port) + "\r\n";
    }
    // Runs of buckets with the same owners become one RANGE line.
    uint32_t b = 0;
    while (b < nbuckets) {
        uint32_t e = b;
        while (e + 1 < nbuckets && active[e + 1] == active[b] && replicas[e + 1] == replicas[b]) {
            ++e;
        }
        if (active[b] != kNoNode) {
            out += "RANGE " + std::to_string(b) + " " + std::to_string(e) + " " +
                   nodes[active[b]].name;
            for (uint16_t r : replicas[b]) out += " " + nodes[r].name;
            out += "\r\n";
        }
        b = e + 1;
    }
    out += "END\r\n";
    return out;
}

namespace {


template <typename T>
bool number(std::string_view s, T* v) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

bool BucketMap::parse(std::string_view text, BucketMap* out, std::string* err) {
    BucketMap m;
    bool have_header = false, ended = false;
    std::vector<bool> seen;
    size_t lineno = 0;
    while (!text.empty() && !ended) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        ++lineno;
        std::vector<std::string_view> w = split_words(line);
        if (w.empty()) continue;
        auto fail = [&](const std::string& why) {
            *err = "line " + std::to_string(lineno) + ": " + why;
            return false;
        };
        if (w[0] == "MAP") {
            if (have_header || w.size() != 3 || !number(w[1], &m.epoch) ||
                !number(w[2], &m.nbuckets) || m.nbuckets == 0 || m.nbuckets > 65536) {
                return fail("expected MAP <epoch> <buckets>");
            }
            have_header = true;
            m.active.assign(m.nbuckets, kNoNode);
            m.replicas.assign(m.nbuckets, {});
            seen.assign(m.nbuckets, false);
        } else if (!have_header) {
            return fail("the map must start with MAP");
        } else if (w[0] == "NODE") {
            if (w.size() != 3) return fail("expected NODE <name> <host>:<port>");
            size_t colon = w[2].rfind(':');
            Node n;
            n.name = std::string(w[1]);
            if (colon == std::string_view::npos || colon == 0 ||
                !number(w[2].substr(colon + 1), &n.port) || n.port == 0) {
                return fail("bad address " + std::string(w[2]));
            }
            n.host = std::string(w[2].substr(0, colon));
            // Names as valid_node_name, hosts printable ASCII: a map's text reaches JSON (the
            // coordinator's state file and admin API), which takes UTF-8 only, and logs.
            if (!valid_node_name(n.name)) return fail("bad node name");
            for (char c : n.host) {
                if (c < 0x21 || c > 0x7e) return fail("bad address " + std::string(w[2]));
            }
            if (m.node_index(n.name) >= 0) return fail("node " + n.name + " listed twice");
            if (m.nodes.size() >= kNoNode) return fail("too many nodes");
            m.nodes.push_back(std::move(n));
        } else if (w[0] == "RANGE") {
            uint32_t first = 0, last = 0;
            if (w.size() < 4 || !number(w[1], &first) || !number(w[2], &last) || first > last ||
                last >= m.nbuckets) {
                return fail("expected RANGE <first> <last> <active> [<replica> ...] in range");
            }
            int a = m.node_index(w[3]);
            if (a < 0) return fail("unknown node " + std::string(w[3]));
            std::vector<uint16_t> reps;
            for (size_t i = 4; i < w.size(); ++i) {
                int r = m.node_index(w[i]);
                if (r < 0) return fail("unknown node " + std::string(w[i]));
                if (r == a) return fail("a replica cannot be the active server");
                for (uint16_t x : reps) {
                    if (x == r) return fail("replica listed twice");
                }
                reps.push_back(static_cast<uint16_t>(r));
            }
            for (uint32_t b = first; b <= last; ++b) {
                if (seen[b]) return fail("bucket " + std::to_string(b) + " given twice");
                seen[b] = true;
                m.active[b] = static_cast<uint16_t>(a);
                m.replicas[b] = reps;
            }
        } else if (w[0] == "END") {
            ended = true;
        } else {
            return fail("unknown line " + std::string(w[0]));
        }
    }
    if (!have_header) {
        *err = "empty map";
        return false;
    }
    *out = std::move(m);
    return true;
}

}  // namespace mcm::repl
