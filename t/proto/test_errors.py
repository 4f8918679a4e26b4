"""Bad input: memcached's exact error line, the connection kept where framing is intact and
closed where it is not, and the data of everyone else untouched."""

import pytest

BAD_LINES = [
    ("bogus", b"ERROR\r\n"),
    ("GET k", b"ERROR\r\n"),
    ("x", b"ERROR\r\n"),
    ("", b"ERROR\r\n"),
    ("set", b"ERROR\r\n"),
    ("set k 0 0", b"ERROR\r\n"),
    ("set k 0 0 1 noreply extra", b"ERROR\r\n"),
    ("set k x 0 1", b"CLIENT_ERROR bad command line format\r\n"),
    ("set k 0 x 1", b"CLIENT_ERROR bad command line format\r\n"),
    ("set k 0 0 x", b"CLIENT_ERROR bad command line format\r\n"),
    ("set k 0 0 -1", b"CLIENT_ERROR bad command line format\r\n"),
    ("set k 0 0 1x", b"CLIENT_ERROR bad command line format\r\n"),
    ("set " + "k" * 251 + " 0 0 1", b"CLIENT_ERROR bad command line format\r\n"),
    ("cas k 0 0 1", b"ERROR\r\n"),
    ("cas k 0 0 1 -5", b"CLIENT_ERROR bad command line format\r\n"),
    ("incr", b"ERROR\r\n"),
    ("touch k", b"ERROR\r\n"),
    ("verbosity", b"ERROR\r\n"),
    ("verbosity x", b"CLIENT_ERROR bad command line format\r\n"),
    ("cache_memlimit", b"ERROR\r\n"),
    ("cache_memlimit x", b"ERROR\r\n"),
    ("stats nonsense", b"ERROR\r\n"),
    ("stats detail", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
    ("stats detail bogus", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
    ("shutdown", b"ERROR: shutdown not enabled\r\n"),
    ("mx k", b"ERROR\r\n"),
    ("a " * 30, b"ERROR\r\n"),
]


@pytest.mark.parametrize("line,reply", BAD_LINES)
def test_bad_line(server, line, reply):
    keeper = server.connect()
    keeper.cmd("set keep 0 0 4\r\nsafe")
    c = server.connect()
    assert c.cmd(line) == reply
    # the connection stays usable and other data is untouched
    assert c.cmd("version").startswith(b"VERSION ")
    assert keeper.get_value("keep") == (0, b"safe")


def test_bare_newline_terminates(conn):
    conn.send("set k 0 0 1\nx\r\nget k\n")
    assert conn.readline() == b"STORED\r\n"
    assert conn.read_until() == b"VALUE k 0 1\r\nx\r\nEND\r\n"


def test_tab_is_not_a_separator(conn):
    # "get\tk" is one token: an unknown command
    assert conn.cmd("get\tk") == b"ERROR\r\n"


def test_nul_ends_the_line(conn):
    conn.cmd("set k 0 0 1\r\nx")
    conn.send(b"get k\x00junk\r\n")
    assert conn.read_until() == b"VALUE k 0 1\r\nx\r\nEND\r\n"


def test_control_characters_in_keys(conn):
    key = "a\x01b\x7fc"
    assert conn.cmd(f"set {key} 0 0 1\r\nx") == b"STORED\r\n"
    assert conn.get_value(key) == (0, b"x")


def test_bad_data_chunk(server):
    c = server.connect()
    c.send("set k 0 0 3\r\nabcde\r\n")
    assert c.readline() == b"CLIENT_ERROR bad data chunk\r\n"
    # the two bytes after the 5 read are parsed as an (empty) command
    assert c.readline() == b"ERROR\r\n"
    assert c.get_value("k") is None
    assert c.cmd("version").startswith(b"VERSION ")


def test_bad_data_chunk_keeps_old_value(conn):
    conn.cmd("set k 0 0 3\r\nold")
    conn.send("set k 0 0 3\r\nnewXY")
    assert conn.readline() == b"CLIENT_ERROR bad data chunk\r\n"
    assert conn.get_value("k") == (0, b"old")


def test_endless_line_closes(server):
    keeper = server.connect()
    keeper.cmd("set keep 0 0 4\r\nsafe")
    c = server.connect()
    c.send("set " + "x" * 5000)
    assert c.expect_closed()
    assert keeper.get_value("keep") == (0, b"safe")


def test_long_get_line_is_allowed(conn):
    conn.cmd("set k 0 0 1\r\nx")
    keys = " ".join(["nope"] * 2000)
    conn.send(f"get {keys} k\r\n")
    assert conn.read_until() == b"VALUE k 0 1\r\nx\r\nEND\r\n"


def test_http_request_closes(server):
    c = server.connect()
    c.send("GET / HTTP/1.1\r\n")
    assert c.expect_closed()


def test_get_ending_in_http_is_a_get(conn):
    assert conn.cmd("get / HTTP/1.1") == b"END\r\n"


def test_server_survives_garbage(server):
    import os
    c = server.connect()
    c.send(os.urandom(4096).replace(b"\n", b" "))
    c.expect_closed(timeout=2)
    d = server.connect()
    assert d.cmd("version").startswith(b"VERSION ")
    assert server.alive()
