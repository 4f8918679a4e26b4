#include "replication/applier.h"

#include <cstring>

#include "replication/bucket_map.h"
#include "replication/stream.h"

namespace mcm::repl {

namespace {

RecordKind kind_of(store::MutationKind k) noexcept {
    switch (k) {
        case store::MutationKind::Set: return RecordKind::Set;
        case store::MutationKind::Touch: return RecordKind::Touch;
        case store::MutationKind::Delete: return RecordKind::Delete;
        case store::MutationKind::Flush: return RecordKind::Flush;
    }
    return RecordKind::Set;
}

// flush_all's delay as the unix time the flush takes effect (0: at once), with memcached's
// exptime rules (relative up to 30 days, absolute above).
int64_t flush_time(const store::Mutation& m, const store::Clock& clock) noexcept {
    if (m.kind != store::MutationKind::Flush || m.flush_delay <= 0) return 0;
    return clock.process_started() + clock.realtime(m.flush_delay);
}

// The record's header fields (not its key and value) for a mutation.
RecordHead header_of(const store::Mutation& m, const store::Clock& clock) {
    RecordHead r;
    r.kind = kind_of(m.kind);
    r.bucket = m.bucket;
    r.seqno = m.seqno;
    r.cas = m.cas;
    r.flags = m.client_flags;
    r.exptime_unix = m.exptime == 0 ? 0 : clock.process_started() + m.exptime;
    if (m.iflags & store::Item::kStale) r.marks |= kMarkStale;
    if (m.iflags & store::Item::kKeyBinary) r.marks |= kMarkBinaryKey;
    r.flush_delay = flush_time(m, clock);
    return r;
}

}  // namespace

Record from_mutation(const store::Mutation& m, const store::Clock& clock) {
    Record r;
    static_cast<RecordHead&>(r) = header_of(m, clock);
    r.key.assign(m.key);
    r.value.assign(m.value);
    return r;
}

void frame_header(const store::Mutation& m, const store::Clock& clock, char* h) {
    const RecordHead r = header_of(m, clock);  // key and value go straight from the mutation
    put_frame_header(h, FrameType::Record, kRecordHeader + m.key.size() + m.value.size());
    encode_header(r, m.key.size(), m.value.size(), h + kFrameHeader);
}

void frame_mutation(const store::Mutation& m, const store::Clock& clock, std::string* out) {
    char h[kMutationFrameHeader];
    frame_header(m, clock, h);
    out->reserve(out->size() + sizeof h + m.key.size() + m.value.size());
    out->append(h, sizeof h);
    out->append(m.key);
    out->append(m.value);
}

void frame_item(const store::Item& it, uint32_t bucket, const store::Clock& clock,
                std::string* out) {
    store::Mutation m;
    m.kind = store::MutationKind::Set;
    m.bucket = bucket;
    m.seqno = 0;
    m.key = it.key();
    m.client_flags = it.client_flags;
    m.exptime = it.exptime;
    m.cas = it.cas;
    m.value = std::string_view(it.value(), it.nbytes - 2);
    m.iflags = it.iflags.load(std::memory_order_relaxed);
    frame_mutation(m, clock, out);
}

Applied Applier::apply(const Record& r) {
    RecordView v;
    static_cast<RecordHead&>(v) = r;
    v.key = r.key;
    v.value = r.value;
    return apply(v);
}

Applied Applier::apply(const RecordView& r) {
    const bool in_range = r.bucket < applied_.size();
    if (in_range && r.seqno != 0 && r.seqno <= applied_[r.bucket]) {
        return Applied::Duplicate;
    }
    // The store files the item under the bucket the record names (bucket_hint): one that is
    // not the key's bucket would be counted in the wrong bucket and not found by its key.
    // An honest active never sends one (found by fuzz/repl_apply_fuzz with forged buckets).
    if (in_range && r.kind != RecordKind::Flush &&
        bucket_of(r.key, static_cast<uint32_t>(applied_.size())) != r.bucket) {
        return Applied::Misfiled;
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
            // The record names the bucket: the store need not compute it from the key again.
            const std::string_view key = item->key();
            if (in_range) store::bucket_hint = {key.data(), key.size(), r.bucket};
            std::memcpy(item->value(), r.value.data(), r.value.size());
            std::memcpy(item->value() + r.value.size(), "\r\n", 2);
            if (r.marks & kMarkStale) item->set(store::Item::kStale);
            if (r.marks & kMarkBinaryKey) item->set(store::Item::kKeyBinary);
            store::StoreExtra keep_cas;  // the replica's unique is the active's
            keep_cas.new_cas = r.cas;
            (void)st_.store(item, store::StoreOp::Set, 0, nullptr, &keep_cas);
            store::bucket_hint = {};
            st_.observe_cas(r.cas);
            break;
        }
        case RecordKind::Touch:
            if (in_range) store::bucket_hint = {r.key.data(), r.key.size(), r.bucket};
            (void)st_.touch(r.key, exp);
            store::bucket_hint = {};
            break;
        case RecordKind::Delete:
            if (in_range) store::bucket_hint = {r.key.data(), r.key.size(), r.bucket};
            (void)st_.remove(r.key);
            store::bucket_hint = {};
            break;
        case RecordKind::Flush:
            // Every item of the bucket here was written before the barrier (records arrive in
            // the bucket's order), so an immediate flush empties the bucket. A delayed one
            // empties it when its time comes (run_due_flushes), as memcached invalidates
            // everything written before the flush point.
            if (r.flush_delay > 0 && in_range) {
                flush_at_[r.bucket] = r.flush_delay;
                any_flush_due_ = true;
                break;
            }
            if (in_range) flush_at_[r.bucket] = 0;
            (void)st_.drop_buckets(r.bucket, r.bucket);
            break;
    }
    if (in_range && r.seqno != 0) applied_[r.bucket] = r.seqno;
    return Applied::Done;
}

void Applier::reset(uint32_t bucket, uint64_t seqno) noexcept {
    if (bucket >= applied_.size()) return;
    applied_[bucket] = seqno;
    flush_at_[bucket] = 0;
}

size_t Applier::run_due_flushes(int64_t now_unix) noexcept {
    size_t n = 0;
    if (!any_flush_due_) return 0;  // the usual case: no delayed flush anywhere
    bool left = false;
    for (uint32_t b = 0; b < flush_at_.size(); ++b) {
        left = left || flush_at_[b] > now_unix;
        if (flush_at_[b] != 0 && flush_at_[b] <= now_unix) {
            flush_at_[b] = 0;
            (void)st_.drop_buckets(b, b);
            ++n;
        }
    }
    any_flush_due_ = left;
    return n;
}

}  // namespace mcm::repl
