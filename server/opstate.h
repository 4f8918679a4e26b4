// Run-time switches operators flip with text commands (lru_crawler, slabs automove, stats
// sizes_*): process-wide, read and written with relaxed atomics.
#pragma once

#include <atomic>
#include <cstdint>

namespace mcm::server::ops {

inline std::atomic<bool> crawler_enabled{true};       // lru_crawler enable|disable
inline std::atomic<uint32_t> crawler_sleep{100};      // lru_crawler sleep <us> (recorded)
inline std::atomic<uint32_t> crawler_tocrawl{0};      // lru_crawler tocrawl <n> (recorded)
inline std::atomic<int> slab_automove{1};             // slabs automove <0|1|2> (recorded)
inline std::atomic<bool> sizes_enabled{false};        // stats sizes_enable|sizes_disable

}  // namespace mcm::server::ops
