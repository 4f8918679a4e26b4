// libFuzzer target: the replication stream as a link reads it (replication/links.cc,
// read_frames and on_frame): frames one after another, each payload through the parser its
// type names. The first byte is the bucket count the reader has (1..256); the rest is the
// stream.
// Checks:
//   - next_frame never reads past its input, and a frame cut short reads as "need more" (0);
//   - every payload a parser accepts frames again to the very same bytes (encode(decode(x))
//     == x), records included (encode_header/encode), so no field is dropped or widened;
//   - Ack entries come out in order and whole;
//   - records appended to a Backlog (as an active keeps them for reconnecting replicas) come
//     back out of copy_since() byte for byte, however the ring wrapped or evicted.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "replication/hints.h"
#include "replication/record.h"
#include "replication/stream.h"

using namespace mcm::repl;

namespace {

void check_equal(std::string_view framed, std::string_view original) {
    if (framed != original) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint32_t nbuckets = 1 + data[0];
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    // A small byte budget, so that eviction and wrapping happen with small inputs.
    Backlog backlog(64 + 16 * (data[0] & 0x1f));
    std::vector<std::string> kept;  // the record frames appended, in order
    uint64_t seq = 0;
    for (int n = 0; n < 100000; ++n) {
        FrameType t;
        std::string_view payload;
        const size_t used = next_frame(in, &t, &payload);
        if (used == 0) break;  // needs more bytes: the link waits
        if (used == SIZE_MAX) break;  // the link closes ("bad frames")
        if (used > in.size() || used < kFrameHeader) std::abort();
        if (payload.data() != in.data() + kFrameHeader || payload.size() != used - kFrameHeader) {
            std::abort();
        }
        {  // any proper prefix of a frame is "need more"
            FrameType t2;
            std::string_view p2;
            if (next_frame(in.substr(0, used - 1), &t2, &p2) != 0) std::abort();
        }
        const std::string_view frame = in.substr(0, used);
        std::string out;
        bool close = false;  // what on_frame's "return false" would do
        switch (t) {
            case FrameType::Hello: {
                std::string name, proof;
                if (parse_hello(payload, &name, &proof)) {
                    frame_hello(&out, name, proof);
                    check_equal(out, frame);
                }
                break;
            }
            case FrameType::Record: {
                RecordView rv;
                const size_t r = decode(payload, &rv);
                RecordView whole;
                const bool ok = decode_whole(payload, &whole);
                if (ok != (r != 0 && r == payload.size())) std::abort();
                if (!ok || rv.bucket >= nbuckets) {  // as links.cc: the link closes
                    close = true;
                    break;
                }
                if (rv.key.size() > 250) std::abort();
                Record rec;
                if (decode(payload, &rec) != r || rec.key != rv.key || rec.value != rv.value ||
                    rec.seqno != rv.seqno || rec.cas != rv.cas) {
                    std::abort();
                }
                out.resize(kFrameHeader);
                put_frame_header(out.data(), FrameType::Record, kRecordHeader + rec.key.size() +
                                                                    rec.value.size());
                encode(rec, &out);
                check_equal(out, frame);
                // Kept as the active keeps it: header, key and value in three parts.
                char h[kRecordHeader];
                encode_header(rv, rv.key.size(), rv.value.size(), h);
                backlog.append(++seq, 0, {std::string_view(h, kRecordHeader), rv.key, rv.value});
                kept.emplace_back(payload);
                break;
            }
            case FrameType::Sub: {
                SubMsg m;
                if (!parse_sub(payload, &m) || m.bucket >= nbuckets) {
                    close = true;
                    break;
                }
                frame_sub(&out, m);
                check_equal(out, frame);
                break;
            }
            case FrameType::Unsub:
            case FrameType::NotActive: {
                uint32_t b;
                if (!parse_bucket(payload, &b) || b >= nbuckets) {
                    close = true;
                    break;
                }
                frame_bucket(&out, t, b);
                check_equal(out, frame);
                break;
            }
            case FrameType::Stream: {
                StreamMsg m;
                if (!parse_stream(payload, &m) || m.bucket >= nbuckets) {
                    close = true;
                    break;
                }
                frame_stream(&out, m);
                // The backfill flag is any non-zero byte; it frames again as 1.
                std::string want(frame);
                if (want.back() != 0) want.back() = 1;
                check_equal(out, want);
                break;
            }
            case FrameType::BackfillEnd: {
                BackfillEndMsg m;
                if (!parse_backfill_end(payload, &m) || m.bucket >= nbuckets) {
                    close = true;
                    break;
                }
                frame_backfill_end(&out, m);
                check_equal(out, frame);
                break;
            }
            case FrameType::Ack: {
                std::string again;
                size_t entries = 0;
                const bool ok = parse_ack(payload, [&](uint32_t b, uint64_t s) {
                    if (b >= nbuckets) return false;
                    ack_add(&again, b, s);
                    ++entries;
                    return true;
                });
                if (!ok) {
                    if (payload.size() % 12 == 0 && entries == payload.size() / 12) std::abort();
                    close = true;
                    break;
                }
                if (entries != payload.size() / 12) std::abort();
                frame_ack(&out, again);
                check_equal(out, frame);
                break;
            }
            case FrameType::Ping:
            case FrameType::Pong: {
                uint64_t v;
                if (!parse_u64(payload, &v)) {
                    close = true;
                    break;
                }
                frame_u64(&out, t, v);
                check_equal(out, frame);
                break;
            }
            case FrameType::Coord: {
                CoordMsg m;
                if (!parse_coord(payload, &m)) {
                    close = true;
                    break;
                }
                frame_coord(&out, m);
                check_equal(out, frame);
                break;
            }
            case FrameType::Hints: {
                std::vector<uint64_t> hashes;
                if (!parse_hints(payload, &hashes)) {
                    close = true;
                    break;
                }
                if (hashes.size() != payload.size() / 8) std::abort();
                frame_hints(&out, hashes.data(), hashes.size());
                check_equal(out, frame);
                break;
            }
            default: break;  // unknown types are skipped
        }
        if (close) break;
        in.remove_prefix(used);
    }
    // The backlog gives back what it still holds, byte for byte and in order.
    if (backlog.records() > kept.size()) std::abort();
    for (uint64_t after = 0; after <= seq; ++after) {
        std::string got;
        size_t records = 0;
        if (!backlog.copy_since(after, &got, &records)) {
            if (backlog.holds_after(after)) std::abort();
            continue;
        }
        if (records != seq - after) std::abort();
        std::string want;
        for (uint64_t s = after + 1; s <= seq; ++s) want += kept[s - 1];
        if (got != want) std::abort();
        // And every record in it decodes whole.
        std::string_view rest(got);
        size_t count = 0;
        while (!rest.empty()) {
            RecordView rv;
            const size_t r = decode(rest, &rv);
            if (r == 0 || r == SIZE_MAX) std::abort();
            rest.remove_prefix(r);
            ++count;
        }
        if (count != records) std::abort();
    }
    return 0;
}
