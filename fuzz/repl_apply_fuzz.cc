// libFuzzer target: the replica's decode-and-apply path (replication/links.cc on_frame ->
// replication/applier.cc) without sockets: a stream of frames; Record frames are decoded and
// applied to a real Store, Stream frames with the backfill flag drop the bucket and reset the
// applier, as a link does. 16 buckets. The first byte: whether records keep the bucket they
// name (bit 7) or get their key's bucket, as an honest active sends them (a fuzzer cannot forge CRC-32s; a record that names another bucket than its key's must be
// refused, Applied::Misfiled, as it once was filed under the wrong bucket).
// Checks, against a model of what the replica must hold:
//   - an applied Set leaves the item with the record's value, flags and CAS unique; a Delete
//     removes it; an immediate Flush empties the bucket; a duplicate changes nothing;
//   - the applier's sequence number per bucket is the last record applied;
//   - the store's per-bucket item counts agree with a walk of each bucket.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "replication/applier.h"
#include "replication/bucket_map.h"
#include "replication/record.h"
#include "replication/stream.h"
#include "server/store/store.h"

using namespace mcm;
using namespace mcm::repl;

namespace {

constexpr int64_t kStart = 1'700'000'000;
constexpr uint32_t kBuckets = 16;

struct Expect {
    std::string value;
    uint32_t flags = 0;
    uint64_t cas = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const bool raw_buckets = (data[0] & 0x80) != 0;
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

    // One store for the whole run, emptied before each input: a new one per input costs its
    // slab pages and tables (under ASan, 20 inputs a second instead of thousands).
    static store::Clock clock(kStart);
    static store::Store* const shared = [] {
        clock.set_now(1000);
        store::Config cfg;
        cfg.max_bytes = 16 * 1024 * 1024;
        cfg.hash_power = 10;
        cfg.nbuckets = kBuckets;
        cfg.bucket_fn = &bucket_of;
        return new store::Store(cfg, clock);
    }();
    store::Store& st = *shared;
    (void)st.drop_buckets(0, kBuckets - 1);
    const uint32_t nbuckets = kBuckets;
    Applier applier(st, clock, nbuckets);
    // Per key: what it must hold (nullopt: absent); keys whose state the model cannot tell
    // (an exptime, a delayed flush, a record filed under another bucket) are left out.
    std::map<std::string, std::optional<Expect>, std::less<>> model;
    bool any_exptime = false;  // expired items count in a bucket but a walk skips them

    for (int n = 0; n < 100000; ++n) {
        FrameType t;
        std::string_view payload;
        const size_t used = next_frame(in, &t, &payload);
        if (used == 0 || used == SIZE_MAX) break;
        in.remove_prefix(used);
        if (t == FrameType::Stream) {
            StreamMsg m;
            if (!parse_stream(payload, &m) || m.bucket >= nbuckets) break;
            if (m.backfill) {
                (void)st.drop_buckets(m.bucket, m.bucket);
                applier.reset(m.bucket, m.seqno);
                if (applier.applied_seqno(m.bucket) != m.seqno) std::abort();
                for (auto& [k, v] : model) {
                    if (bucket_of(k, nbuckets) == m.bucket) v.reset();
                }
            }
            continue;
        }
        if (t != FrameType::Record) continue;
        RecordView view;
        if (!decode_whole(payload, &view)) break;  // the link closes
        Record rec;
        if (decode(payload, &rec) != payload.size()) std::abort();
        const bool honest = !raw_buckets;
        if (honest) rec.bucket = bucket_of(rec.key, nbuckets);
        if (rec.bucket >= nbuckets) break;  // the link closes too
        const bool filed_right = rec.bucket == bucket_of(rec.key, nbuckets);
        any_exptime = any_exptime || rec.exptime_unix != 0;
        const uint64_t before = applier.applied_seqno(rec.bucket);
        const Applied a = applier.apply(rec);
        if (rec.seqno != 0 && rec.seqno <= before) {
            if (a != Applied::Duplicate || applier.applied_seqno(rec.bucket) != before) {
                std::abort();
            }
            continue;
        }
        if (a == Applied::Duplicate) std::abort();
        if (!filed_right && rec.kind != RecordKind::Flush) {
            // Refused whole: the link closes.
            if (a != Applied::Misfiled || applier.applied_seqno(rec.bucket) != before) std::abort();
            break;
        }
        if (a == Applied::Misfiled) std::abort();
        if (a == Applied::NoMemory) {
            if (rec.kind != RecordKind::Set) std::abort();
            if (applier.applied_seqno(rec.bucket) != before) std::abort();
            continue;
        }
        if (applier.applied_seqno(rec.bucket) != (rec.seqno != 0 ? rec.seqno : before)) {
            std::abort();
        }
        switch (rec.kind) {
            case RecordKind::Set:
                if (!filed_right || rec.exptime_unix != 0) {
                    model.erase(rec.key);
                } else {
                    model[rec.key] = Expect{rec.value, rec.flags, rec.cas};
                }
                break;
            case RecordKind::Touch:
                if (rec.exptime_unix != 0 || !filed_right) model.erase(rec.key);
                break;
            case RecordKind::Delete:
                if (filed_right) {
                    model[rec.key] = std::nullopt;
                } else {
                    model.erase(rec.key);
                }
                break;
            case RecordKind::Flush:
                if (rec.flush_delay > 0) {
                    // Runs later: whatever the bucket holds now may go.
                    for (auto it = model.begin(); it != model.end();) {
                        it = bucket_of(it->first, nbuckets) == rec.bucket ? model.erase(it)
                                                                           : std::next(it);
                    }
                } else {
                    for (auto& [k, v] : model) {
                        if (bucket_of(k, nbuckets) == rec.bucket) v.reset();
                    }
                }
                break;
        }
    }
    for (const auto& [k, want] : model) {
        store::Lookup l = st.peek(k);
        if (!want) {
            if (l.item) std::abort();
            continue;
        }
        if (!l.item) std::abort();
        const store::Item* it = l.item.get();
        if (std::string_view(it->value(), it->value_len()) != want->value ||
            it->client_flags != want->flags || (want->cas != 0 && it->cas != want->cas)) {
            std::abort();
        }
    }
    std::vector<store::BucketCounts> counts = st.bucket_counts();
    for (uint32_t b = 0; b < nbuckets; ++b) {
        size_t seen = st.visit_bucket(b, [](const store::Item&) {});
        if (!any_exptime && b < counts.size() && counts[b].items != seen) std::abort();
    }
    return 0;
}
