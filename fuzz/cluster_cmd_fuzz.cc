// libFuzzer target: the arguments of the `cluster ...` control commands
// (server/managed/cluster_parse.cc, parse_cluster_command, which Dispatcher::cluster acts on).
// The first byte picks the bucket count (1..256) and, in its top bit, which name this server
// has; the rest is the text after "cluster".
// Checks:
//   - bucket ranges lie inside the bucket count, first <= last; a dump names one bucket;
//   - the lease is at most 60 s; words point into the input and hold no space;
//   - every command but the refusals (needs_auth aside, Map and Auth need none) formats to a
//     canonical text that parses to the same command, and that text formats to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/managed/cluster_parse.h"

using namespace mcm::server;
using Kind = ClusterCmd::Kind;

namespace {

void check_word(std::string_view w, std::string_view in) {
    if (w.empty()) std::abort();
    if (w.data() < in.data() || w.data() + w.size() > in.data() + in.size()) std::abort();
    if (w.find(' ') != std::string_view::npos) std::abort();
}

// Compares what survives a format: the words are compared as text.
bool same(const ClusterCmd& a, const ClusterCmd& b) {
    return a.kind == b.kind && a.needs_auth == b.needs_auth && a.first == b.first &&
           a.last == b.last && a.state == b.state && a.len == b.len && a.binary == b.binary &&
           a.full == b.full && a.lease_ms == b.lease_ms && a.quiet_ms == b.quiet_ms &&
           a.token == b.token && a.epoch == b.epoch && a.word == b.word && a.nonce == b.nonce;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint32_t nbuckets = 1 + (data[0] & 0x7f) * 2;
    const std::string_view me = (data[0] & 0x80) ? "n1" : "b";
    std::string_view args(reinterpret_cast<const char*>(data + 1), size - 1);
    const ClusterCmd c = parse_cluster_command(args, nbuckets, me);
    switch (c.kind) {
        case Kind::State:
        case Kind::BadState:
        case Kind::Drop:
        case Kind::HandoffCancel:
        case Kind::Dump:
            if (c.first > c.last || c.last >= nbuckets) std::abort();
            if (c.kind == Kind::Dump && c.first != c.last) std::abort();
            break;
        case Kind::Applied:
            if (c.first >= nbuckets) std::abort();
            break;
        case Kind::Heartbeat:
            if (c.lease_ms > 60000) std::abort();
            break;
        case Kind::AuthProof:
        case Kind::Listen:
        case Kind::Unlisten:
        case Kind::ReplElsewhere: check_word(c.word, args); break;
        case Kind::Repl:
            check_word(c.word, args);
            check_word(c.nonce, args);
            break;
        default: break;
    }
    if ((c.kind == Kind::Map || c.kind == Kind::AuthChallenge || c.kind == Kind::AuthProof) &&
        c.needs_auth) {
        std::abort();
    }
    if (c.kind == Kind::ReplElsewhere && c.word == me) std::abort();
    const std::string f = format_cluster_command(c);
    if (f.empty()) return 0;
    const ClusterCmd c2 = parse_cluster_command(f, nbuckets, me);
    if (!same(c, c2)) std::abort();
    if (format_cluster_command(c2) != f) std::abort();
    return 0;
}
