// OutBuf's io_uring halves of flush (gather / advance): bytes in flight stay put while text is
// appended, partial sends resume where they stopped, a clear waits for the send in flight.
#include "server/outbuf.h"

#include <gtest/gtest.h>

#include <string>

using mcm::server::OutBuf;

namespace {

std::string joined(const struct iovec* iov, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    return s;
}

}  // namespace

TEST(OutBuf, GatherPinsTheBytesInFlight) {
    OutBuf o(nullptr);
    o.append("hello ");
    struct iovec iov[8];
    size_t n = o.gather(iov, 8);
    ASSERT_EQ(n, 1u);
    const char* p = static_cast<const char*>(iov[0].iov_base);
    // Enough text to make the buffer grow: the bytes in flight must not move.
    std::string big(100000, 'x');
    o.append(big);
    EXPECT_EQ(std::string(p, 6), "hello ");
    EXPECT_EQ(joined(iov, n), "hello ");
    o.advance(6);
    n = o.gather(iov, 8);
    EXPECT_EQ(joined(iov, n), big);
    o.advance(1000);  // a short send
    n = o.gather(iov, 8);
    EXPECT_EQ(joined(iov, n), big.substr(1000));
    o.advance(big.size() - 1000);
    EXPECT_TRUE(o.empty());
    EXPECT_EQ(o.pending_bytes(), 0u);
    EXPECT_EQ(o.gather(iov, 8), 0u);
}

TEST(OutBuf, ClearWaitsForTheSendInFlight) {
    OutBuf o(nullptr);
    o.append("abc");
    struct iovec iov[4];
    ASSERT_EQ(o.gather(iov, 4), 1u);
    o.clear();  // pinned: dropped once the send completes
    EXPECT_EQ(std::string(static_cast<const char*>(iov[0].iov_base), 3), "abc");
    o.advance(1);
    EXPECT_TRUE(o.empty());
    EXPECT_EQ(o.pending_bytes(), 0u);
}

TEST(OutBuf, GatherStopsAtAnOpenHole) {
    OutBuf o(nullptr);
    o.append("a");
    size_t h = o.hole();
    o.append("c");
    struct iovec iov[4];
    size_t n = o.gather(iov, 4);
    EXPECT_EQ(joined(iov, n), "a");
    o.advance(1);
    EXPECT_EQ(o.gather(iov, 4), 0u);  // blocked by the hole
    o.advance(0);
    o.fill(h, "b");
    n = o.gather(iov, 4);
    EXPECT_EQ(joined(iov, n), "bc");
    o.advance(2);
    EXPECT_TRUE(o.empty());
}
