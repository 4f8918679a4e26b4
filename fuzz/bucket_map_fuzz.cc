// libFuzzer target: the bucket map's text form (replication/bucket_map.cc, BucketMap::parse),
// as a server reads it from `cluster setmap` and the coordinator from its state file and from
// `cluster map` replies.
// Checks on a map that parses:
//   - every bucket's active and replicas name listed nodes, no replica is the active and none
//     is listed twice, node names are unique and valid, hosts printable ASCII;
//   - format() gives text that parses again to the same map, and formatting that gives the
//     same text (the text form is canonical after one round);
//   - a map that fails to parse says why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "replication/bucket_map.h"

using namespace mcm::repl;

namespace {

bool same(const BucketMap& a, const BucketMap& b) {
    if (a.epoch != b.epoch || a.nbuckets != b.nbuckets || a.nodes.size() != b.nodes.size() ||
        a.active != b.active || a.replicas != b.replicas) {
        return false;
    }
    for (size_t i = 0; i < a.nodes.size(); ++i) {
        if (a.nodes[i].name != b.nodes[i].name || a.nodes[i].host != b.nodes[i].host ||
            a.nodes[i].port != b.nodes[i].port) {
            return false;
        }
    }
    return true;
}

void check_valid(const BucketMap& m) {
    if (m.nbuckets == 0 || m.active.size() != m.nbuckets || m.replicas.size() != m.nbuckets) {
        std::abort();
    }
    for (size_t i = 0; i < m.nodes.size(); ++i) {
        if (m.node_index(m.nodes[i].name) != static_cast<int>(i)) std::abort();
        if (m.nodes[i].port == 0 || m.nodes[i].host.empty()) std::abort();
        // Names and hosts end up in JSON (the coordinator's state file): ASCII only.
        if (!valid_node_name(m.nodes[i].name)) std::abort();
        for (char c : m.nodes[i].host) {
            if (c < 0x21 || c > 0x7e) std::abort();
        }
    }
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        if (m.active[b] == kNoNode) {
            if (!m.replicas[b].empty()) std::abort();
            continue;
        }
        if (m.active[b] >= m.nodes.size()) std::abort();
        for (size_t i = 0; i < m.replicas[b].size(); ++i) {
            uint16_t r = m.replicas[b][i];
            if (r >= m.nodes.size() || r == m.active[b]) std::abort();
            for (size_t j = 0; j < i; ++j) {
                if (m.replicas[b][j] == r) std::abort();
            }
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    BucketMap m;
    std::string err;
    if (!BucketMap::parse(text, &m, &err)) {
        if (err.empty()) std::abort();
        return 0;
    }
    check_valid(m);
    const std::string f1 = m.format();
    BucketMap m2;
    std::string err2;
    if (!BucketMap::parse(f1, &m2, &err2)) std::abort();
    if (!same(m, m2)) std::abort();
    if (m2.format() != f1) std::abort();
    return 0;
}
