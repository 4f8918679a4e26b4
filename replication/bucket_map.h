// The bucket map of managed mode (doc/managed.md): B buckets, each with an active server and
// replicas, under an epoch that only grows. Plain data with a text form; no sockets, no locks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mcm::repl {

// bucket(key) = zlib's CRC-32 of the key bytes, modulo the bucket count.
uint32_t bucket_of(std::string_view key, uint32_t nbuckets) noexcept;
// The same CRC-32 as zlib's crc32(0, data, len).
uint32_t crc32_ieee(std::string_view data) noexcept;

// The space-separated words of a line (runs of spaces count as one).
std::vector<std::string_view> split_words(std::string_view line);

// A node's name (the server's node_id): 1 to 64 letters, digits, '-', '_' or '.'.
bool valid_node_name(std::string_view name) noexcept;

// What a server does with one bucket.
enum class BucketState : uint8_t {
    Dead = 0,  // not here: requests go to the active server (or get NOT_MY_BUCKET)
    Active,    // owned here: served locally
    Replica,   // a copy kept from the active's stream (not served to clients)
    Pending,   // being handed over to this server: writes wait briefly
};
std::string_view state_name(BucketState s) noexcept;
bool parse_state(std::string_view name, BucketState* out) noexcept;

inline constexpr uint16_t kNoNode = 0xffff;

struct BucketMap {
    uint64_t epoch = 0;
    uint32_t nbuckets = 0;
    struct Node {
        std::string name;
        std::string host;
        uint16_t port = 0;
    };
    std::vector<Node> nodes;
    std::vector<uint16_t> active;                 // per bucket: node index or kNoNode
    std::vector<std::vector<uint16_t>> replicas;  // per bucket: node indexes

    int node_index(std::string_view name) const noexcept;

    // The text form, one line each, "\r\n" ended:
    //   MAP <epoch> <buckets>
    //   NODE <name> <host>:<port>          (one per server)
    //   RANGE <first> <last> <active> [<replica> ...]   (node names; buckets not in any
    //                                                     range have no owner)
    //   END
    std::string format() const;
    // Parses the text form (lines may end in "\n" or "\r\n"). False with *err on any error:
    // unknown node, overlapping or out-of-range buckets, a replica equal to the active, a
    // node name that is not valid_node_name, a host with bytes outside printable ASCII.
    static bool parse(std::string_view text, BucketMap* out, std::string* err);
};

}  // namespace mcm::repl
