// The item store: 64 shards, each a chained hash table with incremental growth and its
// counters under one mutex. Item memory and eviction belong to Slabs (slab.h), which calls
// back into the store to unlink a victim. No sockets, no protocol text; every method is safe
// to call from any thread.
#include "server/store/store.h"

// Inlined: a short key hashes in a few dozen instructions without a call into the library.
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "proto/numbers.h"
#include "server/store/slab.h"

namespace mcm::store {

namespace {

constexpr unsigned kShardBits = 6;
constexpr size_t kShards = size_t{1} << kShardBits;
constexpr size_t kMaxClasses = 128;         // slab classes, large class included
constexpr size_t kMigrateSlotsPerOp = 4;    // growth work done by each operation
constexpr size_t kMemcachedItemHeader = 48; // sizeof(item) in memcached, for -I's boundary

inline uint64_t hash_key(std::string_view key) noexcept {
    return XXH3_64bits(key.data(), key.size());
}

// Slot arrays come straight from mmap: zeroed pages that cost RSS only once used, and a table
// left behind by growth goes back to the kernel at once (a heap would keep it as dirty pages).
Item** table_alloc(size_t nslots) noexcept {
    void* p = mmap(nullptr, nslots * sizeof(Item*), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<Item**>(p);
}

void table_free(Item** t, size_t nslots) noexcept {
    if (t != nullptr) munmap(t, nslots * sizeof(Item*));
}


}  // namespace

// One shard. Everything in it is guarded by mu. (A test-and-set spinlock was tried: ~35 fewer
// instructions per request, but with more worker threads than cores a preempted holder made
// waiters' p99 twice as long and one max latency 17 ms, so the futex mutex stays.)
struct Store::Shard {
    std::mutex mu;
    Item** table = nullptr;  // current slots
    size_t mask = 0;
    Item** old_table = nullptr;  // non-null while growing: slots [migrate_pos, old_mask] not moved
    size_t old_mask = 0;
    size_t migrate_pos = 0;
    size_t count = 0;      // linked items
    size_t crawl_pos = 0;  // next slot the crawler looks at
    uint64_t bytes = 0;
    uint64_t total_items = 0;
    uint64_t evictions = 0;
    uint64_t reclaimed = 0;
    uint64_t expired_unfetched = 0;
    uint64_t evicted_unfetched = 0;
    uint64_t evicted_active = 0;
    uint64_t crawler_reclaimed = 0;
    uint64_t outofmemory = 0;
    ClassStats cls[kMaxClasses];
    // Read hints' credits (mark_accessed), by table hash, one per slot (a newer one replaces
    // an older one in its slot); allocated by the first hint.
    std::unique_ptr<uint64_t[]> credits;

    ~Shard() {
        table_free(table, mask + 1);
        if (old_table != nullptr) table_free(old_table, old_mask + 1);
    }
};

// Store-wide state that is not per shard.
struct Store::Impl {
    Impl(const Config& c, Slabs::EvictFn fn, void* ctx)
        : slabs(c.max_bytes, c.item_size_max, c.evict, fn, ctx) {}
    Slabs slabs;
    std::atomic<uint64_t> next_cas{1};
    // flush_all: items last written at or before oldest_live (once it has passed), or with a
    // cas below oldest_cas, read as flushed. See Store::flush.
    std::atomic<RelTime> oldest_live{0};
    std::unique_ptr<std::atomic<int64_t>[]> bucket_items;  // managed mode only
    std::unique_ptr<std::atomic<int64_t>[]> bucket_bytes;
    // Per-bucket sequence numbers; bucket b's is guarded by shard (b mod 64)'s lock, the
    // shard that holds all of the bucket's items.
    std::unique_ptr<uint64_t[]> bucket_seq;
    std::atomic<uint64_t> oldest_cas{0};
    std::atomic<size_t> crawl_shard{0};
};

thread_local BucketHint bucket_hint;

uint32_t Store::bucket_for(std::string_view key) const noexcept {
    const BucketHint& b = bucket_hint;
    if (b.ptr == key.data() && b.len == key.size()) return b.bucket;
    return config_.bucket_fn(key, config_.nbuckets);
}

// The key's hash; in managed mode with the bucket in the shard bits, so that all items of a
// bucket share shard (bucket mod 64). The slot bits (above the shard bits) stay the hash's.
[[gnu::always_inline]] inline uint64_t Store::locate(std::string_view key) const noexcept {
    uint64_t h = hash_key(key);
    if (config_.bucket_fn == nullptr) [[likely]] return h;
    return (h & ~uint64_t{kShards - 1}) | (bucket_for(key) & (kShards - 1));
}

// ---- Free functions on a locked shard (hash table, LRU). ----

namespace {

inline size_t slot_of(uint64_t h, size_t mask) noexcept {
    return (h >> kShardBits) & mask;
}

constexpr size_t kCreditSlots = 4096;  // per shard: 32 KiB, on a server that receives hints

inline size_t credit_slot(uint64_t h) noexcept {
    return (h >> kShardBits) & (kCreditSlots - 1);
}

// The slot array and index where an item with hash h lives (old table while not migrated).
Item** slot_ptr(Store::Shard& s, uint64_t h) noexcept {
    if (s.old_table != nullptr) {
        size_t oi = slot_of(h, s.old_mask);
        if (oi >= s.migrate_pos) return &s.old_table[oi];
    }
    return &s.table[slot_of(h, s.mask)];
}

Item* table_find(Store::Shard& s, uint64_t h, std::string_view key) noexcept {
    for (Item* it = *slot_ptr(s, h); it != nullptr; it = it->hnext) {
        if (it->nkey == key.size() && std::memcmp(it->data, key.data(), key.size()) == 0) {
            return it;
        }
    }
    return nullptr;
}

void table_insert(Store::Shard& s, uint64_t h, Item* it) noexcept {
    Item** slot = slot_ptr(s, h);
    it->hnext = *slot;
    *slot = it;
}

void table_remove(Store::Shard& s, uint64_t h, Item* it) noexcept {
    for (Item** pp = slot_ptr(s, h); *pp != nullptr; pp = &(*pp)->hnext) {
        if (*pp == it) {
            *pp = it->hnext;
            it->hnext = nullptr;
            return;
        }
    }
}

// Move up to n old slots into the new table; drop the old table when done.
void migrate(Store::Shard& s, size_t n) noexcept {
    if (s.old_table == nullptr) return;
    for (size_t k = 0; k < n && s.migrate_pos <= s.old_mask; ++k, ++s.migrate_pos) {
        Item* it = s.old_table[s.migrate_pos];
        s.old_table[s.migrate_pos] = nullptr;
        while (it != nullptr) {
            Item* next = it->hnext;
            uint64_t h = hash_key(it->key());
            Item** slot = &s.table[slot_of(h, s.mask)];
            it->hnext = *slot;
            *slot = it;
            it = next;
        }
    }
    if (s.migrate_pos > s.old_mask) {
        table_free(s.old_table, s.old_mask + 1);
        s.old_table = nullptr;
        s.old_mask = 0;
        s.migrate_pos = 0;
    }
}

// Start growing when the load passes 2 items per slot (and no growth is under way): chains
// stay short and the slots cost 4 to 8 bytes per item.
void maybe_grow(Store::Shard& s, bool allowed) noexcept {
    if (!allowed || s.old_table != nullptr || s.count <= (s.mask + 1) * 2) return;
    size_t nslots = (s.mask + 1) * 2;
    Item** t = table_alloc(nslots);
    if (t == nullptr) return;  // stay at this size; chains just get longer
    s.old_table = s.table;
    s.old_mask = s.mask;
    s.migrate_pos = 0;
    s.table = t;
    s.mask = nslots - 1;
}

}  // namespace

// ---- Store ----

Store::Store(const Config& config, Clock& clock)
    : config_(config), clock_(clock), shards_(new Shard[kShards]),
      impl_(new Impl(config, &Store::evict_cb, this)) {
    if (impl_->slabs.class_sizes().size() > kMaxClasses) throw std::logic_error("slab classes");
    if (config.nbuckets > 0 && config.bucket_fn != nullptr) {
        impl_->bucket_items.reset(new std::atomic<int64_t>[config.nbuckets]());
        impl_->bucket_bytes.reset(new std::atomic<int64_t>[config.nbuckets]());
        impl_->bucket_seq.reset(new uint64_t[config.nbuckets]());
    }
    unsigned per_shard_power = config.hash_power > kShardBits ? config.hash_power - kShardBits : 4;
    if (per_shard_power < 4) per_shard_power = 4;
    size_t slots = size_t{1} << per_shard_power;
    for (size_t i = 0; i < kShards; ++i) {
        shards_[i].table = table_alloc(slots);
        if (shards_[i].table == nullptr) throw std::bad_alloc();
        shards_[i].mask = slots - 1;
    }
}

// Item memory is the Slabs' (destroyed with impl_); only the tables are freed here.
Store::~Store() = default;

namespace {

// memcached's size of an item for -I and for picking a slab class.
size_t memcached_ntotal(size_t nkey, size_t nbytes, uint32_t flags, bool use_cas) noexcept {
    return kMemcachedItemHeader + nkey + 1 + nbytes + (flags != 0 ? sizeof(uint32_t) : 0) +
           (use_cas ? sizeof(uint64_t) : 0);
}

}  // namespace

// Unlink a linked item (table, counters) and drop the table's reference; true if that was
// the last one (the caller then frees the item or, evicting, reuses it).
bool Store::unlink_core(Shard& s, uint64_t h, Item* it, uint32_t bucket) noexcept {
    table_remove(s, h, it);
    it->clear(Item::kLinked);
    --s.count;
    s.bytes -= it->total_size();
    ClassStats& c = s.cls[impl_->slabs.class_of(it)];
    --c.number;
    c.mem_requested -= it->total_size();
    if (impl_->bucket_items) {
        uint32_t b = bucket != kNoBucket ? bucket : bucket_for(it->key());
        impl_->bucket_items[b].fetch_sub(1, std::memory_order_relaxed);
        impl_->bucket_bytes[b].fetch_sub(static_cast<int64_t>(it->total_size()),
                                         std::memory_order_relaxed);
    }
    return it->refcount.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

void Store::unlink_locked(Shard& s, uint64_t h, Item* it, uint32_t bucket) noexcept {
    if (unlink_core(s, h, it, bucket)) impl_->slabs.free(it);
}

void Store::link_locked(Shard& s, uint64_t h, Item* it, RelTime now, uint64_t cas,
                        bool may_grow, uint32_t bucket) noexcept {
    it->refcount.fetch_add(1, std::memory_order_relaxed);  // the table's reference
    it->time = now;
    it->cas = cas;
    // Release: the evictor reads the key without the shard lock once it sees kLinked.
    it->iflags.fetch_or(Item::kLinked, std::memory_order_release);
    table_insert(s, h, it);
    ++s.count;
    s.bytes += it->total_size();
    ++s.total_items;
    if (impl_->bucket_items) {
        uint32_t b = bucket != kNoBucket ? bucket : bucket_for(it->key());
        impl_->bucket_items[b].fetch_add(1, std::memory_order_relaxed);
        impl_->bucket_bytes[b].fetch_add(static_cast<int64_t>(it->total_size()),
                                         std::memory_order_relaxed);
    }
    ClassStats& c = s.cls[impl_->slabs.class_of(it)];
    ++c.number;
    ++c.total_items;
    c.mem_requested += it->total_size();
    maybe_grow(s, may_grow);
    if (config_.on_mutation != nullptr) report(MutationKind::Set, it, bucket);
}

void Store::report(MutationKind kind, const Item* it, uint32_t bucket) noexcept {
    if (config_.on_mutation == nullptr || !impl_->bucket_seq) return;
    Mutation m;
    m.kind = kind;
    m.key = it->key();
    m.bucket = bucket != kNoBucket ? bucket : bucket_for(m.key);
    m.seqno = ++impl_->bucket_seq[m.bucket];
    m.exptime = it->exptime;
    m.cas = it->cas;
    if (kind == MutationKind::Set) {
        m.client_flags = it->client_flags;
        m.value = std::string_view(it->value(), it->value_len());
        m.iflags = it->iflags.load(std::memory_order_relaxed) & (Item::kStale | Item::kKeyBinary);
    }
    config_.on_mutation(config_.mutation_ctx, m);
}

void Store::observe_cas(uint64_t cas) noexcept {
    uint64_t cur = impl_->next_cas.load(std::memory_order_relaxed);
    while (cur <= cas &&
           !impl_->next_cas.compare_exchange_weak(cur, cas + 1, std::memory_order_relaxed)) {
    }
}

uint64_t Store::bucket_seqno_locked(uint32_t bucket) const noexcept {
    if (!impl_->bucket_seq || bucket >= config_.nbuckets) return 0;
    return impl_->bucket_seq[bucket];
}

void Store::set_bucket_seqno_locked(uint32_t bucket, uint64_t seqno) noexcept {
    if (!impl_->bucket_seq || bucket >= config_.nbuckets) return;
    impl_->bucket_seq[bucket] = seqno;
}

uint64_t Store::bucket_seqno(uint32_t bucket) const noexcept {
    if (!impl_->bucket_seq || bucket >= config_.nbuckets) return 0;
    Shard& s = shards_[bucket & (kShards - 1)];
    std::lock_guard<std::mutex> g(s.mu);
    return impl_->bucket_seq[bucket];
}

namespace {

// Is a linked item dead (expired or flushed)? Sets *reason.
inline bool is_dead(const Item* it, RelTime now, RelTime oldest_live, uint64_t oldest_cas,
                    MissReason* reason) noexcept {
    if (oldest_live != 0 && oldest_live <= now &&
        (it->time <= oldest_live || (oldest_cas != 0 && it->cas != 0 && it->cas < oldest_cas))) {
        *reason = MissReason::Flushed;
        return true;
    }
    if (it->exptime != 0 && it->exptime <= now) {
        *reason = MissReason::Expired;
        return true;
    }
    return false;
}

}  // namespace

void Store::release(Item* it) noexcept {
    if (it->refcount.fetch_sub(1, std::memory_order_acq_rel) == 1) impl_->slabs.free(it);
}

size_t Store::max_bytes() const noexcept { return impl_->slabs.max_bytes(); }

void Store::set_max_bytes(size_t bytes) noexcept { impl_->slabs.set_max_bytes(bytes); }

const std::vector<size_t>& Store::class_sizes() const noexcept {
    return impl_->slabs.class_sizes();
}

// Slabs' eviction callback, called with the victim's class lock held: unlink the item if its
// shard lock is free and only the table holds it.
bool Store::evict_cb(void* ctx, Item* it, RelTime now, bool clock) noexcept {
    auto* self = static_cast<Store*>(ctx);
    uint64_t h = self->locate(it->key());  // the key is fixed once kLinked was seen
    Shard& s = self->shards_[h & (kShards - 1)];
    std::unique_lock<std::mutex> lk(s.mu, std::try_to_lock);
    if (!lk.owns_lock()) return false;
    if (!it->has(Item::kLinked) || it->refcount.load(std::memory_order_acquire) != 1) {
        return false;
    }
    // A read hint's second pass (mark_accessed): the hand found the mark cleared at its last
    // pass, and the credit keeps the item once more.
    if (clock && s.credits != nullptr && (it->exptime == 0 || it->exptime > now)) [[unlikely]] {
        uint64_t& c = s.credits[credit_slot(h)];
        if (c == h) {
            c = 0;
            return false;
        }
    }
    ClassStats& c = s.cls[self->impl_->slabs.class_of(it)];
    bool fetched = it->has(Item::kFetched);
    if (it->exptime != 0 && it->exptime <= now) {
        ++s.reclaimed;
        ++c.reclaimed;
        if (!fetched) {
            ++s.expired_unfetched;
            ++c.expired_unfetched;
        }
    } else {
        ++s.evictions;
        ++c.evicted;
        if (self->config_.on_evict != nullptr) {
            self->config_.on_evict(*it, self->impl_->slabs.class_of(it), now);
        }
        if (it->exptime != 0) ++c.evicted_nonzero;
        c.evicted_time = now > it->time ? now - it->time : 0;
        if (!fetched) {
            ++s.evicted_unfetched;
            ++c.evicted_unfetched;
        }
    }
    return self->unlink_core(s, h, it);
}

AllocStatus Store::alloc(std::string_view key, uint32_t client_flags, RelTime exptime,
                         uint32_t value_len, ItemRef* out) noexcept {
    size_t nbytes = static_cast<size_t>(value_len) + 2;
    size_t ntotal_mc = memcached_ntotal(key.size(), nbytes, client_flags, config_.use_cas);
    if (ntotal_mc > config_.item_size_max) return AllocStatus::TooLarge;
    size_t total = Item::total_size(key.size(), nbytes);
    RelTime now = clock_.now();
    Item* it = impl_->slabs.alloc(total, now);
    if (it == nullptr) {
        uint64_t h = locate(key);
        Shard& hs = shards_[h & (kShards - 1)];
        std::lock_guard<std::mutex> g(hs.mu);
        ++hs.outofmemory;
        ++hs.cls[impl_->slabs.class_for(total)].outofmemory;
        return AllocStatus::NoMemory;
    }
    // iflags was set by the allocator (kLarge or nothing).
    it->hnext = nullptr;
    it->refcount.store(1, std::memory_order_relaxed);
    it->time = now;
    it->exptime = exptime;
    it->client_flags = client_flags;
    it->cas = 0;
    it->nbytes = static_cast<uint32_t>(nbytes);
    it->nkey = static_cast<uint8_t>(key.size());
    std::memcpy(it->data, key.data(), key.size());
    *out = ItemRef(this, it);
    return AllocStatus::Ok;
}

Item* Store::find_live(Shard& s, uint64_t h, std::string_view key, RelTime now,
                       MissReason* why) noexcept {
    migrate(s, kMigrateSlotsPerOp);
    *why = MissReason::Missing;
    Item* it = table_find(s, h, key);
    if (it == nullptr) return nullptr;
    if (is_dead(it, now, impl_->oldest_live.load(std::memory_order_relaxed),
                impl_->oldest_cas.load(std::memory_order_relaxed), why)) {
        // Expired or flushed, its memory is reused: memcached's `reclaimed` counts both.
        {
            ClassStats& c = s.cls[impl_->slabs.class_of(it)];
            ++s.reclaimed;
            ++c.reclaimed;
            if (!it->has(Item::kFetched)) {
                ++s.expired_unfetched;
                ++c.expired_unfetched;
            }
        }
        unlink_locked(s, h, it);
        return nullptr;
    }
    *why = MissReason::None;
    return it;
}

void Store::prefetch_slot(std::string_view key, uint32_t bucket) const noexcept {
    uint64_t h = hash_key(key);
    if (config_.bucket_fn != nullptr) h = (h & ~uint64_t{kShards - 1}) | (bucket & (kShards - 1));
    const Shard& s = shards_[h & (kShards - 1)];
    // Racy on purpose (see the header): the newer table while the shard grows.
    Item** table = reinterpret_cast<Item** const volatile&>(s.table);
    const size_t mask = reinterpret_cast<const volatile size_t&>(s.mask);
    if (table != nullptr) __builtin_prefetch(&table[slot_of(h, mask)]);
}

void Store::prefetch_item(std::string_view key, uint32_t bucket) noexcept {
    uint64_t h = hash_key(key);
    if (config_.bucket_fn != nullptr) h = (h & ~uint64_t{kShards - 1}) | (bucket & (kShards - 1));
    Shard& s = shards_[h & (kShards - 1)];
    if (!s.mu.try_lock()) return;
    Item* first = s.table != nullptr ? *slot_ptr(s, h) : nullptr;
    s.mu.unlock();
    if (first != nullptr) __builtin_prefetch(first);
}

uint64_t Store::take_cas(uint64_t requested) noexcept {
    return requested != 0 ? requested : impl_->next_cas.fetch_add(1, std::memory_order_relaxed);
}

bool Store::replace_if_unchanged(Shard& s, uint64_t h, std::string_view key, uint64_t old_cas,
                                 Item* fresh, uint64_t* cas_out, uint64_t new_cas) noexcept {
    MissReason why;
    RelTime now = clock_.now();
    Item* cur = find_live(s, h, key, now, &why);
    if (cur == nullptr || cur->cas != old_cas) return false;
    unlink_locked(s, h, cur);
    uint64_t cas = take_cas(new_cas);
    link_locked(s, h, fresh, now, cas, config_.hash_expand);
    if (cas_out != nullptr) *cas_out = config_.use_cas ? cas : 0;
    return true;
}

// A read marks the item for the CLOCK hand and records the access time (memcached 1.6's
// segmented LRU does too: mg's l and me's la show it). As in memcached (do_item_bump), the
// first fetch only marks the item fetched and later ones refresh its time: an item stored
// and read once keeps its age, so a class full of such items still gives its memory to a
// class whose items are newer (see Slabs::find_donor). Both write only when something
// changes, so a hot item costs at most one write a second. True when this read set the
// access mark (the first read since the hand last passed): a read hint's moment.
static bool bump(Item* it, RelTime now) noexcept {
    constexpr uint8_t kMarks = Item::kFetched | Item::kAccessed;
    bool first = false;
    uint8_t f = it->iflags.load(std::memory_order_relaxed);
    if ((f & kMarks) != kMarks) [[unlikely]] {
        f = it->iflags.fetch_or(kMarks, std::memory_order_relaxed);
        first = !(f & Item::kAccessed);
    }
    if ((f & Item::kFetched) && it->time != now) it->time = now;
    return first;
}

// A read set the item's access mark: report it for read hints (the caller holds the lock).
void Store::note_access(const Item* it, uint64_t h) noexcept {
    if (!impl_->bucket_items) return;
    config_.on_access(config_.access_ctx, bucket_for(it->key()), h);
}

// get and gat: one lookup; a non-null new_exptime also sets the exptime (gat/touch).
Lookup Store::fetch(std::string_view key, const RelTime* new_exptime) noexcept {
    uint64_t h = locate(key);
    Shard& s = shards_[h & (kShards - 1)];
    RelTime now = clock_.now();
    Lookup r;
    std::lock_guard<std::mutex> g(s.mu);
    Item* it = find_live(s, h, key, now, &r.reason);
    if (it == nullptr) return r;
    if (new_exptime != nullptr) {
        it->exptime = *new_exptime;
        if (config_.on_mutation != nullptr) report(MutationKind::Touch, it);
    }
    if (bump(it, now) && config_.on_access != nullptr) [[unlikely]] note_access(it, h);
    it->refcount.fetch_add(1, std::memory_order_relaxed);
    r.item = ItemRef(this, it);
    return r;
}

Lookup Store::get(std::string_view key) noexcept { return fetch(key, nullptr); }

Lookup Store::get_and_touch(std::string_view key, RelTime exptime) noexcept {
    return fetch(key, &exptime);
}

bool Store::touch(std::string_view key, RelTime exptime) noexcept {
    return static_cast<bool>(fetch(key, &exptime).item);
}

unsigned Store::class_of(const Item* it) const noexcept { return impl_->slabs.class_of(it); }



Lookup Store::peek(std::string_view key) noexcept {
    uint64_t h = locate(key);
    Shard& s = shards_[h & (kShards - 1)];
    Lookup r;
    std::lock_guard<std::mutex> g(s.mu);
    Item* it = find_live(s, h, key, clock_.now(), &r.reason);
    if (it == nullptr) return r;
    it->refcount.fetch_add(1, std::memory_order_relaxed);
    r.item = ItemRef(this, it);
    return r;
}

void Store::meta_get(std::string_view key, const MetaGetArgs& a, MetaGetResult* out) noexcept {
    uint64_t h = locate(key);
    Shard& s = shards_[h & (kShards - 1)];
    ItemRef fresh;  // for N: allocated outside the lock (allocation may evict)
    for (int attempt = 0;; ++attempt) {
        std::unique_lock<std::mutex> lk(s.mu);
        RelTime now = clock_.now();
        Item* it = find_live(s, h, key, now, &out->reason);
        bool created = false;
        if (it == nullptr) {
            if (!a.vivify) return;
            if (!fresh) {
                lk.unlock();
                if (attempt > 0 || alloc(key, 0, 0, 0, &fresh) != AllocStatus::Ok) return;
                std::memcpy(fresh->value(), "\r\n", 2);
                if (a.key_binary) fresh->set(Item::kKeyBinary);
                continue;  // look again: someone may have stored it meanwhile
            }
            it = fresh.get();
            it->exptime = a.vivify_exptime;
            link_locked(s, h, it, now, take_cas(a.new_cas), config_.hash_expand);
            created = true;
            out->reason = MissReason::None;
        }
        out->created = created;
        out->fetched_before = it->has(Item::kFetched);
        out->last_access = it->time;
        out->exptime_before = created ? 0 : it->exptime;
        RelTime exp_before_touch = it->exptime;
        if (a.touch && (!created || a.touch_after_vivify)) {
            it->exptime = a.exptime;
            if (config_.on_mutation != nullptr) report(MutationKind::Touch, it);
        }
        bool won = created;
        bool sent = it->has(Item::kWinSent);
        RelTime seen = a.recache_after_touch ? it->exptime : exp_before_touch;
        if (a.recache && !created && !sent && seen != 0 && seen < a.recache_time) won = true;
        out->win_sent_before = sent;
        out->stale = it->has(Item::kStale);
        if (out->stale && !sent) won = true;
        out->won = won;
        if (won) it->set(Item::kWinSent);
        if (!a.no_bump && bump(it, now) && config_.on_access != nullptr) note_access(it, h);
        it->refcount.fetch_add(1, std::memory_order_relaxed);
        out->item = ItemRef(this, it);
        return;
    }
}

MetaDeleteStatus Store::meta_delete(std::string_view key, const MetaDeleteArgs& a) noexcept {
    uint64_t h = locate(key);
    Shard& s = shards_[h & (kShards - 1)];
    std::lock_guard<std::mutex> g(s.mu);
    MissReason why;
    Item* it = find_live(s, h, key, clock_.now(), &why);
    if (it == nullptr) return MetaDeleteStatus::NotFound;
    if (a.has_cas && it->cas != a.cas) return MetaDeleteStatus::Exists;
    if (a.invalidate) {
        if (a.touch) it->exptime = a.exptime;
        it->set(Item::kStale);
        it->clear(Item::kWinSent);  // the next reader wins the recache
        it->cas = config_.use_cas ? take_cas(a.new_cas) : 0;
        if (config_.on_mutation != nullptr) report(MutationKind::Set, it);
        return MetaDeleteStatus::Invalidated;
    }
    if (config_.on_mutation != nullptr) report(MutationKind::Delete, it);
    unlink_locked(s, h, it);
    return MetaDeleteStatus::Deleted;
}

bool Store::remove(std::string_view key) noexcept {
    uint64_t h = locate(key);
    Shard& s = shards_[h & (kShards - 1)];
    std::lock_guard<std::mutex> g(s.mu);
    MissReason why;
    Item* it = find_live(s, h, key, clock_.now(), &why);
    if (it == nullptr) return false;
    if (config_.on_mutation != nullptr) report(MutationKind::Delete, it);
    unlink_locked(s, h, it);
    return true;
}

StoreStatus Store::store(ItemRef& item, StoreOp op, uint64_t cas_in, uint64_t* cas_out,
                         const StoreExtra* extra) noexcept {
    const uint64_t new_cas = extra != nullptr ? extra->new_cas : 0;
    Item* it = item.get();
    std::string_view key = it->key();
    uint64_t h = locate(key);
    Shard& s = shards_[h & (kShards - 1)];

    // append/prepend build a combined item outside the lock (allocation may evict, which takes
    // other shard locks), then link it only if the old item is still the same one.
    for (int attempt = 0;; ++attempt) {
        std::unique_lock<std::mutex> lk(s.mu);
        RelTime now = clock_.now();
        MissReason why;
        Item* old = find_live(s, h, key, now, &why);
        switch (op) {
            case StoreOp::Add:
                if (old != nullptr) {
                    bump(old, now);  // memcached refreshes the existing item on a failed add
                    return StoreStatus::NotStored;
                }
                break;
            case StoreOp::Replace:
                if (old == nullptr) return StoreStatus::NotStored;
                break;
            case StoreOp::Cas:
                if (old == nullptr) return StoreStatus::NotFound;
                if (old->cas != cas_in) {
                    // ms I: an older cas still stores, but the item reads as stale (X).
                    if (extra == nullptr || !extra->set_stale || cas_in == 0 || cas_in >= old->cas) {
                        return StoreStatus::Exists;
                    }
                    // As memcached: the old TTL and recache state carry over.
                    it->set(Item::kStale);
                    if (old->has(Item::kWinSent)) it->set(Item::kWinSent);
                    it->exptime = old->exptime;
                }
                break;
            case StoreOp::Set: break;
            case StoreOp::Append:
            case StoreOp::Prepend: {
                if (old == nullptr) return StoreStatus::NotStored;
                // ms MA/MP with C: the cas must match (0 means none given, as in memcached).
                if (extra != nullptr && cas_in != 0 && old->cas != cas_in) {
                    return StoreStatus::Exists;
                }
                // Keep a reference and the cas to detect a concurrent change.
                old->refcount.fetch_add(1, std::memory_order_relaxed);
                uint64_t old_cas = old->cas;
                lk.unlock();
                ItemRef old_ref(this, old);
                size_t add_len = it->value_len();
                size_t old_len = old->value_len();
                ItemRef combined;
                AllocStatus as = alloc(key, old->client_flags, old->exptime,
                                       static_cast<uint32_t>(old_len + add_len), &combined);
                if (as == AllocStatus::TooLarge) return StoreStatus::TooLarge;
                if (as == AllocStatus::NoMemory) return StoreStatus::NoMemory;
                char* v = combined->value();
                if (op == StoreOp::Append) {
                    std::memcpy(v, old->value(), old_len);
                    std::memcpy(v + old_len, it->value(), add_len);
                } else {
                    std::memcpy(v, it->value(), add_len);
                    std::memcpy(v + add_len, old->value(), old_len);
                }
                v[old_len + add_len] = '\r';
                v[old_len + add_len + 1] = '\n';
                lk.lock();
                if (it->has(Item::kKeyBinary)) combined->set(Item::kKeyBinary);
                if (replace_if_unchanged(s, h, key, old_cas, combined.get(), cas_out, new_cas)) {
                    return StoreStatus::Stored;
                }
                if (attempt < 16) continue;  // raced with another write: start over
                return StoreStatus::NotStored;
            }
        }
        // Old and new share the key, so one bucket computation serves both counters.
        uint32_t b = impl_->bucket_items ? bucket_for(key) : kNoBucket;
        if (old != nullptr) unlink_locked(s, h, old, b);
        uint64_t cas = take_cas(new_cas);
        link_locked(s, h, it, now, cas, config_.hash_expand, b);
        if (cas_out != nullptr) *cas_out = config_.use_cas ? cas : 0;
        return StoreStatus::Stored;
    }
}

DeltaStatus Store::delta(std::string_view key, bool incr, uint64_t amount, uint64_t* value,
                         uint64_t* cas_out, DeltaExtra* extra) noexcept {
    const uint64_t new_cas = extra != nullptr ? extra->new_cas : 0;
    uint64_t h = locate(key);
    Shard& s = shards_[h & (kShards - 1)];
    for (int attempt = 0;; ++attempt) {
        std::unique_lock<std::mutex> lk(s.mu);
        RelTime now = clock_.now();
        MissReason why;
        Item* it = find_live(s, h, key, now, &why);
        if (it == nullptr) return DeltaStatus::NotFound;
        if (extra != nullptr && extra->has_cas && it->cas != extra->cas) return DeltaStatus::Exists;
        if (extra != nullptr) extra->exptime_before = it->exptime;
        if (it->nbytes <= 2) return DeltaStatus::NonNumeric;
        uint64_t v = 0;
        // memcached parses the stored bytes with strtoull: the "\r\n" ends the number.
        if (!proto::parse_u64(std::string_view(it->value(), it->nbytes), &v)) {
            return DeltaStatus::NonNumeric;
        }
        if (incr) {
            v += amount;  // wraps modulo 2^64
        } else {
            v = amount > v ? 0 : v - amount;
        }
        char buf[24];
        char* e = buf;
        {
            char tmp[20];
            int n = 0;
            uint64_t x = v;
            do {
                tmp[n++] = static_cast<char>('0' + x % 10);
                x /= 10;
            } while (x != 0);
            while (n > 0) *e++ = tmp[--n];
        }
        size_t res = static_cast<size_t>(e - buf);
        *value = v;
        if (res + 2 <= it->nbytes && it->refcount.load(std::memory_order_acquire) == 1) {
            // In place, padded with spaces, as memcached does ("10" decr 1 reads "9 ").
            std::memcpy(it->value(), buf, res);
            std::memset(it->value() + res, ' ', it->nbytes - res - 2);
            it->cas = take_cas(new_cas);
            if (extra != nullptr) {
                if (extra->touch) it->exptime = extra->exptime;
                extra->exptime_out = it->exptime;
            }
            if (config_.on_mutation != nullptr) report(MutationKind::Set, it);  // value in place
            bump(it, now);
            if (cas_out != nullptr) *cas_out = config_.use_cas ? it->cas : 0;
            return DeltaStatus::Ok;
        }
        // A new item of the exact length replaces the old one.
        uint32_t flags = it->client_flags;
        RelTime exptime = extra != nullptr && extra->touch ? extra->exptime : it->exptime;
        uint64_t old_cas = it->cas;
        bool binary = it->has(Item::kKeyBinary);
        lk.unlock();
        ItemRef fresh;
        if (alloc(key, flags, exptime, static_cast<uint32_t>(res), &fresh) != AllocStatus::Ok) {
            return DeltaStatus::NoMemory;
        }
        std::memcpy(fresh->value(), buf, res);
        fresh->value()[res] = '\r';
        fresh->value()[res + 1] = '\n';
        if (binary) fresh->set(Item::kKeyBinary);
        lk.lock();
        if (replace_if_unchanged(s, h, key, old_cas, fresh.get(), cas_out, new_cas)) {
            if (extra != nullptr) extra->exptime_out = exptime;
            return DeltaStatus::Ok;
        }
        // Someone wrote in between: recompute from their value.
        if (attempt < 16) continue;
        return DeltaStatus::NotFound;
    }
}

void Store::flush(int64_t delay_exptime) noexcept {
    report_flush(delay_exptime);
    // memcached's process_flush_all_command: with a delay the flush point is that time; with
    // none it is now, and the cas cut makes it exact within the current second.
    RelTime now = clock_.now();
    RelTime new_oldest = delay_exptime > 0 ? clock_.realtime(delay_exptime) : now;
    if (!config_.use_cas) {
        // -C: no cas cut, so the flush point is the whole second, as memcached's: an item
        // stored later in the same second is flushed too.
        impl_->oldest_live.store(new_oldest, std::memory_order_relaxed);
        return;
    }
    RelTime oldest_live = new_oldest - 1;
    impl_->oldest_live.store(oldest_live, std::memory_order_relaxed);
    if (oldest_live <= now) {
        // Takes a unique of its own, as memcached's get_cas_id() here does.
        impl_->oldest_cas.store(impl_->next_cas.fetch_add(1, std::memory_order_relaxed),
                                std::memory_order_relaxed);
    }
}

// A flush barrier in every bucket's stream, in order with the bucket's writes.
void Store::report_flush(int64_t delay_exptime) noexcept {
    if (config_.on_mutation == nullptr || !impl_->bucket_seq) return;
    for (size_t i = 0; i < kShards; ++i) {
        Shard& s = shards_[i];
        std::lock_guard<std::mutex> g(s.mu);
        for (uint32_t b = static_cast<uint32_t>(i); b < config_.nbuckets; b += kShards) {
            Mutation m;
            m.kind = MutationKind::Flush;
            m.bucket = b;
            m.seqno = ++impl_->bucket_seq[b];
            m.flush_delay = delay_exptime;
            config_.on_mutation(config_.mutation_ctx, m);
        }
    }
}

size_t Store::crawl(size_t slots, bool as_maintainer) noexcept {
    size_t reclaimed = 0;
    size_t per_shard = std::max<size_t>(1, slots / 4);
    for (int k = 0; k < 4; ++k) {
        size_t si = impl_->crawl_shard.fetch_add(1, std::memory_order_relaxed) & (kShards - 1);
        Shard& s = shards_[si];
        std::lock_guard<std::mutex> g(s.mu);
        migrate(s, per_shard);
        RelTime now = clock_.now();
        RelTime ol = impl_->oldest_live.load(std::memory_order_relaxed);
        uint64_t oc = impl_->oldest_cas.load(std::memory_order_relaxed);
        for (size_t n = 0; n < per_shard; ++n) {
            size_t i = s.crawl_pos++ & s.mask;
            Item* it = s.table[i];
            // Items still in the old table are visited once they move.
            while (it != nullptr) {
                Item* next = it->hnext;
                MissReason why;
                if (is_dead(it, now, ol, oc, &why)) {
                    ClassStats& c = s.cls[impl_->slabs.class_of(it)];
                    if (as_maintainer) {  // its tail pulls count flushed items too
                        ++s.reclaimed;
                        ++c.reclaimed;
                        if (!it->has(Item::kFetched)) {
                            ++s.expired_unfetched;
                            ++c.expired_unfetched;
                        }
                    } else if (why == MissReason::Expired) {
                        ++s.crawler_reclaimed;
                        ++c.crawler_reclaimed;
                        if (!it->has(Item::kFetched)) {
                            ++s.expired_unfetched;
                            ++c.expired_unfetched;
                        }
                    }
                    unlink_locked(s, hash_key(it->key()), it);
                    ++reclaimed;
                }
                it = next;
            }
        }
    }
    return reclaimed;
}

StoreStats Store::stats() const noexcept {
    StoreStats r;
    size_t total_slots = 0;
    for (size_t i = 0; i < kShards; ++i) {
        Shard& s = shards_[i];
        std::lock_guard<std::mutex> g(s.mu);
        r.curr_items += s.count;
        r.total_items += s.total_items;
        r.bytes += s.bytes;
        r.evictions += s.evictions;
        r.reclaimed += s.reclaimed;
        r.expired_unfetched += s.expired_unfetched;
        r.evicted_unfetched += s.evicted_unfetched;
        r.evicted_active += s.evicted_active;
        r.crawler_reclaimed += s.crawler_reclaimed;
        r.outofmemory += s.outofmemory;
        total_slots += s.mask + 1;
        r.hash_bytes += (s.mask + 1) * sizeof(Item*);
        if (s.old_table != nullptr) {
            r.hash_is_expanding = true;
            r.hash_bytes += (s.old_mask + 1) * sizeof(Item*);
        }
    }
    unsigned level = 0;
    while ((size_t{1} << level) < total_slots) ++level;
    r.hash_power_level = level;
    r.malloc_bytes = impl_->slabs.mem_used();
    r.slabs_moved = impl_->slabs.pages_moved();
    r.slab_reassign_evictions_nomem = impl_->slabs.reassign_evictions();
    return r;
}

std::vector<BucketCounts> Store::bucket_counts() const {
    std::vector<BucketCounts> out;
    if (!impl_->bucket_items) return out;
    out.resize(config_.nbuckets);
    for (uint32_t b = 0; b < config_.nbuckets; ++b) {
        int64_t n = impl_->bucket_items[b].load(std::memory_order_relaxed);
        int64_t by = impl_->bucket_bytes[b].load(std::memory_order_relaxed);
        out[b].items = n > 0 ? static_cast<uint64_t>(n) : 0;
        out[b].bytes = by > 0 ? static_cast<uint64_t>(by) : 0;
    }
    return out;
}

size_t Store::drop_buckets(uint32_t first, uint32_t last) noexcept {
    if (config_.bucket_fn == nullptr || config_.nbuckets == 0) return 0;
    size_t dropped = 0;
    // A bucket's items all live in shard (bucket mod 64): walk only the shards concerned.
    bool want[kShards] = {};
    for (uint64_t b = first; b <= last && b < config_.nbuckets; ++b) want[b & (kShards - 1)] = true;
    for (size_t i = 0; i < kShards; ++i) {
        if (!want[i]) continue;
        Shard& s = shards_[i];
        std::lock_guard<std::mutex> g(s.mu);
        migrate(s, SIZE_MAX);  // one table to walk
        for (size_t slot = 0; slot <= s.mask; ++slot) {
            Item* it = s.table[slot];
            while (it != nullptr) {
                Item* next = it->hnext;
                uint32_t b = config_.bucket_fn(it->key(), config_.nbuckets);
                if (b >= first && b <= last) {
                    unlink_locked(s, hash_key(it->key()), it, b);
                    ++dropped;
                }
                it = next;
            }
        }
    }
    return dropped;
}

size_t Store::mark_accessed(uint64_t* hashes, size_t n) noexcept {
    constexpr uint64_t kShardMask = kShards - 1;
    std::sort(hashes, hashes + n,
              [](uint64_t a, uint64_t b) { return (a & kShardMask) < (b & kShardMask); });
    size_t found = 0;
    const RelTime now = clock_.now();
    const RelTime ol = impl_->oldest_live.load(std::memory_order_relaxed);
    const uint64_t oc = impl_->oldest_cas.load(std::memory_order_relaxed);
    for (size_t i = 0; i < n;) {
        const uint64_t shard = hashes[i] & kShardMask;
        Shard& s = shards_[shard];
        std::lock_guard<std::mutex> g(s.mu);
        for (; i < n && (hashes[i] & kShardMask) == shard; ++i) {
            const uint64_t h = hashes[i];
            for (Item* it = *slot_ptr(s, h); it != nullptr; it = it->hnext) {
                if ((hash_key(it->key()) ^ h) >> kShardBits) continue;  // another key
                MissReason why;
                if (is_dead(it, now, ol, oc, &why)) break;
                // The mark, and a credit for the pass after: the replica cannot see where
                // the active's hand is (the hint comes some time after it passed, after the
                // next read), and its own hand may go round faster, so one hint per active
                // cycle must keep the item for up to two of the replica's.
                if (!it->has(Item::kAccessed)) it->set(Item::kAccessed);
                if (s.credits == nullptr) {
                    s.credits.reset(new (std::nothrow) uint64_t[kCreditSlots]());
                }
                if (s.credits != nullptr) s.credits[credit_slot(h)] = h;
                ++found;
                break;
            }
        }
    }
    return found;
}

std::mutex& Store::bucket_mutex(uint32_t bucket) noexcept {
    return shards_[bucket & (kShards - 1)].mu;
}

size_t Store::visit_bucket(uint32_t bucket,
                           const std::function<void(const Item&)>& fn) noexcept {
    if (config_.bucket_fn == nullptr || bucket >= config_.nbuckets) return 0;
    std::lock_guard<std::mutex> g(bucket_mutex(bucket));
    BucketCursor cursor;
    return visit_bucket_locked(bucket, &cursor, SIZE_MAX, UINT64_MAX, fn);
}

namespace {

inline uint64_t reverse_bits(uint64_t v) noexcept {
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
    return __builtin_bswap64(v);
}

inline uint64_t elapsed_us(std::chrono::steady_clock::time_point since) noexcept {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - since)
                                     .count());
}

constexpr size_t kClockEverySlots = 16;  // a step looks at the clock this often

}  // namespace

// The hash ranges are those of the smaller table while the shard grows (the old table's
// slots): a range is then the old slot's chain, if not yet moved, and the two new slots it
// moves to. A range of a table of 2^p slots is all the hashes whose low p slot bits are the
// slot's, and covers 2^(64-p) positions of the bit-reversed order; since tables only double,
// the cursor always sits on a range boundary of the current table.
size_t Store::visit_bucket_locked(uint32_t bucket, BucketCursor* cursor, size_t max_items,
                                  uint64_t max_us,
                                  const std::function<void(const Item&)>& fn) noexcept {
    if (config_.bucket_fn == nullptr || bucket >= config_.nbuckets || cursor->done) {
        cursor->done = true;
        return 0;
    }
    const auto started = std::chrono::steady_clock::now();
    const RelTime now = clock_.now();
    const RelTime ol = impl_->oldest_live.load(std::memory_order_relaxed);
    const uint64_t oc = impl_->oldest_cas.load(std::memory_order_relaxed);
    Shard& s = shards_[bucket & (kShards - 1)];
    const auto chain = [&](Item* it, size_t* n) {
        for (; it != nullptr; it = it->hnext) {
            MissReason why;
            if (is_dead(it, now, ol, oc, &why)) continue;
            if (config_.bucket_fn(it->key(), config_.nbuckets) != bucket) continue;
            fn(*it);
            ++*n;
        }
    };
    const size_t mask = s.old_table != nullptr ? s.old_mask : s.mask;
    const unsigned p = static_cast<unsigned>(__builtin_popcountll(mask));
    size_t n = 0;
    for (size_t k = 1;; ++k) {
        const size_t slot = static_cast<size_t>(reverse_bits(cursor->pos)) & mask;
        if (s.old_table != nullptr) {
            chain(s.old_table[slot], &n);  // empty once moved
            chain(s.table[slot], &n);
            chain(s.table[slot + mask + 1], &n);
        } else {
            chain(s.table[slot], &n);
        }
        cursor->pos += uint64_t{1} << (64 - p);
        if (cursor->pos == 0) {  // the last range
            cursor->done = true;
            break;
        }
        if (n >= max_items) break;
        if (k % kClockEverySlots == 0 && elapsed_us(started) >= max_us) break;
    }
    return n;
}

size_t Store::visit_all(const std::function<bool(const Item&, unsigned)>& fn) noexcept {
    size_t n = 0;
    for (size_t i = 0; i < kShards; ++i) {
        Shard& s = shards_[i];
        std::lock_guard<std::mutex> g(s.mu);
        const RelTime now = clock_.now();
        const RelTime ol = impl_->oldest_live.load(std::memory_order_relaxed);
        const uint64_t oc = impl_->oldest_cas.load(std::memory_order_relaxed);
        bool go = true;
        const auto chain = [&](Item* it) {
            for (; go && it != nullptr; it = it->hnext) {
                MissReason why;
                if (is_dead(it, now, ol, oc, &why)) continue;
                ++n;
                go = fn(*it, impl_->slabs.class_of(it));
            }
        };
        for (size_t k = 0; go && k <= s.mask; ++k) chain(s.table[k]);
        // While the shard grows, the old table's slots from migrate_pos on are not moved yet.
        if (s.old_table != nullptr) {
            for (size_t k = s.migrate_pos; go && k <= s.old_mask; ++k) chain(s.old_table[k]);
        }
        if (!go) break;
    }
    return n;
}

std::vector<ClassStats> Store::class_stats() const {
    std::vector<SlabClassInfo> info = impl_->slabs.info();
    std::vector<ClassStats> out(kMaxClasses);
    for (size_t i = 0; i < kShards; ++i) {
        Shard& s = shards_[i];
        std::lock_guard<std::mutex> g(s.mu);
        for (const SlabClassInfo& si : info) {
            const ClassStats& k = s.cls[si.id];
            ClassStats& o = out[si.id];
            o.number += k.number;
            o.mem_requested += k.mem_requested;
            o.evicted += k.evicted;
            o.evicted_nonzero += k.evicted_nonzero;
            o.evicted_time = std::max(o.evicted_time, k.evicted_time);
            o.outofmemory += k.outofmemory;
            o.reclaimed += k.reclaimed;
            o.expired_unfetched += k.expired_unfetched;
            o.evicted_unfetched += k.evicted_unfetched;
            o.evicted_active += k.evicted_active;
            o.crawler_reclaimed += k.crawler_reclaimed;
            o.total_items += k.total_items;
        }
    }
    RelTime now = clock_.now();
    std::vector<ClassStats> r;
    for (const SlabClassInfo& si : info) {
        ClassStats& o = out[si.id];
        o.id = si.id;
        o.chunk_size = si.chunk_size;
        o.chunks_per_page = si.per_page;
        o.total_pages = si.total_pages;
        o.used_chunks = si.used_chunks;
        o.free_chunks = si.free_chunks;
        o.free_chunks_end = si.free_chunks_end;
        o.age = si.oldest_time != 0 && now > si.oldest_time ? now - si.oldest_time : 0;
        if (o.number == 0 && o.total_items == 0 && o.evicted == 0 && o.outofmemory == 0 &&
            o.total_pages == 0) {
            continue;
        }
        r.push_back(o);
    }
    return r;
}

void Store::reset_stats() noexcept {
    for (size_t i = 0; i < kShards; ++i) {
        Shard& s = shards_[i];
        std::lock_guard<std::mutex> g(s.mu);
        s.total_items = s.evictions = s.reclaimed = s.expired_unfetched = 0;
        s.evicted_unfetched = s.evicted_active = s.crawler_reclaimed = s.outofmemory = 0;
        for (ClassStats& c : s.cls) {
            uint64_t number = c.number, mem = c.mem_requested;
            c = ClassStats{};
            c.number = number;
            c.mem_requested = mem;
        }
    }
}

}  // namespace mcm::store
