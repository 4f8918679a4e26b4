// Read hints: per-thread rings, per-link batches, the Hints frame (see hints.h).
#include "replication/hints.h"

#include <algorithm>

#include "replication/stream.h"

namespace mcm::repl {

namespace {

std::atomic<uint64_t> next_rings_id{1};

// The ring this thread last used, and whose it is.
struct ThisThread {
    uint64_t owner = 0;
    void* ring = nullptr;
};
thread_local ThisThread tls_ring;

size_t round_up_pow2(size_t n) noexcept {
    size_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

}  // namespace

HintRings::HintRings(size_t per_thread)
    : cap_(round_up_pow2(std::max<size_t>(per_thread, 2))),
      mask_(cap_ - 1),
      id_(next_rings_id.fetch_add(1, std::memory_order_relaxed)) {}

HintRings::Ring* HintRings::ring_of_this_thread() {
    std::lock_guard<std::mutex> g(mu_);
    const std::thread::id me = std::this_thread::get_id();
    for (auto& r : rings_) {
        if (r->owner == me) return r.get();
    }
    auto r = std::make_unique<Ring>();
    r->slots = std::make_unique<Hint[]>(cap_);
    r->owner = me;
    rings_.push_back(std::move(r));
    return rings_.back().get();
}

void HintRings::record(uint32_t bucket, uint64_t hash) noexcept {
    Ring* r;
    if (tls_ring.owner == id_) [[likely]] {
        r = static_cast<Ring*>(tls_ring.ring);
    } else {
        try {
            r = ring_of_this_thread();
        } catch (...) {
            return;  // no memory for a ring: hints are advice, lose this one
        }
        tls_ring = ThisThread{id_, r};
    }
    // Single writer: load and store, no read-modify-write.
    r->recorded.store(r->recorded.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    const uint64_t t = r->tail.load(std::memory_order_relaxed);
    if (t - r->head.load(std::memory_order_acquire) >= cap_) {
        r->dropped.store(r->dropped.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);
        return;
    }
    r->slots[t & mask_] = Hint{hash, bucket};
    r->tail.store(t + 1, std::memory_order_release);
}

uint64_t HintRings::recorded() const {
    std::lock_guard<std::mutex> g(mu_);
    uint64_t n = 0;
    for (auto& r : rings_) n += r->recorded.load(std::memory_order_relaxed);
    return n;
}

uint64_t HintRings::dropped() const {
    std::lock_guard<std::mutex> g(mu_);
    uint64_t n = 0;
    for (auto& r : rings_) n += r->dropped.load(std::memory_order_relaxed);
    return n;
}

size_t HintRings::threads() const {
    std::lock_guard<std::mutex> g(mu_);
    return rings_.size();
}

size_t HintBatch::ship(std::string* out, size_t* bytes) {
    const size_t n = hashes_.size();
    if (bytes != nullptr) *bytes = 0;
    if (n == 0) return 0;
    const size_t before = out->size();
    frame_hints(out, hashes_.data(), n);
    if (bytes != nullptr) *bytes = out->size() - before;
    hashes_.clear();
    return n;
}

void frame_hints(std::string* out, const uint64_t* hashes, size_t n) {
    const size_t at = begin_frame(out, FrameType::Hints);
    const size_t from = out->size();
    out->resize(from + 8 * n);
    char* p = out->data() + from;
    for (size_t i = 0; i < n; ++i, p += 8) {
        for (int k = 0; k < 8; ++k) p[k] = static_cast<char>(hashes[i] >> (8 * k));
    }
    end_frame(out, at);
}

bool parse_hints(std::string_view p, std::vector<uint64_t>* out) {
    if (p.size() % 8 != 0) return false;
    out->reserve(out->size() + p.size() / 8);
    for (size_t i = 0; i < p.size(); i += 8) out->push_back(get_u64(p.data() + i));
    return true;
}

size_t hint_budget(uint32_t per_second, uint32_t interval_ms) noexcept {
    if (per_second == 0) return 0;
    const uint64_t n = uint64_t{per_second} * interval_ms / 1000;
    return n == 0 ? 1 : static_cast<size_t>(n);
}

}  // namespace mcm::repl
