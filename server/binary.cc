// The binary protocol (deprecated by memcached since 1.6, still served by 1.6.18): every
// opcode memcached answers, with its status codes, error texts, quiet variants and framing
// rules. Malformed requests get memcached's reply: "Invalid arguments" and a hang-up.
#include <cstring>

#include "config.h"
#include "proto/binary.h"
#include "proto/errors.h"
#include "server/dispatch.h"
#include "server/log.h"
#include "server/stats.h"
#include "server/textfmt.h"

namespace mcm::server {

namespace bin = proto::bin;
using bin::BinRequest;

namespace {

// Header, then extras, key and body copied into the text buffer.
void respond(OutBuf& out, const BinRequest& r, uint16_t status, std::string_view ext,
             std::string_view key, std::string_view body, uint64_t cas) {
    size_t total = bin::kHeaderLen + ext.size() + key.size() + body.size();
    char* p = out.reserve(total);
    bin::write_header(p, r.opcode, status, static_cast<uint8_t>(ext.size()),
                      static_cast<uint16_t>(key.size()),
                      static_cast<uint32_t>(ext.size() + key.size() + body.size()), r.opaque,
                      cas);
    char* q = p + bin::kHeaderLen;
    // (an empty view may have no buffer at all: memcpy must not see it)
    if (!ext.empty()) std::memcpy(q, ext.data(), ext.size());
    if (!key.empty()) std::memcpy(q + ext.size(), key.data(), key.size());
    if (!body.empty()) std::memcpy(q + ext.size() + key.size(), body.data(), body.size());
    out.commit(total);
}

void error(OutBuf& out, const BinRequest& r, uint16_t status) {
    respond(out, r, status, {}, {}, bin::status_text(status), 0);
}

// memcached's quiet opcodes and the loud ones they stand for.
uint8_t loud(uint8_t op, bool* quiet) noexcept {
    *quiet = true;
    switch (op) {
        case bin::SetQ: return bin::Set;
        case bin::AddQ: return bin::Add;
        case bin::ReplaceQ: return bin::Replace;
        case bin::DeleteQ: return bin::Delete;
        case bin::IncrementQ: return bin::Increment;
        case bin::DecrementQ: return bin::Decrement;
        case bin::QuitQ: return bin::Quit;
        case bin::FlushQ: return bin::Flush;
        case bin::AppendQ: return bin::Append;
        case bin::PrependQ: return bin::Prepend;
        case bin::GetQ: return bin::Get;
        case bin::GetKQ: return bin::GetK;
        case bin::GatQ: return bin::Gat;
        case bin::GatKQ: return bin::GatK;
        default: *quiet = false; return op;
    }
}

}  // namespace

Next Dispatcher::execute_binary(const BinRequest& r, OutBuf& out, PendingStore* pending,
                                size_t* swallow) {
    const uint32_t extlen = r.extlen;
    const uint32_t keylen = r.keylen;
    const uint32_t bodylen = r.bodylen;
    if (keylen > bodylen || keylen + extlen > bodylen) {
        error(out, r, bin::UnknownCommand);
        return Next::CloseAfterWrite;
    }
    if (keylen > proto::kKeyMaxLength) {
        error(out, r, bin::Invalid);
        return Next::CloseAfterWrite;
    }
    HintScope hint(ctx_.cluster != nullptr);  // the routing's bucket hint ends with the request
    if (ctx_.cluster != nullptr) {
        Next next;
        if (!route_binary(r, out, pending, swallow, &next)) return next;
    }
    bool quiet = false;
    const uint8_t cmd = loud(r.opcode, &quiet);
    bool bad = false;  // wrong extras/key/body for the opcode: "Invalid arguments", hang up
    switch (cmd) {
        case bin::Version:
            if (extlen != 0 || keylen != 0 || bodylen != 0) {
                bad = true;
                break;
            }
            respond(out, r, bin::Ok, {}, {}, VERSION, 0);
            return Next::Continue;
        case bin::Noop:
            if (extlen != 0 || keylen != 0 || bodylen != 0) {
                bad = true;
                break;
            }
            respond(out, r, bin::Ok, {}, {}, {}, 0);
            return Next::Continue;
        case bin::Flush: {
            if (keylen != 0 || bodylen != extlen || (extlen != 0 && extlen != 4)) {
                bad = true;
                break;
            }
            if (!ctx_.settings.flush_enabled) {
                error(out, r, bin::AuthError);
                return Next::Continue;
            }
            int64_t delay = extlen == 4 ? static_cast<int64_t>(bin::load_be32(r.ext.data())) : 0;
            ctx_.store.flush(delay);
            stats_.flush_cmds.add();
            if (!quiet) respond(out, r, bin::Ok, {}, {}, {}, 0);
            return Next::Continue;
        }
        case bin::Set:
        case bin::Add:
        case bin::Replace:
            if (extlen != 8 || keylen == 0 || bodylen < keylen + 8) {
                bad = true;
                break;
            }
            return binary_update(r, cmd, quiet, out, pending, swallow);
        case bin::Append:
        case bin::Prepend:
            if (keylen == 0 || extlen != 0) {
                bad = true;
                break;
            }
            return binary_update(r, cmd, quiet, out, pending, swallow);
        case bin::Get:
        case bin::GetK:
            if (extlen != 0 || bodylen != keylen || keylen == 0) {
                bad = true;
                break;
            }
            binary_get(r, cmd, quiet, out);
            return Next::Continue;
        case bin::Touch:
        case bin::Gat:
        case bin::GatK:
            if (extlen != 4 || keylen == 0) {
                bad = true;
                break;
            }
            binary_get(r, cmd, quiet, out);
            return Next::Continue;
        case bin::Delete: {
            if (keylen == 0 || extlen != 0 || bodylen != keylen) {
                bad = true;
                break;
            }
            if (ctx_.prefix_stats.enabled()) ctx_.prefix_stats.record_delete(r.key);
            store::MetaDeleteArgs a;
            a.has_cas = r.cas != 0;
            a.cas = r.cas;
            switch (ctx_.store.meta_delete(r.key, a)) {
                case store::MetaDeleteStatus::Deleted:
                case store::MetaDeleteStatus::Invalidated:
                    stats_.delete_hits.add();
                    if (!quiet) respond(out, r, bin::Ok, {}, {}, {}, 0);
                    break;
                case store::MetaDeleteStatus::Exists: error(out, r, bin::KeyExists); break;
                case store::MetaDeleteStatus::NotFound:
                    stats_.delete_misses.add();
                    error(out, r, bin::KeyNotFound);
                    break;
            }
            return Next::Continue;
        }
        case bin::Increment:
        case bin::Decrement:
            if (keylen == 0 || extlen != 20 || bodylen != keylen + extlen) {
                bad = true;
                break;
            }
            binary_arith(r, cmd, quiet, out);
            return Next::Continue;
        case bin::Stat:
            if (extlen != 0) {
                bad = true;
                break;
            }
            binary_stat(r, out);
            // A stat key is all the body there is; anything beyond it is discarded.
            if (r.value_len() != 0) {
                *swallow = r.value_len();
                return Next::Swallow;
            }
            return Next::Continue;
        case bin::Quit:
            if (keylen != 0 || extlen != 0 || bodylen != 0) {
                bad = true;
                break;
            }
            if (!quiet) respond(out, r, bin::Ok, {}, {}, {}, 0);
            return Next::CloseAfterWrite;
        case bin::Verbosity:
            // Documented (protocol-binary.txt: 4 bytes of extras, nothing else); 1.6.18 does
            // not implement it and answers "Unknown command".
            if (extlen != 4 || keylen != 0 || bodylen != 4) {
                bad = true;
                break;
            }
            ctx_.verbose.store(bin::load_be32(r.ext.data()) > 2
                                   ? 2
                                   : static_cast<int>(bin::load_be32(r.ext.data())));
            log_set_level(ctx_.verbose.load());
            respond(out, r, bin::Ok, {}, {}, {}, 0);
            return Next::Continue;
        default:
            // SASL (no -S here) and unknown opcodes. memcached discards bodylen bytes after
            // the extras and key it has already consumed, losing the stream when there are
            // any; this server discards exactly the rest of the body.
            error(out, r, bin::UnknownCommand);
            if (r.value_len() != 0) {
                *swallow = r.value_len();
                return Next::Swallow;
            }
            return Next::Continue;
    }
    (void)bad;
    error(out, r, bin::Invalid);
    return Next::CloseAfterWrite;
}

void Dispatcher::binary_get(const BinRequest& r, uint8_t cmd, bool quiet, OutBuf& out) {
    const bool touch = cmd == bin::Touch || cmd == bin::Gat || cmd == bin::GatK;
    const bool with_key = cmd == bin::GetK || cmd == bin::GatK;
    const bool with_value = cmd != bin::Touch;
    store::Lookup l;
    if (touch) {
        int64_t exp = static_cast<int64_t>(bin::load_be32(r.ext.data()));
        l = ctx_.store.get_and_touch(r.key, ctx_.clock.realtime(exp));
        stats_.touch_cmds.add();
    } else {
        l = ctx_.store.get(r.key);
        stats_.get_cmds.add();
    }
    if (ctx_.prefix_stats.enabled()) ctx_.prefix_stats.record_get(r.key, bool(l.item));
    if (!l.item) {
        if (touch) stats_.touch_misses.add(); else stats_.get_misses.add();
        if (l.reason == store::MissReason::Expired) stats_.get_expired.add();
        if (l.reason == store::MissReason::Flushed) stats_.get_flushed.add();
        if (quiet) return;
        if (with_key) {
            respond(out, r, bin::KeyNotFound, {}, r.key, {}, 0);
        } else {
            error(out, r, bin::KeyNotFound);
        }
        return;
    }
    if (touch) stats_.touch_hits.add(); else stats_.get_hits.add();
    store::Item* it = l.item.get();
    char flags[4];
    bin::store_be32(flags, it->client_flags);
    uint32_t vlen = with_value ? it->value_len() : 0;
    std::string_view key = with_key ? it->key() : std::string_view{};
    size_t head = bin::kHeaderLen + 4 + key.size();
    char* p = out.reserve(head);
    bin::write_header(p, r.opcode, bin::Ok, 4, static_cast<uint16_t>(key.size()),
                      static_cast<uint32_t>(4 + key.size() + vlen), r.opaque,
                      ctx_.settings.use_cas ? it->cas : 0);
    std::memcpy(p + bin::kHeaderLen, flags, 4);
    if (!key.empty()) std::memcpy(p + bin::kHeaderLen + 4, key.data(), key.size());
    out.commit(head);
    if (vlen != 0) out.add_item(l.item.detach(), it->value(), vlen);
}

void Dispatcher::binary_arith(const BinRequest& r, uint8_t cmd, bool quiet, OutBuf& out) {
    const bool incr = cmd == bin::Increment;
    const char* e = r.ext.data();
    uint64_t delta = bin::load_be64(e);
    uint64_t initial = bin::load_be64(e + 8);
    uint32_t expiration = bin::load_be32(e + 16);
    store::DeltaExtra x;
    x.has_cas = r.cas != 0;
    x.cas = r.cas;
    uint64_t value = 0;
    uint64_t cas = 0;
    store::DeltaStatus ds = ctx_.store.delta(r.key, incr, delta, &value, &cas, &x);
    if (ds == store::DeltaStatus::NotFound && expiration != 0xffffffffu) {
        // Create it with the initial value (not counted as a hit, as in memcached).
        char digits[24];
        char* d = put_u64(digits, initial);
        size_t n = static_cast<size_t>(d - digits);
        store::ItemRef item;
        auto rc = ctx_.store.alloc(r.key, 0, ctx_.clock.realtime(expiration),
                                   static_cast<uint32_t>(n), &item);
        if (rc != store::AllocStatus::Ok) {
            error(out, r, bin::NoMemory);
            return;
        }
        std::memcpy(item->value(), digits, n);
        std::memcpy(item->value() + n, "\r\n", 2);
        if (ctx_.store.store(item, store::StoreOp::Add, 0, &cas) != store::StoreStatus::Stored) {
            error(out, r, bin::NotStored);
            return;
        }
        if (quiet) return;
        char body[8];
        bin::store_be64(body, initial);
        respond(out, r, bin::Ok, {}, {}, std::string_view(body, 8), cas);
        return;
    }
    switch (ds) {
        case store::DeltaStatus::Ok: {
            if (incr) stats_.incr_hits.add(); else stats_.decr_hits.add();
            if (quiet) return;
            char body[8];
            bin::store_be64(body, value);
            respond(out, r, bin::Ok, {}, {}, std::string_view(body, 8),
                    ctx_.settings.use_cas ? cas : 0);
            return;
        }
        case store::DeltaStatus::NotFound:
            if (incr) stats_.incr_misses.add(); else stats_.decr_misses.add();
            error(out, r, bin::KeyNotFound);
            return;
        case store::DeltaStatus::Exists: error(out, r, bin::KeyExists); return;
        case store::DeltaStatus::NonNumeric: error(out, r, bin::DeltaBadValue); return;
        case store::DeltaStatus::NoMemory: error(out, r, bin::NoMemory); return;
    }
}

Next Dispatcher::binary_update(const BinRequest& r, uint8_t cmd, bool quiet, OutBuf& out,
                               PendingStore* pending, size_t* swallow) {
    const bool append = cmd == bin::Append || cmd == bin::Prepend;
    uint32_t flags = append ? 0 : bin::load_be32(r.ext.data());
    int64_t exp = append ? 0 : static_cast<int64_t>(bin::load_be32(r.ext.data() + 4));
    uint32_t vlen = r.value_len();
    if (ctx_.prefix_stats.enabled()) ctx_.prefix_stats.record_set(r.key);
    store::ItemRef item;
    auto rc = alloc_for_store(r.key, flags, append ? 0 : ctx_.clock.realtime(exp), vlen,
                              cmd == bin::Set, &item);
    if (rc != store::AllocStatus::Ok) {
        error(out, r, rc == store::AllocStatus::TooLarge ? bin::TooBig : bin::NoMemory);
        *swallow = vlen;
        return Next::Swallow;
    }
    proto::Cmd as_text = proto::Cmd::Set;
    switch (cmd) {
        case bin::Add: as_text = proto::Cmd::Add; break;
        case bin::Replace: as_text = proto::Cmd::Replace; break;
        case bin::Append: as_text = proto::Cmd::Append; break;
        case bin::Prepend: as_text = proto::Cmd::Prepend; break;
        default: break;
    }
    // A cas value turns set, add and replace into cas; append/prepend compare it.
    if (r.cas != 0 && !append) as_text = proto::Cmd::Cas;
    pending->cmd = as_text;
    pending->kind = PendingStore::Kind::Binary;
    pending->noreply = quiet;
    pending->bin_opcode = r.opcode;
    pending->bin_opaque = r.opaque;
    pending->cas_unique = r.cas;
    pending->wire_len = vlen;
    pending->item = std::move(item);
    return Next::ReadValue;
}

void Dispatcher::finish_binary_store(PendingStore* pending, OutBuf& out) {
    store::ItemRef item = std::move(pending->item);
    stats_.set_cmds.add();
    // The wire has no "\r\n" after a binary value; the item stores one.
    std::memcpy(item->value() + item->value_len(), "\r\n", 2);
    const store::StoreOp op = store_op(pending->cmd);
    uint64_t cas = 0;
    store::StoreExtra extra;  // non-null: append/prepend compare a non-zero cas
    store::StoreStatus s = ctx_.store.store(item, op, pending->cas_unique, &cas, &extra);
    count_cas(op, s);
    BinRequest r;
    r.opcode = pending->bin_opcode;
    r.opaque = pending->bin_opaque;
    uint16_t status = bin::Ok;
    switch (s) {
        case store::StoreStatus::Stored:
            if (!pending->noreply) {
                respond(out, r, bin::Ok, {}, {}, {}, ctx_.settings.use_cas ? cas : 0);
            }
            return;
        case store::StoreStatus::Exists: status = bin::KeyExists; break;
        case store::StoreStatus::NotFound: status = bin::KeyNotFound; break;
        case store::StoreStatus::NotStored:
        case store::StoreStatus::TooLarge:
        case store::StoreStatus::NoMemory:
            status = op == store::StoreOp::Add       ? bin::KeyExists
                     : op == store::StoreOp::Replace ? bin::KeyNotFound
                                                     : bin::NotStored;
            break;
    }
    error(out, r, status);
}

// Stats as one response per "STAT name value" line and an empty one to end, as memcached
// frames them; the text writers produce the lines.
void Dispatcher::binary_stat(const BinRequest& r, OutBuf& out) {
    std::string_view sub = r.key;
    OutBuf text(&ctx_.store);
    if (sub.empty()) {
        write_general_stats(ctx_, text);
    } else if (sub.starts_with("reset")) {
        reset_stats(ctx_);
    } else if (sub.starts_with("settings")) {
        write_settings_stats(ctx_, text);
    } else if (sub.starts_with("detail")) {
        std::string_view arg = sub.substr(6);
        if (arg.starts_with(" dump")) {
            std::string d = ctx_.prefix_stats.dump();
            respond(out, r, bin::Ok, {}, "detailed", d, 0);
        } else if (arg.starts_with(" on")) {
            ctx_.prefix_stats.set_enabled(true);
        } else if (arg.starts_with(" off")) {
            ctx_.prefix_stats.set_enabled(false);
        } else {
            error(out, r, bin::KeyNotFound);
            return;
        }
    } else if (sub == "items") {
        write_items_stats(ctx_, text);
    } else if (sub == "slabs") {
        write_slabs_stats(ctx_, text);
    } else {
        error(out, r, bin::KeyNotFound);
        return;
    }
    std::string all;
    text.drain_to(&all);  // stats text has no item values
    std::string_view rest(all);
    while (!rest.empty()) {
        size_t eol = rest.find("\r\n");
        if (eol == std::string_view::npos) break;
        std::string_view line = rest.substr(0, eol);
        rest.remove_prefix(eol + 2);
        if (!line.starts_with("STAT ")) continue;  // END
        line.remove_prefix(5);
        size_t sp = line.find(' ');
        std::string_view name = line.substr(0, sp);
        std::string_view value = sp == std::string_view::npos ? "" : line.substr(sp + 1);
        respond(out, r, bin::Ok, {}, name, value, 0);
    }
    respond(out, r, bin::Ok, {}, {}, {}, 0);
}

}  // namespace mcm::server
