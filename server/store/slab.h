// Item memory: size classes carved from 64 KiB pages, CLOCK eviction within a class, and heap
// blocks for items above the largest class. -m limits pages plus large blocks, so the limit,
// `stats slabs` and the process's RSS agree.
//
// Classes: 8-byte steps from 48 to 512 bytes (small items waste at most 7 bytes), then steps
// of 1/8 up to 8184 bytes (eight chunks to a page). Pages are carved lazily, so RSS follows
// what is stored. A page whose chunks are all free goes back to the heap at once, which lets
// memory flow between classes without a background mover.
//
// Eviction: each class has a CLOCK hand over its pages' chunks. An item read since the hand
// last passed (Item::kAccessed) gets a second chance; an item a reply is still sending
// (refcount above the table's one) or one not yet linked is skipped. When a class has nothing
// to evict and the limit is reached, the allocation pays for a new page first (going over the
// limit for a moment), then makes room until the limit holds again: large items are evicted
// first, then a page of the class holding the most pages is emptied (the asking class's own
// last). Paying first means memory freed meanwhile cannot be taken by a concurrent
// allocation, so an allocation fails only when nothing at all can be evicted.
//
// Memory follows the item size (memcached's automove, done where the need arises): before a
// class evicts its own item it asks whether another class, or the large items, holds clearly
// older items (find_donor: two seconds and a quarter more idle time than its victim; try_lock
// only; asked at most once a second while the answer is no). If so it pays for a page as
// above, and the donor gives first: its page at the hand is emptied (its items unlinked under
// their shard locks, busy ones freed later by their last reference), or its oldest large
// items are evicted, read marks notwithstanding. Large allocations ask the same of the slab
// classes. Counted in pages_moved() and reassign_evictions().
//
// Locking: one mutex per class and one for large items, always taken before (never after) the
// store's shard locks, and those only with try_lock; see doc/threads.md. The store's evict
// callback runs with the class (or large) lock held.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "server/store/item.h"

namespace mcm::store {

constexpr size_t kPageSize = 64 * 1024;

struct SlabClassInfo {
    unsigned id = 0;  // 1-based; the last id is the large-item class
    size_t chunk_size = 0;
    size_t per_page = 0;
    uint64_t total_pages = 0;
    uint64_t used_chunks = 0;
    uint64_t free_chunks = 0;      // on the free list
    uint64_t free_chunks_end = 0;  // not yet carved from the newest page
    uint64_t oldest_time = 0;      // smallest Item::time seen near the hand (0 = none)
};

class Slabs {
public:
    // Unlink a linked item whose only reference is the table's and return true if it is now
    // free (the chunk then belongs to the caller). Called with the item's class lock held; it
    // must only try_lock store locks. `now` is the current relative time. `clock`: the CLOCK
    // hand (of a class, or of the large items) chose it, rather than a page being emptied for
    // another class; the store may then still give it a second chance (a read hint's credit).
    using EvictFn = bool (*)(void* ctx, Item* it, RelTime now, bool clock) noexcept;

    Slabs(size_t max_bytes, size_t item_size_max, bool evict, EvictFn evict_fn, void* ctx);
    ~Slabs();
    Slabs(const Slabs&) = delete;
    Slabs& operator=(const Slabs&) = delete;

    // A chunk (or heap block) of at least total bytes with refcount 0 and iflags set to
    // kLarge or 0; nullptr when nothing can be freed (or evict is off).
    Item* alloc(size_t total, RelTime now) noexcept;
    // Give back an item whose refcount reached zero.
    void free(Item* it) noexcept;

    unsigned class_of(const Item* it) const noexcept;
    unsigned class_for(size_t total) const noexcept;  // the class an item of total bytes gets
    unsigned large_class() const noexcept;
    const std::vector<size_t>& class_sizes() const noexcept;  // [0] unused; large class last

    void set_max_bytes(size_t bytes) noexcept;
    size_t max_bytes() const noexcept;
    size_t mem_used() const noexcept;
    std::vector<SlabClassInfo> info() const;
    uint64_t pages_moved() const noexcept;  // pages emptied for another class
    // Items evicted (rather than by a class's own CLOCK) to move memory to another class.
    uint64_t reassign_evictions() const noexcept;

    struct Page;  // header of a slab page (public for slab.cc's helpers)
    struct Class;
    struct Large;

private:

    Item* alloc_large(size_t total, RelTime now) noexcept;
    unsigned large_donor(RelTime now) noexcept;  // a class with clearly older items, or 0
    enum class Take { kNoEvict, kEvict, kEvictOrGrow };
    // c.mu held. kEvictOrGrow: before evicting its own item the class looks for an older
    // one elsewhere; finding one it returns nullptr with *donor set (class id, or
    // large_class() for the large items) so the caller takes a page's worth from there.
    Item* take_chunk(Class& c, RelTime now, Take mode, unsigned* donor = nullptr) noexcept;
    // A source whose oldest item is clearly older than victim_time, or 0; self (a class, or
    // nullptr for the large items) is not one. Only try_locks.
    unsigned find_donor(const Class* self, RelTime victim_time, RelTime now) noexcept;
    bool charge(size_t bytes) noexcept;
    void add_page_locked(Class& c, void* mem) noexcept;              // c.mu held; mem charged
    // Until mem_used <= max; from donor first when it is not 0.
    bool make_room(unsigned for_class, RelTime now, unsigned donor = 0) noexcept;
    // Quick: at most a few dozen items; full_turn: the whole list twice if need be.
    bool evict_large_one(RelTime now, bool full_turn) noexcept;
    bool empty_one_page(unsigned last, RelTime now) noexcept;
    bool empty_page_of(Class& c, RelTime now) noexcept;
    void free_chunk_locked(Class& c, Page* p, Item* it) noexcept;
    void release_page_locked(Class& c, Page* p) noexcept;
    void free_list_remove(Class& c, Item* it) noexcept;
    void free_list_push(Class& c, Item* it) noexcept;

    std::vector<size_t> sizes_;
    std::vector<uint8_t> size_to_class_;  // by (total + 7) / 8
    std::unique_ptr<Class[]> classes_;    // index = class id
    std::unique_ptr<Large> large_;
    std::atomic<size_t> mem_used_{0};
    std::atomic<size_t> max_bytes_;
    std::atomic<uint64_t> pages_moved_{0};
    std::atomic<uint64_t> reassign_evictions_{0};
    std::atomic<unsigned> victim_cursor_{0};
    std::atomic<RelTime> large_no_donor_until_{0};  // as Class::no_donor_until
    bool evict_;
    EvictFn evict_fn_;
    void* ctx_;
};

}  // namespace mcm::store
