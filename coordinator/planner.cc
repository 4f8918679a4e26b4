#include "coordinator/planner.h"

#include <algorithm>
#include <climits>

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

// Dinic's maximum flow, built in stages: edges added after a run() extend the residual graph,
// so the next run() keeps what the earlier ones placed unless an augmenting path must reroute
// it. A vertex's edges are tried in the order they were added, the planner's preference.
// Edges are chained per vertex in one array rather than a vector each: the graphs have up to
// B*N edges and per-vertex allocations were most of the planner's time.
class MaxFlow {
public:
    explicit MaxFlow(size_t vertices)
        : head_(vertices, -1), tail_(vertices, -1), level_(vertices), next_(vertices) {}

    // The id of the new edge u -> v.
    int add(int u, int v, int cap) {
        link(u, v, cap);
        link(v, u, 0);
        return static_cast<int>(e_.size()) - 2;
    }
    int flow(int edge) const { return e_[edge ^ 1].cap; }
    int residual(int edge) const { return e_[edge].cap; }

    int64_t run(int s, int t) {
        int64_t total = 0;
        while (levels(s, t)) {
            next_ = head_;
            while (int f = push(s, t, INT_MAX)) total += f;
        }
        return total;
    }

private:
    struct Edge {
        int to;
        int cap;
        int next;  // the vertex's next edge, -1 at the end
    };

    void link(int u, int v, int cap) {
        int id = static_cast<int>(e_.size());
        e_.push_back({v, cap, -1});
        (tail_[u] < 0 ? head_[u] : e_[tail_[u]].next) = id;
        tail_[u] = id;
    }

    bool levels(int s, int t) {
        std::fill(level_.begin(), level_.end(), -1);
        std::vector<int> q{s};
        level_[s] = 0;
        for (size_t i = 0; i < q.size(); ++i) {
            for (int id = head_[q[i]]; id >= 0; id = e_[id].next) {
                const Edge& x = e_[id];
                if (x.cap > 0 && level_[x.to] < 0) {
                    level_[x.to] = level_[q[i]] + 1;
                    q.push_back(x.to);
                }
            }
        }
        return level_[t] >= 0;
    }

    // One augmenting path along the levels. Its depth is bounded by the level of t, at most
    // twice the node count plus a few (every path alternates buckets and nodes).
    int push(int u, int t, int f) {
        if (u == t) return f;
        for (int& id = next_[u]; id >= 0; id = e_[id].next) {
            Edge& x = e_[id];
            if (x.cap <= 0 || level_[x.to] != level_[u] + 1) continue;
            if (int got = push(x.to, t, std::min(f, x.cap)); got > 0) {
                x.cap -= got;
                e_[id ^ 1].cap += got;
                return got;
            }
        }
        return 0;
    }

    std::vector<Edge> e_;
    std::vector<int> head_, tail_, level_, next_;
};

// Nodes in the order that gets a quota's leftover ceils: the most held first, then the lowest
// index.
std::vector<uint16_t> by_most(const std::vector<uint16_t>& elig, const std::vector<uint32_t>& have) {
    std::vector<uint16_t> order = elig;
    std::stable_sort(order.begin(), order.end(),
                     [&](uint16_t a, uint16_t b) { return have[a] > have[b]; });
    return order;
}

// The target's actives: floor(B/E) per node plus B mod E ceils. An active stays while its node
// is within its quota; the rest move, to a replica holder when the flow finds one, else to
// the node with the most room left.
//
// Which nodes get the ceils is part of the flow. When more nodes hold more than the floor
// than there are ceils, every ceil saves one move wherever it goes among them; so each such
// node gives up all but one of its surplus for sure, and the last one through a pool that
// only (those nodes - ceils) may use: the nodes whose last one the flow did not take as a
// handover keep it. Otherwise they all keep one, and the ceils left go, through a pool of
// that size, to the nodes at or under the floor where they let one more handover in.
template <typename Ok>
std::vector<uint16_t> target_actives(const BucketMap& m, Ok ok, const std::vector<uint16_t>& elig) {
    const uint32_t B = m.nbuckets;
    const size_t N = m.nodes.size();
    auto must_move = [&](uint32_t b) { return m.active[b] == kNoNode || !ok(m.active[b]); };
    std::vector<uint32_t> have(N, 0);
    for (uint32_t b = 0; b < B; ++b) {
        if (!must_move(b)) ++have[m.active[b]];
    }
    const uint32_t base = B / static_cast<uint32_t>(elig.size());
    const uint32_t ceils = B % static_cast<uint32_t>(elig.size());
    const std::vector<uint16_t> order = by_most(elig, have);
    std::vector<uint16_t> givers, takers;  // over the floor; at or under it
    std::vector<uint32_t> over(N, 0), room(N, 0);
    for (uint16_t n : order) {
        if (have[n] > base) {
            givers.push_back(n);
            over[n] = have[n] - base;
        } else {
            takers.push_back(n);
            room[n] = base - have[n];
        }
    }
    const uint32_t giver_ceils = std::min<uint32_t>(ceils, static_cast<uint32_t>(givers.size()));
    const uint32_t taker_ceils = ceils - giver_ceils;

    // s -> bucket that must move (1); s -> giver (its surplus) -> its buckets (1);
    // bucket -> a replica holder (1); holder -> t (its room). The maximum flow is the most
    // moves that are handovers.
    const int s = 0, t = 1;
    auto bv = [](uint32_t b) { return 2 + static_cast<int>(b); };
    auto nv = [&](uint16_t n) { return 2 + static_cast<int>(B) + n; };
    auto gv = [&](uint16_t n) { return 2 + static_cast<int>(B + N) + n; };
    const int pool = 2 + static_cast<int>(B + 2 * N);
    MaxFlow f(3 + B + 2 * N);
    std::vector<int> pool_edge(N, -1);
    const bool giver_pool = giver_ceils < givers.size();
    for (uint16_t n : givers) {
        if (over[n] > 1) f.add(s, gv(n), static_cast<int>(over[n] - 1));
        if (giver_pool) pool_edge[n] = f.add(pool, gv(n), 1);
    }
    if (giver_pool) f.add(s, pool, static_cast<int>(givers.size() - giver_ceils));
    for (uint16_t n : takers) {
        if (room[n] > 0) f.add(nv(n), t, static_cast<int>(room[n]));
        if (taker_ceils > 0) pool_edge[n] = f.add(nv(n), pool, 1);
    }
    if (taker_ceils > 0) f.add(pool, t, static_cast<int>(taker_ceils));
    struct Cheap {
        uint32_t b;
        uint16_t to;
        int edge;
    };
    std::vector<Cheap> cheap;
    for (uint32_t b = 0; b < B; ++b) {
        const bool forced = must_move(b);
        if (!forced && over[m.active[b]] == 0) continue;
        bool any = false;
        for (uint16_t d : m.replicas[b]) {
            if (d == m.active[b] || !ok(d) || have[d] > base) continue;
            if (!any) f.add(forced ? s : gv(m.active[b]), bv(b), 1);
            any = true;
            cheap.push_back({b, d, f.add(bv(b), nv(d), 1)});
        }
    }
    f.run(s, t);

    // The ceils: givers whose last surplus bucket stayed, takers that used the pool, then
    // the takers' unused ones in order.
    uint32_t left = giver_ceils;
    for (uint16_t n : givers) {
        if (left > 0 && (!giver_pool || f.flow(pool_edge[n]) == 0)) {
            --over[n];
            --left;
        }
    }
    left = taker_ceils;
    for (uint16_t n : takers) {
        if (left > 0 && pool_edge[n] >= 0 && f.flow(pool_edge[n]) > 0) {
            ++room[n];
            --left;
            pool_edge[n] = -1;
        }
    }
    for (uint16_t n : takers) {
        if (left > 0 && pool_edge[n] >= 0) {
            ++room[n];
            --left;
        }
    }

    std::vector<uint16_t> act(B, kNoNode);
    for (const Cheap& c : cheap) {
        if (f.flow(c.edge) == 0) continue;
        act[c.b] = c.to;
        --room[c.to];
        if (!must_move(c.b)) --over[m.active[c.b]];
    }
    // The rest are copies: each to the node with the most room, so the new owners share the
    // copying. A giver's first buckets (by index) go; any choice costs the same.
    for (uint32_t b = 0; b < B; ++b) {
        if (act[b] != kNoNode) continue;
        if (!must_move(b)) {
            uint16_t a = m.active[b];
            if (over[a] == 0) {
                act[b] = a;
                continue;
            }
            --over[a];
        }
        uint16_t to = elig.front();
        for (uint16_t n : elig) {
            if (room[n] > room[to]) to = n;
        }
        act[b] = to;
        --room[to];
    }
    return act;
}

// The target's replicas for the given actives: rr per bucket within the quotas, by a flow
// that first keeps existing replicas, then the former active, then adds copies.
template <typename Ok>
std::vector<std::vector<uint16_t>> target_replicas(const BucketMap& m,
                                                   const std::vector<uint16_t>& act, Ok ok,
                                                   const std::vector<uint16_t>& elig,
                                                   uint32_t rr) {
    const uint32_t B = m.nbuckets;
    const size_t N = m.nodes.size();
    std::vector<std::vector<uint16_t>> reps(B);
    if (rr == 0) return reps;
    // A node holds at most the buckets it is not active for.
    std::vector<uint32_t> cap(N, 0);
    for (uint16_t n : elig) cap[n] = B;
    for (uint32_t b = 0; b < B; ++b) --cap[act[b]];
    // Quotas: the floor for each node, and the ceils through a pool any node may use once
    // (within cap), so the flow puts them where they keep the most replicas.
    const uint64_t want = uint64_t{B} * rr;
    const uint32_t base = static_cast<uint32_t>(want / elig.size());
    const int ceils = static_cast<int>(want % elig.size());
    const int s = 0, t = 1;
    auto bv = [](uint32_t b) { return 2 + static_cast<int>(b); };
    auto nv = [&](uint16_t n) { return 2 + static_cast<int>(B) + n; };
    const int pool = 2 + static_cast<int>(B + N);
    MaxFlow f(3 + B + N);
    std::vector<int> to_t(N, -1), to_pool(N, -1);
    for (uint16_t n : elig) {
        to_t[n] = f.add(nv(n), t, static_cast<int>(std::min(base, cap[n])));
        if (ceils > 0 && base + 1 <= cap[n]) to_pool[n] = f.add(nv(n), pool, 1);
    }
    const int pool_t = ceils > 0 ? f.add(pool, t, ceils) : -1;

    std::vector<int> from_s(B);
    for (uint32_t b = 0; b < B; ++b) from_s[b] = f.add(s, bv(b), static_cast<int>(rr));
    // Per bucket, the nodes it has an edge to, in preference order, and the edges.
    std::vector<std::vector<std::pair<uint16_t, int>>> cand(B);
    auto connected = [&](uint32_t b, uint16_t n) {
        for (const auto& c : cand[b]) {
            if (c.first == n) return true;
        }
        return false;
    };
    auto offer = [&](uint32_t b, uint16_t n) {
        if (ok(n) && n != act[b] && !connected(b, n)) cand[b].push_back({n, f.add(bv(b), nv(n), 1)});
    };
    for (uint32_t b = 0; b < B; ++b) {
        for (uint16_t x : m.replicas[b]) offer(b, x);
    }
    uint64_t placed = f.run(s, t);
    if (placed < want) {
        for (uint32_t b = 0; b < B; ++b) {
            if (m.active[b] != kNoNode) offer(b, m.active[b]);
        }
        placed += f.run(s, t);
    }
    // New copies: first the buckets still short, each to every node that may take it (an
    // edge per pairing of all buckets would be B*N); then, if some are left (their nodes with
    // room hold them already or are their active), every bucket to the nodes with room, so
    // one may take its former active while another gives that up for a node with room; at
    // last every pairing. Each bucket tries the nodes from a different start so that, among
    // equals, the copies do not pile on the lowest indexes.
    for (int pass = 0; pass < 3 && placed < want; ++pass) {
        std::vector<uint16_t> to;
        for (uint16_t n : elig) {
            bool room = f.residual(to_t[n]) > 0 || (to_pool[n] >= 0 && f.residual(to_pool[n]) > 0 &&
                                                    f.residual(pool_t) > 0);
            if (pass != 1 || room) to.push_back(n);
        }
        for (uint32_t b = 0; b < B; ++b) {
            if (pass == 0 && f.residual(from_s[b]) == 0) continue;
            for (size_t i = 0; i < to.size(); ++i) offer(b, to[(b + i) % to.size()]);
        }
        placed += f.run(s, t);
    }

    std::vector<uint32_t> load(N, 0);
    for (uint32_t b = 0; b < B; ++b) {
        for (const auto& c : cand[b]) {
            if (f.flow(c.second) > 0) {
                reps[b].push_back(c.first);
                ++load[c.first];
            }
        }
    }
    // Quotas the distinctness rule made unreachable: validity first, the least loaded node.
    for (uint32_t b = 0; b < B; ++b) {
        while (reps[b].size() < rr) {
            uint16_t to = kNoNode;
            for (uint16_t n : elig) {
                if (n == act[b] || std::count(reps[b].begin(), reps[b].end(), n)) continue;
                if (to == kNoNode || load[n] < load[to]) to = n;
            }
            reps[b].push_back(to);
            ++load[to];
        }
    }
    return reps;
}

}  // namespace

BucketMap plan_balance(const BucketMap& m, const std::vector<bool>& eligible, uint32_t r) {
    auto ok = [&](uint16_t n) { return n < m.nodes.size() && n < eligible.size() && eligible[n]; };
    std::vector<uint16_t> elig;
    for (uint16_t n = 0; n < m.nodes.size(); ++n) {
        if (ok(n)) elig.push_back(n);
    }
    if (elig.empty()) return m;
    const uint32_t rr = std::min<uint32_t>(r, static_cast<uint32_t>(elig.size() - 1));
    BucketMap out = m;
    out.active = target_actives(m, ok, elig);
    out.replicas = target_replicas(m, out.active, ok, elig, rr);
    return out;
}

uint32_t buckets_differing(const BucketMap& a, const BucketMap& b) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < std::min(a.nbuckets, b.nbuckets); ++i) {
        if (a.active[i] != b.active[i]) {
            ++n;
            continue;
        }
        std::vector<uint16_t> x = a.replicas[i], y = b.replicas[i];
        std::sort(x.begin(), x.end());
        std::sort(y.begin(), y.end());
        n += x != y;
    }
    return n + (std::max(a.nbuckets, b.nbuckets) - std::min(a.nbuckets, b.nbuckets));
}

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
