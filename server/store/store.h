// The item store: a sharded hash table with per-shard LRU lists, memory accounting against -m,
// eviction (or refusal with -M), memcached's expiry and flush_all rules, 64-bit CAS uniques.
// Thread-safe: every public method may be called from any worker thread. No sockets, no
// protocol text (replies are chosen by the caller from the returned status values).
//
// Locking: one mutex per shard guards that shard's hash table, LRU list and counters. A thread
// never holds two shard locks at once (eviction in another shard takes that shard's lock after
// releasing its own). Memory in use is one atomic counter. See doc/threads.md.
//
// Hash table growth: each shard's table doubles when its load passes 1.5 items per slot; the old
// slots are moved a few at a time by the operations that follow (and by the background
// crawler), so no request ever waits for a whole-table rehash.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "server/store/clock.h"
#include "server/store/item.h"

namespace mcm::store {

// Managed mode's replication hook (issue 6 builds the stream on it): every write reports its
// resulting state, with a per-bucket sequence number assigned under the same shard lock as
// the write, so records of one bucket arrive in the order the writes happened. Evictions and
// expiry are not reported. The hook runs under the shard lock: it must be quick and must not
// call the store.
enum class MutationKind : uint8_t {
    Set,     // the item as it now is (any storage command, incr/decr, invalidation, vivify)
    Touch,   // only the exptime changed (touch, gat, mg T)
    Delete,  // a delete
    Flush,   // flush_all barrier (one per bucket)
};
struct Mutation {
    MutationKind kind = MutationKind::Set;
    uint32_t bucket = 0;
    uint64_t seqno = 0;
    std::string_view key;        // Set, Touch, Delete
    uint32_t client_flags = 0;   // Set
    RelTime exptime = 0;         // Set, Touch (the store's relative time; 0 = never)
    uint64_t cas = 0;            // Set, Touch
    std::string_view value;      // Set: the value without its "\r\n"
    uint8_t iflags = 0;          // Set: Item::kStale / kKeyBinary as the item has them
    int64_t flush_delay = 0;     // Flush: flush_all's delay argument
};
using MutationFn = void (*)(void* ctx, const Mutation& m) noexcept;

// Managed mode's read hints (doc/replication.md, Read hints): a read (get, gets, gat, mg
// without u) that sets an item's access mark while it was clear -- the first read since the
// CLOCK hand last passed the item -- reports the item's bucket and table hash (the hash the
// table files the item under; Store::mark_accessed on a server with the same bucket count
// finds the item by it). So a hot item is reported at most once per hand cycle. Runs under
// the shard lock: it must be quick and must not call the store.
using AccessFn = void (*)(void* ctx, uint32_t bucket, uint64_t table_hash) noexcept;

struct Config {
    size_t max_bytes = 64 * 1024 * 1024;  // -m: bytes the allocator hands out for items
    size_t item_size_max = 1024 * 1024;   // -I: largest Item::total_size accepted
    bool evict = true;                    // false with -M: refuse instead of evicting
    bool use_cas = true;                  // false with -C: cas uniques reported as 0
    unsigned hash_power = 16;             // initial total table size 2^hash_power slots
    bool hash_expand = true;              // false with -o no_hashexpand: never grow
    // -n and -f are accepted for compatibility; the size classes are fixed (slab.h).
    // Managed mode: the bucket of a key (nbuckets > 0), for per-bucket counts and drops.
    uint32_t nbuckets = 0;
    uint32_t (*bucket_fn)(std::string_view key, uint32_t nbuckets) noexcept = nullptr;
    // With buckets: called for every write (see Mutation). Null: nothing is reported.
    MutationFn on_mutation = nullptr;
    void* mutation_ctx = nullptr;
    // With buckets: called for a read's first access mark (see AccessFn). Null: nothing.
    AccessFn on_access = nullptr;
    void* access_ctx = nullptr;
    // Called for every item evicted to make room (not for expired items reclaimed), under
    // the item's shard lock, with its size class and the current time: `watch evictions`.
    // Must be quick and must not call the store. Null: nothing.
    void (*on_evict)(const Item& it, unsigned cls, RelTime now) noexcept = nullptr;
};

// Managed mode: the bucket the request path already computed for a key, so the store need
// not compute it again. Valid only for the key bytes at ptr/len and only while the request
// that set it runs (the dispatcher clears it when the request returns).
struct BucketHint {
    const char* ptr = nullptr;
    size_t len = 0;
    uint32_t bucket = 0;
};
extern thread_local BucketHint bucket_hint;


// Where a stepwise walk of a bucket stands (Store::visit_bucket_locked). Hashes are walked in
// bit-reversed order of their slot bits, so that the slots a table of 2^p slots has visited
// stay one prefix of the order when it doubles: pos is the bit-reversed slot bits below which
// every hash is done. A new cursor starts the walk.
struct BucketCursor {
    uint64_t pos = 0;
    bool done = false;  // every hash range visited
};

struct BucketCounts {
    uint64_t items = 0;
    uint64_t bytes = 0;
};

enum class StoreOp : uint8_t { Set, Add, Replace, Append, Prepend, Cas };

enum class StoreStatus : uint8_t {
    Stored,     // STORED
    NotStored,  // NOT_STORED (add: exists; replace/append/prepend: missing)
    Exists,     // EXISTS (cas mismatch)
    NotFound,   // NOT_FOUND (cas on a missing key)
    TooLarge,   // SERVER_ERROR object too large for cache
    NoMemory,   // SERVER_ERROR out of memory storing object
};

enum class AllocStatus : uint8_t { Ok, TooLarge, NoMemory };

enum class DeltaStatus : uint8_t {
    Ok,          // *value holds the new value
    NotFound,    // NOT_FOUND
    Exists,      // ma with C: the item's cas differs
    NonNumeric,  // CLIENT_ERROR cannot increment or decrement non-numeric value
    NoMemory,    // SERVER_ERROR out of memory
};

enum class MissReason : uint8_t { None, Missing, Expired, Flushed };

// Result of a lookup. item is empty on a miss; reason says why (for get_expired/get_flushed).
struct Lookup {
    ItemRef item;
    MissReason reason = MissReason::None;
};

// Meta-protocol extras for store(): E (the client picks the new cas unique) and I with C
// (a cas older than the item's still stores, marked stale).
struct StoreExtra {
    uint64_t new_cas = 0;  // 0: take the next unique
    bool set_stale = false;
};

// mg's item changes, all made under the shard lock together with the lookup.
struct MetaGetArgs {
    bool touch = false;  // T: set exptime
    RelTime exptime = 0;
    bool vivify = false;  // N: on a miss create an empty item with vivify_exptime; W to us
    RelTime vivify_exptime = 0;
    bool touch_after_vivify = true;  // T came after N: on a created item T's exptime wins
    bool recache_after_touch = true;  // R came after T: R looks at the new exptime
    bool recache = false;  // R: win if the remaining TTL is below recache_time
    RelTime recache_time = 0;
    bool no_bump = false;    // u: no fetched mark, no access time update
    uint64_t new_cas = 0;    // E: unique of a vivified item
    bool key_binary = false;  // b: a vivified item's key was sent in base64
};

struct MetaGetResult {
    ItemRef item;  // empty on a miss
    MissReason reason = MissReason::None;
    bool created = false;         // vivified by this request
    bool won = false;             // W
    bool win_sent_before = false; // Z
    bool stale = false;           // X
    bool fetched_before = false;  // h (before this request)
    RelTime last_access = 0;      // l (before this request)
    RelTime exptime_before = 0;   // before T (0 for a created item)
};

// md's options.
struct MetaDeleteArgs {
    bool has_cas = false;  // C
    uint64_t cas = 0;
    bool invalidate = false;  // I: mark stale with a new unique instead of removing
    bool touch = false;       // T (with I)
    RelTime exptime = 0;
    uint64_t new_cas = 0;  // E
};

enum class MetaDeleteStatus : uint8_t { Deleted, Invalidated, NotFound, Exists };

// ma's options beyond incr/decr.
struct DeltaExtra {
    bool has_cas = false;  // C
    uint64_t cas = 0;
    bool touch = false;  // T: set exptime on success
    RelTime exptime = 0;
    uint64_t new_cas = 0;       // E
    RelTime exptime_out = 0;    // the item's exptime afterwards
    RelTime exptime_before = 0; // and before T
};

// Counters owned by the store, summed over shards when stats asks (memcached's names).
struct StoreStats {
    uint64_t curr_items = 0;
    uint64_t total_items = 0;
    uint64_t bytes = 0;  // total_size of linked items
    uint64_t evictions = 0;
    uint64_t reclaimed = 0;          // expired items whose memory was reused/freed on access
    uint64_t expired_unfetched = 0;  // expired (or reclaimed) without ever being fetched
    uint64_t evicted_unfetched = 0;
    uint64_t evicted_active = 0;
    uint64_t crawler_reclaimed = 0;  // expired items removed by the background crawler
    uint64_t outofmemory = 0;        // allocations refused (-M or nothing evictable)
    uint64_t hash_power_level = 0;   // log2 of the total slot count
    uint64_t hash_bytes = 0;         // bytes used by the slot arrays
    bool hash_is_expanding = false;
    uint64_t malloc_bytes = 0;  // slab pages and large blocks charged against -m
    uint64_t slabs_moved = 0;   // pages emptied to give memory to another class
    // Items evicted to move memory to another class (a page emptied, or large items evicted
    // to pay for a page of a class whose own items are younger); also in `evictions`.
    // memcached's name; printed by stats.cc once the slab_reassign_* keys are there.
    uint64_t slab_reassign_evictions_nomem = 0;
};

// Per size class (see slab.h; the last class holds items above the largest chunk) for
// `stats items` and `stats slabs`.
struct ClassStats {
    unsigned id = 0;        // 1-based, like memcached
    size_t chunk_size = 0;  // upper bound of Item::total_size in this class
    size_t chunks_per_page = 0;
    uint64_t total_pages = 0;
    uint64_t used_chunks = 0;  // linked, being filled or still being sent
    uint64_t free_chunks = 0;
    uint64_t free_chunks_end = 0;
    uint64_t number = 0;    // linked items
    uint64_t mem_requested = 0;
    uint64_t age = 0;  // seconds since the least recently used item here was used
    uint64_t evicted = 0;
    uint64_t evicted_nonzero = 0;  // evicted items that had an exptime
    uint64_t evicted_time = 0;     // seconds since last access of the last evicted item
    uint64_t outofmemory = 0;
    uint64_t reclaimed = 0;
    uint64_t expired_unfetched = 0;
    uint64_t evicted_unfetched = 0;
    uint64_t evicted_active = 0;
    uint64_t crawler_reclaimed = 0;
    uint64_t total_items = 0;  // items ever stored in this class (cmd_set-like)
};

class Store {
public:
    Store(const Config& config, Clock& clock);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // --- Storage commands: alloc, fill the value, then store. ---

    // A new, unlinked item sized for key and a value of value_len bytes (+2 for "\r\n"),
    // with its key copied in. The caller writes value_len bytes and "\r\n" into it->value().
    // May evict to make room. exptime is already converted with Clock::realtime.
    // TooLarge if the item would exceed item_size_max; NoMemory if nothing can be evicted
    // (or -M). On failure *out is left empty.
    [[nodiscard]] AllocStatus alloc(std::string_view key, uint32_t client_flags, RelTime exptime,
                                    uint32_t value_len, ItemRef* out) noexcept;

    // Link a filled item according to op. cas_in is the client's unique for StoreOp::Cas.
    // For append/prepend a new combined item is allocated (flags and exptime of the old item
    // kept, as memcached does) and may fail with TooLarge/NoMemory. On success *cas_out (if
    // not null) receives the stored item's cas unique.
    // With extra (meta commands): append/prepend also compare a non-zero cas_in; see StoreExtra.
    [[nodiscard]] StoreStatus store(ItemRef& item, StoreOp op, uint64_t cas_in = 0,
                                    uint64_t* cas_out = nullptr,
                                    const StoreExtra* extra = nullptr) noexcept;

    // --- Reads. ---

    // get/gets: a live item or a miss with its reason. Marks the item fetched and bumps it in
    // the LRU. Expired or flushed items found here are unlinked (lazy expiry).
    [[nodiscard]] Lookup get(std::string_view key) noexcept;

    // gat/gats: as get, and sets the item's exptime.
    [[nodiscard]] Lookup get_and_touch(std::string_view key, RelTime exptime) noexcept;

    // The size class an item lives in (`stats items` ids; me's cls).
    unsigned class_of(const Item* it) const noexcept;

    // me: a live item without marking it fetched or bumping it.
    [[nodiscard]] Lookup peek(std::string_view key) noexcept;

    // mg: lookup plus T/N/R/u handling and the W/X/Z recache flags, atomically.
    void meta_get(std::string_view key, const MetaGetArgs& args, MetaGetResult* out) noexcept;

    // md: delete, or with invalidate mark stale; optionally only if the cas matches.
    [[nodiscard]] MetaDeleteStatus meta_delete(std::string_view key,
                                               const MetaDeleteArgs& args) noexcept;

    // touch: true if the key was live and its exptime is now set.
    [[nodiscard]] bool touch(std::string_view key, RelTime exptime) noexcept;

    // --- Other writes. ---

    // delete: true if a live item was removed.
    [[nodiscard]] bool remove(std::string_view key) noexcept;

    // incr/decr as memcached: the value must be a decimal number up to 2^64-1 (leading
    // whitespace allowed, trailing whitespace ignored); incr wraps modulo 2^64, decr stops at
    // 0. The new value is written in place (padded with spaces) when it is not longer than the
    // old one and no one else holds a reference; otherwise a new item replaces it. The item's
    // cas unique changes either way. *value receives the new number.
    // extra (ma): compare cas, set exptime, choose the new unique; reports the exptime.
    [[nodiscard]] DeltaStatus delta(std::string_view key, bool incr, uint64_t amount,
                                    uint64_t* value, uint64_t* cas_out = nullptr,
                                    DeltaExtra* extra = nullptr) noexcept;

    // flush_all [delay]: delay_exptime is the protocol argument (0 or absent = now), converted
    // with memcached's rules. Items written before the flush point read as misses
    // (MissReason::Flushed) and are reclaimed lazily.
    void flush(int64_t delay_exptime) noexcept;

    // --- Background work and introspection. ---

    // Move up to `slots` hash slots from old tables during growth and unlink up to that many
    // expired or flushed items (memcached's LRU crawler). Called from a background thread
    // about every 100 ms. Returns the number of items reclaimed. Expired ones count in
    // crawler_reclaimed, or with `as_maintainer` in reclaimed: with -o lru_maintainer (the
    // default) memcached's LRU maintainer finds most of them first and counts them there.
    size_t crawl(size_t slots, bool as_maintainer = false) noexcept;

    // Change -m at run time (cache_memlimit). Evicts lazily on later allocations.
    void set_max_bytes(size_t bytes) noexcept;
    size_t max_bytes() const noexcept;

    StoreStats stats() const noexcept;
    // Managed mode: items and bytes per bucket (empty without buckets).
    std::vector<BucketCounts> bucket_counts() const;
    // A replica took a unique from its active: later local uniques must be above it.
    void observe_cas(uint64_t cas) noexcept;
    // The lock a bucket's writes (and so its mutation reports) happen under: a replication
    // backlog fed by the hook is read under it. Hold it briefly and call nothing in the store.
    std::mutex& bucket_mutex(uint32_t bucket) noexcept;
    // The sequence number of the bucket's last reported write (0: none yet).
    uint64_t bucket_seqno(uint32_t bucket) const noexcept;
    // The same, and setting it, for a caller that holds bucket_mutex(bucket): a promoted
    // replica continues the sequence numbers of the bucket's history.
    uint64_t bucket_seqno_locked(uint32_t bucket) const noexcept;
    void set_bucket_seqno_locked(uint32_t bucket, uint64_t seqno) noexcept;
    // Unlinks every item of buckets [first, last]; returns how many. In managed mode a
    // bucket's items all live in shard (bucket mod 64): one bucket costs a walk of one shard.
    size_t drop_buckets(uint32_t first, uint32_t last) noexcept;
    // Hints that the key is about to be looked up (a replica applying a run of records), in
    // two stages a few keys apart. prefetch_slot starts loading its hash slot into the cache:
    // it takes no lock and reads the table's address racily (a prefetch never faults, so a
    // stale address costs nothing but the miss). prefetch_item, later, reads the slot under
    // the shard's lock (skipped if the lock is busy) and starts loading the first item of its
    // chain, the one a lookup compares first.
    void prefetch_slot(std::string_view key, uint32_t bucket) const noexcept;
    void prefetch_item(std::string_view key, uint32_t bucket) noexcept;
    // Read hints from a bucket's active: sets the access mark of the live item filed under
    // each of the n table hashes (AccessFn), so this server's CLOCK keeps it as if it had
    // been read here, and leaves a credit that keeps it for the hand's pass after that too
    // (doc/replication.md, Read hints). Nothing else changes: value, exptime, CAS, access
    // time and fetched mark stay, and no mutation is reported. A hash matches an item when its bits above the
    // shard bits equal those of the item's key hash. Reorders hashes (grouped by shard: one
    // lock per shard touched). Returns how many items were found.
    size_t mark_accessed(uint64_t* hashes, size_t n) noexcept;
    // Calls fn for every live item of the bucket under its shard's lock (fn must not call
    // the store); returns how many. Walks that one shard, holding its lock throughout.
    size_t visit_bucket(uint32_t bucket, const std::function<void(const Item&)>& fn) noexcept;
    // One step of a walk of the bucket that resumes where the last step stopped, for a caller
    // that holds bucket_mutex(bucket) (a replication backfill, which sends the bucket's new
    // records under the same hold): calls fn for live items of the bucket until max_items
    // were visited or about max_us have passed, then returns how many; cursor->done once the
    // whole bucket was walked. The walk goes by hash ranges, not slots, so the table may grow
    // between steps: each range is visited once, under one hold, so a key is visited at most
    // once, and exactly once (as its item is then) if it is in the bucket when its range comes
    // -- surely so if it stays from the first step to the last. A step finishes the range (a
    // slot's chain) it began, so it may visit a few items over max_items.
    size_t visit_bucket_locked(uint32_t bucket, BucketCursor* cursor, size_t max_items,
                               uint64_t max_us, const std::function<void(const Item&)>& fn) noexcept;
    // Operator dumps (stats cachedump, lru_crawler metadump, stats sizes): calls fn with
    // every live item and its size class, one shard at a time under that shard's lock (fn
    // must be quick and must not call the store); fn returns false to stop the walk. Items
    // come in hash order, not LRU order. Returns how many items fn was called for.
    size_t visit_all(const std::function<bool(const Item&, unsigned cls)>& fn) noexcept;
    // Classes that currently hold items or ever held any, in id order.
    std::vector<ClassStats> class_stats() const;
    // All class sizes (for `stats slabs` chunk_size and tests).
    const std::vector<size_t>& class_sizes() const noexcept;
    void reset_stats() noexcept;  // stats reset: zero the event counters, not the gauges

    const Config& config() const noexcept { return config_; }
    Clock& clock() noexcept { return clock_; }

    // Drop one reference (the ItemRef destructor's work). Frees the item when it was the last.
    void release(Item* it) noexcept;

    struct Shard;  // defined in store.cc

private:
    static bool evict_cb(void* ctx, Item* it, RelTime now, bool clock) noexcept;
    uint32_t bucket_for(std::string_view key) const noexcept;  // hint, or the bucket function
    // Reports a write to the hook (the caller holds the key's shard lock).
    void report(MutationKind kind, const Item* it, uint32_t bucket = UINT32_MAX) noexcept;
    void report_flush(int64_t delay_exptime) noexcept;
    void note_access(const Item* it, uint64_t h) noexcept;  // on_access (shard lock held)
    uint64_t locate(std::string_view key) const noexcept;      // hash with the shard to use
    static constexpr uint32_t kNoBucket = UINT32_MAX;  // "compute it from the key"
    bool unlink_core(Shard& s, uint64_t h, Item* it, uint32_t bucket = kNoBucket) noexcept;
    void unlink_locked(Shard& s, uint64_t h, Item* it, uint32_t bucket = kNoBucket) noexcept;
    void link_locked(Shard& s, uint64_t h, Item* it, RelTime now, uint64_t cas, bool may_grow,
                     uint32_t bucket = kNoBucket) noexcept;
    Lookup fetch(std::string_view key, const RelTime* new_exptime) noexcept;
    // A live item under the shard lock (dead ones met on the way are unlinked); *why tells a
    // miss's reason. The caller holds s.mu.
    Item* find_live(Shard& s, uint64_t h, std::string_view key, RelTime now,
                    MissReason* why) noexcept;
    // Under s.mu: if the key still maps to an item with unique old_cas, replace it with fresh
    // (a new unique). False if someone wrote the key in between.
    bool replace_if_unchanged(Shard& s, uint64_t h, std::string_view key, uint64_t old_cas,
                              Item* fresh, uint64_t* cas_out, uint64_t new_cas = 0) noexcept;
    uint64_t take_cas(uint64_t requested) noexcept;

    Config config_;
    Clock& clock_;
    std::unique_ptr<Shard[]> shards_;
    // implementation detail members live in Impl to keep this header stable
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

inline void ItemRef::reset() noexcept {
    if (it_ != nullptr) {
        store_->release(it_);
        it_ = nullptr;
    }
}

}  // namespace mcm::store
