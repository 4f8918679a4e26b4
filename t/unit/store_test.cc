// Store unit tests with an injected clock: every operation's statuses, CAS uniques, expiry and
// flush rules, incr/decr, eviction and -M, growth, the crawler, references, threads.
#include "server/store/store.h"
#include "replication/bucket_map.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace mcm::store;

namespace {

constexpr int64_t kStart = 1'000'000'000;

class StoreTest : public ::testing::Test {
protected:
    StoreTest() : clock_(kStart) { clock_.set_now(100); }

    std::unique_ptr<Store> make(Config c = Config{}) { return std::make_unique<Store>(c, clock_); }

    static StoreStatus put(Store& st, const std::string& key, const std::string& value,
                           StoreOp op = StoreOp::Set, uint64_t cas = 0, uint32_t flags = 0,
                           RelTime exp = 0, uint64_t* cas_out = nullptr) {
        ItemRef it;
        AllocStatus a = st.alloc(key, flags, exp, static_cast<uint32_t>(value.size()), &it);
        if (a == AllocStatus::TooLarge) return StoreStatus::TooLarge;
        if (a == AllocStatus::NoMemory) return StoreStatus::NoMemory;
        std::memcpy(it->value(), value.data(), value.size());
        std::memcpy(it->value() + value.size(), "\r\n", 2);
        return st.store(it, op, cas, cas_out);
    }

    static std::string value(Store& st, const std::string& key) {
        Lookup l = st.get(key);
        if (!l.item) return "<miss>";
        return std::string(l.item->value(), l.item->value_len());
    }

    Clock clock_;
};

}  // namespace

TEST_F(StoreTest, SetGetDelete) {
    auto st = make();
    EXPECT_EQ(put(*st, "a", "1"), StoreStatus::Stored);
    EXPECT_EQ(value(*st, "a"), "1");
    EXPECT_TRUE(st->remove("a"));
    EXPECT_FALSE(st->remove("a"));
    Lookup l = st->get("a");
    EXPECT_FALSE(l.item);
    EXPECT_EQ(l.reason, MissReason::Missing);
}

TEST_F(StoreTest, AddReplaceAppendPrepend) {
    auto st = make();
    EXPECT_EQ(put(*st, "k", "x", StoreOp::Replace), StoreStatus::NotStored);
    EXPECT_EQ(put(*st, "k", "x", StoreOp::Append), StoreStatus::NotStored);
    EXPECT_EQ(put(*st, "k", "mid", StoreOp::Add, 0, 7, 0), StoreStatus::Stored);
    EXPECT_EQ(put(*st, "k", "y", StoreOp::Add), StoreStatus::NotStored);
    EXPECT_EQ(put(*st, "k", "<", StoreOp::Prepend, 0, 99), StoreStatus::Stored);
    EXPECT_EQ(put(*st, "k", ">", StoreOp::Append, 0, 99), StoreStatus::Stored);
    Lookup l = st->get("k");
    ASSERT_TRUE(l.item);
    EXPECT_EQ(std::string(l.item->value(), l.item->value_len()), "<mid>");
    EXPECT_EQ(l.item->client_flags, 7u);  // append/prepend keep the old flags
    EXPECT_EQ(put(*st, "k", "r", StoreOp::Replace), StoreStatus::Stored);
    EXPECT_EQ(value(*st, "k"), "r");
}

TEST_F(StoreTest, CasUniques) {
    auto st = make();
    uint64_t c1 = 0, c2 = 0, c3 = 0;
    EXPECT_EQ(put(*st, "k", "a", StoreOp::Cas, 1), StoreStatus::NotFound);
    ASSERT_EQ(put(*st, "k", "a", StoreOp::Set, 0, 0, 0, &c1), StoreStatus::Stored);
    EXPECT_EQ(st->get("k").item->cas, c1);
    EXPECT_EQ(put(*st, "k", "b", StoreOp::Cas, c1 + 1000), StoreStatus::Exists);
    ASSERT_EQ(put(*st, "k", "b", StoreOp::Cas, c1, 0, 0, &c2), StoreStatus::Stored);
    EXPECT_NE(c1, c2);
    EXPECT_EQ(put(*st, "k", "c", StoreOp::Cas, c1), StoreStatus::Exists);
    ASSERT_EQ(put(*st, "k", "!", StoreOp::Append, 0, 0, 0, &c3), StoreStatus::Stored);
    EXPECT_NE(c2, c3);
    uint64_t v = 0, c4 = 0;
    ASSERT_EQ(put(*st, "n", "5"), StoreStatus::Stored);
    uint64_t before = st->get("n").item->cas;
    ASSERT_EQ(st->delta("n", true, 1, &v, &c4), DeltaStatus::Ok);
    EXPECT_NE(before, c4);
    EXPECT_EQ(st->get("n").item->cas, c4);
    EXPECT_TRUE(st->touch("n", 0));
    EXPECT_EQ(st->get("n").item->cas, c4);  // touch keeps the unique
}

TEST_F(StoreTest, CasDisabledReportsZero) {
    Config c;
    c.use_cas = false;
    auto st = make(c);
    uint64_t cas = 77;
    ASSERT_EQ(put(*st, "k", "a", StoreOp::Set, 0, 0, 0, &cas), StoreStatus::Stored);
    EXPECT_EQ(cas, 0u);
}

TEST_F(StoreTest, ExpiryRules) {
    auto st = make();
    EXPECT_EQ(clock_.realtime(0), 0u);
    EXPECT_EQ(clock_.realtime(-5), 1u);
    EXPECT_EQ(clock_.realtime(10), 110u);
    EXPECT_EQ(clock_.realtime(kRealtimeMaxDelta), 100u + kRealtimeMaxDelta);
    EXPECT_EQ(clock_.realtime(kRealtimeMaxDelta + 1), 1u);  // absolute time in the past
    EXPECT_EQ(clock_.realtime(kStart + 500), 500u);         // absolute time in the future

    put(*st, "rel", "x", StoreOp::Set, 0, 0, clock_.realtime(10));
    put(*st, "neg", "x", StoreOp::Set, 0, 0, clock_.realtime(-1));
    put(*st, "abs", "x", StoreOp::Set, 0, 0, clock_.realtime(kStart + 150));
    put(*st, "never", "x", StoreOp::Set, 0, 0, clock_.realtime(0));
    EXPECT_EQ(value(*st, "neg"), "<miss>");
    EXPECT_EQ(value(*st, "rel"), "x");
    clock_.set_now(109);
    EXPECT_EQ(value(*st, "rel"), "x");
    clock_.set_now(110);
    Lookup l = st->get("rel");
    EXPECT_FALSE(l.item);
    EXPECT_EQ(l.reason, MissReason::Expired);
    EXPECT_EQ(value(*st, "abs"), "x");
    clock_.set_now(150);
    EXPECT_EQ(value(*st, "abs"), "<miss>");
    clock_.advance(1'000'000);
    EXPECT_EQ(value(*st, "never"), "x");
}

TEST_F(StoreTest, TouchAndGat) {
    auto st = make();
    put(*st, "k", "x");
    EXPECT_TRUE(st->touch("k", clock_.realtime(5)));
    EXPECT_FALSE(st->touch("nope", 5));
    clock_.set_now(104);
    Lookup l = st->get_and_touch("k", clock_.realtime(100));
    ASSERT_TRUE(l.item);
    clock_.set_now(150);
    EXPECT_EQ(value(*st, "k"), "x");
    clock_.set_now(204);
    EXPECT_EQ(value(*st, "k"), "<miss>");
}

TEST_F(StoreTest, FlushNowIsExact) {
    auto st = make();
    put(*st, "old", "x");
    st->flush(0);
    put(*st, "new", "y");  // same second: still survives (cas cut)
    Lookup l = st->get("old");
    EXPECT_FALSE(l.item);
    EXPECT_EQ(l.reason, MissReason::Flushed);
    EXPECT_EQ(value(*st, "new"), "y");
}

TEST_F(StoreTest, FlushDelayed) {
    auto st = make();
    put(*st, "a", "x");
    st->flush(10);
    EXPECT_EQ(value(*st, "a"), "x");
    clock_.set_now(109);
    put(*st, "b", "y");
    clock_.set_now(110);
    EXPECT_EQ(value(*st, "a"), "<miss>");
    EXPECT_EQ(value(*st, "b"), "<miss>");  // written before the flush point
    clock_.set_now(111);
    put(*st, "c", "z");
    EXPECT_EQ(value(*st, "c"), "z");
}

TEST_F(StoreTest, Delta) {
    auto st = make();
    uint64_t v = 0;
    EXPECT_EQ(st->delta("n", true, 1, &v), DeltaStatus::NotFound);
    put(*st, "n", "18446744073709551615");
    ASSERT_EQ(st->delta("n", true, 2, &v), DeltaStatus::Ok);
    EXPECT_EQ(v, 1u);
    EXPECT_EQ(value(*st, "n"), "1                   ");  // in place, padded
    ASSERT_EQ(st->delta("n", false, 5, &v), DeltaStatus::Ok);
    EXPECT_EQ(v, 0u);
    put(*st, "m", "99");
    ASSERT_EQ(st->delta("m", true, 1, &v), DeltaStatus::Ok);
    EXPECT_EQ(value(*st, "m"), "100");  // grown into a new item
    put(*st, "s", "12a");
    EXPECT_EQ(st->delta("s", true, 1, &v), DeltaStatus::NonNumeric);
    put(*st, "e", "");
    EXPECT_EQ(st->delta("e", true, 1, &v), DeltaStatus::NonNumeric);
    put(*st, "o", "18446744073709551616");
    EXPECT_EQ(st->delta("o", true, 1, &v), DeltaStatus::NonNumeric);
    put(*st, "sp", " 7 ");
    ASSERT_EQ(st->delta("sp", true, 1, &v), DeltaStatus::Ok);
    EXPECT_EQ(v, 8u);
}

TEST_F(StoreTest, DeltaNotInPlaceWhileReferenced) {
    auto st = make();
    put(*st, "n", "10");
    Lookup held = st->get("n");  // a reply still sending the old value
    uint64_t v = 0;
    ASSERT_EQ(st->delta("n", false, 1, &v), DeltaStatus::Ok);
    EXPECT_EQ(std::string(held.item->value(), 2), "10");  // untouched
    EXPECT_EQ(value(*st, "n"), "9");
}

TEST_F(StoreTest, SizeLimit) {
    Config c;
    c.item_size_max = 1024 * 1024;
    auto st = make(c);
    std::string ok(1024 * 1024 - 100, 'v');
    EXPECT_EQ(put(*st, "k", ok), StoreStatus::Stored);
    std::string big(1024 * 1024, 'v');
    EXPECT_EQ(put(*st, "k", big), StoreStatus::TooLarge);
    EXPECT_EQ(put(*st, "k", std::string(200, 'x'), StoreOp::Append), StoreStatus::TooLarge);
}

TEST_F(StoreTest, EvictsLeastRecentlyUsed) {
    Config c;
    c.max_bytes = 1024 * 1024;
    auto st = make(c);
    std::string v(1000, 'x');
    for (int i = 0; i < 3000; ++i) {
        ASSERT_EQ(put(*st, "key" + std::to_string(i), v), StoreStatus::Stored) << i;
    }
    StoreStats s = st->stats();
    EXPECT_GT(s.evictions, 0u);
    EXPECT_LE(s.malloc_bytes, c.max_bytes);
    EXPECT_EQ(value(*st, "key2999"), v);
    int survivors_old = 0;
    for (int i = 0; i < 100; ++i)
        survivors_old += value(*st, "key" + std::to_string(i)) != "<miss>";
    EXPECT_EQ(survivors_old, 0);
    EXPECT_GT(s.evicted_unfetched, 0u);
}

TEST_F(StoreTest, NoEvictionGivesNoMemory) {
    Config c;
    c.max_bytes = 256 * 1024;
    c.evict = false;
    auto st = make(c);
    std::string v(1000, 'x');
    int stored = 0;
    StoreStatus last = StoreStatus::Stored;
    for (int i = 0; i < 1000 && last == StoreStatus::Stored; ++i) {
        last = put(*st, "key" + std::to_string(i), v);
        stored += last == StoreStatus::Stored;
    }
    EXPECT_EQ(last, StoreStatus::NoMemory);
    EXPECT_EQ(value(*st, "key0"), v);
    EXPECT_EQ(st->stats().evictions, 0u);
    EXPECT_GT(stored, 200);
    // freeing memory makes room again
    EXPECT_TRUE(st->remove("key0"));
    EXPECT_EQ(put(*st, "again", v), StoreStatus::Stored);
}

TEST_F(StoreTest, GrowthKeepsEveryKey) {
    Config c;
    c.max_bytes = 512ull << 20;
    c.hash_power = 10;
    auto st = make(c);
    const int n = 200000;
    bool saw_expanding = false;
    for (int i = 0; i < n; ++i) {
        ASSERT_EQ(put(*st, "k" + std::to_string(i), "v"), StoreStatus::Stored);
        if (i % 5000 == 0) {
            saw_expanding |= st->stats().hash_is_expanding;
            // lookups while tables are moving
            ASSERT_EQ(value(*st, "k" + std::to_string(i / 2)), "v");
        }
    }
    EXPECT_TRUE(saw_expanding);
    for (int i = 0; i < n; ++i) ASSERT_EQ(value(*st, "k" + std::to_string(i)), "v") << i;
    StoreStats s = st->stats();
    EXPECT_EQ(s.curr_items, static_cast<uint64_t>(n));
    EXPECT_GE(s.hash_power_level, 17u);
}

TEST_F(StoreTest, CrawlerReclaimsExpired) {
    auto st = make();
    for (int i = 0; i < 500; ++i) put(*st, "e" + std::to_string(i), "x", StoreOp::Set, 0, 0, 105);
    for (int i = 0; i < 10; ++i) put(*st, "keep" + std::to_string(i), "x");
    clock_.set_now(106);
    size_t total = 0;
    for (int i = 0; i < 200 && total < 500; ++i) total += st->crawl(4096);
    EXPECT_EQ(total, 500u);
    StoreStats s = st->stats();
    EXPECT_EQ(s.curr_items, 10u);
    EXPECT_EQ(s.crawler_reclaimed, 500u);
    EXPECT_EQ(s.expired_unfetched, 500u);
}

TEST_F(StoreTest, ReferenceOutlivesUnlink) {
    auto st = make();
    put(*st, "k", "first");
    Lookup held = st->get("k");
    size_t used = st->stats().malloc_bytes;
    put(*st, "k", "second");
    EXPECT_TRUE(st->remove("k"));
    EXPECT_EQ(std::string(held.item->value(), 5), "first");
    EXPECT_GE(st->stats().malloc_bytes, used);  // still charged while referenced
    held.item.reset();
    EXPECT_EQ(st->stats().malloc_bytes, 0u);
    EXPECT_EQ(st->stats().bytes, 0u);
}

TEST_F(StoreTest, ClassStats) {
    auto st = make();
    put(*st, "a", "x");
    put(*st, "b", std::string(5000, 'x'));
    const auto& sizes = st->class_sizes();
    EXPECT_EQ(sizes[1], 48u);
    EXPECT_EQ(sizes[2], 56u);  // 8-byte steps for small items
    EXPECT_EQ(sizes.back(), 1024u * 1024);  // the large class: up to -I
    for (size_t i = 2; i < sizes.size(); ++i) EXPECT_GT(sizes[i], sizes[i - 1]);
    auto cs = st->class_stats();
    uint64_t number = 0;
    for (auto& c : cs) number += c.number;
    EXPECT_EQ(number, 2u);
    EXPECT_EQ(cs.front().id, 1u);
    EXPECT_EQ(cs.front().chunk_size, 48u);  // "a" with "x": 38 + 1 + 3 bytes
    EXPECT_EQ(cs.front().used_chunks, 1u);
    EXPECT_EQ(cs.front().total_pages, 1u);
    EXPECT_EQ(cs.front().free_chunks_end, cs.front().chunks_per_page - 1);
}

// The benchmark's item (12-byte key, 100-byte value) fills a 152-byte chunk, so 64 MB hold at
// least 1.25 times memcached 1.6.18's 349,504 (its chunk is 192 bytes).
TEST_F(StoreTest, CompactItemsUnderLimit) {
    Config c;
    c.max_bytes = 64u << 20;
    auto st = make(c);
    std::string v(100, 'v');
    char key[16];
    uint64_t stored = 0;
    for (int i = 0; i < 600000; ++i) {
        std::snprintf(key, sizeof key, "key:%08d", i);
        ASSERT_EQ(put(*st, key, v), StoreStatus::Stored);
        if (st->stats().evictions != 0) break;
        ++stored;
    }
    EXPECT_GE(stored, 436880u);
    EXPECT_LE(st->stats().malloc_bytes, c.max_bytes);
    auto cs = st->class_stats();
    ASSERT_EQ(cs.size(), 1u);  // one class in use
    EXPECT_EQ(cs[0].chunk_size, 152u);
}

// A read item gets a second chance when the CLOCK hand passes; unread ones of the same age go.
TEST_F(StoreTest, ClockKeepsReadItems) {
    Config c;
    c.max_bytes = 1u << 20;
    auto st = make(c);
    std::string v(1000, 'x');
    for (int i = 0; i < 900; ++i) ASSERT_EQ(put(*st, "k" + std::to_string(i), v), StoreStatus::Stored);
    for (int i = 0; i < 100; i += 2) ASSERT_EQ(value(*st, "k" + std::to_string(i)), v);
    for (int i = 900; i < 1300; ++i) ASSERT_EQ(put(*st, "k" + std::to_string(i), v), StoreStatus::Stored);
    ASSERT_GT(st->stats().evictions, 0u);
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(value(*st, "k" + std::to_string(i)) != "<miss>", i % 2 == 0) << i;
    }
    EXPECT_EQ(value(*st, "k1299"), v);
}

// An item a reply is still sending is never evicted or reused.
TEST_F(StoreTest, ReferencedItemSurvivesEviction) {
    Config c;
    c.max_bytes = 1u << 20;
    auto st = make(c);
    std::string v(1000, 'x');
    ASSERT_EQ(put(*st, "held", std::string(1000, 'h')), StoreStatus::Stored);
    Lookup held = st->get("held");
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(put(*st, "k" + std::to_string(i), v), StoreStatus::Stored);
    EXPECT_EQ(std::string(held.item->value(), 1000), std::string(1000, 'h'));
    EXPECT_LE(st->stats().malloc_bytes, c.max_bytes);
}

// Memory flows between size classes: once small items fill -m, larger ones still get pages
// (emptied from the small class), and large heap items are limited and evicted too.
TEST_F(StoreTest, PagesMoveBetweenClasses) {
    Config c;
    c.max_bytes = 2u << 20;
    auto st = make(c);
    for (int i = 0; i < 60000; ++i) ASSERT_EQ(put(*st, "s" + std::to_string(i), "x"), StoreStatus::Stored);
    ASSERT_GT(st->stats().evictions, 0u);
    std::string mid(3000, 'm');
    for (int i = 0; i < 300; ++i) ASSERT_EQ(put(*st, "m" + std::to_string(i), mid), StoreStatus::Stored) << i;
    EXPECT_EQ(value(*st, "m299"), mid);
    EXPECT_GT(st->stats().slabs_moved, 0u);
    std::string big(100000, 'b');
    for (int i = 0; i < 60; ++i) ASSERT_EQ(put(*st, "b" + std::to_string(i), big), StoreStatus::Stored) << i;
    EXPECT_EQ(value(*st, "b59"), big);
    EXPECT_EQ(value(*st, "b0"), "<miss>");
    EXPECT_LE(st->stats().malloc_bytes, c.max_bytes);
    // and back to small items
    for (int i = 0; i < 20000; ++i) ASSERT_EQ(put(*st, "t" + std::to_string(i), "y"), StoreStatus::Stored);
    EXPECT_EQ(value(*st, "t19999"), "y");
    EXPECT_LE(st->stats().malloc_bytes, c.max_bytes);
}

// When the item size shifts, memory follows it: a class that must evict to store takes a page's
// worth from where clearly older items are (large items, or another class's pages) instead of
// evicting its own newer items, so most of the new items stay (memcached's automove).
TEST_F(StoreTest, MemoryFollowsSizeShift) {
    struct Shift {
        size_t old_len;
        int old_n;
        size_t new_len;
        int new_n;
    };
    // large -> slab class (memcached's slabs-reassign-chunked.t), slab -> slab, slab -> large
    const Shift shifts[] = {{11000, 900, 3000, 2000}, {3000, 3000, 1000, 5000}, {3000, 3000, 11000, 500}};
    for (const Shift& sh : shifts) {
        clock_.set_now(100);
        Config c;
        c.max_bytes = 8u << 20;
        auto st = make(c);
        for (int i = 0; i < sh.old_n; ++i) {
            ASSERT_EQ(put(*st, "o" + std::to_string(i), std::string(sh.old_len, 'o')), StoreStatus::Stored);
        }
        ASSERT_GT(st->stats().evictions, 0u) << sh.old_len;  // memory is full
        // Reads set the access marks (a second chance from the CLOCK hand), but the old items
        // are still the older ones: they must not keep their memory.
        for (int i = 0; i < sh.old_n; ++i) value(*st, "o" + std::to_string(i));
        uint64_t moved = st->stats().slabs_moved;
        clock_.set_now(110);
        std::string v(sh.new_len, 'n');
        for (int i = 0; i < sh.new_n; ++i) {
            ASSERT_EQ(put(*st, "n" + std::to_string(i), v), StoreStatus::Stored) << sh.new_len << " " << i;
        }
        int hits = 0;
        for (int i = 0; i < sh.new_n; ++i) hits += value(*st, "n" + std::to_string(i)) == v;
        StoreStats s = st->stats();
        EXPECT_GE(hits, sh.new_n * 9 / 10) << sh.old_len << " -> " << sh.new_len;
        EXPECT_GT(s.slabs_moved, moved) << sh.old_len << " -> " << sh.new_len;
        EXPECT_GT(s.slab_reassign_evictions_nomem, 0u) << sh.old_len << " -> " << sh.new_len;
        EXPECT_LE(s.malloc_bytes, c.max_bytes);
    }
}

// Two classes evicting items of about the same age keep their pages: memory moves only to a
// class whose victim is clearly younger than another's oldest item.
TEST_F(StoreTest, NoPageMovesBetweenEqualAges) {
    Config c;
    c.max_bytes = 4u << 20;
    auto st = make(c);
    for (int i = 0; i < 4000; ++i) {
        ASSERT_EQ(put(*st, "a" + std::to_string(i), std::string(1000, 'a')), StoreStatus::Stored);
        ASSERT_EQ(put(*st, "b" + std::to_string(i), std::string(3000, 'b')), StoreStatus::Stored);
    }
    uint64_t moved = st->stats().slabs_moved;
    for (int i = 4000; i < 8000; ++i) {
        ASSERT_EQ(put(*st, "a" + std::to_string(i), std::string(1000, 'a')), StoreStatus::Stored);
        ASSERT_EQ(put(*st, "b" + std::to_string(i), std::string(3000, 'b')), StoreStatus::Stored);
    }
    EXPECT_EQ(st->stats().slabs_moved, moved);
}

// Any mix of sizes under a full -m evicts and stores: values near the item limit after small
// ones filled the memory, small ones after large ones filled it, and back, with several
// writers at once.
TEST_F(StoreTest, EverySizeMixEvictsAndStores) {
    Config c;
    c.max_bytes = 48u << 20;
    auto st = make(c);
    const size_t sizes[] = {100, 570000, 100, 900000, 3000, 20000, 100, 900000, 48};
    int round = 0;
    for (size_t len : sizes) {
        std::vector<std::thread> threads;
        for (int t = 0; t < 3; ++t) {
            threads.emplace_back([&, t] {
                size_t n = std::min<size_t>(200000, (64u << 20) / (len + 64) / 3 + 1);
                for (size_t i = 0; i < n; ++i) {
                    std::string key = "r" + std::to_string(round) + "t" + std::to_string(t) + "k" +
                                      std::to_string(i);
                    ASSERT_EQ(put(*st, key, std::string(len, 'v')), StoreStatus::Stored)
                        << len << " " << i;
                }
            });
        }
        for (auto& th : threads) th.join();
        EXPECT_LE(st->stats().malloc_bytes, c.max_bytes) << len;
        ++round;
    }
}

// Items read since the CLOCK hand last passed get a second chance, but that must not make a
// store fail: with every large item read (more of them than one quick look covers) and no
// slab pages to empty, the hand goes round until it finds one.
TEST_F(StoreTest, ReadLargeItemsStillEvict) {
    Config c;
    c.max_bytes = 48u << 20;
    auto st = make(c);
    const std::pair<size_t, int> runs[] = {{570000, 100}, {900000, 60}, {100, 3000}, {570000, 100}};
    int round = 0;
    for (auto [len, n] : runs) {
        std::string v(len, static_cast<char>('a' + round));
        for (int i = 0; i < n; ++i) {
            std::string key = "r" + std::to_string(round) + "k" + std::to_string(i);
            ASSERT_EQ(put(*st, key, v), StoreStatus::Stored) << len << " " << i;
            ASSERT_EQ(value(*st, key), v) << len << " " << i;  // sets the access mark
        }
        EXPECT_LE(st->stats().malloc_bytes, c.max_bytes) << len;
        ++round;
    }
    StoreStats s = st->stats();
    EXPECT_GT(s.evictions, 0u);
    EXPECT_EQ(s.outofmemory, 0u);
    EXPECT_EQ(s.curr_items + s.evictions, 3260u);
}

// Deleting every item gives every page back.
TEST_F(StoreTest, EmptyPagesAreReleased) {
    auto st = make();
    for (int i = 0; i < 5000; ++i) put(*st, "k" + std::to_string(i), std::string(i % 700, 'z'));
    EXPECT_GT(st->stats().malloc_bytes, 0u);
    for (int i = 0; i < 5000; ++i) EXPECT_TRUE(st->remove("k" + std::to_string(i)));
    EXPECT_EQ(st->stats().malloc_bytes, 0u);
    for (auto& cls : st->class_stats()) EXPECT_EQ(cls.total_pages, 0u) << cls.id;
}

TEST_F(StoreTest, ResetStatsKeepsGauges) {
    auto st = make();
    put(*st, "a", "x");
    st->reset_stats();
    StoreStats s = st->stats();
    EXPECT_EQ(s.total_items, 0u);
    EXPECT_EQ(s.curr_items, 1u);
}

TEST_F(StoreTest, ConcurrentEvictionAcrossClasses) {
    Config c;
    c.max_bytes = 6 << 20;  // ~96 pages for ~75 classes in use: pages keep moving
    auto st = make(c);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 20000; ++i) {
                std::string key = "k" + std::to_string((i * 13 + t) % 5000);
                size_t len = (t == 3 && i % 50 == 0) ? 20000 : (i * 37 + t * 11) % 3000 + 1;
                if (i % 3 == 2) {
                    Lookup l = st->get(key);
                    if (l.item) {  // values are uniform, whatever their length
                        const char* v = l.item->value();
                        for (uint32_t k = 1; k < l.item->value_len(); ++k) ASSERT_EQ(v[k], v[0]);
                    }
                } else {
                    ASSERT_EQ(put(*st, key, std::string(len, 'a' + (i % 26))), StoreStatus::Stored);
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    StoreStats s = st->stats();
    EXPECT_LE(s.malloc_bytes, c.max_bytes);
    uint64_t counted = 0, used = 0;
    for (auto& cls : st->class_stats()) {
        counted += cls.number;
        used += cls.used_chunks;
    }
    EXPECT_EQ(counted, s.curr_items);
    EXPECT_EQ(used, s.curr_items);  // nothing leaked: every chunk in use is linked
}

TEST_F(StoreTest, ConcurrentMixedLoad) {
    Config c;
    c.max_bytes = 8 << 20;
    auto st = make(c);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> incrs{0};
    put(*st, "counter", "0");
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::string v(100 + t * 50, 'a' + t);
            for (int i = 0; i < 20000 && !stop; ++i) {
                std::string key = "k" + std::to_string((i * 7 + t) % 3000);
                switch (i % 6) {
                    case 0: (void)put(*st, key, v); break;
                    case 1: (void)st->get(key); break;
                    case 2: (void)st->remove(key); break;
                    case 3: (void)put(*st, key, "x", StoreOp::Append); break;
                    case 4: {
                        uint64_t out;
                        if (st->delta("counter", true, 1, &out) == DeltaStatus::Ok) ++incrs;
                        break;
                    }
                    case 5: (void)st->touch(key, 0); break;
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    uint64_t out = 0;
    ASSERT_EQ(st->delta("counter", true, 0, &out), DeltaStatus::Ok);
    EXPECT_EQ(out, incrs.load());  // no increment lost
    StoreStats s = st->stats();
    EXPECT_LE(s.malloc_bytes, c.max_bytes);
    uint64_t counted = 0;
    for (auto& cls : st->class_stats()) counted += cls.number;
    EXPECT_EQ(counted, s.curr_items);
}

// Managed mode: a bucket's items are visited and dropped through its one shard, and the
// per-bucket counts follow.
TEST_F(StoreTest, BucketsVisitDropAndCount) {
    Config c;
    c.nbuckets = 16;
    c.bucket_fn = &mcm::repl::bucket_of;
    auto st = make(c);
    std::map<uint32_t, std::set<std::string>> by_bucket;
    for (int i = 0; i < 400; ++i) {
        std::string k = "bk" + std::to_string(i);
        ASSERT_EQ(put(*st, k, "v"), StoreStatus::Stored);
        by_bucket[mcm::repl::bucket_of(k, 16)].insert(k);
    }
    auto counts = st->bucket_counts();
    for (auto& [b, keys] : by_bucket) {
        EXPECT_EQ(counts[b].items, keys.size()) << b;
        std::set<std::string> seen;
        st->visit_bucket(b, [&](const Item& it) { seen.insert(std::string(it.key())); });
        EXPECT_EQ(seen, keys) << b;
    }
    uint32_t b = by_bucket.begin()->first;
    EXPECT_EQ(st->drop_buckets(b, b), by_bucket[b].size());
    for (const std::string& k : by_bucket[b]) EXPECT_EQ(value(*st, k), "<miss>");
    EXPECT_EQ(st->bucket_counts()[b].items, 0u);
    EXPECT_EQ(st->stats().curr_items, 400 - by_bucket[b].size());
    EXPECT_EQ(st->drop_buckets(0, 15), 400 - by_bucket[b].size());
    EXPECT_EQ(st->stats().curr_items, 0u);
}

// A stepwise walk of a bucket (replication's backfill) while the bucket is written between
// steps and its shard's table doubles several times, some steps falling in the middle of a
// growth: every key that stays in the bucket throughout (written or not) is visited exactly
// once, no key twice, no key of another bucket, and the walk ends.
TEST_F(StoreTest, BucketWalkInStepsSurvivesWritesAndGrowth) {
    constexpr uint32_t kBuckets = 128;  // buckets b and b + 64 share shard b
    Config c;
    c.nbuckets = kBuckets;
    c.bucket_fn = &mcm::repl::bucket_of;
    c.hash_power = 6;  // 16 slots per shard at first
    auto st = make(c);
    const uint32_t b = 5;
    auto keys = [&](uint32_t bucket, const std::string& prefix, size_t n) {
        std::vector<std::string> out;
        for (int i = 0; out.size() < n; ++i) {
            std::string k = prefix + std::to_string(i);
            if (mcm::repl::bucket_of(k, kBuckets) == bucket) out.push_back(k);
        }
        return out;
    };
    const std::vector<std::string> stay = keys(b, "stay", 2000);
    const std::vector<std::string> gone = keys(b, "gone", 1000);
    const std::vector<std::string> fresh = keys(b, "new", 6000);
    const std::vector<std::string> other = keys(b + 64, "other", 6000);
    for (const std::string& k : stay) ASSERT_EQ(put(*st, k, "v"), StoreStatus::Stored);
    for (const std::string& k : gone) ASSERT_EQ(put(*st, k, "v"), StoreStatus::Stored);
    const uint64_t power_before = st->stats().hash_power_level;

    std::map<std::string, int> seen;
    BucketCursor cursor;
    size_t steps = 0, fresh_at = 0, other_at = 0, gone_at = 0, growing_steps = 0;
    while (!cursor.done) {
        {
            std::lock_guard<std::mutex> g(st->bucket_mutex(b));
            size_t n = st->visit_bucket_locked(b, &cursor, 40, UINT64_MAX, [&](const Item& it) {
                ++seen[std::string(it.key())];
            });
            EXPECT_LE(n, 40u + 16u);  // the range begun is finished: a few over
        }
        ++steps;
        if (st->stats().hash_is_expanding) ++growing_steps;
        // Between steps: new keys of the bucket and of its shard neighbour (the table grows),
        // deletions, updates (append, incr, set) and touches of keys that stay.
        for (int i = 0; i < 60 && fresh_at < fresh.size(); ++i) {
            ASSERT_EQ(put(*st, fresh[fresh_at++], "n"), StoreStatus::Stored);
        }
        for (int i = 0; i < 60 && other_at < other.size(); ++i) {
            ASSERT_EQ(put(*st, other[other_at++], "o"), StoreStatus::Stored);
        }
        for (int i = 0; i < 10 && gone_at < gone.size(); ++i) {
            EXPECT_TRUE(st->remove(gone[gone_at++]));
        }
        const std::string& k = stay[(steps * 37) % stay.size()];
        switch (steps % 4) {
            case 0: EXPECT_EQ(put(*st, k, "x", StoreOp::Append), StoreStatus::Stored); break;
            case 1: EXPECT_EQ(put(*st, k, "7"), StoreStatus::Stored); break;
            case 2: EXPECT_TRUE(st->touch(k, 1000)); break;
            case 3: EXPECT_EQ(put(*st, k, "long value " + std::to_string(steps)), StoreStatus::Stored);
        }
        ASSERT_LT(steps, 100000u) << "the walk does not end";
    }
    EXPECT_GE(st->stats().hash_power_level, power_before + 2) << "the table did not grow";
    EXPECT_GT(growing_steps, 0u) << "no step fell in a growth";
    EXPECT_GT(steps, 20u);
    for (const std::string& k : stay) EXPECT_EQ(seen[k], 1) << k;
    for (const auto& [k, count] : seen) {
        EXPECT_EQ(count, 1) << k;
        EXPECT_EQ(mcm::repl::bucket_of(k, kBuckets), b) << k;
    }

    // With no time at all a step still makes progress, and a quiet bucket is walked whole.
    seen.clear();
    BucketCursor quick;
    size_t total = 0;
    while (!quick.done) {
        std::lock_guard<std::mutex> g(st->bucket_mutex(b));
        total += st->visit_bucket_locked(b, &quick, 1, 0, [&](const Item& it) {
            ++seen[std::string(it.key())];
        });
    }
    EXPECT_EQ(total, st->bucket_counts()[b].items);
    EXPECT_EQ(seen.size(), total);
}

// Managed mode's replication hook: every write reports the resulting state with a per-bucket
// sequence number that grows by one per write of that bucket; evictions and lazy expiry are
// not reported; flush_all is a barrier in every bucket.
TEST_F(StoreTest, MutationStream) {
    struct Rec {
        MutationKind kind;
        uint32_t bucket;
        uint64_t seqno;
        std::string key, value;
        uint32_t flags;
        uint64_t cas;
        RelTime exptime;
        uint8_t iflags;
    };
    static std::vector<Rec>* recs;
    std::vector<Rec> got;
    recs = &got;
    Config c;
    c.nbuckets = 8;
    c.bucket_fn = &mcm::repl::bucket_of;
    c.on_mutation = [](void*, const Mutation& m) noexcept {
        recs->push_back({m.kind, m.bucket, m.seqno, std::string(m.key), std::string(m.value),
                         m.client_flags, m.cas, m.exptime, m.iflags});
    };
    auto st = make(c);
    uint64_t cas = 0;
    ASSERT_EQ(put(*st, "k", "hello", StoreOp::Set, 0, 7, 0, &cas), StoreStatus::Stored);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].kind, MutationKind::Set);
    EXPECT_EQ(got[0].value, "hello");
    EXPECT_EQ(got[0].flags, 7u);
    EXPECT_EQ(got[0].cas, cas);
    EXPECT_EQ(got[0].bucket, mcm::repl::bucket_of("k", 8));
    EXPECT_EQ(got[0].seqno, 1u);
    ASSERT_EQ(put(*st, "k", "!", StoreOp::Append), StoreStatus::Stored);
    EXPECT_EQ(got.back().value, "hello!");  // the state, not the command
    ASSERT_TRUE(st->touch("k", 500));
    EXPECT_EQ(got.back().kind, MutationKind::Touch);
    EXPECT_EQ(got.back().exptime, 500u);
    put(*st, "n", "10");
    uint64_t v = 0;
    ASSERT_EQ(st->delta("n", true, 5, &v), DeltaStatus::Ok);
    EXPECT_EQ(got.back().value, "15");
    ASSERT_EQ(st->delta("n", false, 10, &v), DeltaStatus::Ok);  // in place, padded
    EXPECT_EQ(got.back().value, "5 ");
    MetaDeleteArgs inval;
    inval.invalidate = true;
    ASSERT_EQ(st->meta_delete("k", inval), MetaDeleteStatus::Invalidated);
    EXPECT_EQ(got.back().kind, MutationKind::Set);
    EXPECT_TRUE(got.back().iflags & Item::kStale);
    ASSERT_TRUE(st->remove("k"));
    EXPECT_EQ(got.back().kind, MutationKind::Delete);
    EXPECT_EQ(got.back().key, "k");
    size_t before = got.size();
    EXPECT_FALSE(st->remove("k"));                      // nothing happened: nothing reported
    EXPECT_EQ(put(*st, "n", "x", StoreOp::Add), StoreStatus::NotStored);
    EXPECT_EQ(got.size(), before);
    st->flush(0);
    EXPECT_EQ(got.size(), before + 8);  // one barrier per bucket
    for (size_t i = before; i < got.size(); ++i) EXPECT_EQ(got[i].kind, MutationKind::Flush);
    // Per bucket, sequence numbers run 1, 2, 3 ... and match bucket_seqno.
    std::map<uint32_t, uint64_t> last;
    for (const Rec& r : got) {
        EXPECT_EQ(r.seqno, last[r.bucket] + 1) << r.bucket;
        last[r.bucket] = r.seqno;
    }
    for (auto& [b, seq] : last) EXPECT_EQ(st->bucket_seqno(b), seq);
    // Evictions are not reported.
    Config small = c;
    small.max_bytes = 1 << 20;
    got.clear();
    auto st2 = make(small);
    for (int i = 0; i < 3000; ++i) put(*st2, "e" + std::to_string(i), std::string(1000, 'x'));
    ASSERT_GT(st2->stats().evictions, 0u);
    size_t deletes = 0;
    for (const Rec& r : got) deletes += r.kind == MutationKind::Delete;
    EXPECT_EQ(deletes, 0u);
    EXPECT_EQ(got.size(), 3000u);
}
