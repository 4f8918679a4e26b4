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
    pinned_ = false;  // the send it was pinned for is over (or cancelled with the ring)
    clear();
    std::free(wbuf_);
    for (char* p : retired_) std::free(p);
}

void OutBuf::grow(size_t need) {
    size_t cap = wbuf_cap_ ? wbuf_cap_ : kInitialText;
    while (cap < wbuf_len_ + need) cap *= 2;
    if (pinned_ && wbuf_ != nullptr) {
        // A send in flight points into the old buffer: copy, and keep the old one until then.
        char* p = static_cast<char*>(std::malloc(cap));
        if (p == nullptr) throw std::bad_alloc();
        std::memcpy(p, wbuf_, wbuf_len_);
        retired_.push_back(wbuf_);
        wbuf_ = p;
        wbuf_cap_ = cap;
        return;
    }
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

std::string OutBuf::take_since(Mark m) {
    std::string r;
    // Text appended to the segment that was last at the mark extends it in place.
    if (m.nsegs > 0 && m.nsegs <= segs_.size()) {
        const Seg& s = segs_[m.nsegs - 1];
        if (s.item == nullptr && !s.hole && s.off + s.len > m.wlen) {
            r.append(wbuf_ + m.wlen, s.off + s.len - m.wlen);
        }
    }
    for (size_t i = m.nsegs; i < segs_.size(); ++i) {
        const Seg& s = segs_[i];
        if (s.item != nullptr) {
            r.append(s.ptr, s.len);
        } else if (!s.hole) {
            r.append(wbuf_ + s.off, s.len);
        }
    }
    rollback(m);
    return r;
}

size_t OutBuf::hole() {
    segs_.push_back(Seg{nullptr, wbuf_len_, 0, nullptr, true});
    ++holes_;
    return segs_.size() - 1;
}

void OutBuf::fill(size_t h, std::string_view bytes) {
    Seg& s = segs_[h];
    if (!s.hole) return;
    if (!bytes.empty()) {
        if (wbuf_len_ + bytes.size() > wbuf_cap_) grow(bytes.size());
        std::memcpy(wbuf_ + wbuf_len_, bytes.data(), bytes.size());
    }
    s.off = wbuf_len_;
    s.len = bytes.size();
    s.hole = false;
    wbuf_len_ += bytes.size();
    pending_ += bytes.size();
    --holes_;
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
    if (pinned_) {  // a send in flight still reads these bytes and values: drop them after it
        clear_pending_ = true;
        return;
    }
    clear_pending_ = false;
    for (size_t i = head_; i < segs_.size(); ++i) {
        if (segs_[i].item != nullptr) store_->release(segs_[i].item);
    }
    segs_.clear();
    head_ = head_off_ = 0;
    wbuf_len_ = 0;
    pending_ = 0;
    holes_ = 0;
    if (wbuf_cap_ > 64 * 1024 && !pinned_) {  // do not keep a huge buffer for an idle connection
        std::free(wbuf_);
        wbuf_ = nullptr;
        wbuf_cap_ = 0;
    }
}

size_t OutBuf::gather(char* dst, size_t cap) const noexcept {
    size_t n = 0;
    for (size_t i = head_; i < segs_.size() && n < cap; ++i) {
        const Seg& s = segs_[i];
        if (s.hole) break;  // open holes only: a filled one is no longer marked
        const char* base = s.item ? s.ptr : wbuf_ + s.off;
        size_t skip = (i == head_) ? head_off_ : 0;
        size_t len = s.len - skip;
        if (len > cap - n) len = cap - n;
        std::memcpy(dst + n, base + skip, len);
        n += len;
    }
    return n;
}

void OutBuf::consume(size_t n) noexcept { retire(n); }

// n bytes from the head went out: release every segment they covered, and the empty ones
// (filled holes without a reply) right behind, up to the first one sent only in part.
void OutBuf::retire(size_t left) noexcept {
    pending_ -= left;
    while (head_ < segs_.size() && !segs_[head_].hole && left >= segs_[head_].len - head_off_) {
        Seg& s = segs_[head_];
        left -= s.len - head_off_;
        if (s.item != nullptr) store_->release(s.item);
        ++head_;
        head_off_ = 0;
    }
    head_off_ += left;
    while (head_ < segs_.size() && !segs_[head_].hole && segs_[head_].len == head_off_) {
        if (segs_[head_].item != nullptr) store_->release(segs_[head_].item);
        ++head_;
        head_off_ = 0;
    }
    if (head_ == segs_.size()) {
        segs_.clear();
        head_ = head_off_ = 0;
        wbuf_len_ = 0;
    }
}

// The unsent bytes up to the first open hole, as at most max iovecs (0: nothing can go).
size_t OutBuf::describe(struct iovec* iov, size_t max) const noexcept {
    size_t n = 0;
    for (size_t i = head_; i < segs_.size() && !segs_[i].hole && n < max; ++i, ++n) {
        const Seg& s = segs_[i];
        const char* base = s.item ? s.ptr : wbuf_ + s.off;
        size_t skip = (i == head_) ? head_off_ : 0;
        iov[n].iov_base = const_cast<char*>(base + skip);
        iov[n].iov_len = s.len - skip;
    }
    return n;
}

IoStatus OutBuf::flush(int fd, size_t* sent) noexcept {
    *sent = 0;
    while (head_ < segs_.size()) {
        // Managed mode's forwarded replies: send only up to the first hole still open. (A
        // filled hole may be empty; an empty iovec costs nothing.)
        struct iovec iov[kIovMax];
        size_t n = describe(iov, kIovMax);
        if (n == 0) return IoStatus::Blocked;  // the head is an open hole
        struct msghdr msg {};
        msg.msg_iov = iov;
        msg.msg_iovlen = n;
        ssize_t w = sys_sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::Retry;
            return IoStatus::Fatal;
        }
        *sent += static_cast<size_t>(w);
        retire(static_cast<size_t>(w));
        if (w == 0 && head_ < segs_.size() && !segs_[head_].hole) return IoStatus::Retry;
    }
    return IoStatus::Done;
}

size_t OutBuf::gather(struct iovec* iov, size_t max) noexcept {
    size_t n = describe(iov, max);
    pinned_ = n > 0;
    return n;
}

size_t OutBuf::unsent_segments() const noexcept {
    return segs_.size() - head_;
}

void OutBuf::advance(size_t n) noexcept {
    pinned_ = false;
    for (char* p : retired_) std::free(p);
    retired_.clear();
    if (clear_pending_) {
        clear();
        return;
    }
    retire(n);
}

}  // namespace mcm::server
