// mcload: a memtier-like load generator for memcached-compatible servers. Threads, connections
// per thread, pipeline depth, get:set ratio, key count and distribution (uniform or Zipf),
// fixed or ranged value sizes, a duration or a request count, pre-fill, text or meta protocol.
// Reports ops/s and latency percentiles from a log-linear histogram (never averages), as text
// or JSON. One epoll loop per thread; no allocation per request once running.
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

// ---- Latency histogram: 2^7 linear sub-buckets per power of two (< 1% error). ----
class Histogram {
public:
    static constexpr int kSub = 7;
    static constexpr int kBuckets = 64 << kSub;
    Histogram() : counts_(kBuckets, 0) {}
    void record(uint64_t ns) {
        ++counts_[index(ns)];
        ++total_;
        max_ = std::max(max_, ns);
    }
    void merge(const Histogram& o) {
        for (int i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
        total_ += o.total_;
        max_ = std::max(max_, o.max_);
    }
    uint64_t total() const { return total_; }
    uint64_t max() const { return max_; }
    // The value at quantile q (upper edge of the bucket holding it).
    uint64_t percentile(double q) const {
        if (total_ == 0) return 0;
        uint64_t want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
        if (want == 0) want = 1;
        uint64_t seen = 0;
        for (int i = 0; i < kBuckets; ++i) {
            seen += counts_[i];
            if (seen >= want) return std::min(upper(i), max_);
        }
        return max_;
    }

private:
    static int index(uint64_t v) {
        if (v < (1u << kSub)) return static_cast<int>(v);
        int msb = 63 - __builtin_clzll(v);
        int shift = msb - kSub;
        return ((shift + 1) << kSub) + static_cast<int>((v >> shift) & ((1u << kSub) - 1));
    }
    static uint64_t upper(int i) {
        int group = i >> kSub;
        uint64_t sub = static_cast<uint64_t>(i & ((1 << kSub) - 1));
        if (group == 0) return sub;
        int shift = group - 1;
        return (((uint64_t{1} << kSub) + sub + 1) << shift) - 1;
    }
    std::vector<uint64_t> counts_;
    uint64_t total_ = 0;
    uint64_t max_ = 0;
};

// ---- Zipf sampler over 1..n: rejection-inversion (Hormann & Derflinger), O(1) memory. ----
class Zipf {
public:
    Zipf(uint64_t n, double s) : n_(static_cast<double>(n)), s_(s) {
        hx1_ = hint(1.5) - 1.0;
        hn_ = hint(n_ + 0.5);
        cut_ = 2.0 - hinv(hint(2.5) - h(2.0));
    }
    template <class Rng>
    uint64_t operator()(Rng& rng) {
        std::uniform_real_distribution<double> u01(0.0, 1.0);
        for (;;) {
            double u = hn_ + u01(rng) * (hx1_ - hn_);
            double x = hinv(u);
            double k = std::floor(x + 0.5);
            if (k < 1) k = 1;
            if (k > n_) k = n_;
            if (k - x <= cut_ || u >= hint(k + 0.5) - h(k)) return static_cast<uint64_t>(k);
        }
    }

private:
    static double helper1(double x) { return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1 - x / 2; }
    static double helper2(double x) { return std::abs(x) > 1e-8 ? std::expm1(x) / x : 1 + x / 2; }
    double h(double x) const { return std::exp(-s_ * std::log(x)); }
    double hint(double x) const {
        double lx = std::log(x);
        return helper2((1.0 - s_) * lx) * lx;
    }
    double hinv(double x) const {
        double t = x * (1.0 - s_);
        if (t < -1.0) t = -1.0;
        return std::exp(helper1(t) * x);
    }
    double n_, s_, hx1_ = 0, hn_ = 0, cut_ = 0;
};

struct Options {
    std::string host = "127.0.0.1";
    int port = 11211;
    int threads = 1;
    int conns = 4;  // per thread
    int depth = 1;  // requests in flight per connection
    int get_ratio = 9, set_ratio = 1;
    uint64_t keys = 100000;
    double zipf = 0;  // 0 = uniform
    size_t vmin = 32, vmax = 32;
    double duration = 5;
    uint64_t requests = 0;  // per connection; 0 = run for duration
    bool prefill = false;
    bool prefill_only = false;
    bool meta = false;
    bool json = false;
    bool tls = false;  // --tls: every connection is TLS (the server's certificate not checked)
    std::string key_prefix = "key:";
    int key_width = 10;
    double warmup = 0;
    double rate = 0;  // total requests per second over every connection; 0 = as fast as possible
    // --buckets: only the keys whose managed-mode bucket (CRC-32 of the key mod B,
    // doc/managed.md) is in the set: a map-aware client's share for one server. Key i of the
    // run is then the i-th such key of the unfiltered key space (keys counts those).
    std::vector<uint64_t> only;
};

enum class Kind : uint8_t { Get, Set };

struct Conn {
    int fd = -1;
    SSL* ssl = nullptr;  // --tls
    std::string out;
    size_t out_off = 0;
    std::string in;
    size_t in_off = 0;
    struct Pending {
        Kind kind;
        std::chrono::steady_clock::time_point sent;
    };
    std::deque<Pending> inflight;
    uint64_t issued = 0;
    bool want_out = false;  // registered for EPOLLOUT
    std::chrono::steady_clock::time_point next_send{};  // --rate: when the next may go
};

struct ThreadResult {
    Histogram get_lat, set_lat;
    uint64_t gets = 0, sets = 0, hits = 0, misses = 0, errors = 0;
};

// CRC-32 (IEEE, reflected, as zlib's crc32): the bucket function of managed mode.
uint32_t crc32(const char* p, size_t n) {
    static const auto table = [] {
        std::vector<uint32_t> t(256);
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) c = table[(c ^ static_cast<uint8_t>(p[i])) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// "B:first-last,first-last,b,...": the keys of [0, keys) whose bucket is in the set.
bool filter_keys(const std::string& spec, Options* o) {
    size_t colon = spec.find(':');
    if (colon == std::string::npos) return false;
    uint32_t nb = static_cast<uint32_t>(strtoul(spec.c_str(), nullptr, 10));
    if (nb == 0) return false;
    std::vector<bool> want(nb, false);
    std::string rest = spec.substr(colon + 1);
    size_t pos = 0;
    while (pos < rest.size()) {
        size_t comma = rest.find(',', pos);
        std::string r = rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        unsigned long a = 0, b = 0;
        if (sscanf(r.c_str(), "%lu-%lu", &a, &b) != 2) {
            if (sscanf(r.c_str(), "%lu", &a) != 1) return false;
            b = a;
        }
        if (a > b || b >= nb) return false;
        for (unsigned long i = a; i <= b; ++i) want[i] = true;
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    char buf[64];
    for (uint64_t k = 0; k < o->keys; ++k) {
        int n = snprintf(buf, sizeof buf, "%s%0*llu", o->key_prefix.c_str(), o->key_width,
                         static_cast<unsigned long long>(k));
        if (want[crc32(buf, static_cast<size_t>(n)) % nb]) o->only.push_back(k);
    }
    if (o->only.empty()) return false;
    o->keys = o->only.size();
    return true;
}

[[noreturn]] void die(const char* what) {
    fprintf(stderr, "mcload: %s: %s\n", what, strerror(errno));
    exit(1);
}

SSL_CTX* g_tls = nullptr;  // --tls: one client context for every connection

// --tls: a blocking handshake on a fresh socket (before it becomes non-blocking).
SSL* tls_wrap(int fd) {
    SSL* ssl = SSL_new(g_tls);
    if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr, "mcload: TLS handshake failed\n");
        exit(1);
    }
    return ssl;
}

// read(2)/write(2), or SSL_read/SSL_write on a --tls connection, with the same results
// (EAGAIN when the socket would block).
ssize_t io_read(Conn& c, void* buf, size_t n) {
    if (c.ssl == nullptr) return ::read(c.fd, buf, n);
    int r = SSL_read(c.ssl, buf, static_cast<int>(n));
    if (r > 0) return r;
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    errno = EPROTO;
    return -1;
}

ssize_t io_write(Conn& c, const void* buf, size_t n) {
    if (c.ssl == nullptr) return ::write(c.fd, buf, n);
    int r = SSL_write(c.ssl, buf, static_cast<int>(n));
    if (r > 0) return r;
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    errno = EPROTO;
    return -1;
}

int connect_to(const Options& o, SSL** ssl) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* ai = nullptr;
    std::string port = std::to_string(o.port);
    if (getaddrinfo(o.host.c_str(), port.c_str(), &hints, &ai) != 0) die("getaddrinfo");
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) die("socket");
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) die("connect");
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *ssl = o.tls ? tls_wrap(fd) : nullptr;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

class Worker {
public:
    Worker(const Options& o, int id, std::atomic<bool>* stop)
        : o_(o), rng_(0x9e3779b97f4a7c15ull * static_cast<uint64_t>(id + 1)), stop_(stop),
          zipf_(o.keys, o.zipf > 0 ? o.zipf : 1.0) {
        value_.assign(o.vmax, 'x');
        if (o.rate > 0) {
            interval_ = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                std::chrono::duration<double>(o.threads * o.conns / o.rate));
        }
    }

    void prefill(uint64_t from, uint64_t to) {
        // One connection, sets pipelined in batches, every reply awaited.
        Conn c;
        c.fd = connect_to(o_, &c.ssl);
        const uint64_t batch = 256;
        for (uint64_t k = from; k < to; k += batch) {
            uint64_t end = std::min(to, k + batch);
            for (uint64_t i = k; i < end; ++i) append_set(c, i);
            write_all(c);
            for (uint64_t i = k; i < end; ++i) read_line_blocking(c);
        }
        if (c.ssl != nullptr) SSL_free(c.ssl);
        close(c.fd);
    }

    void run(ThreadResult* r, std::chrono::steady_clock::time_point measure_from) {
        int ep = epoll_create1(0);
        ep_ = ep;
        conns_.resize(static_cast<size_t>(o_.conns));
        for (size_t i = 0; i < conns_.size(); ++i) {
            conns_[i].fd = connect_to(o_, &conns_[i].ssl);
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = i;
            epoll_ctl(ep, EPOLL_CTL_ADD, conns_[i].fd, &ev);
        }
        measure_from_ = measure_from;
        for (Conn& c : conns_) fill(c, r);
        epoll_event evs[64];
        while (true) {
            bool all_done = true;
            for (Conn& c : conns_) {
                if (!c.inflight.empty() || !done(c)) all_done = false;
            }
            if (all_done) break;
            int n = epoll_wait(ep, evs, 64, o_.rate > 0 ? 1 : 100);
            if (o_.rate > 0) {
                for (Conn& c : conns_) {
                    if (c.issued != UINT64_MAX) fill(c, r);  // paced sends that came due
                }
            }
            for (int i = 0; i < n; ++i) {
                Conn& c = conns_[evs[i].data.u64];
                if (evs[i].events & EPOLLOUT) flush(c);
                if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
                if (!read_some(c, r)) {
                    fprintf(stderr, "mcload: connection closed by server\n");
                    r->errors++;
                    close(c.fd);
                    c.inflight.clear();
                    c.issued = UINT64_MAX;
                    continue;
                }
                fill(c, r);
            }
        }
        for (Conn& c : conns_) close(c.fd);
        close(ep);
    }

private:
    bool done(const Conn& c) const {
        if (c.issued == UINT64_MAX) return true;
        if (o_.requests > 0) return c.issued >= o_.requests;
        return stop_->load(std::memory_order_relaxed);
    }

    void key_of(uint64_t k, char* buf, int* len) const {
        if (!o_.only.empty()) k = o_.only[k];
        *len = snprintf(buf, 64, "%s%0*llu", o_.key_prefix.c_str(), o_.key_width,
                        static_cast<unsigned long long>(k));
    }

    uint64_t next_key() {
        if (o_.zipf > 0) return zipf_(rng_) - 1;
        return std::uniform_int_distribution<uint64_t>(0, o_.keys - 1)(rng_);
    }

    size_t next_vlen() {
        if (o_.vmin == o_.vmax) return o_.vmin;
        return std::uniform_int_distribution<size_t>(o_.vmin, o_.vmax)(rng_);
    }

    void append_set(Conn& c, uint64_t k) {
        char key[64];
        int klen;
        key_of(k, key, &klen);
        size_t vlen = next_vlen();
        char line[160];
        int n = o_.meta ? snprintf(line, sizeof(line), "ms %.*s %zu T0 F0\r\n", klen, key, vlen)
                        : snprintf(line, sizeof(line), "set %.*s 0 0 %zu\r\n", klen, key, vlen);
        c.out.append(line, static_cast<size_t>(n));
        c.out.append(value_.data(), vlen);
        c.out.append("\r\n", 2);
    }

    void append_get(Conn& c, uint64_t k) {
        char key[64];
        int klen;
        key_of(k, key, &klen);
        char line[96];
        int n = o_.meta ? snprintf(line, sizeof(line), "mg %.*s v f\r\n", klen, key)
                        : snprintf(line, sizeof(line), "get %.*s\r\n", klen, key);
        c.out.append(line, static_cast<size_t>(n));
    }

    // Keep depth requests in flight on c.
    void fill(Conn& c, ThreadResult*) {
        auto now = std::chrono::steady_clock::now();
        int total = o_.get_ratio + o_.set_ratio;
        while (static_cast<int>(c.inflight.size()) < o_.depth && !done(c)) {
            if (o_.rate > 0) {
                // Open-loop pacing: each connection sends on its own schedule; a late reply
                // does not push the schedule back (latency then includes the queueing).
                if (c.next_send == std::chrono::steady_clock::time_point{}) c.next_send = now;
                if (now < c.next_send) break;
                c.next_send += interval_;
            }
            bool is_get = std::uniform_int_distribution<int>(0, total - 1)(rng_) < o_.get_ratio;
            uint64_t k = next_key();
            if (is_get) {
                append_get(c, k);
            } else {
                append_set(c, k);
            }
            c.inflight.push_back({is_get ? Kind::Get : Kind::Set, now});
            ++c.issued;
        }
        flush(c);
    }

    // Write what the socket takes; wait for EPOLLOUT for the rest (the server may be busy
    // sending us replies and not reading: never spin on a full socket here).
    void flush(Conn& c) {
        while (c.out_off < c.out.size()) {
            ssize_t w = io_write(c, c.out.data() + c.out_off, c.out.size() - c.out_off);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                die("write");
            }
            c.out_off += static_cast<size_t>(w);
        }
        bool pending = c.out_off < c.out.size();
        if (!pending) {
            c.out.clear();
            c.out_off = 0;
        }
        if (pending != c.want_out) {
            epoll_event ev{};
            ev.events = pending ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
            ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
            epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
            c.want_out = pending;
        }
    }

    void write_all(Conn& c) {
        while (c.out_off < c.out.size()) {
            ssize_t w = io_write(c, c.out.data() + c.out_off, c.out.size() - c.out_off);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;  // spin: the peer reads
                die("write");
            }
            c.out_off += static_cast<size_t>(w);
        }
        c.out.clear();
        c.out_off = 0;
    }

    void read_line_blocking(Conn& c) {
        for (;;) {
            size_t nl = c.in.find("\r\n", c.in_off);
            if (nl != std::string::npos) {
                c.in_off = nl + 2;
                if (c.in_off == c.in.size()) {
                    c.in.clear();
                    c.in_off = 0;
                }
                return;
            }
            char buf[65536];
            ssize_t n = io_read(c, buf, sizeof(buf));
            if (n > 0) {
                c.in.append(buf, static_cast<size_t>(n));
            } else if (n == 0) {
                fprintf(stderr, "mcload: server closed the connection\n");
                exit(1);
            } else if (errno != EAGAIN && errno != EINTR) {
                die("read");
            }
        }
    }

    // Parse as many complete replies as are buffered. Returns false on EOF/error.
    bool read_some(Conn& c, ThreadResult* r) {
        char buf[65536];
        for (;;) {
            ssize_t n = io_read(c, buf, sizeof(buf));
            if (n > 0) {
                c.in.append(buf, static_cast<size_t>(n));
                // A short read emptied the socket; over TLS, read on until it would block
                // (a record's worth at a time, and epoll cannot see what OpenSSL holds).
                if (c.ssl == nullptr && static_cast<size_t>(n) < sizeof(buf)) break;
            } else if (n == 0) {
                return false;
            } else if (errno == EAGAIN || errno == EINTR) {
                break;
            } else {
                return false;
            }
        }
        auto now = std::chrono::steady_clock::now();
        while (!c.inflight.empty()) {
            size_t used = 0;
            int hit = 0;
            if (!parse_reply(c, c.inflight.front().kind, &used, &hit, r)) break;
            c.in_off += used;
            Conn::Pending p = c.inflight.front();
            c.inflight.pop_front();
            if (now < measure_from_) continue;
            uint64_t ns = static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(now - p.sent).count());
            if (p.kind == Kind::Get) {
                r->gets++;
                r->get_lat.record(ns);
                if (hit) {
                    r->hits++;
                } else {
                    r->misses++;
                }
            } else {
                r->sets++;
                r->set_lat.record(ns);
            }
        }
        if (c.in_off == c.in.size()) {
            c.in.clear();
            c.in_off = 0;
        } else if (c.in_off > 65536) {
            c.in.erase(0, c.in_off);
            c.in_off = 0;
        }
        return true;
    }

    // One reply at c.in[c.in_off...]. False if incomplete.
    bool parse_reply(Conn& c, Kind kind, size_t* used, int* hit, ThreadResult* r) {
        const char* p = c.in.data() + c.in_off;
        size_t avail = c.in.size() - c.in_off;
        const char* nl = static_cast<const char*>(memchr(p, '\n', avail));
        if (nl == nullptr) return false;
        size_t line = static_cast<size_t>(nl - p) + 1;
        if (kind == Kind::Set) {
            if (!(line >= 4 && (memcmp(p, "STORED", 6) == 0 || memcmp(p, "HD", 2) == 0))) {
                r->errors++;
            }
            *used = line;
            return true;
        }
        if (!o_.meta) {
            if (line == 5 && memcmp(p, "END\r\n", 5) == 0) {
                *used = line;
                return true;
            }
            if (memcmp(p, "VALUE ", 6) != 0) {
                r->errors++;
                *used = line;
                return true;
            }
            // VALUE <key> <flags> <bytes>
            const char* sp = static_cast<const char*>(memrchr(p, ' ', line));
            size_t bytes = strtoull(sp + 1, nullptr, 10);
            size_t need = line + bytes + 2 + 5;
            if (avail < need) return false;
            *used = need;
            *hit = 1;
            return true;
        }
        // meta: "VA <bytes> ...\r\n<data>\r\n", "EN\r\n"
        if (memcmp(p, "EN", 2) == 0) {
            *used = line;
            return true;
        }
        if (memcmp(p, "VA ", 3) != 0) {
            r->errors++;
            *used = line;
            return true;
        }
        size_t bytes = strtoull(p + 3, nullptr, 10);
        size_t need = line + bytes + 2;
        if (avail < need) return false;
        *used = need;
        *hit = 1;
        return true;
    }

    const Options& o_;
    std::mt19937_64 rng_;
    std::atomic<bool>* stop_;
    Zipf zipf_;
    std::string value_;
    std::vector<Conn> conns_;
    int ep_ = -1;
    std::chrono::steady_clock::time_point measure_from_;
    std::chrono::steady_clock::duration interval_{};  // --rate: between one connection's sends
};

void usage() {
    printf(
        "mcload: load generator for memcached-compatible servers\n"
        "  -s, --server=HOST:PORT     server (default 127.0.0.1:11211)\n"
        "  -t, --threads=N            client threads (default 1)\n"
        "  -c, --conns=N              connections per thread (default 4)\n"
        "  -d, --depth=N              pipeline depth per connection (default 1)\n"
        "  -r, --ratio=G:S            get:set ratio (default 9:1)\n"
        "  -k, --keys=N               key space size (default 100000)\n"
        "  -z, --zipf=S               Zipf exponent (default uniform)\n"
        "  -v, --value=N|MIN-MAX      value size in bytes (default 32)\n"
        "  -D, --duration=SECONDS     run time (default 5)\n"
        "  -R, --rate=OPS             total requests per second, paced per connection\n"
        "                             (default: as fast as replies allow)\n"
        "  -n, --requests=N           requests per connection instead of a duration\n"
        "  -w, --warmup=SECONDS       not measured at the start (default 0)\n"
        "  -p, --prefill              set every key once before the run\n"
        "  -F, --prefill-only         set every key once, report, and exit\n"
        "  -m, --meta                 use the meta protocol (mg/ms)\n"
        "  -P, --key-prefix=STR       key prefix (default \"key:\")\n"
        "  -W, --key-width=N          zero-padded digits after the prefix (default 10)\n"
        "  -b, --buckets=B:LIST       only keys whose bucket (CRC-32 %% B, managed mode) is in\n"
        "                             LIST (first-last,...): a map-aware client's share\n"
        "  -j, --json                 print one JSON object\n"
        "  -T, --tls                  connect with TLS (the certificate is not checked)\n");
}

bool parse_options(int argc, char** argv, Options* o) {
    static const option longopts[] = {
        {"server", required_argument, nullptr, 's'}, {"threads", required_argument, nullptr, 't'},
        {"conns", required_argument, nullptr, 'c'},  {"depth", required_argument, nullptr, 'd'},
        {"ratio", required_argument, nullptr, 'r'},  {"keys", required_argument, nullptr, 'k'},
        {"zipf", required_argument, nullptr, 'z'},   {"value", required_argument, nullptr, 'v'},
        {"duration", required_argument, nullptr, 'D'},
        {"rate", required_argument, nullptr, 'R'},
        {"requests", required_argument, nullptr, 'n'},
        {"warmup", required_argument, nullptr, 'w'}, {"prefill", no_argument, nullptr, 'p'},
        {"prefill-only", no_argument, nullptr, 'F'},
        {"meta", no_argument, nullptr, 'm'},         {"key-prefix", required_argument, nullptr, 'P'},
        {"key-width", required_argument, nullptr, 'W'}, {"json", no_argument, nullptr, 'j'},
        {"buckets", required_argument, nullptr, 'b'}, {"tls", no_argument, nullptr, 'T'},
        {"help", no_argument, nullptr, 'h'},         {nullptr, 0, nullptr, 0}};
    int ch;
    std::string buckets;
    while ((ch = getopt_long(argc, argv, "s:t:c:d:r:k:z:v:D:R:n:w:pFmP:W:jb:Th", longopts, nullptr)) !=
           -1) {
        switch (ch) {
            case 's': {
                std::string s = optarg;
                size_t colon = s.rfind(':');
                if (colon == std::string::npos) return false;
                o->host = s.substr(0, colon);
                o->port = atoi(s.c_str() + colon + 1);
                break;
            }
            case 't': o->threads = atoi(optarg); break;
            case 'c': o->conns = atoi(optarg); break;
            case 'd': o->depth = atoi(optarg); break;
            case 'r':
                if (sscanf(optarg, "%d:%d", &o->get_ratio, &o->set_ratio) != 2) return false;
                break;
            case 'k': o->keys = strtoull(optarg, nullptr, 10); break;
            case 'z': o->zipf = atof(optarg); break;
            case 'v':
                if (sscanf(optarg, "%zu-%zu", &o->vmin, &o->vmax) != 2) {
                    o->vmin = o->vmax = strtoull(optarg, nullptr, 10);
                }
                break;
            case 'D': o->duration = atof(optarg); break;
            case 'R': o->rate = atof(optarg); break;
            case 'n': o->requests = strtoull(optarg, nullptr, 10); break;
            case 'w': o->warmup = atof(optarg); break;
            case 'p': o->prefill = true; break;
            case 'F': o->prefill = o->prefill_only = true; break;
            case 'm': o->meta = true; break;
            case 'P': o->key_prefix = optarg; break;
            case 'W': o->key_width = atoi(optarg); break;
            case 'j': o->json = true; break;
            case 'b': buckets = optarg; break;
            case 'T': o->tls = true; break;
            case 'h': usage(); exit(0);
            default: return false;
        }
    }
    if (!buckets.empty() && !filter_keys(buckets, o)) {
        fprintf(stderr, "mcload: --buckets wants B:first-last,... with some key in it\n");
        return false;
    }
    if (o->threads < 1 || o->conns < 1 || o->depth < 1 || o->keys < 1 || o->vmin > o->vmax ||
        o->get_ratio < 0 || o->set_ratio < 0 || o->get_ratio + o->set_ratio == 0) {
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (!parse_options(argc, argv, &o)) {
        usage();
        return 2;
    }
    if (o.tls) {
        g_tls = SSL_CTX_new(TLS_client_method());
        if (g_tls == nullptr) return 1;
        SSL_CTX_set_verify(g_tls, SSL_VERIFY_NONE, nullptr);
        SSL_CTX_set_mode(g_tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    std::atomic<bool> stop{false};
    std::vector<std::unique_ptr<Worker>> workers;
    for (int i = 0; i < o.threads; ++i) workers.push_back(std::make_unique<Worker>(o, i, &stop));
    if (o.prefill) {
        std::vector<std::thread> ts;
        uint64_t per = (o.keys + static_cast<uint64_t>(o.threads) - 1) / o.threads;
        for (int i = 0; i < o.threads; ++i) {
            uint64_t from = per * static_cast<uint64_t>(i), to = std::min(o.keys, from + per);
            ts.emplace_back([&, i, from, to] { workers[i]->prefill(from, to); });
        }
        for (auto& t : ts) t.join();
        if (o.prefill_only) {
            printf(o.json ? "{\"prefilled\": %llu}\n" : "prefilled %llu keys\n",
                   static_cast<unsigned long long>(o.keys));
            return 0;
        }
    }
    std::vector<ThreadResult> results(static_cast<size_t>(o.threads));
    auto start = std::chrono::steady_clock::now();
    auto measure_from = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(o.warmup));
    std::vector<std::thread> ts;
    for (int i = 0; i < o.threads; ++i) {
        ts.emplace_back([&, i] { workers[i]->run(&results[i], measure_from); });
    }
    if (o.requests == 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(o.duration + o.warmup));
        stop = true;
    }
    for (auto& t : ts) t.join();
    auto end = std::chrono::steady_clock::now();
    ThreadResult all;
    for (ThreadResult& r : results) {
        all.get_lat.merge(r.get_lat);
        all.set_lat.merge(r.set_lat);
        all.gets += r.gets;
        all.sets += r.sets;
        all.hits += r.hits;
        all.misses += r.misses;
        all.errors += r.errors;
    }
    Histogram lat;
    lat.merge(all.get_lat);
    lat.merge(all.set_lat);
    double secs = std::chrono::duration<double>(end - std::max(start, measure_from)).count();
    double ops = static_cast<double>(all.gets + all.sets) / secs;
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    if (o.json) {
        printf(
            "{\"ops_per_sec\": %.1f, \"seconds\": %.3f, \"gets\": %llu, \"sets\": %llu, "
            "\"hits\": %llu, \"misses\": %llu, \"errors\": %llu, "
            "\"latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}, "
            "\"get_latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f}, "
            "\"set_latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f}, "
            "\"threads\": %d, \"conns\": %d, \"depth\": %d, \"protocol\": \"%s\"}\n",
            ops, secs, (unsigned long long)all.gets, (unsigned long long)all.sets,
            (unsigned long long)all.hits, (unsigned long long)all.misses,
            (unsigned long long)all.errors, us(lat.percentile(0.5)), us(lat.percentile(0.99)),
            us(lat.percentile(0.999)), us(lat.max()), us(all.get_lat.percentile(0.5)),
            us(all.get_lat.percentile(0.99)), us(all.get_lat.percentile(0.999)),
            us(all.set_lat.percentile(0.5)), us(all.set_lat.percentile(0.99)),
            us(all.set_lat.percentile(0.999)), o.threads, o.conns, o.depth,
            o.meta ? "meta" : "text");
    } else {
        printf("%.0f ops/s over %.2f s (%llu gets, %llu hits, %llu sets, %llu errors)\n", ops,
               secs, (unsigned long long)all.gets, (unsigned long long)all.hits,
               (unsigned long long)all.sets, (unsigned long long)all.errors);
        printf("latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", us(lat.percentile(0.5)),
               us(lat.percentile(0.99)), us(lat.percentile(0.999)), us(lat.max()));
    }
    return all.errors == 0 ? 0 : 1;
}
