"""Storage commands: set add replace append prepend cas, exact replies."""

import pytest


def test_set_get(conn):
    assert conn.cmd("set k 5 0 3\r\nabc") == b"STORED\r\n"
    assert conn.get_value("k") == (5, b"abc")


def test_flags_full_32_bits(conn):
    assert conn.cmd("set k 4294967295 0 1\r\nx") == b"STORED\r\n"
    assert conn.get_value("k") == (4294967295, b"x")


def test_flags_wrap_at_32_bits(conn):
    # memcached reads flags with strtoul into 64 bits and keeps the low 32
    assert conn.cmd("set k 4294967296 0 1\r\nx") == b"STORED\r\n"
    assert conn.get_value("k") == (0, b"x")


def test_negative_flags_refused(conn):
    assert conn.cmd("set k -1 0 1") == b"CLIENT_ERROR bad command line format\r\n"


def test_zero_length_value(conn):
    assert conn.cmd("set k 0 0 0\r\n") == b"STORED\r\n"
    conn.send("get k\r\n")
    assert conn.read_until() == b"VALUE k 0 0\r\n\r\nEND\r\n"


def test_binary_safe_value(conn):
    value = b"a\r\nb\x00c\r\n\xff"
    conn.send(b"set k 0 0 %d\r\n" % len(value) + value + b"\r\n")
    assert conn.readline() == b"STORED\r\n"
    assert conn.get_value("k") == (0, value)


def test_add(conn):
    assert conn.cmd("add k 0 0 1\r\na") == b"STORED\r\n"
    assert conn.cmd("add k 0 0 1\r\nb") == b"NOT_STORED\r\n"
    assert conn.get_value("k") == (0, b"a")


def test_replace(conn):
    assert conn.cmd("replace k 0 0 1\r\na") == b"NOT_STORED\r\n"
    assert conn.get_value("k") is None
    conn.cmd("set k 0 0 1\r\na")
    assert conn.cmd("replace k 7 0 1\r\nb") == b"STORED\r\n"
    assert conn.get_value("k") == (7, b"b")


def test_append_prepend_keep_old_flags(conn):
    assert conn.cmd("append k 0 0 1\r\na") == b"NOT_STORED\r\n"
    assert conn.cmd("prepend k 0 0 1\r\na") == b"NOT_STORED\r\n"
    conn.cmd("set k 3 0 2\r\nmm")
    assert conn.cmd("append k 9 0 2\r\nzz") == b"STORED\r\n"
    assert conn.cmd("prepend k 9 0 2\r\naa") == b"STORED\r\n"
    assert conn.get_value("k") == (3, b"aammzz")


def test_cas(conn):
    assert conn.cmd("cas k 0 0 1 1\r\na") == b"NOT_FOUND\r\n"
    conn.cmd("set k 0 0 1\r\na")
    conn.send("gets k\r\n")
    line = conn.readline()
    unique = int(line.split()[4])
    conn.read_until()
    assert conn.cmd(f"cas k 0 0 1 {unique + 1}\r\nb") == b"EXISTS\r\n"
    assert conn.cmd(f"cas k 0 0 1 {unique}\r\nb") == b"STORED\r\n"
    # the unique changed with the write: the same cas fails now
    assert conn.cmd(f"cas k 0 0 1 {unique}\r\nc") == b"EXISTS\r\n"
    assert conn.get_value("k") == (0, b"b")


def test_cas_bad_unique(conn):
    assert conn.cmd("cas k 0 0 1 x") == b"CLIENT_ERROR bad command line format\r\n"


def test_largest_value_under_default_limit(conn):
    # memcached counts its item header against -I: a little under 1 MiB of value fits
    value = b"v" * (1024 * 1024 - 512)
    conn.send(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n")
    assert conn.readline() == b"STORED\r\n"
    assert conn.get_value("big") == (0, value)


def test_value_too_large_is_swallowed(conn):
    value = b"v" * (1024 * 1024 + 1)
    conn.send(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n")
    assert conn.readline() == b"SERVER_ERROR object too large for cache\r\n"
    # the data was swallowed, not parsed as commands
    assert conn.cmd("version").startswith(b"VERSION ")


def test_too_large_set_removes_old_value(conn):
    conn.cmd("set big 0 0 1\r\nx")
    value = b"v" * (2 * 1024 * 1024)
    conn.send(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n")
    assert conn.readline() == b"SERVER_ERROR object too large for cache\r\n"
    assert conn.get_value("big") is None


@pytest.mark.parametrize("limit,ok,too_big", [("2m", 2 * 1024 * 1024 - 512, 2 * 1024 * 1024),
                                               ("512k", 512 * 1024 - 512, 512 * 1024)])
def test_item_size_option(make_server, limit, ok, too_big):
    c = make_server("-I", limit).connect()
    c.send(b"set a 0 0 %d\r\n" % ok + b"x" * ok + b"\r\n")
    assert c.readline() == b"STORED\r\n"
    c.send(b"set b 0 0 %d\r\n" % too_big + b"x" * too_big + b"\r\n")
    assert c.readline() == b"SERVER_ERROR object too large for cache\r\n"
    assert c.cmd("version").startswith(b"VERSION ")


def test_key_of_250_bytes(conn):
    key = "k" * 250
    assert conn.cmd(f"set {key} 0 0 1\r\nx") == b"STORED\r\n"
    assert conn.get_value(key) == (0, b"x")


def test_extra_token_is_ignored(conn):
    # memcached only looks at the last token for "noreply"; another word there is ignored
    assert conn.cmd("set k 0 0 1 junk\r\nx") == b"STORED\r\n"


def test_item_size_below_slab_chunk_max_refused(tmp_path):
    import subprocess
    import mc
    r = subprocess.run([mc.server_binary()] + mc.root_args() + ["-p", "0", "-I", "64k"],
                       capture_output=True, timeout=10)
    assert r.returncode == 64
    assert b"slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 65536)" \
        in r.stderr
