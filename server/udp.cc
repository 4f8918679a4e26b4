// UDP (-U): memcached's 8-byte frame (request id, sequence number, datagram count, reserved)
// around text or binary requests. A request is one datagram; each command's reply is one
// message, cut into datagrams of at most 1400 bytes that carry the request's id, their
// sequence number and the message's datagram count.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "proto/binary.h"
#include "proto/text_parser.h"
#include "server/worker.h"

namespace mcm::server {

namespace {

constexpr size_t kFrameHeader = 8;
constexpr size_t kMaxDatagram = 1400;  // memcached's UDP_MAX_PAYLOAD_SIZE, header included
constexpr size_t kMaxRequest = 65536;
constexpr int kDatagramsPerEvent = 32;

uint16_t be16(const char* p) noexcept {
    return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

// Sends one reply message; returns the bytes handed to the kernel.
size_t send_message(int fd, uint16_t rid, const std::string& msg, const void* to,
                    unsigned tolen) {
    if (msg.empty()) return 0;
    const size_t per = kMaxDatagram - kFrameHeader;
    size_t count = (msg.size() + per - 1) / per;
    if (count > 0xffff) return 0;  // a reply this large cannot be framed; memcached drops it
    size_t sent = 0;
    char dgram[kMaxDatagram];
    for (size_t i = 0; i < count; ++i) {
        size_t off = i * per;
        size_t len = msg.size() - off < per ? msg.size() - off : per;
        proto::bin::store_be16(dgram, rid);
        proto::bin::store_be16(dgram + 2, static_cast<uint16_t>(i));
        proto::bin::store_be16(dgram + 4, static_cast<uint16_t>(count));
        proto::bin::store_be16(dgram + 6, 0);
        std::memcpy(dgram + kFrameHeader, msg.data() + off, len);
        ssize_t n = sendto(fd, dgram, kFrameHeader + len, MSG_DONTWAIT,
                           static_cast<const sockaddr*>(to), static_cast<socklen_t>(tolen));
        if (n > 0) sent += static_cast<size_t>(n);
    }
    return sent;
}

}  // namespace

void Worker::on_udp(evutil_socket_t fd, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    static thread_local std::string buf;
    buf.resize(kMaxRequest);
    for (int i = 0; i < kDatagramsPerEvent; ++i) {
        sockaddr_storage from{};
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from),
                             &fromlen);
        if (n < 0) return;  // EAGAIN: another worker took it, or nothing left
        self->stats_.bytes_read.add(static_cast<uint64_t>(n));
        self->serve_datagram(fd, buf.data(), static_cast<size_t>(n), &from, fromlen);
    }
}

void Worker::serve_datagram(int fd, const char* buf, size_t n, const void* from,
                            unsigned fromlen) {
    if (n <= kFrameHeader) return;  // memcached ignores datagrams without a request
    const uint16_t rid = be16(buf);
    OutBuf out(&ctx_.store);
    std::string msg;
    uint64_t written = 0;
    if (be16(buf + 4) != 1) {
        out.append("SERVER_ERROR multi-packet request not supported\r\n");
        out.drain_to(&msg);
        stats_.bytes_written.add(send_message(fd, rid, msg, from, fromlen));
        return;
    }
    std::string_view in(buf + kFrameHeader, n - kFrameHeader);
    Protocol b = ctx_.settings.binding_protocol;
    const bool binary = b == Protocol::Binary ||
                        (b == Protocol::Auto &&
                         static_cast<uint8_t>(in[0]) == proto::bin::kReqMagic);
    PendingStore pending;
    pending.cluster_peer = true;  // managed mode: UDP requests are not forwarded (NOT_MY_BUCKET)
    pending.no_park = true;       // ... nor parked
    for (int budget = 0; !in.empty() && budget < 1000; ++budget) {
        size_t consumed = 0;
        size_t swallow = 0;
        Next next;
        proto::ParseStatus ps;
        if (binary) {
            proto::bin::BinRequest breq;
            ps = proto::bin::parse_binary(in, &breq, &consumed);
            if (ps != proto::ParseStatus::Ok) break;
            next = dispatcher_.execute_binary(breq, out, &pending, &swallow);
        } else {
            proto::Request req;
            ps = proto::parse_command(in, &req, &consumed);
            if (ps != proto::ParseStatus::Ok) break;  // an unfinished line waits for nothing
            next = dispatcher_.execute(req, out, &pending, &swallow);
        }
        in.remove_prefix(consumed);
        bool stop = false;
        switch (next) {
            case Next::Continue: break;
            case Next::ReadValue:
                if (in.size() < pending.wire_len) {
                    // The value is not all in this datagram: nothing is stored or answered.
                    pending.item.reset();
                    pending.kind = PendingStore::Kind::Text;
                    stop = true;
                    break;
                }
                std::memcpy(pending.dest(), in.data(), pending.wire_len);
                in.remove_prefix(pending.wire_len);
                dispatcher_.finish_store(&pending, out);
                break;
            case Next::Swallow: in.remove_prefix(swallow < in.size() ? swallow : in.size()); break;
            case Next::CloseAfterWrite:
            case Next::CloseNow: stop = true; break;
            case Next::Forward: pending.forward.reset(); stop = true; break;  // not over UDP
        }
        msg.clear();
        out.drain_to(&msg);
        written += send_message(fd, rid, msg, from, fromlen);
        if (stop) break;
    }
    stats_.bytes_written.add(written);
}

}  // namespace mcm::server
