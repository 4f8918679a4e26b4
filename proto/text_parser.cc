// memcached's text command grammar, reproduced rule for rule: tokens are separated by single
// spaces only (tabs belong to tokens), at most 24 tokens are split off a line, the token count
// decides between "ERROR" and a command, and numbers follow proto/numbers.h. Keep the order of
// checks: it decides which error a malformed line gets, and whether noreply silences it.
#include "proto/text_parser.h"

#include <cstring>

#include "proto/base64.h"
#include "proto/numbers.h"

namespace mcm::proto {
namespace {

constexpr size_t kMaxTokens = 24;

// Tokens of one line, as memcached's tokenizer yields them. ntokens counts the terminal token
// (empty, or holding the unsplit rest of a long line), like memcached's ntokens.
struct Tokens {
    // Left uninitialised on purpose (a string_view array would be zeroed on every command):
    // only the first ntokens entries are ever read.
    struct Span {
        const char* p;
        size_t n;
    } span[kMaxTokens];
    size_t ntokens = 0;
    std::string_view rest;  // the unsplit remainder if the line had more than 23 tokens

    std::string_view tok(size_t i) const noexcept { return {span[i].p, span[i].n}; }
};

void tokenize(std::string_view line, Tokens* t) noexcept {
    const char* p = line.data();
    const char* end = p + line.size();
    size_t n = 0;
    for (;;) {
        while (p < end && *p == ' ') ++p;
        if (p == end) break;
        const char* e = static_cast<const char*>(std::memchr(p, ' ', static_cast<size_t>(end - p)));
        if (e == nullptr) e = end;
        t->span[n++] = {p, static_cast<size_t>(e - p)};
        p = e;
        if (n == kMaxTokens - 1) {
            // memcached stops splitting here; the rest starts after the one space that
            // ended the last token
            if (p < end) ++p;
            break;
        }
    }
    t->rest = n == kMaxTokens - 1 && p < end ? std::string_view(p, static_cast<size_t>(end - p))
                                             : std::string_view{};
    t->span[n++] = {t->rest.data(), t->rest.size()};  // terminal token
    t->ntokens = n;
}

// memcached's set_noreply_maybe: the token before the terminal one is "noreply".
bool noreply_maybe(const Tokens& t) noexcept {
    return t.ntokens >= 2 && t.tok(t.ntokens - 2) == "noreply";
}

void fail(Request* req, Err e) noexcept {
    req->cmd = Cmd::Error;
    req->error = e;
}

void parse_store(const Tokens& t, Cmd cmd, Request* req) noexcept {
    bool is_cas = cmd == Cmd::Cas;
    size_t want = is_cas ? 7 : 6;
    if (t.ntokens != want && t.ntokens != want + 1) return fail(req, Err::Error);
    req->noreply = noreply_maybe(t);
    if (t.tok(1).size() > kKeyMaxLength) return fail(req, Err::BadFormat);
    req->key = t.tok(1);
    if (!(parse_u32(t.tok(2), &req->flags) && parse_i32(t.tok(3), &req->exptime) &&
          parse_i32(t.tok(4), &req->value_len))) {
        return fail(req, Err::BadFormat);
    }
    if (is_cas && !parse_u64(t.tok(5), &req->cas_unique)) return fail(req, Err::BadFormat);
    if (req->value_len < 0 || req->value_len > INT32_MAX - 2) return fail(req, Err::BadFormat);
    req->cmd = cmd;
}

void parse_get(const Tokens& t, Cmd cmd, std::string_view line, Request* req) noexcept {
    if (t.ntokens < 3) return fail(req, Err::Error);
    size_t first_key = 1;
    if (cmd == Cmd::Gat || cmd == Cmd::Gats) {
        if (!parse_i32(t.tok(1), &req->exptime)) return fail(req, Err::InvalidExptime);
        first_key = 2;
    }
    // Keys run from the first key token to the end of the line (memcached re-tokenizes long
    // lines in batches; the key sequence is the same).
    if (first_key < t.ntokens - 1) {
        req->keys = line.substr(static_cast<size_t>(t.tok(first_key).data() - line.data()));
    } else {
        req->keys = {};
    }
    req->cmd = cmd;
}

void parse_arith(const Tokens& t, Cmd cmd, Request* req) noexcept {
    if (t.ntokens != 4 && t.ntokens != 5) return fail(req, Err::Error);
    req->noreply = noreply_maybe(t);
    if (t.tok(1).size() > kKeyMaxLength) return fail(req, Err::BadFormat);
    req->key = t.tok(1);
    if (!parse_u64(t.tok(2), &req->delta)) return fail(req, Err::InvalidDelta);
    req->cmd = cmd;
}

void parse_delete(const Tokens& t, Request* req) noexcept {
    if (t.ntokens < 3 || t.ntokens > 5) return fail(req, Err::Error);
    if (t.ntokens > 3) {
        bool hold_is_zero = t.tok(2) == "0";
        bool sets_noreply = noreply_maybe(t);
        req->noreply = sets_noreply;
        bool valid = (t.ntokens == 4 && (hold_is_zero || sets_noreply)) ||
                     (t.ntokens == 5 && hold_is_zero && sets_noreply);
        if (!valid) return fail(req, Err::BadDeleteFormat);
    }
    if (t.tok(1).size() > kKeyMaxLength) return fail(req, Err::BadFormat);
    req->key = t.tok(1);
    req->cmd = Cmd::Delete;
}

void parse_touch(const Tokens& t, Request* req) noexcept {
    if (t.ntokens != 4 && t.ntokens != 5) return fail(req, Err::Error);
    req->noreply = noreply_maybe(t);
    if (t.tok(1).size() > kKeyMaxLength) return fail(req, Err::BadFormat);
    req->key = t.tok(1);
    if (!parse_i32(t.tok(2), &req->exptime)) return fail(req, Err::InvalidExptime);
    req->cmd = Cmd::Touch;
}

void parse_flush_all(const Tokens& t, Request* req) noexcept {
    if (t.ntokens < 2 || t.ntokens > 4) return fail(req, Err::Error);
    req->noreply = noreply_maybe(t);
    req->exptime = 0;
    if (t.ntokens != (req->noreply ? 3u : 2u)) {
        if (!parse_i32(t.tok(1), &req->exptime)) return fail(req, Err::InvalidExptime);
    }
    req->cmd = Cmd::FlushAll;
}

void parse_verbosity(const Tokens& t, Request* req) noexcept {
    if (t.ntokens != 3 && t.ntokens != 4) return fail(req, Err::Error);
    req->noreply = noreply_maybe(t);
    if (!parse_u32(t.tok(1), &req->level)) return fail(req, Err::BadFormat);
    req->cmd = Cmd::Verbosity;
}

void parse_memlimit(const Tokens& t, Request* req) noexcept {
    if (t.ntokens != 3 && t.ntokens != 4) return fail(req, Err::Error);
    req->noreply = noreply_maybe(t);
    // memcached answers a non-number with a plain ERROR here.
    if (!parse_u32(t.tok(1), &req->memlimit)) return fail(req, Err::Error);
    req->cmd = Cmd::CacheMemlimit;
}

// Text after the command token, for stats/shutdown/debug (their own sub-grammars).
std::string_view args_of(const Tokens& t, std::string_view line) noexcept {
    if (t.ntokens <= 2) return {};
    std::string_view a = line.substr(static_cast<size_t>(t.tok(1).data() - line.data()));
    while (!a.empty() && a.back() == ' ') a.remove_suffix(1);
    return a;
}


// ---- Meta commands (mg ms md ma mn me), memcached 1.6.18's rules. ----

constexpr size_t kMetaMaxTokens = 20;    // MFLAG_MAX_OPT_LENGTH: more tokens is an error
constexpr size_t kMetaMaxOpaque = 32;    // an O token, its letter included

// Checks and reads the flag tokens from index `first` (memcached's _meta_flag_preparse):
// an unknown letter stops at once; a malformed value is remembered and parsing goes on, the
// last such error being the one reported. Decodes a base64 key (flag b) into req->key_buf.
bool meta_preparse(const Tokens& t, size_t first, Request* req, Err* err) noexcept {
    Meta& m = req->meta;
    bool bad = false;
    uint64_t seen_high = 0;  // letters outside 'A'..'z' are rejected below anyway
    for (size_t i = first; i + 1 < t.ntokens; ++i) {
        std::string_view tok = t.tok(i);
        unsigned char o = static_cast<unsigned char>(tok[0]);
        if (o >= 127) {
            *err = Err::DuplicateFlag;  // memcached's wording for bytes above 126
            return false;
        }
        uint64_t bit = o >= 'A' && o <= 'z' ? meta_bit(static_cast<char>(o)) : 0;
        if (bit == 0) {
            // Not a letter: never a valid flag, but a repeat is reported as such first.
            uint64_t b2 = uint64_t{1} << (o & 63);
            if (seen_high & b2) {
                *err = Err::DuplicateFlag;
                return false;
            }
            seen_high |= b2;
            *err = Err::InvalidFlag;
            return false;
        }
        if (m.flags & bit) {
            *err = Err::DuplicateFlag;
            return false;
        }
        m.flags |= bit;
        std::string_view v = tok.substr(1);
        switch (o) {
            case 'b': {
                size_t n = base64_decode(req->key, req->key_buf);
                if (n == 0) {
                    *err = Err::DecodingKey;
                    bad = true;
                }
                req->key = std::string_view(req->key_buf, n);
                break;
            }
            case 'N':
                if (!parse_i32(v, &m.vivify_ttl)) {
                    *err = Err::BadToken;
                    bad = true;
                }
                break;
            case 'T':
                if (!parse_i32(v, &m.ttl)) {
                    *err = Err::BadToken;
                    bad = true;
                }
                break;
            case 'R':
                if (!parse_i32(v, &m.recache_ttl)) {
                    *err = Err::BadToken;
                    bad = true;
                }
                break;
            case 'F':
                if (!parse_u32(v, &m.client_flags)) bad = true;  // keeps the current message
                break;
            case 'C':
                if (!parse_u64(v, &m.compare_cas)) {
                    *err = Err::BadToken;
                    bad = true;
                }
                break;
            case 'E':  // newer than 1.6.18: a CAS value chosen by the client
                if (!parse_u64(v, &m.new_cas)) {
                    *err = Err::BadToken;
                    bad = true;
                }
                break;
            case 'M':
                if (tok.size() != 2) {
                    *err = Err::MTokenLength;
                    bad = true;
                } else {
                    m.mode = tok[1];
                }
                break;
            case 'J':
                if (!parse_u64(v, &m.initial)) {
                    *err = Err::InvalidInitial;
                    bad = true;
                }
                break;
            case 'D':
                if (!parse_u64(v, &m.delta)) {
                    *err = Err::InvalidDeltaValue;
                    bad = true;
                }
                break;
            case 'O':
            case 'P':
            case 'L':
            case 'k':
            case 's':
            case 't':
            case 'c':
            case 'f':
            case 'v':
            case 'h':
            case 'l':
            case 'u':
            case 'q':
            case 'I':
            case 'x':  // md: drop the value, keep the item (newer than 1.6.18)
                break;
            default:
                m.flags &= ~bit;
                *err = Err::InvalidFlag;
                return false;
        }
    }
    return !bad;
}

bool opaque_too_long(const Tokens& t, size_t first) noexcept {
    for (size_t i = first; i + 1 < t.ntokens; ++i) {
        if (t.tok(i)[0] == 'O' && t.tok(i).size() > kMetaMaxOpaque) return true;
    }
    return false;
}

void parse_meta(const Tokens& t, char sub, std::string_view line, Request* req) noexcept {
    Meta& m = req->meta;
    m.flags = 0;
    m.ttl = m.vivify_ttl = m.recache_ttl = 0;
    m.client_flags = 0;
    m.compare_cas = m.new_cas = 0;
    m.delta = 1;
    m.initial = 0;
    m.mode = 0;
    m.tokens = {};
    if (sub == 'n') {
        req->cmd = Cmd::MetaNoop;
        return;
    }
    if (sub == 'e') {
        // me <key> [b]: anything after is ignored.
        if (t.ntokens < 3 || t.tok(1).size() > kKeyMaxLength) return fail(req, Err::BadFormat);
        req->key = t.tok(1);
        if (t.ntokens >= 4 && t.tok(2) == "b") {
            size_t n = base64_decode(req->key, req->key_buf);
            if (n == 0) return fail(req, Err::BadFormat);
            req->key = std::string_view(req->key_buf, n);
            m.flags |= meta_bit('b');
        }
        req->cmd = Cmd::MetaDebug;
        return;
    }
    Cmd cmd;
    switch (sub) {
        case 'g': cmd = Cmd::MetaGet; break;
        case 's': cmd = Cmd::MetaSet; break;
        case 'd': cmd = Cmd::MetaDelete; break;
        case 'a': cmd = Cmd::MetaArith; break;
        default: return fail(req, Err::Error);
    }
    if (t.ntokens < 3) return fail(req, Err::Error);
    if (t.tok(1).size() > kKeyMaxLength) return fail(req, Err::BadFormat);
    req->key = t.tok(1);
    size_t first = 2;
    if (cmd == Cmd::MetaSet) {
        if (t.ntokens == 3) return fail(req, Err::BadFormat);
    }
    if (t.ntokens > kMetaMaxTokens) {
        return fail(req, cmd == Cmd::MetaGet ? Err::FlagsAreTooLong : Err::FlagsTooLong);
    }
    if (cmd == Cmd::MetaSet) {
        if (!parse_i32(t.tok(2), &req->value_len) || req->value_len < 0 ||
            req->value_len > INT32_MAX - 2) {
            return fail(req, Err::BadFormat);
        }
        first = 3;
    }
    if (first < t.ntokens - 1) {
        std::string_view ft = t.tok(first);
        std::string_view lt = t.tok(t.ntokens - 2);
        m.tokens = line.substr(static_cast<size_t>(ft.data() - line.data()),
                               static_cast<size_t>(lt.data() + lt.size() - ft.data()));
    }
    Err err = Err::BadFormat;
    if (!meta_preparse(t, first, req, &err)) {
        if (cmd == Cmd::MetaDelete || cmd == Cmd::MetaArith) err = Err::InvalidOrDuplicateFlag;
        fail(req, err);
        if (cmd == Cmd::MetaSet) req->swallow = static_cast<uint32_t>(req->value_len) + 2;
        return;
    }
    if (cmd == Cmd::MetaSet) {
        switch (m.mode) {
            case 0: case 'E': case 'A': case 'P': case 'R': case 'S': break;
            default:
                fail(req, Err::InvalidMsMode);
                req->swallow = static_cast<uint32_t>(req->value_len) + 2;
                return;
        }
    } else if (cmd == Cmd::MetaArith) {
        switch (m.mode) {
            case 0: case 'I': case '+': case 'D': case '-': break;
            default: return fail(req, Err::InvalidMaMode);
        }
    }
    if (opaque_too_long(t, first)) {
        fail(req, Err::OpaqueTooLong);
        if (cmd == Cmd::MetaSet) req->swallow = static_cast<uint32_t>(req->value_len) + 2;
        return;
    }
    req->noreply = m.has('q');
    req->cmd = cmd;
}

// "get <keys>" and "gets <keys>", the commands a cache mostly sees, without splitting the
// line into tokens: the same result as parse_get's (keys from the first one to the end of
// the line); anything else, "get" without a key included, takes the general path.
bool parse_get_fast(std::string_view line, Request* req) noexcept {
    size_t p;
    Cmd cmd;
    if (line.size() > 4 && std::memcmp(line.data(), "get ", 4) == 0) {
        p = 4;
        cmd = Cmd::Get;
    } else if (line.size() > 5 && std::memcmp(line.data(), "gets ", 5) == 0) {
        p = 5;
        cmd = Cmd::Gets;
    } else {
        return false;
    }
    while (p < line.size() && line[p] == ' ') ++p;
    if (p == line.size()) return false;
    req->keys = line.substr(p);
    req->cmd = cmd;
    return true;
}

void parse_line(std::string_view line, Request* req) noexcept {
    if (parse_get_fast(line, req)) return;
    Tokens t;
    tokenize(line, &t);
    // Every command has at least two bytes and one token.
    if (t.ntokens < 2 || t.tok(0).size() < 2) return fail(req, Err::Error);
    std::string_view c = t.tok(0);
    // Meta commands are the two-letter ones starting with 'm'.
    if (c[0] == 'm' && c.size() == 2) return parse_meta(t, c[1], line, req);
    switch (c[0]) {
        case 'g':
            if (c == "get") return parse_get(t, Cmd::Get, line, req);
            if (c == "gets") return parse_get(t, Cmd::Gets, line, req);
            if (c == "gat") return parse_get(t, Cmd::Gat, line, req);
            if (c == "gats") return parse_get(t, Cmd::Gats, line, req);
            break;
        case 's':
            if (c == "set") return parse_store(t, Cmd::Set, req);
            if (c == "stats") {
                req->cmd = Cmd::Stats;
                req->args = args_of(t, line);
                return;
            }
            if (c == "slabs") {
                req->cmd = Cmd::Slabs;
                req->args = args_of(t, line);
                return;
            }
            if (c == "shutdown") {
                req->cmd = Cmd::Shutdown;
                req->args = args_of(t, line);
                return;
            }
            break;
        case 'a':
            if (c == "add") return parse_store(t, Cmd::Add, req);
            if (c == "append") return parse_store(t, Cmd::Append, req);
            break;
        case 'c':
            if (c == "cas") return parse_store(t, Cmd::Cas, req);
            if (c == "cluster") {  // managed mode's admin commands: their own sub-grammar
                req->cmd = Cmd::Cluster;
                req->args = args_of(t, line);
                return;
            }
            if (c == "cache_memlimit") return parse_memlimit(t, req);
            break;
        case 'i':
            if (c == "incr") return parse_arith(t, Cmd::Incr, req);
            break;
        case 'd':
            if (c == "delete") return parse_delete(t, req);
            if (c == "decr") return parse_arith(t, Cmd::Decr, req);
            if (c == "debug") {
                req->cmd = Cmd::Debug;
                req->args = args_of(t, line);
                return;
            }
            break;
        case 't':
            if (c == "touch") return parse_touch(t, req);
            break;
        case 'r':
            if (c == "replace") return parse_store(t, Cmd::Replace, req);
            if (c == "refresh_certs") {  // memcached ignores anything after it
                req->cmd = Cmd::RefreshCerts;
                return;
            }
            break;
        case 'p':
            if (c == "prepend") return parse_store(t, Cmd::Prepend, req);
            break;
        case 'b':
            // "bget": an ancient alias of get that memcached still answers.
            if (c == "bget") return parse_get(t, Cmd::Get, line, req);
            break;
        case 'f':
            if (c == "flush_all") return parse_flush_all(t, req);
            break;
        case 'v':
            if (c == "version") {
                req->cmd = Cmd::Version;
                return;
            }
            if (c == "verbosity") return parse_verbosity(t, req);
            break;
        case 'l':
            if (c == "lru_crawler") {
                req->cmd = Cmd::LruCrawler;
                req->args = args_of(t, line);
                return;
            }
            break;
        case 'w':
            if (c == "watch") {
                req->cmd = Cmd::Watch;
                req->args = args_of(t, line);
                return;
            }
            break;
        case 'q':
            if (c == "quit") {
                req->cmd = Cmd::Quit;
                return;
            }
            break;
        default: break;
    }
    fail(req, Err::Error);
    // An unknown command ending in "HTTP/...": memcached hangs up instead of answering.
    if (t.tok(t.ntokens - 2).starts_with("HTTP/")) req->close = true;
}

bool starts_with_get(std::string_view in) noexcept {
    size_t i = 0;
    while (i < in.size() && in[i] == ' ') ++i;
    if (i > 100) return false;
    std::string_view s = in.substr(i);
    return s.starts_with("get ") || s.starts_with("gets ");
}

}  // namespace

ParseStatus parse_command(std::string_view in, Request* req, size_t* consumed) noexcept {
    const void* nl = std::memchr(in.data(), '\n', in.size());
    if (nl == nullptr) {
        if (in.size() > kMaxLineWithoutNewline && !starts_with_get(in)) return ParseStatus::Close;
        return ParseStatus::NeedMore;
    }
    size_t el = static_cast<size_t>(static_cast<const char*>(nl) - in.data());
    *consumed = el + 1;
    size_t end = el;
    if (el > 1 && in[el - 1] == '\r') --end;
    std::string_view line = in.substr(0, end);
    // memcached works on a C string: a NUL byte ends the command line early.
    if (const void* z = std::memchr(line.data(), '\0', line.size())) {
        line = line.substr(0, static_cast<size_t>(static_cast<const char*>(z) - line.data()));
    }
    parse_line(line, req);
    req->raw = in.substr(0, *consumed);
    return req->close ? ParseStatus::Close : ParseStatus::Ok;
}

}  // namespace mcm::proto
