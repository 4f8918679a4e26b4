#include "replication/applier.h"

#include <cstring>

namespace mcm::repl {

Record from_mutation(const store::Mutation& m, const store::Clock& clock) {
    Record r;
    switch (m.kind) {
        case store::MutationKind::Set: r.kind = RecordKind::Set; break;
        case store::MutationKind::Touch: r.kind = RecordKind::Touch; break;
        case store::MutationKind::Delete: r.kind = RecordKind::Delete; break;
        case store::MutationKind::Flush: r.kind = RecordKind::Flush; break;
    }
    r.bucket = m.bucket;
    r.seqno = m.seqno;
    r.cas = m.cas;
    r.flags = m.client_flags;
    r.exptime_unix = m.exptime == 0 ? 0 : clock.process_started() + m.exptime;
    if (m.iflags & store::Item::kStale) r.marks |= kMarkStale;
    if (m.iflags & store::Item::kKeyBinary) r.marks |= kMarkBinaryKey;
    r.flush_delay = m.flush_delay;
    r.key.assign(m.key);
    r.value.assign(m.value);
    return r;
}

Applied Applier::apply(const Record& r) {
    if (r.bucket < applied_.size() && r.seqno != 0 && r.seqno <= applied_[r.bucket]) {
        return Applied::Duplicate;
    }
    // An absolute exptime already past reads as expired at once, as memcached's realtime()
    // makes it.
    store::RelTime exp = r.exptime_unix == 0 ? 0 : clock_.realtime(r.exptime_unix);
    switch (r.kind) {
        case RecordKind::Set: {
            store::ItemRef item;
            if (st_.alloc(r.key, r.flags, exp, static_cast<uint32_t>(r.value.size()), &item) !=
                store::AllocStatus::Ok) {
                return Applied::NoMemory;
            }
            std::memcpy(item->value(), r.value.data(), r.value.size());
            std::memcpy(item->value() + r.value.size(), "\r\n", 2);
            if (r.marks & kMarkStale) item->set(store::Item::kStale);
            if (r.marks & kMarkBinaryKey) item->set(store::Item::kKeyBinary);
            store::StoreExtra keep_cas;  // the replica's unique is the active's
            keep_cas.new_cas = r.cas;
            (void)st_.store(item, store::StoreOp::Set, 0, nullptr, &keep_cas);
            st_.observe_cas(r.cas);
            break;
        }
        case RecordKind::Touch: (void)st_.touch(r.key, exp); break;
        case RecordKind::Delete: (void)st_.remove(r.key); break;
        case RecordKind::Flush:
            // Every item of the bucket here was written before the barrier (records arrive in
            // the bucket's order), so an immediate flush empties the bucket.
            if (r.flush_delay > 0) return Applied::Unsupported;
            (void)st_.drop_buckets(r.bucket, r.bucket);
            break;
    }
    if (r.bucket < applied_.size()) applied_[r.bucket] = r.seqno;
    return Applied::Done;
}

}  // namespace mcm::repl
