// Items: one heap block per key/value, refcounted. No locking here: the Store that owns an
// item's table links and unlinks it under the shard lock; references (ItemRef) are taken and
// dropped from any thread.
//
//   +--------------------------------------------------------------+
//   | hnext (hash chain)       | prev, next (shard LRU, head = MRU) |
//   | refcount | time | exptime | client_flags | cas | nbytes | nkey | iflags | cls |
//   +--------------------------------------------------------------+
//   | key bytes (nkey)  | value bytes (nbytes, ends with "\r\n")   |
//   +--------------------------------------------------------------+
//
// The value is stored with its trailing "\r\n" so a GET sends it as one iovec.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

#include "server/store/clock.h"

namespace mcm::store {

class Store;

struct Item {
    Item* hnext;  // next in the hash chain (guarded by the shard lock)
    Item* prev;   // LRU neighbours (guarded by the shard lock)
    Item* next;
    std::atomic<uint32_t> refcount;  // the table holds one reference while linked
    RelTime time;                    // last write or access
    RelTime exptime;                 // 0 = never
    uint32_t client_flags;
    uint64_t cas;     // unique per write; also orders immediate flush_all
    uint32_t nbytes;  // value length including the trailing "\r\n"
    uint8_t nkey;
    uint8_t iflags;  // kLinked | kFetched
    uint8_t cls;     // size class (memcached slab class id) for stats
    char data[];     // key, then value

    static constexpr uint8_t kLinked = 1;
    static constexpr uint8_t kFetched = 2;

    std::string_view key() const noexcept { return {data, nkey}; }
    // The value with its "\r\n".
    char* value() noexcept { return data + nkey; }
    const char* value() const noexcept { return data + nkey; }
    // Value length without the "\r\n".
    uint32_t value_len() const noexcept { return nbytes - 2; }
    size_t total_size() const noexcept { return sizeof(Item) + nkey + nbytes; }
    static size_t total_size(size_t nkey, size_t nbytes) noexcept {
        return sizeof(Item) + nkey + nbytes;
    }
};

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
