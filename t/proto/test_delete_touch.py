"""delete (with its legacy forms) and touch."""


def test_delete(conn):
    conn.cmd("set k 0 0 1\r\nx")
    assert conn.cmd("delete k") == b"DELETED\r\n"
    assert conn.cmd("delete k") == b"NOT_FOUND\r\n"
    assert conn.get_value("k") is None


def test_delete_legacy_zero(conn):
    conn.cmd("set k 0 0 1\r\nx")
    assert conn.cmd("delete k 0") == b"DELETED\r\n"
    conn.cmd("set k 0 0 1\r\nx")
    conn.send("delete k 0 noreply\r\n")
    assert conn.cmd("delete k") == b"NOT_FOUND\r\n"


def test_delete_with_a_time_is_refused(conn):
    conn.cmd("set k 0 0 1\r\nx")
    assert conn.cmd("delete k 10") == \
        b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    assert conn.get_value("k") == (0, b"x")


def test_delete_token_counts(conn):
    assert conn.cmd("delete") == b"ERROR\r\n"
    assert conn.cmd("delete a b c d") == b"ERROR\r\n"


def test_delete_key_too_long(conn):
    assert conn.cmd("delete " + "k" * 251) == b"CLIENT_ERROR bad command line format\r\n"


def test_touch(conn):
    assert conn.cmd("touch k 10") == b"NOT_FOUND\r\n"
    conn.cmd("set k 0 0 1\r\nx")
    assert conn.cmd("touch k 10") == b"TOUCHED\r\n"
    assert conn.cmd("touch k x") == b"CLIENT_ERROR invalid exptime argument\r\n"
    assert conn.cmd("touch k") == b"ERROR\r\n"


def test_touch_does_not_change_cas(conn):
    conn.cmd("set k 0 0 1\r\nx")
    conn.send("gets k\r\n")
    c1 = conn.read_until()
    conn.cmd("touch k 100")
    conn.send("gets k\r\n")
    assert conn.read_until() == c1


def test_delete_and_touch_counters(conn):
    conn.cmd("set k 0 0 1\r\nx")
    conn.cmd("touch k 0")
    conn.cmd("touch nope 0")
    conn.cmd("delete k")
    conn.cmd("delete k")
    st = conn.stats()
    assert (st["cmd_touch"], st["touch_hits"], st["touch_misses"]) == ("2", "1", "1")
    assert (st["delete_hits"], st["delete_misses"]) == ("1", "1")
