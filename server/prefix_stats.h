// `stats detail on|off|dump`: per key-prefix counters (the prefix is the key up to the first
// ':'), as memcached keeps them. Off by default; when off the request path pays one relaxed
// load. When on, every recorded command takes one mutex: it is a debugging aid, as upstream.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mcm::server {

class PrefixStats {
public:
    bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }
    void set_enabled(bool on) noexcept { enabled_.store(on, std::memory_order_relaxed); }

    void record_get(std::string_view key, bool hit);
    void record_set(std::string_view key);
    void record_delete(std::string_view key);
    // "PREFIX <p> get <n> hit <n> set <n> del <n>\r\n" lines, then "END\r\n".
    std::string dump();
    // `stats reset` forgets every prefix, as memcached's stats_prefix_clear does.
    void clear();

    void set_delimiter(char d) noexcept { delimiter_ = d; }  // startup only

private:
    struct Counts {
        uint64_t gets = 0, hits = 0, sets = 0, deletes = 0;
    };
    Counts* find(std::string_view key);  // null if the key has no delimiter; mu_ held

    std::atomic<bool> enabled_{false};
    char delimiter_ = ':';
    std::mutex mu_;
    std::unordered_map<std::string, Counts> prefixes_;
};

}  // namespace mcm::server
