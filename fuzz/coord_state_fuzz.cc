// libFuzzer target: the coordinator's state file (coordinator/state.cc,
// FileStateStore::from_json), which it reads at every start.
// Checks on a state that loads:
//   - to_json() of it loads again to an equal State (operator==), and to_json() of that is
//     the same text: no field is lost, renamed or reinterpreted on the way through a save;
//   - the map text it carries either parses as a bucket map or not, but without crashing
//     (the coordinator parses it next, coordinator.cc);
//   - a state that does not load says why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "coordinator/state.h"
#include "replication/bucket_map.h"

using namespace mcm::coord;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    State s;
    std::string err;
    if (!FileStateStore::from_json(text, &s, &err)) {
        if (err.empty()) std::abort();
        return 0;
    }
    const std::string j1 = FileStateStore::to_json(s);
    State s2;
    std::string err2;
    if (!FileStateStore::from_json(j1, &s2, &err2)) std::abort();
    if (!(s == s2)) std::abort();
    if (FileStateStore::to_json(s2) != j1) std::abort();
    mcm::repl::BucketMap m;
    (void)mcm::repl::BucketMap::parse(s.map_text, &m, &err);
    return 0;
}
