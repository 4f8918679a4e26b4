"""noreply suppresses the reply on every command that takes it; some errors still speak."""

import pytest

COMMANDS = [
    ("set k 0 0 1 noreply\r\nx", (0, b"x")),
    ("add k 0 0 1 noreply\r\nx", (0, b"x")),
    ("replace nope 0 0 1 noreply\r\nx", None),
    ("append k 0 0 1 noreply\r\nx", None),
    ("prepend k 0 0 1 noreply\r\nx", None),
    ("cas k 0 0 1 1 noreply\r\nx", None),
    ("incr k 1 noreply", None),
    ("decr k 1 noreply", None),
    ("delete k noreply", None),
    ("touch k 10 noreply", None),
    ("flush_all noreply", None),
    ("verbosity 1 noreply", None),
]


@pytest.mark.parametrize("line,_", COMMANDS)
def test_silent(conn, line, _):
    conn.send(line + "\r\n")
    # the next reply on the wire must belong to the next command
    assert conn.cmd("version").startswith(b"VERSION ")


def test_effects_happen(conn):
    conn.send("set k 0 0 1 noreply\r\n1\r\n")
    conn.send("incr k 41 noreply\r\n")
    conn.send("append k 0 0 1 noreply\r\n!\r\n")
    assert conn.get_value("k") == (0, b"42!")
    conn.send("delete k noreply\r\n")
    assert conn.get_value("k") is None


def test_noreply_silences_argument_errors(conn):
    # memcached notes noreply before it checks the arguments
    conn.send("set k x 0 1 noreply\r\n")
    conn.send("touch k x noreply\r\n")
    conn.send("incr k x noreply\r\n")
    assert conn.cmd("version").startswith(b"VERSION ")


def test_noreply_does_not_silence_token_errors(conn):
    assert conn.cmd("set k 0 noreply") == b"ERROR\r\n"


def test_bad_data_chunk_with_noreply(conn):
    conn.send("set k 0 0 1 noreply\r\nxyz\r\n")
    # "xy" was not followed by \r\n (silent), then "z" is read as a command
    assert conn.readline() == b"ERROR\r\n"
    assert conn.cmd("version").startswith(b"VERSION ")
