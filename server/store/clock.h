// The server clock: memcached's coarse "relative time" in seconds since the process started.
// Owns no thread: the server's main loop calls tick() once a second; tests and the debug build
// move it with advance(). Pure value logic, no I/O.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

namespace mcm::store {

// Seconds since Clock::process_started(). 0 in an exptime means "never expires".
using RelTime = uint32_t;

// Exptimes larger than this (30 days) are absolute unix times, as in memcached.
inline constexpr int64_t kRealtimeMaxDelta = 60 * 60 * 24 * 30;

class Clock {
public:
    // started_unix: the unix time that RelTime 0 stands for. memcached sets it a little in
    // the past (now - 62 s) so that RelTime 1 always lies before "now"; the server does too.
    explicit Clock(int64_t started_unix) noexcept : started_(started_unix) {}

    RelTime now() const noexcept { return now_.load(std::memory_order_relaxed); }
    int64_t process_started() const noexcept { return started_; }
    int64_t unix_now() const noexcept { return started_ + now(); }

    // Set the relative time from the wall clock (main thread, once a second).
    void tick(int64_t unix_time) noexcept {
        int64_t rel = unix_time + offset_.load(std::memory_order_relaxed) - started_;
        now_.store(rel > 0 ? static_cast<RelTime>(rel) : 1, std::memory_order_relaxed);
    }
    // Move the clock forward by secs (debug time travel and unit tests). Main thread or tests.
    void advance(int64_t secs) noexcept {
        offset_.fetch_add(secs, std::memory_order_relaxed);
        now_.store(static_cast<RelTime>(now() + secs), std::memory_order_relaxed);
    }
    // Tests: set the relative time directly.
    void set_now(RelTime t) noexcept { now_.store(t, std::memory_order_relaxed); }

    // memcached's realtime(): convert a protocol exptime into a RelTime.
    //   0 -> 0 (never); negative -> 1 (already expired);
    //   <= 30 days -> now + exptime; larger -> absolute unix time (1 if not after process start).
    RelTime realtime(int64_t exptime) const noexcept {
        if (exptime == 0) return 0;
        if (exptime < 0) return 1;
        if (exptime > kRealtimeMaxDelta) {
            if (exptime <= started_) return 1;
            int64_t rel = exptime - started_;
            return rel > UINT32_MAX ? UINT32_MAX : static_cast<RelTime>(rel);
        }
        int64_t rel = exptime + now();
        return rel > UINT32_MAX ? UINT32_MAX : static_cast<RelTime>(rel);
    }

private:
    std::atomic<RelTime> now_{0};
    int64_t started_;
    std::atomic<int64_t> offset_{0};  // debug time travel, added to the wall clock
};

}  // namespace mcm::store
