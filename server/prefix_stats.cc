// Per-prefix command counters for `stats detail`.
#include "server/prefix_stats.h"

#include <cinttypes>
#include <cstdio>

namespace mcm::server {

PrefixStats::Counts* PrefixStats::find(std::string_view key) {
    size_t d = key.find(delimiter_);
    if (d == std::string_view::npos) return nullptr;
    return &prefixes_[std::string(key.substr(0, d))];
}

void PrefixStats::record_get(std::string_view key, bool hit) {
    std::lock_guard<std::mutex> g(mu_);
    if (Counts* c = find(key)) {
        ++c->gets;
        if (hit) ++c->hits;
    }
}

void PrefixStats::record_set(std::string_view key) {
    std::lock_guard<std::mutex> g(mu_);
    if (Counts* c = find(key)) ++c->sets;
}

void PrefixStats::record_delete(std::string_view key) {
    std::lock_guard<std::mutex> g(mu_);
    if (Counts* c = find(key)) ++c->deletes;
}

std::string PrefixStats::dump() {
    std::string out;
    std::lock_guard<std::mutex> g(mu_);
    char line[128];
    for (const auto& [prefix, c] : prefixes_) {
        out += "PREFIX ";
        out += prefix;
        snprintf(line, sizeof(line),
                 " get %" PRIu64 " hit %" PRIu64 " set %" PRIu64 " del %" PRIu64 "\r\n", c.gets,
                 c.hits, c.sets, c.deletes);
        out += line;
    }
    out += "END\r\n";
    return out;
}

void PrefixStats::clear() {
    std::lock_guard<std::mutex> g(mu_);
    prefixes_.clear();
}

}  // namespace mcm::server
