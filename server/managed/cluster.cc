#include "server/managed/cluster.h"

#include <algorithm>

#include "replication/auth.h"

namespace mcm::server {

Cluster::Cluster(const Settings& s)
    : node_id_(s.node_id), secret_(s.cluster_secret), boot_id_(repl::random_hex32().substr(0, 16)),
      nbuckets_(s.buckets), states_(new std::atomic<uint8_t>[s.buckets]()),
      handoff_(new std::atomic<uint8_t>[s.buckets]()) {}

Cluster::Install Cluster::install(const repl::BucketMap& m, std::string* err) {
    if (m.nbuckets != nbuckets_) {
        *err = "the map has " + std::to_string(m.nbuckets) + " buckets, this server " +
               std::to_string(nbuckets_);
        maps_refused.fetch_add(1, std::memory_order_relaxed);
        return Install::Invalid;
    }
    {
        std::lock_guard<std::mutex> g(mu_);
        uint64_t held = epoch_.load(std::memory_order_relaxed);
        std::shared_ptr<const repl::BucketMap> cur = map_.load(std::memory_order_relaxed);
        bool same = cur != nullptr && m.epoch == held && cur->format() == m.format();
        if (same) return Install::Ok;  // the same map again: nothing changes
        if (m.epoch < held || (m.epoch == held && cur != nullptr)) {
            *err = "epoch " + std::to_string(m.epoch) + " is not newer than " +
                   std::to_string(held);
            maps_refused.fetch_add(1, std::memory_order_relaxed);
            return Install::Stale;
        }
        int self = m.node_index(node_id_);
        // The map first, then the states: a request that sees a bucket leave this server
        // finds its new owner in the map.
        map_.store(std::make_shared<const repl::BucketMap>(m), std::memory_order_release);
        epoch_.store(m.epoch, std::memory_order_release);
        for (uint32_t b = 0; b < nbuckets_; ++b) {
            repl::BucketState s = repl::BucketState::Dead;
            if (self >= 0 && m.active[b] == self) {
                s = repl::BucketState::Active;
            } else if (self >= 0) {
                for (uint16_t r : m.replicas[b]) {
                    if (r == self) s = repl::BucketState::Replica;
                }
            }
            if (handoff_[b].load(std::memory_order_relaxed) != 0) {
                // A handover under way here. Still ours: it goes on (another bucket's move
                // brought this map). Not ours: it is over; as a replica the bucket continues
                // from what it holds, which is all its history (the replication thread
                // resumes it from the new owner rather than being backfilled).
                if (s == repl::BucketState::Active) continue;
                handoff_[b].store(0, std::memory_order_relaxed);
                if (s == repl::BucketState::Replica) demotions_.push_back(b);
            } else if (s == repl::BucketState::Active &&
                       state(b) != repl::BucketState::Active) {
                // Not served as active until the replication thread has set the bucket's
                // history and sequence number (a promoted replica continues its active's).
                s = repl::BucketState::Pending;
                activations_.emplace_back(b, state(b));
            }
            states_[b].store(static_cast<uint8_t>(s), std::memory_order_relaxed);
        }
        maps_installed.fetch_add(1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    if (wake_fn_ != nullptr) wake_fn_(wake_ctx_);
    return Install::Ok;
}

void Cluster::take_activations(std::vector<std::pair<uint32_t, repl::BucketState>>* out) {
    std::lock_guard<std::mutex> g(mu_);
    out->swap(activations_);
    activations_.clear();
}

void Cluster::activate(uint32_t b) noexcept {
    std::lock_guard<std::mutex> g(mu_);
    std::shared_ptr<const repl::BucketMap> m = map_.load(std::memory_order_relaxed);
    if (m == nullptr || b >= nbuckets_ || state(b) != repl::BucketState::Pending) return;
    int self = m->node_index(node_id_);
    if (self >= 0 && m->active[b] == self) {
        states_[b].store(static_cast<uint8_t>(repl::BucketState::Active),
                         std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
}

std::string Cluster::begin_handoff(uint32_t b, uint64_t epoch) {
    std::lock_guard<std::mutex> g(mu_);
    if (b >= nbuckets_) return "CLIENT_ERROR bad bucket";
    if (epoch != epoch_.load(std::memory_order_relaxed)) {
        return "CLIENT_ERROR epoch " + std::to_string(epoch) + " is not the map held (" +
               std::to_string(epoch_.load(std::memory_order_relaxed)) + ")";
    }
    if (handoff_[b].load(std::memory_order_relaxed) != 0) return "";  // asked again
    if (state(b) != repl::BucketState::Active) return "CLIENT_ERROR bucket not active here";
    handoff_[b].store(1, std::memory_order_relaxed);
    // seq_cst: a request thread that still reads Active after this has started its request
    // before it; quiescence (Worker::passes) waits for those.
    states_[b].store(static_cast<uint8_t>(repl::BucketState::Pending), std::memory_order_seq_cst);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    handoffs_begun.fetch_add(1, std::memory_order_relaxed);
    return "";
}

uint32_t Cluster::cancel_handoffs(uint32_t first, uint32_t last) {
    std::lock_guard<std::mutex> g(mu_);
    uint32_t n = 0;
    for (uint32_t b = first; b <= last && b < nbuckets_; ++b) {
        if (handoff_[b].load(std::memory_order_relaxed) == 0) continue;
        handoff_[b].store(0, std::memory_order_relaxed);
        states_[b].store(static_cast<uint8_t>(repl::BucketState::Active),
                         std::memory_order_relaxed);
        ++n;
    }
    if (n > 0) {
        generation_.fetch_add(1, std::memory_order_acq_rel);  // parked writes go again
        handoffs_cancelled.fetch_add(n, std::memory_order_relaxed);
    }
    return n;
}

void Cluster::take_demotions(std::vector<uint32_t>* out) {
    std::lock_guard<std::mutex> g(mu_);
    out->swap(demotions_);
    demotions_.clear();
}

void Cluster::set_states(uint32_t first, uint32_t last, repl::BucketState s) noexcept {
    for (uint32_t b = first; b <= last && b < nbuckets_; ++b) {
        states_[b].store(static_cast<uint8_t>(s), std::memory_order_relaxed);
    }
    generation_.fetch_add(1, std::memory_order_acq_rel);
}

void Cluster::reset() noexcept {
    std::lock_guard<std::mutex> g(mu_);
    for (uint32_t b = 0; b < nbuckets_; ++b) handoff_[b].store(0, std::memory_order_relaxed);
    set_states(0, nbuckets_ - 1, repl::BucketState::Dead);
    map_.store(nullptr, std::memory_order_release);
    activations_.clear();
    demotions_.clear();
    resets_.fetch_add(1, std::memory_order_acq_rel);
}

// ---------------------------------------------------------------------------------------
// Fencing (doc/coordinator.md).

namespace {

void raise_to(std::atomic<int64_t>& a, int64_t v) noexcept {
    int64_t cur = a.load(std::memory_order_relaxed);
    while (v > cur && !a.compare_exchange_weak(cur, v)) {
    }
}

}  // namespace

void Cluster::grant_lease(int64_t issued_us, uint32_t lease_ms, uint32_t quiet_ms) noexcept {
    quiet_ms_.store(quiet_ms, std::memory_order_relaxed);
    if (lease_ms == 0) return;
    const int64_t end = issued_us + int64_t{lease_ms} * 1000;
    const int64_t now = mono_us();
    leased_.store(true, std::memory_order_release);
    // How long the lease had run when renewed: what is left is lease_ms minus this, so its
    // maximum is the fencing margin an operator sees.
    raise_to(hb_gap_max_ms, (now - issued_us) / 1000);
    if (end <= now) return;  // a renewal that came too late grants nothing, and is no contact
    raise_to(lease_end_us_, end);
    last_grant_us_.store(now, std::memory_order_relaxed);
}

int64_t mono_coarse_late_us() noexcept {
    static const int64_t res_us = [] {
        timespec r{};
        clock_getres(CLOCK_MONOTONIC_COARSE, &r);
        return int64_t{r.tv_sec} * 1'000'000 + r.tv_nsec / 1000 + 1;
    }();
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000 + res_us;
}

bool Cluster::serving_slow() const noexcept {
    const int64_t now = mono_coarse_late_us();
    return now < lease_end_us_.load(std::memory_order_relaxed) ||
           now < gone_until_us_.load(std::memory_order_relaxed);
}

int64_t Cluster::lease_left_ms() const noexcept {
    if (!leased_.load(std::memory_order_relaxed)) return 0;
    int64_t left = lease_end_us_.load(std::memory_order_relaxed) - mono_us();
    return left > 0 ? left / 1000 : 0;
}

repl::CoordinatorView Cluster::coordinator() const noexcept {
    repl::CoordinatorView v;
    v.leased = leased_.load(std::memory_order_acquire);
    v.quiet_ms = quiet_ms_.load(std::memory_order_relaxed);
    if (v.leased) {
        const int64_t now = mono_us();
        v.lease_valid = now < lease_end_us_.load(std::memory_order_relaxed);
        int64_t silent = (now - last_grant_us_.load(std::memory_order_relaxed)) / 1000;
        v.silent_ms = static_cast<uint32_t>(std::clamp<int64_t>(silent, 0, UINT32_MAX - 1));
    }
    return v;
}

bool Cluster::verify(std::string_view nonce, std::string_view proof_hex) const {
    return repl::proof_ok(secret_, nonce, proof_hex);
}

}  // namespace mcm::server
