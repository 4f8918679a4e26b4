"""UDP (-U): memcached's 8-byte frame, replies per command split into 1400-byte datagrams,
text and binary requests; checked against /usr/bin/memcached too."""

import socket
import struct

import pytest

from lib import mc

FRAME = struct.Struct(">HHHH")


@pytest.fixture
def udp(make_server):
    s = make_server("-U", "-1")
    assert s.udp_port
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    yield s, u
    u.close()


def ask(u, port, payload, rid=7, seq=0, total=1, res=0):
    u.sendto(FRAME.pack(rid, seq, total, res) + payload, ("127.0.0.1", port))


def message(u, rid=7):
    """One reply message: its datagrams in order, checked for framing; returns the payload."""
    parts = {}
    count = None
    while count is None or len(parts) < count:
        data, _ = u.recvfrom(65536)
        r, seq, n, res = FRAME.unpack(data[:8])
        assert (r, res) == (rid, 0) and len(data) <= 1400
        assert count in (None, n)
        count = n
        parts[seq] = data[8:]
    return b"".join(parts[i] for i in range(count))


def test_get_set_over_udp(udp):
    s, u = udp
    ask(u, s.udp_port, b"set a 0 0 1\r\n1\r\n")
    assert message(u) == b"STORED\r\n"
    ask(u, s.udp_port, b"get a\r\n", rid=9)
    assert message(u, rid=9) == b"VALUE a 0 1\r\n1\r\nEND\r\n"
    assert s.connect().get_value("a") == (0, b"1")


def test_each_command_is_its_own_message(udp):
    s, u = udp
    s.connect().cmd("set a 0 0 1\r\nx")
    ask(u, s.udp_port, b"get a\r\nversion\r\n")
    assert message(u) == b"VALUE a 0 1\r\nx\r\nEND\r\n"
    assert message(u).startswith(b"VERSION 1.6.18")


def test_large_reply_is_split(udp):
    s, u = udp
    value = bytes(range(256)) * 20  # 5120 bytes
    c = s.connect()
    c.send(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n")
    assert c.readline() == b"STORED\r\n"
    ask(u, s.udp_port, b"get big\r\n", rid=0xbeef)
    sizes = []
    parts = {}
    count = None
    while count is None or len(parts) < count:
        data, _ = u.recvfrom(65536)
        rid, seq, n, res = FRAME.unpack(data[:8])
        assert (rid, res) == (0xbeef, 0)
        count = n
        parts[seq] = data[8:]
        sizes.append(len(data))
    body = b"".join(parts[i] for i in range(count))
    assert body == b"VALUE big 0 5120\r\n" + value + b"\r\nEND\r\n"
    assert count == 4 and sorted(sizes) == [8 + len(body) - 3 * 1392, 1400, 1400, 1400]


def test_binary_over_udp(udp):
    s, u = udp
    s.connect().cmd("set a 5 0 1\r\n1")
    get = struct.pack(">BBHBBHIIQ", 0x80, 0, 1, 0, 0, 0, 1, 0x11223344, 0) + b"a"
    ask(u, s.udp_port, get)
    r = message(u)
    magic, op, kl, el, dt, st, bl, opq, cas = struct.unpack(">BBHBBHIIQ", r[:24])
    assert (magic, op, st, el, bl, opq) == (0x81, 0, 0, 4, 5, 0x11223344)
    assert r[24:] == b"\x00\x00\x00\x051"


def test_multi_packet_requests_are_refused(udp):
    s, u = udp
    ask(u, s.udp_port, b"get a\r\n", total=2)
    if mc.is_ours(s):
        assert message(u) == b"SERVER_ERROR multi-packet request not supported\r\n"
    else:
        # memcached 1.6.18's code builds this same error but nothing comes back (observed);
        # this server sends it.
        u.settimeout(0.5)
        with pytest.raises(socket.timeout):
            u.recvfrom(65536)


def test_short_and_unfinished_datagrams_get_nothing(udp):
    s, u = udp
    u.settimeout(0.5)
    u.sendto(b"\x00\x01\x00\x00\x00\x01", ("127.0.0.1", s.udp_port))  # shorter than a frame
    ask(u, s.udp_port, b"get a")                                    # no end of line
    with pytest.raises(socket.timeout):
        u.recvfrom(65536)
    # the server is fine
    ask(u, s.udp_port, b"version\r\n", rid=3)
    u.settimeout(5)
    assert message(u, rid=3).startswith(b"VERSION")


def test_udp_off_by_default(server):
    assert server.udp_port is None
