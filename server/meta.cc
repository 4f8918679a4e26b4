// The meta commands (mg ms md ma mn me) with memcached 1.6.18's replies: status codes, return
// flags in request order, q hiding only the nominal reply, errors always sent.
#include <cstring>

#include "proto/base64.h"
#include "proto/errors.h"
#include "proto/text_parser.h"
#include "server/dispatch.h"
#include "server/textfmt.h"
#include "server/watch.h"

namespace mcm::server {

using proto::Cmd;
using proto::Request;

namespace {

// One reply line. The longest possible: a 250-byte key in base64 (336 bytes) plus each flag
// letter once with a 20-digit number or a 32-byte opaque.
class Line {
public:
    void add(std::string_view s) noexcept {
        if (s.empty()) return;
        std::memcpy(p_, s.data(), s.size());
        p_ += s.size();
    }
    void num(char flag, uint64_t v) noexcept {
        *p_++ = ' ';
        *p_++ = flag;
        p_ = put_u64(p_, v);
    }
    void ttl(store::RelTime exptime, store::RelTime now) noexcept {
        *p_++ = ' ';
        *p_++ = 't';
        p_ = exptime == 0 ? put_i64(p_, -1) : put_u64(p_, exptime - now);
    }
    void marker(char c) noexcept {
        *p_++ = ' ';
        *p_++ = c;
    }
    void token(std::string_view tok) noexcept {
        *p_++ = ' ';
        add(tok);
    }
    // k: the key, re-encoded in base64 and followed by a b flag when it is binary.
    void key(std::string_view key, bool binary) noexcept {
        marker('k');
        if (!binary) {
            add(key);
            return;
        }
        p_ += proto::base64_encode(key, p_);
        marker('b');
    }
    void end() noexcept {
        *p_++ = '\r';
        *p_++ = '\n';
    }
    std::string_view view() const noexcept { return {buf_, static_cast<size_t>(p_ - buf_)}; }

private:
    char buf_[1024];
    char* p_ = buf_;
};

// O and k: the flags every status line echoes, hit or miss.
void echo_flags(Line& l, std::string_view tokens, std::string_view key, bool binary) noexcept {
    proto::KeyCursor c(tokens);
    std::string_view tok;
    while (c.next(&tok)) {
        if (tok[0] == 'O') l.token(tok);
        if (tok[0] == 'k') l.key(key, binary);
    }
}

// Position of a flag letter among the tokens (-1 if absent): memcached applies T, N and R
// in request order, and t reports the TTL as of its own position.
int flag_pos(std::string_view tokens, char f) noexcept {
    proto::KeyCursor c(tokens);
    std::string_view tok;
    for (int i = 0; c.next(&tok); ++i) {
        if (tok[0] == f) return i;
    }
    return -1;
}

store::StoreOp ms_op(const proto::Meta& m, Cmd* as_text) noexcept {
    store::StoreOp op = store::StoreOp::Set;
    *as_text = Cmd::Set;
    switch (m.mode) {
        case 'E': op = store::StoreOp::Add, *as_text = Cmd::Add; break;
        case 'A': op = store::StoreOp::Append, *as_text = Cmd::Append; break;
        case 'P': op = store::StoreOp::Prepend, *as_text = Cmd::Prepend; break;
        case 'R': op = store::StoreOp::Replace, *as_text = Cmd::Replace; break;
        default: break;
    }
    // A cas value turns set and replace into cas (replace + cas is cas); add ignores it and
    // append/prepend compare it themselves.
    if (m.has('C') && (op == store::StoreOp::Set || op == store::StoreOp::Replace)) {
        op = store::StoreOp::Cas;
        *as_text = Cmd::Cas;
    }
    return op;
}

}  // namespace

void Dispatcher::meta_get(const Request& req, OutBuf& out) {
    const proto::Meta& m = req.meta;
    store::Clock& clock = ctx_.clock;
    store::MetaGetArgs a;
    if (m.has('T')) {
        a.touch = true;
        a.exptime = clock.realtime(m.ttl);
    }
    if (m.has('N')) {
        a.vivify = true;
        a.vivify_exptime = clock.realtime(m.vivify_ttl);
    }
    if (m.has('R')) {
        a.recache = true;
        a.recache_time = clock.realtime(m.recache_ttl);
    }
    a.no_bump = m.has('u');
    a.new_cas = m.new_cas;
    a.key_binary = m.has('b');
    if (a.touch && (a.vivify || a.recache)) {
        int t = flag_pos(m.tokens, 'T');
        a.touch_after_vivify = t > flag_pos(m.tokens, 'N');
        a.recache_after_touch = flag_pos(m.tokens, 'R') > t;
    }
    store::MetaGetResult r;
    ctx_.store.meta_get(req.key, a, &r);
    if (watch::watching(watch::kFetchers)) [[unlikely]] {
        log_get(r.item ? r.item->key() : req.key, r.item.get(), r.reason);
    }
    if (!r.item) {
        // memcached counts a miss as a get even with T
        stats_.get_cmds.add();
        stats_.get_misses.add();
        if (r.reason == store::MissReason::Expired) stats_.get_expired.add();
        if (r.reason == store::MissReason::Flushed) stats_.get_flushed.add();
        if (req.noreply) return;  // q: no EN
        Line l;
        l.add("EN");
        echo_flags(l, m.tokens, req.key, m.has('b'));
        l.end();
        out.append(l.view());
        return;
    }
    if (a.touch) {
        stats_.touch_cmds.add();
        stats_.touch_hits.add();
    } else {
        stats_.get_cmds.add();
        stats_.get_hits.add();
    }
    store::Item* it = r.item.get();
    const bool value = m.has('v');
    const store::RelTime now = clock.now();
    Line l;
    if (value) {
        l.add("VA ");
        char digits[24];
        l.add(std::string_view(digits, static_cast<size_t>(put_u64(digits, it->value_len()) - digits)));
    } else {
        l.add("HD");
    }
    proto::KeyCursor c(m.tokens);
    std::string_view tok;
    store::RelTime exptime = r.exptime_before;  // as of this point in the request
    while (c.next(&tok)) {
        switch (tok[0]) {
            case 'T': exptime = a.exptime; break;
            case 'N':
                if (r.created) exptime = a.vivify_exptime;
                break;
            case 's': l.num('s', it->value_len()); break;
            case 't': l.ttl(exptime, now); break;
            case 'c': l.num('c', ctx_.settings.use_cas ? it->cas : 0); break;
            case 'f': l.num('f', it->client_flags); break;
            case 'l': l.num('l', now > r.last_access ? now - r.last_access : 0); break;
            case 'h': l.num('h', r.fetched_before ? 1 : 0); break;
            case 'O': l.token(tok); break;
            case 'k': l.key(it->key(), it->has(store::Item::kKeyBinary)); break;
            default: break;
        }
    }
    if (r.win_sent_before) l.marker('Z');
    if (r.stale) l.marker('X');
    if (r.won) l.marker('W');
    l.end();
    out.append(l.view());
    if (value) out.add_item(r.item.detach(), it->value(), it->nbytes);
}

Next Dispatcher::meta_set(const Request& req, OutBuf& out, PendingStore* pending,
                          size_t* swallow) {
    const proto::Meta& m = req.meta;
    Cmd as_text;
    (void)ms_op(m, &as_text);
    store::RelTime exp = m.has('T') ? ctx_.clock.realtime(m.ttl) : 0;
    store::ItemRef item;
    // No stale value survives a failed ms, whatever the mode.
    auto rc = alloc_for_store(req.key, m.client_flags, exp, static_cast<uint32_t>(req.value_len),
                              true, &item);
    if (rc != store::AllocStatus::Ok) {
        out.append(store_error_text(rc, req.key, m.client_flags,
                                    static_cast<uint32_t>(req.value_len)));
        *swallow = static_cast<size_t>(req.value_len) + 2;
        return Next::Swallow;
    }
    if (m.has('b')) item->set(store::Item::kKeyBinary);
    pending->cmd = as_text;
    pending->kind = PendingStore::Kind::Meta;
    pending->noreply = req.noreply;
    pending->cas_unique = m.has('C') ? m.compare_cas : 0;
    pending->extra.new_cas = m.new_cas;
    pending->extra.set_stale = m.has('I') && as_text == Cmd::Cas;
    pending->meta_tokens.assign(m.tokens);
    pending->wire_len = static_cast<uint32_t>(req.value_len) + 2;
    pending->item = std::move(item);
    return Next::ReadValue;
}

void Dispatcher::finish_meta_store(PendingStore* pending, OutBuf& out) {
    store::ItemRef item = std::move(pending->item);
    stats_.set_cmds.add();
    const char* v = item->value();
    if (v[item->nbytes - 2] != '\r' || v[item->nbytes - 1] != '\n') {
        out.append(proto::kBadDataChunk);  // errors ignore q
        return;
    }
    const store::StoreOp op = store_op(pending->cmd);
    // The key and its binary flag outlive the store call through our reference.
    store::Item* it = item.get();
    uint64_t cas = 0;
    cur_fd_ = pending->cfd;
    if (watch::watching(watch::kFetchers)) [[unlikely]] {  // memcached's lookup before a store
        store::Lookup found = ctx_.store.peek(it->key());
        log_get(it->key(), found.item.get(), found.reason);
    }
    store::StoreStatus s = ctx_.store.store(item, op, pending->cas_unique, &cas, &pending->extra);
    count_cas(op, s);
    if (watch::watching(watch::kMutations)) [[unlikely]] log_store(pending->cmd, it, s);
    Line l;
    switch (s) {
        case store::StoreStatus::Stored:
            if (pending->noreply) return;
            l.add("HD");
            break;
        case store::StoreStatus::NotStored: l.add("NS"); break;
        case store::StoreStatus::Exists: l.add("EX"); break;
        case store::StoreStatus::NotFound: l.add("NF"); break;
        case store::StoreStatus::TooLarge: out.append(proto::kTooLarge); return;
        case store::StoreStatus::NoMemory: out.append(proto::kOutOfMemoryStoring); return;
    }
    proto::KeyCursor c(pending->meta_tokens);
    std::string_view tok;
    while (c.next(&tok)) {
        switch (tok[0]) {
            case 'O': l.token(tok); break;
            case 'k': l.key(it->key(), it->has(store::Item::kKeyBinary)); break;
            case 'c': l.num('c', s == store::StoreStatus::Stored ? cas : 0); break;
            default: break;
        }
    }
    l.end();
    out.append(l.view());
}

void Dispatcher::meta_delete(const Request& req, OutBuf& out) {
    const proto::Meta& m = req.meta;
    if (m.has('x') && !m.has('I')) return meta_clear_value(req, out);
    store::MetaDeleteArgs a;
    a.has_cas = m.has('C');
    a.cas = m.compare_cas;
    a.invalidate = m.has('I');
    a.touch = m.has('T');
    a.exptime = a.touch ? ctx_.clock.realtime(m.ttl) : 0;
    a.new_cas = m.new_cas;
    Line l;
    switch (ctx_.store.meta_delete(req.key, a)) {
        case store::MetaDeleteStatus::Deleted:
            stats_.delete_hits.add();
            if (req.noreply) return;
            l.add("HD");
            break;
        case store::MetaDeleteStatus::Invalidated:
            if (req.noreply) return;
            l.add("HD");
            break;
        case store::MetaDeleteStatus::NotFound:
            stats_.delete_misses.add();
            l.add("NF");
            break;
        case store::MetaDeleteStatus::Exists:
            stats_.delete_misses.add();
            l.add("EX");
            break;
    }
    echo_flags(l, m.tokens, req.key, m.has('b'));
    l.end();
    out.append(l.view());
}

// md x (documented upstream, newer than 1.6.18): the item stays, with an empty value, the
// client flags of F and the TTL of T (0 and none when absent).
void Dispatcher::meta_clear_value(const Request& req, OutBuf& out) {
    const proto::Meta& m = req.meta;
    store::ItemRef item;
    store::RelTime exp = m.has('T') ? ctx_.clock.realtime(m.ttl) : 0;
    if (ctx_.store.alloc(req.key, m.client_flags, exp, 0, &item) != store::AllocStatus::Ok) {
        out.append(proto::kOutOfMemoryStoring);
        return;
    }
    std::memcpy(item->value(), "\r\n", 2);
    if (m.has('b')) item->set(store::Item::kKeyBinary);
    store::StoreExtra e;
    e.new_cas = m.new_cas;
    store::StoreOp op = m.has('C') ? store::StoreOp::Cas : store::StoreOp::Replace;
    Line l;
    switch (ctx_.store.store(item, op, m.compare_cas, nullptr, &e)) {
        case store::StoreStatus::Stored:
            stats_.delete_hits.add();
            if (req.noreply) return;
            l.add("HD");
            break;
        case store::StoreStatus::Exists: l.add("EX"); break;
        default:
            stats_.delete_misses.add();
            l.add("NF");
            break;
    }
    echo_flags(l, m.tokens, req.key, m.has('b'));
    l.end();
    out.append(l.view());
}

void Dispatcher::meta_arith(const Request& req, OutBuf& out) {
    const proto::Meta& m = req.meta;
    store::Store& st = ctx_.store;
    store::Clock& clock = ctx_.clock;
    const bool incr = !(m.mode == 'D' || m.mode == '-');
    store::DeltaExtra x;
    x.has_cas = m.has('C');
    x.cas = m.compare_cas;
    x.touch = m.has('T');
    x.exptime = x.touch ? clock.realtime(m.ttl) : 0;
    x.new_cas = m.new_cas;
    uint64_t value = 0;
    uint64_t cas = 0;
    store::DeltaStatus ds = st.delta(req.key, incr, m.delta, &value, &cas, &x);
    bool created = false;
    store::RelTime exptime = x.exptime_before;  // as of the start of the flag walk
    // N: a miss creates the item with the initial value J (T, when given, sets its TTL).
    for (int attempt = 0; ds == store::DeltaStatus::NotFound && m.has('N') && attempt < 2;
         ++attempt) {
        char digits[24];
        size_t n = static_cast<size_t>(put_u64(digits, m.initial) - digits);
        // T and N both set a created item's TTL; the later one in the request wins.
        bool t_last = x.touch && flag_pos(m.tokens, 'T') > flag_pos(m.tokens, 'N');
        store::RelTime exp = clock.realtime(t_last ? m.ttl : m.vivify_ttl);
        store::ItemRef item;
        if (st.alloc(req.key, 0, exp, static_cast<uint32_t>(n), &item) != store::AllocStatus::Ok) {
            out.append("SERVER_ERROR Out of memory allocating new item\r\n");
            return;
        }
        std::memcpy(item->value(), digits, n);
        std::memcpy(item->value() + n, "\r\n", 2);
        if (m.has('b')) item->set(store::Item::kKeyBinary);
        store::StoreExtra e;
        e.new_cas = m.new_cas;
        if (st.store(item, store::StoreOp::Add, 0, &cas, &e) == store::StoreStatus::Stored) {
            created = true;
            value = m.initial;
            exptime = 0;  // memcached creates it without a TTL, then walks T and N
            break;
        }
        // Someone created it in between: apply the delta to theirs.
        ds = st.delta(req.key, incr, m.delta, &value, &cas, &x);
        exptime = x.exptime_before;
    }
    Line l;
    if (ds == store::DeltaStatus::Ok || created) {
        if (!created) {
            if (incr) stats_.incr_hits.add(); else stats_.decr_hits.add();
            if (req.noreply) return;
        }
        char digits[24];
        size_t n = static_cast<size_t>(put_u64(digits, value) - digits);
        const bool with_value = m.has('v');
        if (with_value) {
            l.add("VA ");
            char len[24];
            l.add(std::string_view(len, static_cast<size_t>(put_u64(len, n) - len)));
        } else {
            l.add("HD");
        }
        const store::RelTime now = clock.now();
        proto::KeyCursor c(m.tokens);
        std::string_view tok;
        while (c.next(&tok)) {
            switch (tok[0]) {
                case 'T': exptime = x.exptime; break;
                case 'N':
                    if (created) exptime = clock.realtime(m.vivify_ttl);
                    break;
                case 'c': l.num('c', ctx_.settings.use_cas ? cas : 0); break;
                case 't': l.ttl(exptime, now); break;
                case 'O': l.token(tok); break;
                case 'k': l.key(req.key, m.has('b')); break;
                default: break;
            }
        }
        if (with_value) {
            l.end();
            l.add(std::string_view(digits, n));
        }
        l.end();
        out.append(l.view());
        return;
    }
    switch (ds) {
        case store::DeltaStatus::NotFound:
            if (incr) stats_.incr_misses.add(); else stats_.decr_misses.add();
            l.add("NF");
            break;
        case store::DeltaStatus::Exists: l.add("EX"); break;
        case store::DeltaStatus::NonNumeric: out.append(proto::kNonNumeric); return;
        case store::DeltaStatus::NoMemory: out.append(proto::kOutOfMemory); return;
        case store::DeltaStatus::Ok: return;  // handled above
    }
    echo_flags(l, m.tokens, req.key, m.has('b'));
    l.end();
    out.append(l.view());
}

void Dispatcher::meta_debug(const Request& req, OutBuf& out) {
    store::Lookup r = ctx_.store.peek(req.key);
    stats_.meta_cmds.add();
    if (!r.item) {
        out.append("EN\r\n");
        return;
    }
    const store::Item* it = r.item.get();
    const store::RelTime now = ctx_.clock.now();
    Line l;
    l.add("ME ");
    if (it->has(store::Item::kKeyBinary)) {
        char enc[proto::base64_encoded_size(proto::kKeyMaxLength)];
        l.add(std::string_view(enc, proto::base64_encode(it->key(), enc)));
    } else {
        l.add(it->key());
    }
    // exp as memcached prints it: now - exptime, so a future expiry is negative; -1 = never.
    char buf[200];
    char* p = buf;
    std::memcpy(p, " exp=", 5);
    p += 5;
    p = it->exptime == 0 ? put_i64(p, -1)
                         : put_i64(p, static_cast<int64_t>(now) - static_cast<int64_t>(it->exptime));
    std::memcpy(p, " la=", 4);
    p = put_u64(p + 4, now > it->time ? now - it->time : 0);
    std::memcpy(p, " cas=", 5);
    p = put_u64(p + 5, ctx_.settings.use_cas ? it->cas : 0);
    std::string_view fetch = it->has(store::Item::kFetched) ? " fetch=yes" : " fetch=no";
    std::memcpy(p, fetch.data(), fetch.size());
    p += fetch.size();
    std::memcpy(p, " cls=", 5);
    p = put_u64(p + 5, ctx_.store.class_of(it));
    std::memcpy(p, " size=", 6);
    p = put_u64(p + 6, it->total_size());
    l.add(std::string_view(buf, static_cast<size_t>(p - buf)));
    l.end();
    out.append(l.view());
}

}  // namespace mcm::server
