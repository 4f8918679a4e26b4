"""Binary protocol: every opcode memcached 1.6.18 serves, quiet variants, error texts and
framing, checked against /usr/bin/memcached as well (VERBOSITY, which 1.6.18 lacks, is marked
`documented`)."""

import struct

import pytest

from lib.binproto import *  # noqa: F401,F403  (opcodes, req, Bin)


def setx(flags=0, exp=0):
    return struct.pack(">II", flags, exp)


def arith(delta, initial=0, exp=0):
    return struct.pack(">QQI", delta, initial, exp)


@pytest.fixture
def b(server):
    return Bin(server)


def test_version_and_noop(b):
    op, st, ext, key, val, opq, cas = b.call(VERSION)
    assert (op, st, ext, key, opq, cas) == (VERSION, 0, b"", b"", 0x01020304, 0)
    assert val.startswith(b"1.6.18")
    assert b.call(NOOP) == (NOOP, 0, b"", b"", b"", 0x01020304, 0)


def test_set_get_getk(b):
    op, st, _, _, _, _, cas = b.call(SET, b"k", setx(5), b"val")
    assert (op, st) == (SET, 0) and cas != 0
    assert b.call(GET, b"k") == (GET, 0, b"\x00\x00\x00\x05", b"", b"val", 0x01020304, cas)
    assert b.call(GETK, b"k") == (GETK, 0, b"\x00\x00\x00\x05", b"k", b"val", 0x01020304, cas)


def test_get_misses(b):
    assert b.call(GET, b"nope") == (GET, 1, b"", b"", b"Not found", 0x01020304, 0)
    assert b.call(GETK, b"nope") == (GETK, 1, b"", b"nope", b"", 0x01020304, 0)


def test_quiet_gets(b):
    b.call(SET, b"k", setx(), b"v")
    b.send(req(GETQ, b"nope") + req(GETKQ, b"nope") + req(GATQ, b"nope", struct.pack(">I", 0)) +
           req(GETQ, b"k") + req(GETKQ, b"k") + req(NOOP))
    assert b.recv()[:5] == (GETQ, 0, b"\x00\x00\x00\x00", b"", b"v")
    assert b.recv()[:5] == (GETKQ, 0, b"\x00\x00\x00\x00", b"k", b"v")
    assert b.recv()[:2] == (NOOP, 0)


def test_storage_statuses(b):
    b.call(SET, b"k", setx(), b"x")
    assert b.call(ADD, b"k", setx(), b"x")[:5] == (ADD, 2, b"", b"", b"Data exists for key.")
    assert b.call(REPLACE, b"zz", setx(), b"x")[:5] == (REPLACE, 1, b"", b"", b"Not found")
    assert b.call(APPEND, b"zz", val=b"x")[:5] == (APPEND, 5, b"", b"", b"Not stored.")
    assert b.call(PREPEND, b"zz", val=b"x")[:5] == (PREPEND, 5, b"", b"", b"Not stored.")
    assert b.call(APPEND, b"k", val=b"!")[:2] == (APPEND, 0)
    assert b.call(PREPEND, b"k", val=b"<")[:2] == (PREPEND, 0)
    assert b.call(GET, b"k")[4] == b"<x!"
    assert b.call(ADD, b"new", setx(3), b"n")[:2] == (ADD, 0)
    assert b.call(REPLACE, b"new", setx(4), b"m")[:2] == (REPLACE, 0)
    assert b.call(GET, b"new")[2:5] == (b"\x00\x00\x00\x04", b"", b"m")


def test_cas(b):
    cas = b.call(SET, b"k", setx(), b"x")[6]
    assert b.call(SET, b"k", setx(), b"y", cas=cas + 1)[:5] == (SET, 2, b"", b"", b"Data exists for key.")
    new = b.call(SET, b"k", setx(), b"y", cas=cas)
    assert new[1] == 0 and new[6] != cas
    assert b.call(SET, b"nope", setx(), b"y", cas=5)[:5] == (SET, 1, b"", b"", b"Not found")
    assert b.call(APPEND, b"k", val=b"z", cas=1)[1] == 2  # append compares a given cas


def test_delete(b):
    cas = b.call(SET, b"k", setx(), b"x")[6]
    assert b.call(DELETE, b"k", cas=cas + 1)[:5] == (DELETE, 2, b"", b"", b"Data exists for key.")
    assert b.call(DELETE, b"k", cas=cas)[:5] == (DELETE, 0, b"", b"", b"")
    assert b.call(DELETE, b"k")[:5] == (DELETE, 1, b"", b"", b"Not found")
    b.call(SET, b"k", setx(), b"x")
    b.send(req(DELETEQ, b"k") + req(DELETEQ, b"k") + req(NOOP))
    assert b.recv()[:5] == (DELETEQ, 1, b"", b"", b"Not found")  # errors are never quiet
    assert b.recv()[:2] == (NOOP, 0)


def test_incr_decr(b):
    op, st, ext, key, val, opq, cas = b.call(INCR, b"c", arith(1, 10))
    assert (op, st, val) == (INCR, 0, struct.pack(">Q", 10)) and cas != 0
    assert b.call(INCR, b"c", arith(1, 10))[4] == struct.pack(">Q", 11)
    assert b.call(DECR, b"c", arith(100, 10))[4] == struct.pack(">Q", 0)
    assert b.call(INCR, b"d", arith(1, 10, 0xffffffff))[:5] == (INCR, 1, b"", b"", b"Not found")
    b.call(SET, b"t", setx(), b"text")
    assert b.call(INCR, b"t", arith(1))[:5] == \
        (INCR, 6, b"", b"", b"Non-numeric server-side value for incr or decr")
    b.call(SET, b"m", setx(), b"18446744073709551615")
    assert b.call(INCR, b"m", arith(2))[4] == struct.pack(">Q", 1)
    c = b.call(INCR, b"m", arith(1))[6]
    assert b.call(INCR, b"m", arith(1), cas=c + 1)[1] == 2
    b.send(req(INCRQ, b"m", arith(1)) + req(GET, b"m"))
    assert b.recv()[4] == b"3" + b" " * 19  # padded in place, as incr does


def test_touch_gat_gatk(b):
    cas = b.call(SET, b"k", setx(5), b"val")[6]
    exp = struct.pack(">I", 100)
    assert b.call(TOUCH, b"k", exp) == (TOUCH, 0, b"\x00\x00\x00\x05", b"", b"", 0x01020304, cas)
    assert b.call(GAT, b"k", exp)[:5] == (GAT, 0, b"\x00\x00\x00\x05", b"", b"val")
    assert b.call(GATK, b"k", exp)[:5] == (GATK, 0, b"\x00\x00\x00\x05", b"k", b"val")
    assert b.call(TOUCH, b"nope", exp)[:5] == (TOUCH, 1, b"", b"", b"Not found")
    assert b.call(GATK, b"nope", exp)[:5] == (GATK, 1, b"", b"nope", b"")


def test_flush(b):
    b.call(SET, b"k", setx(), b"x")
    assert b.call(FLUSH)[:5] == (FLUSH, 0, b"", b"", b"")
    assert b.call(GET, b"k")[1] == 1
    b.call(SET, b"k", setx(), b"x")
    b.send(req(FLUSHQ) + req(NOOP))
    assert b.recv()[:2] == (NOOP, 0)
    assert b.call(GET, b"k")[1] == 1
    assert b.call(FLUSH, ext=struct.pack(">I", 0))[1] == 0


def test_stats(b):
    b.send(req(STAT))
    names = []
    while True:
        op, st, ext, key, val, _, _ = b.recv()
        assert (op, st, ext) == (STAT, 0, b"")
        if not key:
            assert val == b""
            break
        names.append(key)
    assert names[0] == b"pid" and b"curr_items" in names
    assert b.call(STAT, b"reset")[:5] == (STAT, 0, b"", b"", b"")
    assert b.call(STAT, b"bogus")[:5] == (STAT, 1, b"", b"", b"Not found")
    b.send(req(STAT, b"settings"))
    first = b.recv()
    assert first[3] == b"maxbytes"
    while b.recv()[3]:
        pass


def test_quit(server):
    b = Bin(server)
    assert b.call(QUIT)[:2] == (QUIT, 0)
    assert b.c.expect_closed()
    b = Bin(server)
    b.send(req(QUITQ))
    assert b.c.expect_closed()


@pytest.mark.parametrize("bad", [
    req(GET, b"k", ext=b"x"),             # get takes no extras
    req(SET, b"k", ext=b"1234", val=b"v"),  # set needs 8 bytes of extras
    req(NOOP, b"k"),                        # noop takes no key
    req(GET, b"k" * 251),                   # key over 250 bytes
])
def test_malformed_request_is_refused_and_closed(server, bad):
    b = Bin(server)
    b.send(bad)
    assert b.recv()[1:5] == (4, b"", b"", b"Invalid arguments")
    assert b.c.expect_closed()


def test_inconsistent_lengths_close(server):
    b = Bin(server)
    b.send(req(GET, b"key", bodylen=1))
    assert b.recv()[1:5] == (0x81, b"", b"", b"Unknown command")
    assert b.c.expect_closed()


def test_unknown_opcode_keeps_the_connection(b):
    b.send(req(0x50, val=b"xyz") + req(NOOP))
    assert b.recv()[:5] == (0x50, 0x81, b"", b"", b"Unknown command")
    assert b.recv()[:2] == (NOOP, 0)


def test_sasl_without_sasl_is_unknown(b):
    assert b.call(SASL_LIST)[:5] == (SASL_LIST, 0x81, b"", b"", b"Unknown command")
    b.send(req(SASL_AUTH, b"PLAIN", val=b"abc") + req(NOOP))
    assert b.recv()[1] == 0x81
    assert b.recv()[:2] == (NOOP, 0)


def test_bad_magic_closes(server):
    b = Bin(server)
    b.send(req(NOOP) + b"\x81" + b"\x00" * 23)
    assert b.recv()[:2] == (NOOP, 0)
    assert b.c.expect_closed()


def test_byte_by_byte(b):
    data = req(SET, b"key", setx(9), b"v" * 100) + req(GETK, b"key")
    for i in range(len(data)):
        b.send(data[i:i + 1])
    assert b.recv()[:2] == (SET, 0)
    assert b.recv()[:5] == (GETK, 0, b"\x00\x00\x00\x09", b"key", b"v" * 100)


def test_large_value(b):
    value = bytes(range(256)) * 400
    assert b.call(SET, b"big", setx(), value)[1] == 0
    assert b.call(GET, b"big")[4] == value
    too_big = b"x" * (1024 * 1024 + 10)
    assert b.call(SET, b"big", setx(), too_big)[:5] == (SET, 3, b"", b"", b"Too large.")
    assert b.call(GET, b"big")[1] == 1  # a failed set removes the old value
    assert b.call(NOOP)[:2] == (NOOP, 0)


def test_binary_and_text_share_the_store(server):
    b = Bin(server)
    b.call(SET, b"shared", setx(7), b"from-binary")
    t = server.connect()
    assert t.get_value("shared") == (7, b"from-binary")
    t.cmd("set other 0 0 4\r\ntext")
    assert b.call(GET, b"other")[4] == b"text"


def test_counts(b):
    b.call(SET, b"k", setx(), b"1")
    b.call(GET, b"k")
    b.call(GET, b"nope")
    b.call(INCR, b"k", arith(1))
    b.call(DELETE, b"k")
    b.send(req(STAT))
    st = {}
    while True:
        r = b.recv()
        if not r[3]:
            break
        st[r[3].decode()] = r[4].decode()
    assert (st["cmd_set"], st["get_hits"], st["get_misses"]) == ("1", "1", "1")
    assert (st["incr_hits"], st["delete_hits"]) == ("1", "1")


def test_binary_only_refuses_text(make_server):
    s = make_server("-B", "binary")
    c = s.connect()
    c.send("version\r\n" * 3)  # a full header's worth of bytes without the magic
    assert c.expect_closed()
    b = Bin(s)
    assert b.call(NOOP)[:2] == (NOOP, 0)


@pytest.mark.documented
def test_verbosity(b):
    """protocol-binary.txt: Verbosity (0x1b) takes 4 bytes of extras; 1.6.18 answers it with
    "Unknown command"."""
    assert b.call(VERBOSITY, ext=struct.pack(">I", 1))[:5] == (VERBOSITY, 0, b"", b"", b"")
    assert b.call(NOOP)[:2] == (NOOP, 0)
