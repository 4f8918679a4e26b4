#include "coordinator/planner.h"

#include <algorithm>

namespace mcm::coord {

using repl::kNoNode;

namespace {

bool holds(const BucketMap& m, uint32_t b, uint16_t n) {
    if (m.active[b] == n) return true;
    const auto& r = m.replicas[b];
    return std::find(r.begin(), r.end(), n) != r.end();
}

void drop_replica(BucketMap* m, uint32_t b, uint16_t n) {
    auto& r = m->replicas[b];
    r.erase(std::remove(r.begin(), r.end(), n), r.end());
}

uint32_t live_count(const BucketMap& m, const View& v) {
    uint32_t n = 0;
    for (size_t i = 0; i < m.nodes.size(); ++i) n += v.is_live(static_cast<uint16_t>(i));
    return n;
}

// The live node with the fewest `count`, ties by fewest actives, then the lowest index, that
// passes ok(). kNoNode if none.
template <typename Ok>
uint16_t least_loaded(const BucketMap& m, const View& v, const std::vector<uint32_t>& count,
                      const std::vector<uint32_t>& actives, Ok ok) {
    uint16_t best = kNoNode;
    for (uint16_t n = 0; n < m.nodes.size(); ++n) {
        if (!v.is_live(n) || !ok(n)) continue;
        if (best == kNoNode || count[n] < count[best] ||
            (count[n] == count[best] && actives[n] < actives[best])) {
            best = n;
        }
    }
    return best;
}

// The replica of bucket b to promote: live, in sync, highest applied seqno; ties to the one
// with fewest actives so a dead node's buckets spread. kNoNode if there is none.
uint16_t best_replica(const BucketMap& m, uint32_t b, const View& v, const Load& l) {
    uint16_t best = kNoNode;
    for (uint16_t r : m.replicas[b]) {
        if (!v.is_live(r) || !v.in_sync(r, b)) continue;
        if (best == kNoNode) {
            best = r;
            continue;
        }
        uint64_t ar = v.report(r, b).applied, ab = v.report(best, b).applied;
        if (ar > ab || (ar == ab && l.actives[r] < l.actives[best])) best = r;
    }
    return best;
}

}  // namespace

Load load_of(const BucketMap& m) {
    Load l;
    l.actives.assign(m.nodes.size(), 0);
    l.replicas.assign(m.nodes.size(), 0);
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        if (m.active[b] != kNoNode) ++l.actives[m.active[b]];
        for (uint16_t r : m.replicas[b]) ++l.replicas[r];
    }
    return l;
}

bool same_assignment(const BucketMap& a, const BucketMap& b) {
    if (a.nbuckets != b.nbuckets || a.nodes.size() != b.nodes.size()) return false;
    for (size_t i = 0; i < a.nodes.size(); ++i) {
        if (a.nodes[i].name != b.nodes[i].name) return false;
    }
    return a.active == b.active && a.replicas == b.replicas;
}

BucketMap first_map(const std::vector<BucketMap::Node>& nodes, uint32_t nbuckets,
                    uint32_t replicas, uint64_t epoch) {
    BucketMap m;
    m.epoch = epoch;
    m.nbuckets = nbuckets;
    m.nodes = nodes;
    m.active.assign(nbuckets, kNoNode);
    m.replicas.assign(nbuckets, {});
    const uint64_t n = nodes.size();
    if (n == 0) return m;
    const uint64_t r = std::min<uint64_t>(replicas, n - 1);
    for (uint64_t a = 0; a < n; ++a) {
        const uint64_t first = a * nbuckets / n, end = (a + 1) * nbuckets / n, size = end - first;
        for (uint64_t k = 0; k < size; ++k) {
            uint32_t b = static_cast<uint32_t>(first + k);
            m.active[b] = static_cast<uint16_t>(a);
            // Sub-block s of this block replicates to others s, s+1, ... (others of a being
            // a+1, a+2, ... mod n): each other node gets r/(n-1) of a's buckets.
            uint64_t s = k * (n - 1) / size;
            for (uint64_t j = 0; j < r; ++j) {
                uint64_t other = 1 + (s + j) % (n - 1);
                m.replicas[b].push_back(static_cast<uint16_t>((a + other) % n));
            }
        }
    }
    return m;
}

FailoverPlan plan_failover(const BucketMap& m, uint16_t dead, const View& v) {
    FailoverPlan p;
    p.map = m;
    BucketMap& out = p.map;
    Load l = load_of(m);
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        if (holds(m, b, dead) && m.active[b] != dead) {
            drop_replica(&out, b, dead);
            p.changed = true;
        }
        if (m.active[b] != dead) continue;
        p.changed = true;
        ++p.moved;
        --l.actives[dead];
        drop_replica(&out, b, dead);
        uint16_t to = best_replica(out, b, v, l);
        if (to == kNoNode) {
            // No warm copy: the bucket starts empty on the least busy live server.
            to = least_loaded(out, v, l.actives, l.replicas,
                              [&](uint16_t x) { return x != dead; });
            if (to != kNoNode) ++p.cold;
        }
        out.active[b] = to;
        if (to != kNoNode) {
            drop_replica(&out, b, to);
            ++l.actives[to];
        }
    }
    if (p.changed) out.epoch = m.epoch + 1;
    return p;
}

uint32_t plan_orphans(const BucketMap& m, const View& v, BucketMap* out) {
    BucketMap next = m;
    Load l = load_of(m);
    uint32_t given = 0;
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        if (m.active[b] != kNoNode) continue;
        // A live replica, if any, is warmer than nobody.
        uint16_t to = best_replica(next, b, v, l);
        if (to == kNoNode) {
            to = least_loaded(next, v, l.actives, l.replicas, [](uint16_t) { return true; });
        }
        if (to == kNoNode) break;  // nobody live: nothing to do
        drop_replica(&next, b, to);
        next.active[b] = to;
        ++l.actives[to];
        ++given;
    }
    if (given == 0) return 0;
    next.epoch = m.epoch + 1;
    *out = std::move(next);
    return given;
}

uint32_t live_replicas(const BucketMap& m, uint32_t b, const View& v) {
    uint32_t have = 0;
    for (uint16_t x : m.replicas[b]) have += v.is_live(x);
    return have;
}

// The buckets with a live active and fewer than r live replicas, taken round-robin by active
// node: placing the replicas of one active's buckets last would leave only the other nodes to
// take them, and the spread would tilt.
std::vector<uint32_t> needy_by_active(const BucketMap& m, const View& v, uint32_t r) {
    std::vector<std::vector<uint32_t>> by(m.nodes.size());
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        if (m.active[b] != kNoNode && v.is_live(m.active[b]) && live_replicas(m, b, v) < r) {
            by[m.active[b]].push_back(b);
        }
    }
    std::vector<uint32_t> order;
    for (size_t i = 0, left = 1; left > 0; ++i) {
        left = 0;
        for (const auto& list : by) {
            if (i < list.size()) order.push_back(list[i]);
            left += i + 1 < list.size();
        }
    }
    return order;
}

bool plan_restore(const BucketMap& m, const View& v, uint32_t r, BucketMap* out) {
    BucketMap next = m;
    Load l = load_of(m);
    bool changed = false;
    for (uint32_t b : needy_by_active(m, v, r)) {
        uint32_t have = live_replicas(next, b, v);
        // Bounded: each round adds a node that did not hold b, or stops.
        while (have < r) {
            uint16_t to = least_loaded(next, v, l.replicas, l.actives,
                                       [&](uint16_t x) { return !holds(next, b, x); });
            if (to == kNoNode) break;
            next.replicas[b].push_back(to);
            ++l.replicas[to];
            ++have;
            changed = true;
        }
    }
    if (!changed) return false;
    next.epoch = m.epoch + 1;
    *out = std::move(next);
    return true;
}

bool plan_rejoin(const BucketMap& m, uint16_t node, const View& v, uint32_t r, BucketMap* out) {
    uint32_t live = live_count(m, v);
    if (r == 0 || live < 2 || !v.is_live(node)) return false;
    uint32_t target = static_cast<uint32_t>((uint64_t{r} * m.nbuckets + live / 2) / live);
    // Per holder, the buckets it replicates that could take `node` as an extra replica.
    std::vector<std::vector<uint32_t>> cand(m.nodes.size());
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        if (m.active[b] == kNoNode || !v.is_live(m.active[b]) || holds(m, b, node)) continue;
        for (uint16_t h : m.replicas[b]) {
            if (v.is_live(h)) cand[h].push_back(b);
        }
    }
    Load l = load_of(m);
    std::vector<uint32_t> virt = l.replicas;  // load once the surplus is trimmed
    std::vector<size_t> next_i(m.nodes.size(), 0);
    BucketMap next = m;
    uint32_t given = 0;
    while (given < target) {
        uint16_t from = kNoNode;
        for (uint16_t h = 0; h < m.nodes.size(); ++h) {
            // Skip candidates another holder already handed over.
            while (next_i[h] < cand[h].size() && holds(next, cand[h][next_i[h]], node)) {
                ++next_i[h];
            }
            if (next_i[h] == cand[h].size()) continue;
            if (from == kNoNode || virt[h] > virt[from]) from = h;
        }
        if (from == kNoNode) break;
        next.replicas[cand[from][next_i[from]++]].push_back(node);
        --virt[from];
        ++given;
    }
    if (given == 0) return false;
    next.epoch = m.epoch + 1;
    *out = std::move(next);
    return true;
}

bool plan_trim(const BucketMap& m, const View& v, uint32_t r, BucketMap* out) {
    BucketMap next = m;
    Load l = load_of(m);
    bool changed = false;
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        const auto& reps = next.replicas[b];
        if (reps.size() <= r) continue;
        bool all_in_sync = std::all_of(reps.begin(), reps.end(), [&](uint16_t x) {
            return v.is_live(x) && v.in_sync(x, b);
        });
        if (!all_in_sync) continue;
        uint16_t drop = reps.front();
        for (uint16_t x : reps) {
            if (l.replicas[x] > l.replicas[drop]) drop = x;
        }
        drop_replica(&next, b, drop);
        --l.replicas[drop];
        changed = true;
    }
    if (!changed) return false;
    next.epoch = m.epoch + 1;
    *out = std::move(next);
    return true;
}

BucketMap with_node(const BucketMap& m, BucketMap::Node n) {
    BucketMap next = m;
    next.nodes.push_back(std::move(n));
    next.epoch = m.epoch + 1;
    return next;
}

bool without_node(const BucketMap& m, uint16_t node, BucketMap* out, std::string* err) {
    if (node >= m.nodes.size()) {
        *err = "no such node";
        return false;
    }
    BucketMap next = m;
    auto renum = [&](uint16_t x) { return x > node ? static_cast<uint16_t>(x - 1) : x; };
    for (uint32_t b = 0; b < m.nbuckets; ++b) {
        if (holds(m, b, node)) {
            *err = "node " + m.nodes[node].name + " still holds bucket " + std::to_string(b);
            return false;
        }
        if (next.active[b] != kNoNode) next.active[b] = renum(next.active[b]);
        for (uint16_t& x : next.replicas[b]) x = renum(x);
    }
    next.nodes.erase(next.nodes.begin() + node);
    next.epoch = m.epoch + 1;
    *out = std::move(next);
    return true;
}

}  // namespace mcm::coord
