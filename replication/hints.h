// Read hints (issue 12; doc/replication.md, section Read hints): the active tells a bucket's
// replicas which of its items are being read, so that a replica's CLOCK keeps what the
// active's readers use and the replica promoted at failover is warm for the hot keys.
//
//   worker thread (read hit, first access mark since the hand passed; store's AccessFn)
//     -> HintRings::record: its own single-producer ring, no lock, no read-modify-write
//   replication thread, every tick (25 ms)
//     -> HintRings::drain -> each link subscribed to the hint's bucket: HintBatch::add,
//        at most rate x interval hints per interval (the rest are dropped and counted)
//   every interval (-o repl_hint_ms, 200 ms)
//     -> HintBatch::ship: one Hints frame per link (u64 table hashes)
//   replica: Store::mark_accessed(hashes)
//
// A hint is the item's 64-bit table hash, not its key: 8 bytes whatever the key's length, no
// copy of the key on the read path (the store already has the hash), and the replica's table
// files the item under the same hash (same hash function and bucket count), so it finds the
// item by it without the key. Two keys whose hashes agree above the shard bits (58 bits) would
// both count as hinted: harmless, and rare beyond measure.
//
// Plain data and atomics; no sockets, no store.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace mcm::repl {

struct Hint {
    uint64_t hash = 0;  // the item's table hash (store::AccessFn)
    uint32_t bucket = 0;
};

// One ring per thread that records hints, each with one producer (that thread) and one
// consumer (the replication thread). Recording is a few plain stores and one release store;
// a full ring drops the hint and counts it. A thread's ring is created on its first hint
// (under a mutex) and lives as long as the HintRings.
class HintRings {
public:
    explicit HintRings(size_t per_thread = 4096);  // rounded up to a power of two
    HintRings(const HintRings&) = delete;
    HintRings& operator=(const HintRings&) = delete;

    // Any thread.
    void record(uint32_t bucket, uint64_t hash) noexcept;

    // The consumer (one thread at a time): fn(const Hint&) for every hint recorded since the
    // last drain, ring by ring in recording order. Returns how many.
    template <typename F>
    size_t drain(F&& fn) {
        std::lock_guard<std::mutex> g(mu_);
        size_t n = 0;
        for (auto& rp : rings_) {
            Ring& r = *rp;
            const uint64_t t = r.tail.load(std::memory_order_acquire);
            uint64_t h = r.head.load(std::memory_order_relaxed);
            for (; h != t; ++h, ++n) fn(std::as_const(r.slots[h & mask_]));
            r.head.store(h, std::memory_order_release);
        }
        return n;
    }

    uint64_t recorded() const;  // every hint offered, kept or not
    uint64_t dropped() const;   // lost to a full ring
    size_t threads() const;     // rings created

private:
    struct Ring {
        alignas(64) std::atomic<uint64_t> head{0};  // consumer
        alignas(64) std::atomic<uint64_t> tail{0};  // producer
        std::atomic<uint64_t> recorded{0};          // producer (load + store)
        std::atomic<uint64_t> dropped{0};           // producer (load + store)
        std::unique_ptr<Hint[]> slots;
        std::thread::id owner;
    };
    Ring* ring_of_this_thread();

    const size_t cap_;
    const size_t mask_;
    const uint64_t id_;  // tells this HintRings from an earlier one at the same address
    mutable std::mutex mu_;
    std::vector<std::unique_ptr<Ring>> rings_;  // guarded by mu_ (added, never removed)
};

// What one link ships at its next interval: at most `budget` hints (the link's rate times
// the interval); hints beyond it are dropped and counted, so a link carries at most the
// rate whatever the readers do.
class HintBatch {
public:
    void set_budget(size_t n) noexcept { budget_ = n; }
    size_t budget() const noexcept { return budget_; }
    bool add(uint64_t hash) {
        if (hashes_.size() >= budget_) {
            ++dropped_;
            return false;
        }
        hashes_.push_back(hash);
        return true;
    }
    size_t size() const noexcept { return hashes_.size(); }
    // Appends one Hints frame with the batch to *out (nothing when empty) and empties it.
    // Returns the hints framed; *bytes (if given) gets the frame's size.
    size_t ship(std::string* out, size_t* bytes = nullptr);
    // The link cannot take them (its buffer is at the high mark): counted as dropped.
    void drop_all() noexcept {
        dropped_ += hashes_.size();
        hashes_.clear();
    }
    uint64_t dropped() const noexcept { return dropped_; }

private:
    std::vector<uint64_t> hashes_;
    size_t budget_ = 0;
    uint64_t dropped_ = 0;
};

// The Hints frame (stream.h, FrameType::Hints): u64 table hashes, little-endian, back to back.
void frame_hints(std::string* out, const uint64_t* hashes, size_t n);
// The hashes of a Hints payload, appended to *out; false if the payload is not a whole
// number of hashes.
bool parse_hints(std::string_view payload, std::vector<uint64_t>* out);
// Hints per interval for a rate in hints per second (0: off); at least one when on.
size_t hint_budget(uint32_t per_second, uint32_t interval_ms) noexcept;

}  // namespace mcm::repl
