// Items: one slab chunk (or, above the largest slab class, one heap block) per key/value,
// refcounted. No locking here: the Store that owns an item's table links and unlinks it under
// the shard lock; references (ItemRef) are taken and dropped from any thread.
//
//   offset 0  hnext          hash chain (guarded by the shard lock)
//          8  cas            unique per write; also orders immediate flush_all
//         16  refcount       the table holds one reference while linked
//         20  time           last write, or access (bumped at most once a minute)
//         24  exptime        0 = never
//         28  client_flags
//         32  nbytes         value length including the trailing "\r\n"
//         36  nkey
//         37  iflags         kLinked kFetched kAccessed kLarge kFree kStale kWinSent kKeyBinary
//         38  key bytes, then value bytes ending with "\r\n"
//
// 38 bytes of header and no LRU links: eviction is CLOCK over each size class's chunks (see
// slab.h), so a 12-byte key with a 100-byte value fills a 152-byte chunk exactly. The value is
// stored with its "\r\n" so a GET sends it as one iovec.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

#include "server/store/clock.h"

namespace mcm::store {

class Store;

struct Item {
    Item* hnext;
    uint64_t cas;
    std::atomic<uint32_t> refcount;
    RelTime time;
    RelTime exptime;
    uint32_t client_flags;
    uint32_t nbytes;
    uint8_t nkey;
    // Set and cleared with atomic RMW: the evictor clears kAccessed holding only its size
    // class's lock while readers set it under the shard lock.
    std::atomic<uint8_t> iflags;
    char data[];  // key, then value

    static constexpr uint8_t kLinked = 1;    // in the hash table
    static constexpr uint8_t kFetched = 2;   // read at least once (memcached's ITEM_FETCHED)
    static constexpr uint8_t kAccessed = 4;  // read since the CLOCK hand last passed
    static constexpr uint8_t kLarge = 8;     // a heap block, not a slab chunk
    static constexpr uint8_t kFree = 16;     // a slab chunk on its class's free list
    static constexpr uint8_t kStale = 32;    // marked stale (md I, ms I): mg reports X
    static constexpr uint8_t kWinSent = 64;  // a client was told W (recache win): others get Z
    static constexpr uint8_t kKeyBinary = 128;  // stored with a base64 key (meta flag b)

    bool has(uint8_t f) const noexcept { return iflags.load(std::memory_order_relaxed) & f; }
    void set(uint8_t f) noexcept { iflags.fetch_or(f, std::memory_order_relaxed); }
    void clear(uint8_t f) noexcept {
        iflags.fetch_and(static_cast<uint8_t>(~f), std::memory_order_relaxed);
    }

    std::string_view key() const noexcept { return {data, nkey}; }
    // The value with its "\r\n".
    char* value() noexcept { return data + nkey; }
    const char* value() const noexcept { return data + nkey; }
    // Value length without the "\r\n".
    uint32_t value_len() const noexcept { return nbytes - 2; }
    size_t total_size() const noexcept { return kHeader + nkey + nbytes; }
    static size_t total_size(size_t nkey, size_t nbytes) noexcept {
        return kHeader + nkey + nbytes;
    }
    static constexpr size_t kHeader = 38;
};

static_assert(sizeof(std::atomic<uint32_t>) == 4 && sizeof(std::atomic<uint8_t>) == 1);
static_assert(sizeof(Item) == 40, "data[] must start right after iflags (Item::kHeader)");

// An owning reference to an item. Move-only. Dropping the last reference frees the item and
// returns its bytes to the store's memory accounting; the Store must outlive every ItemRef.
class ItemRef {
public:
    ItemRef() noexcept = default;
    ItemRef(Store* store, Item* it) noexcept : store_(store), it_(it) {}  // adopts one ref
    ItemRef(ItemRef&& o) noexcept : store_(o.store_), it_(std::exchange(o.it_, nullptr)) {}
    ItemRef& operator=(ItemRef&& o) noexcept {
        if (this != &o) {
            reset();
            store_ = o.store_;
            it_ = std::exchange(o.it_, nullptr);
        }
        return *this;
    }
    ItemRef(const ItemRef&) = delete;
    ItemRef& operator=(const ItemRef&) = delete;
    ~ItemRef() { reset(); }

    void reset() noexcept;  // defined in store.h
    // Give up ownership without dropping the reference (the caller must release it later with
    // Store::release).
    Item* detach() noexcept { return std::exchange(it_, nullptr); }

    Item* get() const noexcept { return it_; }
    Item* operator->() const noexcept { return it_; }
    explicit operator bool() const noexcept { return it_ != nullptr; }

private:
    Store* store_ = nullptr;
    Item* it_ = nullptr;
};

}  // namespace mcm::store
