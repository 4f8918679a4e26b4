"""memcached's exptime rules: 0 never, up to 30 days relative, larger absolute, negative expired.
Real-time tests use one-second expiries and poll with a deadline; longer spans use the debug
build's clock (`debug time +N`)."""

import time

import pytest

import mc

THIRTY_DAYS = 60 * 60 * 24 * 30


def gone(conn, key):
    return conn.get_value(key) is None


def test_relative_expiry(conn):
    conn.cmd("set k 0 1 1\r\nx")
    conn.cmd("set forever 0 0 1\r\ny")
    mc.wait_for(lambda: gone(conn, "k"), timeout=5, what="k to expire")
    assert conn.get_value("forever") == (0, b"y")


def test_negative_exptime_is_expired(conn):
    assert conn.cmd("set k 0 -1 1\r\nx") == b"STORED\r\n"
    assert conn.get_value("k") is None


def test_absolute_past_is_expired(conn):
    # beyond 30 days means a unix time; one in the past expires at once
    assert conn.cmd(f"set k 0 {THIRTY_DAYS + 1} 1\r\nx") == b"STORED\r\n"
    assert conn.get_value("k") is None


def test_absolute_future_lives(conn):
    future = int(time.time()) + 3600
    conn.cmd(f"set k 0 {future} 1\r\nx")
    assert conn.get_value("k") == (0, b"x")


def test_absolute_near_future_expires(conn):
    soon = int(time.time()) + 2
    conn.cmd(f"set k 0 {soon} 1\r\nx")
    assert conn.get_value("k") == (0, b"x")
    mc.wait_for(lambda: gone(conn, "k"), timeout=6, what="k to expire")


def test_exptime_wraps_at_32_bits(conn):
    # memcached keeps the low 32 bits of exptime: 2^32 reads as 0, never expires
    conn.cmd("set k 0 4294967296 1\r\nx")
    assert conn.get_value("k") == (0, b"x")


def test_touch_extends_and_shortens(conn):
    conn.cmd("set a 0 1 1\r\nx")
    assert conn.cmd("touch a 0") == b"TOUCHED\r\n"
    conn.cmd("set b 0 0 1\r\nx")
    assert conn.cmd("touch b -1") == b"TOUCHED\r\n"
    assert conn.get_value("b") is None
    conn.cmd("set c 0 0 1\r\nx")
    conn.send("gat 1 c\r\n")
    conn.read_until()
    mc.wait_for(lambda: gone(conn, "c"), timeout=5, what="c to expire")
    assert conn.get_value("a") == (0, b"x")


def test_get_expired_counter(conn):
    conn.cmd("set k 0 1 1\r\nx")
    mc.wait_for(lambda: gone(conn, "k"), timeout=5, what="k to expire")
    st = conn.stats()
    assert int(st["get_expired"]) >= 1


@pytest.mark.needs_debug
def test_thirty_day_boundary(ours):
    conn = ours.connect()
    conn.cmd(f"set rel 0 {THIRTY_DAYS} 1\r\nx")
    conn.cmd(f"set abs 0 {THIRTY_DAYS + 1} 1\r\nx")
    assert conn.get_value("rel") == (0, b"x")
    assert conn.get_value("abs") is None
    assert conn.cmd(f"debug time +{THIRTY_DAYS - 10}") == b"OK\r\n"
    assert conn.get_value("rel") == (0, b"x")
    assert conn.cmd("debug time +20") == b"OK\r\n"
    assert conn.get_value("rel") is None


@pytest.mark.needs_debug
def test_background_reclaim(ours):
    conn = ours.connect()
    for i in range(200):
        conn.send(f"set k{i} 0 100 1 noreply\r\nx\r\n")
    assert conn.stats()["curr_items"] == "200"
    conn.cmd("debug time +200")
    # nobody reads them: the crawler must reclaim them
    mc.wait_for(lambda: conn.stats()["curr_items"] == "0", timeout=20,
                what="the crawler to reclaim expired items")
    # With the LRU maintainer on (the default), memcached's maintainer takes these back
    # and counts them in `reclaimed`; our reclaimer stands in for it.
    st = conn.stats()
    assert (int(st["reclaimed"]), int(st["crawler_reclaimed"])) == (200, 0)


@pytest.mark.needs_debug
def test_background_reclaim_without_maintainer(make_server):
    s = make_server("-o", "no_lru_maintainer")
    if not mc.is_ours(s):
        pytest.skip("needs this project's debug build")
    conn = s.connect()
    for i in range(50):
        conn.send(f"set k{i} 0 100 1 noreply\r\nx\r\n")
    assert conn.stats()["curr_items"] == "50"
    conn.cmd("debug time +200")
    mc.wait_for(lambda: conn.stats()["curr_items"] == "0", timeout=20,
                what="the crawler to reclaim expired items")
    st = conn.stats()
    assert (int(st["reclaimed"]), int(st["crawler_reclaimed"])) == (0, 50)
