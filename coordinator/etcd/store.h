// The coordinator's state in etcd (doc/coordinator.md, "State in etcd"): the same JSON
// document as the state file under PREFIX/state, the epoch alone under PREFIX/epoch. Every
// write is one transaction that holds only while this coordinator's lease still owns
// PREFIX/leader and nobody has written the state since this store last read or wrote it:
// a deposed leader's write fails, and no epoch is written twice or goes backwards.
#pragma once

#include <cstdint>
#include <string>

#include "coordinator/etcd/client.h"
#include "coordinator/etcd/election.h"
#include "coordinator/state.h"

namespace mcm::coord::etcd {

class EtcdStateStore : public StateStore {
public:
    // Writes while `lead` says this process leads, and only while `lease` (the one it was
    // elected with) still owns PREFIX/leader in etcd.
    EtcdStateStore(const Url& url, const Leadership* lead, int64_t lease);
    Load load(State* out, std::string* err) override;
    bool save(const State& s, std::string* err) override;
    std::string where() const override { return "etcd " + prefix_; }
    // A write was refused by etcd's comparison (not a transport error): another coordinator
    // leads, or wrote the state.
    bool fenced() const { return fenced_; }
    // The last load could not reach etcd (rather than finding something wrong there).
    bool unreachable() const { return unreachable_; }

private:
    Client client_;
    std::string prefix_;
    const Leadership* lead_;
    int64_t lease_;
    int64_t mod_revision_ = 0;  // of PREFIX/state as last read or written (0: absent)
    uint64_t epoch_ = 0;        // as last read or written
    bool fenced_ = false;
    bool unreachable_ = false;
};

}  // namespace mcm::coord::etcd
