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

Item* Slabs::take_chunk(Class& c, RelTime now, bool may_evict) noexcept {
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
    if (!may_evict) return nullptr;
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
    {
        std::lock_guard<std::mutex> g(c.mu);
        if (Item* it = take_chunk(c, now, evict_)) return it;
    }
    if (!evict_) return nullptr;
    // The class has nothing to give: pay for a page first, then make room elsewhere. Memory
    // freed meanwhile is already ours, so a concurrent allocation cannot take it first.
    mem_used_.fetch_add(kPageSize, std::memory_order_relaxed);
    void* mem = nullptr;
    if (!make_room(id, now) || (mem = std::aligned_alloc(kPageSize, kPageSize)) == nullptr) {
        mem_used_.fetch_sub(kPageSize, std::memory_order_relaxed);
        return nullptr;
    }
    std::lock_guard<std::mutex> g(c.mu);
    if (c.free_head != nullptr || (c.carve != nullptr && c.carve->carved < c.per_page)) {
        // Chunks came free while we made room: use one, and give the page back.
        std::free(mem);
        mem_used_.fetch_sub(kPageSize, std::memory_order_relaxed);
        return take_chunk(c, now, false);
    }
    add_page_locked(c, mem);
    return take_chunk(c, now, false);
}

bool Slabs::make_room(unsigned for_class, RelTime now) noexcept {
    for (int round = 0; mem_used_.load(std::memory_order_relaxed) >
                        max_bytes_.load(std::memory_order_relaxed);
         ++round) {
        if (round >= kRoomRounds) return false;
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
        }
    }
    // Chunks still in use (being sent or filled) come back through free(); the last one
    // releases the page.
    if (p->used == 0) release_page_locked(c, p);
    pages_moved_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

Item* Slabs::alloc_large(size_t total, RelTime now) noexcept {
    void* mem = std::malloc(sizeof(LargeHdr) + total);
    if (mem == nullptr) return nullptr;
    size_t usable = malloc_usable_size(mem);
    // Charge first, then make room: concurrent allocations cannot all slip under the limit.
    mem_used_.fetch_add(usable, std::memory_order_relaxed);
    if (mem_used_.load(std::memory_order_relaxed) > max_bytes_.load(std::memory_order_relaxed) &&
        (!evict_ || !make_room(0, now))) {
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
