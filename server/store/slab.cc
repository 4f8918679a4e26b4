// Size classes over 64 KiB pages with CLOCK eviction; heap blocks above the largest class.
// See slab.h for the policy and the lock order.
#include "server/store/slab.h"

#include <malloc.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <mutex>
#include <new>

namespace mcm::store {

namespace {

constexpr size_t kPageHeader = 64;  // struct Page, then chunks
constexpr size_t kMinChunk = 48;
constexpr size_t kSmallMax = 512;  // 8-byte steps up to here
constexpr size_t kMaxChunk = ((kPageSize - kPageHeader) / 8) & ~size_t{7};  // 8 per page
constexpr int kClockProbes = 4096;  // chunks the hand looks at per allocation, at most
constexpr int kRoomRounds = 4096;   // evictions an allocation may make elsewhere, at most
constexpr int kLargeTries = 64;     // large items looked at per quick eviction try
constexpr int kAgePeek = 32;        // chunks looked at to guess a class's oldest item

// A donor's oldest item must be this much older than the asking class's victim for memory
// to move: a quarter more idle time and at least two seconds, so that two classes evicting
// at about the same age keep their pages instead of passing them back and forth.
inline bool clearly_older(RelTime donor_time, RelTime victim_time, RelTime now) noexcept {
    if (donor_time >= victim_time) return false;
    RelTime donor_age = now - donor_time;
    RelTime victim_age = now > victim_time ? now - victim_time : 0;
    return donor_age >= 2 && donor_age > victim_age + victim_age / 4;
}

// Heap blocks for large items start with this; the Item follows.
struct LargeHdr {
    LargeHdr* prev;
    LargeHdr* next;
    size_t usable;  // bytes charged against -m
};
static_assert(sizeof(LargeHdr) % alignof(Item) == 0);

inline Item* item_of(LargeHdr* h) noexcept { return reinterpret_cast<Item*>(h + 1); }
inline LargeHdr* hdr_of(Item* it) noexcept { return reinterpret_cast<LargeHdr*>(it) - 1; }

// A free chunk's list links live in its hnext and cas fields.
inline Item* free_prev(const Item* it) noexcept {
    return reinterpret_cast<Item*>(static_cast<uintptr_t>(it->cas));
}
inline void set_free_prev(Item* it, Item* prev) noexcept {
    it->cas = reinterpret_cast<uintptr_t>(prev);
}

}  // namespace

struct Slabs::Page {
    uint32_t cls;
    uint32_t index;   // position in its class's pages
    uint32_t carved;  // chunks handed out so far (carving is lazy)
    uint32_t used;    // chunks not free
    bool draining;    // being emptied for another class: its chunks are not reused
};
static_assert(sizeof(Slabs::Page) <= kPageHeader);

struct Slabs::Class {
    std::mutex mu;
    size_t size = 0;
    size_t per_page = 0;
    std::vector<Page*> pages;
    Item* free_head = nullptr;  // doubly linked through hnext / cas
    size_t free_count = 0;
    Page* carve = nullptr;  // newest page, carved up to carve->carved
    size_t hand_page = 0;   // CLOCK hand
    size_t hand_chunk = 0;
    std::atomic<size_t> npages{0};  // pages.size(), read without the lock to pick a victim
    RelTime no_donor_until = 0;     // no older memory elsewhere: look again at this time
};

struct Slabs::Large {
    std::mutex mu;
    LargeHdr* head = nullptr;  // newest
    LargeHdr* tail = nullptr;  // where the hand looks
    uint64_t count = 0;
};

namespace {

inline Item* chunk(void* page, size_t size, size_t i) noexcept {
    return reinterpret_cast<Item*>(static_cast<char*>(page) + kPageHeader + i * size);
}

}  // namespace

static inline Slabs::Page* page_of(const Item* it) noexcept {
    return reinterpret_cast<Slabs::Page*>(reinterpret_cast<uintptr_t>(it) & ~(kPageSize - 1));
}

Slabs::Slabs(size_t max_bytes, size_t item_size_max, bool evict, EvictFn evict_fn, void* ctx)
    : max_bytes_(max_bytes), evict_(evict), evict_fn_(evict_fn), ctx_(ctx) {
    sizes_.push_back(0);
    for (size_t s = kMinChunk; s <= kSmallMax; s += 8) sizes_.push_back(s);
    for (size_t s = kSmallMax;;) {
        s = (s + s / 8 + 7) & ~size_t{7};
        if (s >= kMaxChunk) break;
        sizes_.push_back(s);
    }
    sizes_.push_back(kMaxChunk);
    sizes_.push_back(std::max(item_size_max, kMaxChunk + 1));  // large items
    static_assert(kMaxChunk / 8 < 4096);
    size_to_class_.resize(kMaxChunk / 8 + 1);
    unsigned id = 1;
    for (size_t i = 0; i < size_to_class_.size(); ++i) {
        while (sizes_[id] < i * 8) ++id;
        size_to_class_[i] = static_cast<uint8_t>(id);
    }
    classes_.reset(new Class[sizes_.size()]);
    for (size_t i = 1; i + 1 < sizes_.size(); ++i) {
        classes_[i].size = sizes_[i];
        classes_[i].per_page = (kPageSize - kPageHeader) / sizes_[i];
    }
    large_.reset(new Large);
}

Slabs::~Slabs() {
    for (size_t i = 1; i + 1 < sizes_.size(); ++i) {
        for (Page* p : classes_[i].pages) std::free(p);
    }
    for (LargeHdr* h = large_->head; h != nullptr;) {
        LargeHdr* next = h->next;
        std::free(h);
        h = next;
    }
}

unsigned Slabs::large_class() const noexcept { return static_cast<unsigned>(sizes_.size() - 1); }

unsigned Slabs::class_for(size_t total) const noexcept {
    if (total > kMaxChunk) return large_class();
    return size_to_class_[(total + 7) / 8];
}

unsigned Slabs::class_of(const Item* it) const noexcept {
    if (it->has(Item::kLarge)) return large_class();
    return page_of(it)->cls;
}

const std::vector<size_t>& Slabs::class_sizes() const noexcept { return sizes_; }

void Slabs::set_max_bytes(size_t bytes) noexcept { max_bytes_.store(bytes); }
size_t Slabs::max_bytes() const noexcept { return max_bytes_.load(); }
size_t Slabs::mem_used() const noexcept { return mem_used_.load(std::memory_order_relaxed); }
uint64_t Slabs::pages_moved() const noexcept { return pages_moved_.load(); }
uint64_t Slabs::reassign_evictions() const noexcept { return reassign_evictions_.load(); }

bool Slabs::charge(size_t bytes) noexcept {
    size_t cur = mem_used_.load(std::memory_order_relaxed);
    size_t max = max_bytes_.load(std::memory_order_relaxed);
    do {
        if (cur + bytes > max) return false;
    } while (!mem_used_.compare_exchange_weak(cur, cur + bytes, std::memory_order_relaxed));
    return true;
}

void Slabs::free_list_push(Class& c, Item* it) noexcept {
    it->iflags.store(Item::kFree, std::memory_order_relaxed);
    it->hnext = c.free_head;
    set_free_prev(it, nullptr);
    if (c.free_head != nullptr) set_free_prev(c.free_head, it);
    c.free_head = it;
    ++c.free_count;
}

void Slabs::free_list_remove(Class& c, Item* it) noexcept {
    Item* prev = free_prev(it);
    Item* next = it->hnext;
    if (prev != nullptr) {
        prev->hnext = next;
    } else {
        c.free_head = next;
    }
    if (next != nullptr) set_free_prev(next, prev);
    --c.free_count;
}

void Slabs::release_page_locked(Class& c, Page* p) noexcept {
    if (!p->draining) {
        for (uint32_t i = 0; i < p->carved; ++i) {
            Item* x = chunk(p, c.size, i);
            if (x->has(Item::kFree)) free_list_remove(c, x);
        }
    }
    if (c.carve == p) c.carve = nullptr;
    Page* last = c.pages.back();
    c.pages[p->index] = last;
    last->index = p->index;
    c.pages.pop_back();
    c.npages.store(c.pages.size(), std::memory_order_relaxed);
    std::free(p);
    mem_used_.fetch_sub(kPageSize, std::memory_order_relaxed);
}

void Slabs::free_chunk_locked(Class& c, Page* p, Item* it) noexcept {
    it->iflags.store(0, std::memory_order_relaxed);
    --p->used;
    if (p->used == 0) {
        release_page_locked(c, p);  // an empty page goes back to the heap, for any class
    } else if (p->draining) {
        it->iflags.store(Item::kFree, std::memory_order_relaxed);
    } else {
        free_list_push(c, it);
    }
}

void Slabs::free(Item* it) noexcept {
    if (it->has(Item::kLarge)) {
        LargeHdr* h = hdr_of(it);
        size_t usable = h->usable;
        {
            std::lock_guard<std::mutex> g(large_->mu);
            (h->prev != nullptr ? h->prev->next : large_->head) = h->next;
            (h->next != nullptr ? h->next->prev : large_->tail) = h->prev;
            --large_->count;
        }
        std::free(h);
        mem_used_.fetch_sub(usable, std::memory_order_relaxed);
        return;
    }
    Page* p = page_of(it);
    Class& c = classes_[p->cls];
    std::lock_guard<std::mutex> g(c.mu);
    free_chunk_locked(c, p, it);
}

void Slabs::add_page_locked(Class& c, void* mem) noexcept {
    auto* p = new (mem) Page{static_cast<uint32_t>(&c - classes_.get()),
                             static_cast<uint32_t>(c.pages.size()), 0, 0, false};
    c.pages.push_back(p);
    c.npages.store(c.pages.size(), std::memory_order_relaxed);
    c.carve = p;
}

Item* Slabs::take_chunk(Class& c, RelTime now, Take mode, unsigned* donor) noexcept {
    if (Item* it = c.free_head; it != nullptr) {
        free_list_remove(c, it);
        ++page_of(it)->used;
        it->iflags.store(0, std::memory_order_relaxed);
        return it;
    }
    if (c.carve == nullptr || c.carve->carved == c.per_page) {
        c.carve = nullptr;
        if (charge(kPageSize)) {
            void* mem = std::aligned_alloc(kPageSize, kPageSize);
            if (mem == nullptr) {
                mem_used_.fetch_sub(kPageSize, std::memory_order_relaxed);
            } else {
                add_page_locked(c, mem);
            }
        }
    }
    if (c.carve != nullptr) {
        Item* it = chunk(c.carve, c.size, c.carve->carved++);
        ++c.carve->used;
        it->iflags.store(0, std::memory_order_relaxed);
        return it;
    }
    if (mode == Take::kNoEvict) return nullptr;
    // CLOCK: the hand passes over chunks in page order; a recently read item loses its mark
    // and stays, an unread one is evicted and its chunk handed out here.
    for (int n = 0; n < kClockProbes && !c.pages.empty(); ++n) {
        if (c.hand_page >= c.pages.size()) {
            c.hand_page = 0;
            c.hand_chunk = 0;
        }
        Page* p = c.pages[c.hand_page];
        if (c.hand_chunk >= p->carved) {
            ++c.hand_page;
            c.hand_chunk = 0;
            continue;
        }
        Item* it = chunk(p, c.size, c.hand_chunk++);
        uint8_t f = it->iflags.load(std::memory_order_acquire);
        if ((f & Item::kFree) || !(f & Item::kLinked)) continue;
        if (it->refcount.load(std::memory_order_acquire) != 1) continue;  // being sent
        if (f & Item::kAccessed) {
            it->clear(Item::kAccessed);
            continue;
        }
        // Before evicting its own item, a class whose memory is all in use asks whether
        // another holds clearly older items (memcached's automove, done where the need
        // arises): then a page's worth goes from there to here instead. Looked up at most
        // once a second while the answer is no.
        if (mode == Take::kEvictOrGrow && now >= c.no_donor_until) {
            if (unsigned d = find_donor(&c, it->time, now); d != 0) {
                *donor = d;
                return nullptr;
            }
            c.no_donor_until = now + 1;
        }
        if (!evict_fn_(ctx_, it, now, true)) continue;
        if (p->draining) {  // its memory is promised elsewhere
            free_chunk_locked(c, p, it);
            continue;
        }
        it->iflags.store(0, std::memory_order_relaxed);
        return it;  // the chunk changes owner; the page's used count stays
    }
    return nullptr;
}

Item* Slabs::alloc(size_t total, RelTime now) noexcept {
    if (total > kMaxChunk) return alloc_large(total, now);
    unsigned id = size_to_class_[(total + 7) / 8];
    Class& c = classes_[id];
    unsigned donor = 0;
    {
        std::lock_guard<std::mutex> g(c.mu);
        if (Item* it = take_chunk(c, now, evict_ ? Take::kEvictOrGrow : Take::kNoEvict, &donor)) {
            return it;
        }
    }
    if (!evict_) return nullptr;
    // The class has nothing to give, or another holds older items: pay for a page first,
    // then make room elsewhere. Memory freed meanwhile is already ours, so a concurrent
    // allocation cannot take it first.
    mem_used_.fetch_add(kPageSize, std::memory_order_relaxed);
    void* mem = nullptr;
    if (!make_room(id, now, donor) ||
        (mem = std::aligned_alloc(kPageSize, kPageSize)) == nullptr) {
        mem_used_.fetch_sub(kPageSize, std::memory_order_relaxed);
        if (donor == 0) return nullptr;
        // The donor had nothing evictable after all: evict here, as without a donor.
        std::lock_guard<std::mutex> g(c.mu);
        return take_chunk(c, now, Take::kEvict);
    }
    if (donor == large_class()) pages_moved_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(c.mu);
    if (c.free_head != nullptr || (c.carve != nullptr && c.carve->carved < c.per_page)) {
        // Chunks came free while we made room: use one, and give the page back.
        std::free(mem);
        mem_used_.fetch_sub(kPageSize, std::memory_order_relaxed);
        return take_chunk(c, now, Take::kNoEvict);
    }
    add_page_locked(c, mem);
    return take_chunk(c, now, Take::kNoEvict);
}

unsigned Slabs::find_donor(const Class* self, RelTime victim_time, RelTime now) noexcept {
    // Only try_lock: the caller may hold its class lock, and the other locks may be held by
    // someone waiting for it.
    // The guess of a class's oldest item is the oldest among the chunks just ahead of its
    // hand (where it would evict next, and where a page would be emptied from).
    unsigned best = 0;
    RelTime best_time = victim_time;
    for (unsigned id = 1; id < large_class(); ++id) {
        Class& d = classes_[id];
        if (&d == self || d.npages.load(std::memory_order_relaxed) == 0) continue;
        std::unique_lock<std::mutex> g(d.mu, std::try_to_lock);
        if (!g.owns_lock() || d.pages.empty()) continue;
        size_t pi = d.hand_page < d.pages.size() ? d.hand_page : 0;
        size_t ci = pi == d.hand_page ? d.hand_chunk : 0;
        RelTime oldest = 0;
        bool seen = false;
        for (int n = 0; n < kAgePeek; ++n, ++ci) {
            const Page* p = d.pages[pi];
            if (ci >= p->carved) {
                pi = (pi + 1) % d.pages.size();
                ci = 0;
                continue;
            }
            const Item* it = chunk(const_cast<Page*>(p), d.size, ci);
            uint8_t f = it->iflags.load(std::memory_order_acquire);
            if ((f & Item::kLinked) && !(f & Item::kFree) && (!seen || it->time < oldest)) {
                oldest = it->time;
                seen = true;
            }
        }
        if (seen && oldest < best_time && clearly_older(oldest, victim_time, now)) {
            best = id;
            best_time = oldest;
        }
    }
    if (self != nullptr) {
        std::unique_lock<std::mutex> g(large_->mu, std::try_to_lock);
        if (g.owns_lock() && large_->tail != nullptr) {
            const Item* it = item_of(large_->tail);
            if (it->has(Item::kLinked) && it->time < best_time &&
                clearly_older(it->time, victim_time, now)) {
                best = large_class();
            }
        }
    }
    return best;
}

bool Slabs::make_room(unsigned for_class, RelTime now, unsigned donor) noexcept {
    for (int round = 0; mem_used_.load(std::memory_order_relaxed) >
                        max_bytes_.load(std::memory_order_relaxed);
         ++round) {
        if (round >= kRoomRounds) return false;
        // A donor with older items gives first; when it has nothing more to give, the usual
        // order below takes over.
        if (donor == large_class()) {
            // Read marks do not keep a donor's items, as a page being moved keeps none: its
            // items are older, and the quick look alone would only clear the marks and leave
            // the asking class to empty its own page.
            if (evict_large_one(now, false) || evict_large_one(now, true)) {
                reassign_evictions_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            donor = 0;
        } else if (donor != 0) {
            if (empty_page_of(classes_[donor], now)) continue;
            donor = 0;
        }
        // Large items first, then a page of the class with the most pages, then any page
        // (the asking class's own too: its items were all busy or recently read). Last, a
        // full turn of the large items' hand: when every one was read since the hand last
        // passed, the quick look only clears marks, and with no slab pages to empty the
        // allocation would fail although the large items are all evictable.
        if (!evict_large_one(now, false) && !empty_one_page(for_class, now) &&
            !evict_large_one(now, true)) {
            return false;
        }
    }
    return true;
}

bool Slabs::evict_large_one(RelTime now, bool full_turn) noexcept {
    std::lock_guard<std::mutex> g(large_->mu);
    Large& l = *large_;
    // A full turn looks at every item twice: the first pass clears the access marks, so the
    // second finds any item that is neither busy nor locked (a second chance, not a third).
    const uint64_t limit = full_turn ? 2 * l.count + 1 : kLargeTries;
    for (uint64_t tries = 0; tries < limit && l.tail != nullptr; ++tries) {
        LargeHdr* h = l.tail;
        Item* it = item_of(h);
        uint8_t f = it->iflags.load(std::memory_order_acquire);
        bool candidate = (f & Item::kLinked) && it->refcount.load(std::memory_order_acquire) == 1;
        if (candidate && (f & Item::kAccessed)) {
            it->clear(Item::kAccessed);
            candidate = false;
        }
        // Unlink from the tail.
        l.tail = h->prev;
        (l.tail != nullptr ? l.tail->next : l.head) = nullptr;
        if (candidate && evict_fn_(ctx_, it, now, true)) {
            --l.count;
            size_t usable = h->usable;
            std::free(h);
            mem_used_.fetch_sub(usable, std::memory_order_relaxed);
            return true;
        }
        // Second chance (or busy): back to the head.
        h->prev = nullptr;
        h->next = l.head;
        (l.head != nullptr ? l.head->prev : l.tail) = h;
        l.head = h;
    }
    return false;
}

bool Slabs::empty_one_page(unsigned last, RelTime now) noexcept {
    // The class holding the most pages gives one up (ties go round robin); `last` is asked
    // only when no other class can.
    unsigned n = large_class();
    unsigned start = victim_cursor_.fetch_add(1, std::memory_order_relaxed);
    std::array<std::pair<size_t, unsigned>, 256> order;  // class ids fit in a byte
    size_t count = 0;
    for (unsigned k = 0; k + 1 < n; ++k) {
        unsigned id = 1 + (start + k) % (n - 1);
        size_t np = classes_[id].npages.load(std::memory_order_relaxed);
        if (np > 0) order[count++] = {id == last ? 0 : np, id};
    }
    std::stable_sort(order.begin(), order.begin() + count,
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t k = 0; k < count; ++k) {
        if (empty_page_of(classes_[order[k].second], now)) return true;
    }
    return false;
}

bool Slabs::empty_page_of(Class& c, RelTime now) noexcept {
    std::lock_guard<std::mutex> g(c.mu);
    if (c.pages.empty()) return false;
    // The hand's page holds the class's oldest items; skip pages already draining.
    Page* p = nullptr;
    for (size_t k = 0; k < c.pages.size() && p == nullptr; ++k) {
        Page* q = c.pages[(c.hand_page + k) % c.pages.size()];
        if (!q->draining) p = q;
    }
    if (p == nullptr) return false;
    p->draining = true;
    if (c.carve == p) c.carve = nullptr;
    for (uint32_t i = 0; i < p->carved; ++i) {
        Item* it = chunk(p, c.size, i);
        uint8_t f = it->iflags.load(std::memory_order_acquire);
        if (f & Item::kFree) {
            free_list_remove(c, it);
            continue;
        }
        if ((f & Item::kLinked) && it->refcount.load(std::memory_order_acquire) == 1 &&
            evict_fn_(ctx_, it, now, false)) {
            it->iflags.store(Item::kFree, std::memory_order_relaxed);
            --p->used;
            reassign_evictions_.fetch_add(1, std::memory_order_relaxed);
        }
    }
    // Chunks still in use (being sent or filled) come back through free(); the last one
    // releases the page.
    if (p->used == 0) release_page_locked(c, p);
    pages_moved_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

unsigned Slabs::large_donor(RelTime now) noexcept {
    // As a class does before evicting its own item (see take_chunk): when a slab class holds
    // clearly older items than the large items' tail, its pages pay instead.
    if (now < large_no_donor_until_.load(std::memory_order_relaxed)) return 0;
    RelTime victim_time;
    {
        std::lock_guard<std::mutex> g(large_->mu);
        if (large_->tail == nullptr || !item_of(large_->tail)->has(Item::kLinked)) return 0;
        victim_time = item_of(large_->tail)->time;
    }
    unsigned d = find_donor(nullptr, victim_time, now);
    if (d == 0) large_no_donor_until_.store(now + 1, std::memory_order_relaxed);
    return d;
}

Item* Slabs::alloc_large(size_t total, RelTime now) noexcept {
    void* mem = std::malloc(sizeof(LargeHdr) + total);
    if (mem == nullptr) return nullptr;
    size_t usable = malloc_usable_size(mem);
    // Charge first, then make room: concurrent allocations cannot all slip under the limit.
    mem_used_.fetch_add(usable, std::memory_order_relaxed);
    if (mem_used_.load(std::memory_order_relaxed) > max_bytes_.load(std::memory_order_relaxed) &&
        (!evict_ || !make_room(0, now, large_donor(now)))) {
        mem_used_.fetch_sub(usable, std::memory_order_relaxed);
        std::free(mem);
        return nullptr;
    }
    auto* h = new (mem) LargeHdr{nullptr, nullptr, usable};
    Item* it = item_of(h);
    it->iflags.store(Item::kLarge, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(large_->mu);
    h->next = large_->head;
    (large_->head != nullptr ? large_->head->prev : large_->tail) = h;
    large_->head = h;
    ++large_->count;
    return it;
}

std::vector<SlabClassInfo> Slabs::info() const {
    std::vector<SlabClassInfo> out;
    for (unsigned id = 1; id < large_class(); ++id) {
        Class& c = classes_[id];
        std::lock_guard<std::mutex> g(c.mu);
        SlabClassInfo i;
        i.id = id;
        i.chunk_size = c.size;
        i.per_page = c.per_page;
        i.total_pages = c.pages.size();
        i.free_chunks = c.free_count;
        for (const Page* p : c.pages) i.used_chunks += p->used;
        if (c.carve != nullptr) i.free_chunks_end = c.per_page - c.carve->carved;
        // Age: the oldest access among the chunks just ahead of the hand.
        if (!c.pages.empty()) {
            size_t pi = c.hand_page < c.pages.size() ? c.hand_page : 0;
            size_t ci = pi == c.hand_page ? c.hand_chunk : 0;
            for (int n = 0; n < 256; ++n, ++ci) {
                const Page* p = c.pages[pi];
                if (ci >= p->carved) {
                    pi = (pi + 1) % c.pages.size();
                    ci = 0;
                    p = c.pages[pi];
                    if (p->carved == 0) continue;
                }
                const Item* it = chunk(const_cast<Page*>(p), c.size, ci);
                if (it->has(Item::kLinked) && (i.oldest_time == 0 || it->time < i.oldest_time)) {
                    i.oldest_time = it->time;
                }
            }
        }
        out.push_back(i);
    }
    std::lock_guard<std::mutex> g(large_->mu);
    SlabClassInfo i;
    i.id = large_class();
    i.chunk_size = sizes_.back();
    i.per_page = 1;
    i.used_chunks = large_->count;
    i.total_pages = large_->count;
    int budget = 256;
    for (const LargeHdr* h = large_->tail; h != nullptr && budget-- > 0; h = h->prev) {
        const Item* it = item_of(const_cast<LargeHdr*>(h));
        if (it->has(Item::kLinked) && (i.oldest_time == 0 || it->time < i.oldest_time)) {
            i.oldest_time = it->time;
        }
    }
    out.push_back(i);
    return out;
}

}  // namespace mcm::store
