// Reply queue: text in one buffer addressed by offsets, values as iovecs into items.
#include "server/outbuf.h"

#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>

#include "server/sys.h"

namespace mcm::server {

namespace {
constexpr size_t kIovMax = IOV_MAX < 1024 ? IOV_MAX : 1024;
constexpr size_t kInitialText = 2048;
}  // namespace

OutBuf::~OutBuf() {
    clear();
    std::free(wbuf_);
}

void OutBuf::grow(size_t need) {
    size_t cap = wbuf_cap_ ? wbuf_cap_ : kInitialText;
    while (cap < wbuf_len_ + need) cap *= 2;
    char* p = static_cast<char*>(std::realloc(wbuf_, cap));
    if (p == nullptr) throw std::bad_alloc();
    wbuf_ = p;
    wbuf_cap_ = cap;
}

void OutBuf::rollback(Mark m) noexcept {
    while (segs_.size() > m.nsegs) {
        Seg& s = segs_.back();
        pending_ -= s.len;
        if (s.item != nullptr) store_->release(s.item);
        segs_.pop_back();
    }
    // A text segment that was extended after the mark is cut back.
    if (!segs_.empty() && segs_.back().item == nullptr) {
        Seg& s = segs_.back();
        if (s.off + s.len > m.wlen) {
            size_t cut = s.off + s.len - m.wlen;
            s.len -= cut;
            pending_ -= cut;
        }
    }
    wbuf_len_ = m.wlen;
}

size_t OutBuf::hole() {
    segs_.push_back(Seg{nullptr, wbuf_len_, 0, nullptr, true});
    ++holes_;
    return segs_.size() - 1;
}

void OutBuf::fill(size_t h, std::string_view bytes) {
    Seg& s = segs_[h];
    if (!s.hole) return;
    size_t off = wbuf_len_;
    if (!bytes.empty()) {
        if (wbuf_len_ + bytes.size() > wbuf_cap_) grow(bytes.size());
        std::memcpy(wbuf_ + wbuf_len_, bytes.data(), bytes.size());
        wbuf_len_ += bytes.size();
    }
    Seg& t = segs_[h];  // (grow does not move segs_, but keep the reference fresh)
    t.off = off;
    t.len = bytes.size();
    t.hole = false;
    pending_ += bytes.size();
    --holes_;
}

std::string OutBuf::text() const {
    std::string r;
    for (size_t i = head_; i < segs_.size(); ++i) {
        const Seg& s = segs_[i];
        if (s.item == nullptr) r.append(wbuf_ + s.off, s.len);
    }
    return r;
}

void OutBuf::drain_to(std::string* to) {
    for (size_t i = head_; i < segs_.size(); ++i) {
        const Seg& s = segs_[i];
        size_t skip = i == head_ ? head_off_ : 0;
        const char* p = s.item == nullptr ? wbuf_ + s.off : s.ptr;
        to->append(p + skip, s.len - skip);
    }
    clear();
}

void OutBuf::clear() noexcept {
    for (size_t i = head_; i < segs_.size(); ++i) {
        if (segs_[i].item != nullptr) store_->release(segs_[i].item);
    }
    segs_.clear();
    head_ = head_off_ = 0;
    wbuf_len_ = 0;
    pending_ = 0;
    holes_ = 0;
    if (wbuf_cap_ > 64 * 1024) {  // do not keep a huge buffer for an idle connection
        std::free(wbuf_);
        wbuf_ = nullptr;
        wbuf_cap_ = 0;
    }
}

IoStatus OutBuf::flush(int fd, size_t* sent) noexcept {
    *sent = 0;
    while (head_ < segs_.size()) {
        // Empty segments (filled holes with no reply) and the first unfilled hole.
        while (head_ < segs_.size() && !segs_[head_].hole && segs_[head_].len == 0) ++head_;
        if (head_ == segs_.size()) break;
        if (segs_[head_].hole) return IoStatus::Blocked;
        struct iovec iov[kIovMax];
        size_t n = 0;
        for (size_t i = head_; i < segs_.size() && n < kIovMax && !segs_[i].hole; ++i, ++n) {
            const Seg& s = segs_[i];
            const char* base = s.item ? s.ptr : wbuf_ + s.off;
            size_t skip = (i == head_) ? head_off_ : 0;
            iov[n].iov_base = const_cast<char*>(base + skip);
            iov[n].iov_len = s.len - skip;
        }
        struct msghdr msg {};
        msg.msg_iov = iov;
        msg.msg_iovlen = n;
        ssize_t w = sys_sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::Retry;
            return IoStatus::Fatal;
        }
        size_t left = static_cast<size_t>(w);
        *sent += left;
        pending_ -= left;
        while (left > 0) {
            Seg& s = segs_[head_];
            size_t rem = s.len - head_off_;
            if (left >= rem) {
                left -= rem;
                if (s.item != nullptr) store_->release(s.item);
                ++head_;
                head_off_ = 0;
            } else {
                head_off_ += left;
                left = 0;
            }
        }
        if (head_ < segs_.size() && static_cast<size_t>(w) == 0) return IoStatus::Retry;
    }
    segs_.clear();
    head_ = head_off_ = 0;
    wbuf_len_ = 0;
    return IoStatus::Done;
}

}  // namespace mcm::server
