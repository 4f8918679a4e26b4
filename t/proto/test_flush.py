"""flush_all with and without delay."""

import mc


def test_flush_all(conn):
    conn.cmd("set a 0 0 1\r\nx")
    conn.cmd("set b 0 0 1\r\nx")
    assert conn.cmd("flush_all") == b"OK\r\n"
    assert conn.get_value("a") is None
    assert conn.get_value("b") is None
    assert conn.cmd("set c 0 0 1\r\nx") == b"STORED\r\n"
    assert conn.get_value("c") == (0, b"x")


def test_flush_all_zero_and_noreply(conn):
    conn.cmd("set a 0 0 1\r\nx")
    assert conn.cmd("flush_all 0") == b"OK\r\n"
    assert conn.get_value("a") is None
    conn.cmd("set a 0 0 1\r\nx")
    conn.send("flush_all noreply\r\n")
    assert conn.get_value("a") is None
    conn.cmd("set a 0 0 1\r\nx")
    conn.send("flush_all 0 noreply\r\n")
    assert conn.get_value("a") is None


def test_flush_all_delayed(conn):
    conn.cmd("set a 0 0 1\r\nx")
    assert conn.cmd("flush_all 2") == b"OK\r\n"
    assert conn.get_value("a") == (0, b"x")
    mc.wait_for(lambda: conn.get_value("a") is None, timeout=6, what="the delayed flush")


def test_flush_all_bad_argument(conn):
    conn.cmd("set a 0 0 1\r\nx")
    assert conn.cmd("flush_all x") == b"CLIENT_ERROR invalid exptime argument\r\n"
    assert conn.cmd("flush_all 1 2 3") == b"ERROR\r\n"
    assert conn.get_value("a") == (0, b"x")


def test_flush_counters(make_server):
    # no background reclaimer: the get must be the one that finds the flushed item
    conn = make_server("-o", "no_lru_crawler,no_lru_maintainer").connect()
    conn.cmd("set a 0 0 1\r\nx")
    conn.cmd("flush_all")
    conn.get_value("a")
    st = conn.stats()
    assert st["cmd_flush"] == "1"
    assert st["get_flushed"] == "1"


def test_flush_disabled(make_server):
    c = make_server("-F").connect()
    c.cmd("set a 0 0 1\r\nx")
    assert c.cmd("flush_all") == b"CLIENT_ERROR flush_all not allowed\r\n"
    assert c.get_value("a") == (0, b"x")
    assert c.stats()["cmd_flush"] == "1"
