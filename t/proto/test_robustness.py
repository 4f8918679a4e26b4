"""Mutated meta and binary requests from a fixed seed, each on its own connection: whatever
comes back, the server stays up and a key written before keeps its value. Bounded in count
and time."""

import random
import socket
import struct
import time

import pytest

META = [b"mg k v", b"mg k N30 v c t k O1", b"ms k 3 T0 F5 c\r\nabc", b"md k I T30 q", b"ma n N0 J5 v",
        b"me k", b"mn", b"mg Zm9v b k v", b"ms k 2 MA C1 I\r\nzz", b"md k x F1"]
FLAGS = b"bcfhklOqstuvNRTFCMJDIEPLx"


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = bytes([rng.choice(FLAGS)]) + str(rng.randint(-5, 10**12)).encode()
        elif op == 2 and data:
            del data[pos:pos + rng.randint(1, 4)]
        else:
            data[pos:pos] = b" "
    return bytes(data)


def binreq(rng):
    op = rng.choice([0, 1, 2, 4, 5, 8, 9, 0x0a, 0x0c, 0x10, 0x1c, 0x1d, 0x1b, 0x20, rng.randrange(256)])
    key = b"k" * rng.choice([0, 1, 3, 250, 251])
    ext = bytes(rng.randrange(256) for _ in range(rng.choice([0, 4, 8, 20, 21])))
    val = b"v" * rng.choice([0, 1, 100])
    bodylen = len(ext) + len(key) + len(val) + rng.choice([0, 0, 0, -1, 1])
    return struct.pack(">BBHBBHIIQ", 0x80, op, len(key), len(ext), 0, 0, max(bodylen, 0),
                       rng.randrange(2**32), rng.choice([0, 1, 2**64 - 1])) + ext + key + val


def exchange(server, payload):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=2)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if not s.recv(65536):
                break
    except (socket.timeout, ConnectionError):
        pass
    finally:
        s.close()


@pytest.mark.no_tls("half-closes the raw socket after each request")
@pytest.mark.parametrize("kind", ["meta", "binary"])
def test_mutated_requests_leave_the_server_intact(server, kind):
    c = server.connect()
    assert c.cmd("set sentinel 7 0 5\r\nalive") == b"STORED\r\n"
    rng = random.Random(20261129 + (kind == "binary"))
    started = time.monotonic()
    for i in range(150):
        if time.monotonic() - started > 60:
            break
        if kind == "meta":
            payload = b"".join(mutate(rng, rng.choice(META)) + b"\r\n" for _ in range(5))
        else:
            payload = b"".join(binreq(rng) for _ in range(5))
        exchange(server, payload)
    assert server.alive()
    d = server.connect()
    assert d.get_value("sentinel") == (7, b"alive")
