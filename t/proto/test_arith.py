"""incr and decr: 64-bit unsigned arithmetic on decimal values."""


def test_incr_decr(conn):
    conn.cmd("set n 0 0 2\r\n10")
    assert conn.cmd("incr n 5") == b"15\r\n"
    assert conn.cmd("decr n 3") == b"12\r\n"
    assert conn.get_value("n") == (0, b"12")


def test_incr_wraps_at_2_64(conn):
    conn.cmd("set n 0 0 20\r\n18446744073709551615")
    assert conn.cmd("incr n 2") == b"1\r\n"


def test_decr_stops_at_zero(conn):
    conn.cmd("set n 0 0 1\r\n5")
    assert conn.cmd("decr n 100") == b"0\r\n"


def test_shorter_result_is_padded_in_place(conn):
    # memcached rewrites the value in place and pads with spaces
    conn.cmd("set n 0 0 2\r\n10")
    assert conn.cmd("decr n 1") == b"9\r\n"
    assert conn.get_value("n") == (0, b"9 ")
    assert conn.cmd("incr n 1") == b"10\r\n"
    assert conn.get_value("n") == (0, b"10")


def test_longer_result_grows(conn):
    conn.cmd("set n 7 0 2\r\n99")
    assert conn.cmd("incr n 1") == b"100\r\n"
    assert conn.get_value("n") == (7, b"100")


def test_incr_changes_cas(conn):
    conn.cmd("set n 0 0 1\r\n1")
    conn.send("gets n\r\n")
    c1 = conn.read_until().split()[4]
    conn.cmd("incr n 1")
    conn.send("gets n\r\n")
    c2 = conn.read_until().split()[4]
    assert c1 != c2


def test_miss(conn):
    assert conn.cmd("incr nope 1") == b"NOT_FOUND\r\n"
    assert conn.cmd("decr nope 1") == b"NOT_FOUND\r\n"


def test_non_numeric_value(conn):
    conn.cmd("set s 0 0 3\r\nabc")
    assert conn.cmd("incr s 1") == \
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    conn.cmd("set e 0 0 0\r\n")
    assert conn.cmd("incr e 1") == \
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    conn.cmd("set big 0 0 21\r\n123456789012345678901")
    assert conn.cmd("incr big 1") == \
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"


def test_invalid_delta(conn):
    conn.cmd("set n 0 0 1\r\n1")
    for delta in ["x", "-1", "18446744073709551616"]:
        assert conn.cmd(f"incr n {delta}") == b"CLIENT_ERROR invalid numeric delta argument\r\n"


def test_wrong_token_count(conn):
    assert conn.cmd("incr n") == b"ERROR\r\n"
    assert conn.cmd("incr n 1 noreply extra") == b"ERROR\r\n"


def test_counters(conn):
    conn.cmd("set n 0 0 1\r\n1")
    conn.cmd("incr n 1")
    conn.cmd("incr nope 1")
    conn.cmd("decr n 1")
    conn.cmd("decr nope 1")
    st = conn.stats()
    assert (st["incr_hits"], st["incr_misses"], st["decr_hits"], st["decr_misses"]) == \
        ("1", "1", "1", "1")
