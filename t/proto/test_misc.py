"""version, verbosity, quit, cache_memlimit, shutdown."""

import re

import mc


def test_version(conn):
    assert re.fullmatch(rb"VERSION 1\.6\.\d+\S*\r\n", conn.cmd("version"))


def test_verbosity(conn):
    assert conn.cmd("verbosity 1") == b"OK\r\n"
    assert conn.cmd("verbosity 0") == b"OK\r\n"
    conn.send("verbosity 1 noreply\r\n")
    assert conn.cmd("version").startswith(b"VERSION ")


def test_quit(conn):
    conn.send("get nope\r\nquit\r\nget nope\r\n")
    assert conn.readline() == b"END\r\n"
    assert conn.expect_closed()
    assert conn.buf == b""


def test_cache_memlimit(conn):
    assert conn.cmd("cache_memlimit 100") == b"OK\r\n"
    assert conn.stats()["limit_maxbytes"] == str(100 * 1024 * 1024)
    assert conn.cmd("cache_memlimit 7") == \
        b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
    assert conn.cmd("cache_memlimit 2000000000") == \
        b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
    conn.send("cache_memlimit 64 noreply\r\n")
    assert conn.stats()["limit_maxbytes"] == str(64 * 1024 * 1024)


def test_shutdown_disabled(conn):
    assert conn.cmd("shutdown") == b"ERROR: shutdown not enabled\r\n"


def test_shutdown_enabled(make_server):
    s = make_server("-A")
    c = s.connect()
    assert c.cmd("shutdown bogus") == b"CLIENT_ERROR invalid shutdown mode\r\n"
    c.send("shutdown\r\n")
    assert c.expect_closed()
    mc.wait_for(lambda: not s.alive(), timeout=10, what="the server to exit")
    assert s.proc.returncode == 0
