// Whether this coordinator process may act: decide, write the state, and talk to servers.
// With the file backend it always may (one coordinator); with etcd only while it holds the
// leader key under a live lease (coordinator/etcd/election.h). Read from the loop thread.
#pragma once

#include <cstdint>

namespace mcm::coord {

class Leadership {
public:
    virtual ~Leadership() = default;
    // True while this process leads, by its own monotonic clock (now_ms: mono_ms()). The
    // answer turns false before etcd can let another coordinator lead.
    virtual bool leading(int64_t now_ms) const = 0;
    // The mono_ms() at which leading() turns false unless renewed (0: not leading).
    virtual int64_t lead_until_ms() const = 0;
};

}  // namespace mcm::coord
