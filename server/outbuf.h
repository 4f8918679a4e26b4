// A connection's queue of reply bytes: short texts copied into one growable buffer, item values
// referenced in place (the queue holds the item's reference until the bytes are on the wire).
// Owned by one connection on its worker thread. No allocation once warmed up: the buffer and
// the segment array keep their capacity between requests.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <string>
#include <vector>

#include "server/store/store.h"

namespace mcm::server {

// proceed, wait for the socket, hang up; Blocked: the next reply is still being made
// elsewhere (a forwarded request's hole), nothing to send until it is filled
enum class IoStatus : uint8_t { Done, Retry, Fatal, Blocked };

class OutBuf {
public:
    explicit OutBuf(store::Store* store) noexcept : store_(store) {}
    ~OutBuf();
    OutBuf(const OutBuf&) = delete;
    OutBuf& operator=(const OutBuf&) = delete;

    // Copy s into the text buffer.
    void append(std::string_view s) {
        if (s.empty()) return;
        char* p = reserve(s.size());
        std::memcpy(p, s.data(), s.size());
        commit(s.size());
    }
    // Room for n bytes of text; fill it, then call commit with the bytes written.
    char* reserve(size_t n) {
        if (wbuf_len_ + n > wbuf_cap_) grow(n);
        return wbuf_ + wbuf_len_;
    }
    void commit(size_t n) {
        if (n == 0) return;  // an empty segment would make flush wait for nothing
        // Extend the last segment when it is unsent text ending where this text starts.
        if (segs_.size() > head_) {
            Seg& last = segs_.back();
            if (last.item == nullptr && !last.hole && last.off + last.len == wbuf_len_) {
                last.len += n;
                wbuf_len_ += n;
                pending_ += n;
                return;
            }
        }
        segs_.push_back(Seg{nullptr, wbuf_len_, n, nullptr});
        wbuf_len_ += n;
        pending_ += n;
    }
    // Queue len bytes at p inside it (a value). Takes over one reference on it.
    void add_item(store::Item* it, const char* p, size_t len) {
        segs_.push_back(Seg{p, 0, len, it});
        pending_ += len;
    }

    // A point to roll back to, dropping what was queued after it (and its item references).
    struct Mark {
        size_t nsegs = 0;
        size_t wlen = 0;
    };
    Mark mark() const noexcept { return {segs_.size(), wbuf_len_}; }
    void rollback(Mark m) noexcept;
    // The bytes queued after the mark (text and values, in order), which are then rolled back.
    std::string take_since(Mark m);

    bool empty() const noexcept { return head_ == segs_.size(); }
    size_t pending_bytes() const noexcept { return pending_; }

    // Write as much as the socket takes with sendmsg (IOV_MAX iovecs at a time). Done when
    // everything was sent; Retry on EAGAIN with bytes left; Fatal on a socket error.
    // *sent receives the bytes written.
    IoStatus flush(int fd, size_t* sent) noexcept;

    // The io_uring path's two halves of flush(): gather describes the unsent bytes up to the
    // first open hole in at most max iovecs (0: nothing can go) and pins the buffer, so that
    // what those iovecs point at stays put and unchanged until advance(n) reports that n of
    // those bytes went out (0 after an error) and unpins it. Appending meanwhile is allowed.
    size_t gather(struct iovec* iov, size_t max) noexcept;
    void advance(size_t n) noexcept;
    size_t unsent_segments() const noexcept;
    // TLS: copy up to cap bytes from the head (up to the first open hole) into dst, leaving
    // them queued; consume(n) then retires the first n of them once written. The bytes
    // gathered again after a failed write start the same (an SSL_write retry's rule).
    size_t gather(char* dst, size_t cap) const noexcept;
    void consume(size_t n) noexcept;

    void clear() noexcept;  // drop everything unsent (connection closing)

    // A place in the reply order for a reply that will come later (managed mode's forwarded
    // requests). Nothing after it is sent until fill() gives its bytes.
    size_t hole();
    void fill(size_t hole, std::string_view bytes);

    // Everything unsent, values included, appended to *to; the buffer is then empty.
    void drain_to(std::string* to);

private:
    void retire(size_t n) noexcept;  // n bytes from the head were sent
    size_t describe(struct iovec* iov, size_t max) const noexcept;
    struct Seg {
        const char* ptr;  // for item segments; null for text (offset into wbuf_)
        size_t off;       // text offset into wbuf_
        size_t len;
        store::Item* item;
        bool hole = false;  // a reply still to come
    };
    size_t holes_ = 0;  // unfilled holes
    void grow(size_t need);
    bool pinned_ = false;          // a gather()ed send is in flight (io_uring)
    bool clear_pending_ = false;   // clear() came while pinned: done by advance()
    std::vector<char*> retired_;   // text buffers replaced while pinned, freed by advance()

    store::Store* store_;
    std::vector<Seg> segs_;
    size_t head_ = 0;       // first unsent segment
    size_t head_off_ = 0;   // bytes of segs_[head_] already sent
    char* wbuf_ = nullptr;  // text bytes; segments refer to it by offset, so it may move
    size_t wbuf_len_ = 0;
    size_t wbuf_cap_ = 0;
    size_t pending_ = 0;  // bytes queued and not yet sent
};

}  // namespace mcm::server
