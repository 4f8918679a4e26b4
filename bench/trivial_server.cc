// The benchmark's ceiling: a server that stores nothing and answers every get with the same
// hit, every set with STORED (meta: VA / HD). One thread, epoll, one read and one write per
// batch of requests: what one core and loopback TCP allow, for comparison in bench/compare.py.
// Not a memcached: never use it for anything but measuring.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

namespace {

struct Conn {
    std::string in;
    std::string out;
    size_t skip = 0;  // value bytes of a set still to drop
};

// Precomputed reply tails: everything after the key of a get, the whole mg reply.
struct Replies {
    std::string get_tail;  // " 0 <n>\r\n<value>\r\nEND\r\n"
    std::string mg;        // "VA <n> f0\r\n<value>\r\n"
};

// Answer every complete request in c.in; leave a partial one for later.
void serve(Conn& c, const Replies& r) {
    size_t pos = 0;
    for (;;) {
        if (c.skip > 0) {
            size_t n = std::min(c.skip, c.in.size() - pos);
            pos += n;
            c.skip -= n;
            if (c.skip > 0) break;
        }
        size_t nl = c.in.find('\n', pos);
        if (nl == std::string::npos) break;
        const char* p = c.in.data() + pos;
        size_t len = nl - pos + 1;
        if (len > 4 && memcmp(p, "get ", 4) == 0) {
            size_t kend = len - 2;
            while (kend > 4 && (p[kend] == '\r' || p[kend] == '\n')) --kend;
            c.out.append("VALUE ", 6);
            c.out.append(p + 4, kend - 3);
            c.out += r.get_tail;
        } else if (len > 3 && memcmp(p, "mg ", 3) == 0) {
            c.out += r.mg;
        } else if (len > 4 && memcmp(p, "set ", 4) == 0) {
            // set <key> <flags> <exptime> <bytes>
            const char* last = static_cast<const char*>(memrchr(p, ' ', len));
            c.skip = strtoul(last + 1, nullptr, 10) + 2;
            c.out += "STORED\r\n";
        } else if (len > 3 && memcmp(p, "ms ", 3) == 0) {
            // ms <key> <datalen> <flags>*
            const char* sp = static_cast<const char*>(memchr(p + 3, ' ', len - 3));
            c.skip = (sp ? strtoul(sp + 1, nullptr, 10) : 0) + 2;
            c.out += "HD\r\n";
        } else {
            c.out += "ERROR\r\n";
        }
        pos = nl + 1;
    }
    c.in.erase(0, pos);
}

}  // namespace

int main(int argc, char** argv) {
    int port = 0;
    size_t vsize = 32;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-p") == 0) port = atoi(argv[i + 1]);
        if (strcmp(argv[i], "-v") == 0) vsize = strtoul(argv[i + 1], nullptr, 10);
    }
    std::string value(vsize, 'x');
    Replies replies{" 0 " + std::to_string(vsize) + "\r\n" + value + "\r\nEND\r\n",
                    "VA " + std::to_string(vsize) + " f0\r\n" + value + "\r\n"};
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(lfd, 1024) != 0) {
        perror("bind/listen");
        return 1;
    }
    socklen_t alen = sizeof(a);
    getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen);
    printf("TCP INET: %d\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    std::unordered_map<int, Conn> conns;
    epoll_event evs[256];
    char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; ++i) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
                if (c < 0) continue;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                epoll_event cev{};
                cev.events = EPOLLIN;
                cev.data.fd = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                conns[c];
                continue;
            }
            Conn& c = conns[fd];
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0) {
                close(fd);
                conns.erase(fd);
                continue;
            }
            if (c.in.empty()) {
                c.in.assign(buf, static_cast<size_t>(r));
            } else {
                c.in.append(buf, static_cast<size_t>(r));
            }
            serve(c, replies);
            size_t off = 0;
            while (off < c.out.size()) {  // a benchmark peer reads promptly: block-free enough
                ssize_t w = write(fd, c.out.data() + off, c.out.size() - off);
                if (w < 0) continue;
                off += static_cast<size_t>(w);
            }
            c.out.clear();
        }
    }
}
