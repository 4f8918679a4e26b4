#include "coordinator/etcd/store.h"

#include <algorithm>

#include "coordinator/clock.h"
#include "coordinator/log.h"

namespace mcm::coord::etcd {

namespace {
constexpr int64_t kWriteTimeoutMs = 1000;
}

EtcdStateStore::EtcdStateStore(const Url& url, const Leadership* lead, int64_t lease)
    : client_(url.endpoints, kWriteTimeoutMs, url.tls), prefix_(url.prefix), lead_(lead), lease_(lease) {}

StateStore::Load EtcdStateStore::load(State* out, std::string* err) {
    std::optional<KeyValue> kv;
    client_.set_timeout(kWriteTimeoutMs);
    unreachable_ = false;
    if (!client_.get(state_key(prefix_), &kv, err)) {
        unreachable_ = true;
        *err = "cannot read " + state_key(prefix_) + " from etcd: " + *err;
        return Load::Error;
    }
    if (!kv) {
        mod_revision_ = 0;
        return Load::Missing;
    }
    if (!FileStateStore::from_json(kv->value, out, err)) {
        *err = "etcd key " + state_key(prefix_) + " is corrupt: " + *err;
        return Load::Error;
    }
    mod_revision_ = kv->mod_revision;
    epoch_ = out->epoch;
    return Load::Ok;
}

bool EtcdStateStore::save(const State& s, std::string* err) {
    const int64_t now = mono_ms();
    if (!lead_->leading(now)) {
        *err = "not the leader any more: the state is not written";
        fenced_ = true;
        return false;
    }
    if (s.epoch < epoch_) {  // never: the coordinator only raises it
        *err = "epoch " + std::to_string(s.epoch) + " is below the stored " +
               std::to_string(epoch_);
        return false;
    }
    // No longer than the leadership lasts by our clock: etcd's comparison fences us anyway,
    // but a write that hangs must not hold the loop past it.
    client_.set_timeout(std::clamp<int64_t>(lead_->lead_until_ms() - now, 1, kWriteTimeoutMs));
    Txn t;
    t.if_lease(leader_key(prefix_), lease_)
        .if_mod_revision(state_key(prefix_), mod_revision_)
        .put(state_key(prefix_), FileStateStore::to_json(s))
        .put(epoch_key(prefix_), std::to_string(s.epoch))
        .otherwise()
        .get(leader_key(prefix_))
        .get(state_key(prefix_));
    TxnResult r;
    if (!client_.txn(t, &r, err)) {
        *err = "etcd: " + *err;
        return false;
    }
    if (!r.succeeded) {
        fenced_ = true;
        bool ours = r.gets.size() == 2 && r.gets[0] && r.gets[0]->lease == lease_;
        *err = ours ? "fenced: the state in etcd was written by someone else since we read it"
                    : "fenced: this coordinator no longer holds the leader key";
        return false;
    }
    mod_revision_ = r.revision;
    epoch_ = s.epoch;
    return true;
}

}  // namespace mcm::coord::etcd
