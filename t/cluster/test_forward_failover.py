"""Forwarding when a bucket's owner dies (doc/managed.md, Requests for a bucket that is not
active here): a failed forward answers exactly as a local SERVER_ERROR of the same command
would (silence for text noreply; an error for meta q and binary quiet commands), and with
-o forward_park_ms a request whose owner is unreachable, or which has no owner in the map,
waits for the next map instead of failing, without holding its worker thread. The tests play
the coordinator: they kill servers and install maps themselves."""

import os
import socket
import struct
import time

import pytest

from lib import mc
from lib.binproto import GET, NOOP, SETQ, DELETEQ, INCRQ, Bin, req
from lib.cluster import auth, bucket, install, setmap

BUCKETS = 16  # as the `node` fixture (conftest.py) starts them

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("managed mode is this server's own", allow_module_level=True)


def map_text(epoch, nodes, ranges):
    """nodes: [(name, server)]; ranges: [(first, last, active)]."""
    t = f"MAP {epoch} {BUCKETS}\r\n"
    for name, s in nodes:
        t += f"NODE {name} 127.0.0.1:{s.port}\r\n"
    for first, last, act in ranges:
        t += f"RANGE {first} {last} {act}\r\n"
    return t + "END\r\n"


def keys_in(first, last, n, prefix):
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if first <= bucket(k, BUCKETS) <= last:
            out.append(k)
        i += 1
    return out


def stats(s):
    c = s.connect()
    st = c.stats("cluster")
    c.close()
    return st


def three(node, *extra):
    """a owns buckets 0-4, b 5-10, c 11-15 (epoch 1)."""
    a, b, c = node("a", *extra), node("b", *extra), node("c", *extra)
    nodes = [("a", a), ("b", b), ("c", c)]
    install([a, b, c], map_text(1, nodes, [(0, 4, "a"), (5, 10, "b"), (11, 15, "c")]))
    return a, b, c, nodes


def read_value(c, key):
    """The reply to `get key`: its value, or None for a miss; fails on anything else."""
    line = c.readline()
    if line == b"END\r\n":
        return None
    assert line.startswith(f"VALUE {key} ".encode()), line
    data = c.readexact(int(line.split()[3]) + 2)[:-2]
    assert c.readline() == b"END\r\n"
    return data


def bin_recv(c):
    h = c.readexact(24)
    magic, op, kl, el, dt, st, bl, opq, cas = struct.unpack(">BBHBBHIIQ", h)
    assert magic == 0x81
    return op, st, opq, c.readexact(bl)


def assert_nothing_more(c, wait=0.2):
    """No stray bytes arrive on c (a reply to a silent request, say)."""
    c.sock.settimeout(wait)
    try:
        data = c.sock.recv(4096)
    except socket.timeout:
        data = b""
    finally:
        c.sock.settimeout(5)
    assert data == b"" or data is None, data


# ---------------------------------------------------------------------------------------
# (a) A failed forward honours noreply, and loud replies stay matched to their requests.

@pytest.mark.parametrize("park_ms", [0, 300])
def test_failed_forward_in_quiet_pipelines(node, park_ms):
    a, b, c, nodes = three(node, "-o", f"forward_park_ms={park_ms}")
    mine = keys_in(0, 4, 20, "m")
    theirs = keys_in(5, 10, 20, "t")
    t = a.connect(timeout=10)
    for k in mine:
        assert t.cmd(f"set {k} 0 0 {len(k)}\r\n{k}") == b"STORED\r\n"
    # the links to b are up (text and binary)
    assert t.cmd(f"set {theirs[0]} 0 0 1\r\nx") == b"STORED\r\n"
    bc = a.connect(timeout=10)
    bc.send(req(SETQ, theirs[0].encode(), struct.pack(">II", 0, 0), b"y", opaque=1) +
            req(NOOP, opaque=2))
    assert bin_recv(bc)[:3] == (NOOP, 0, 2)
    b.kill9()
    started = time.monotonic()
    for rnd in range(3):
        # text: noreply writes for the dead owner are silent; every get gets its own value
        pipe = ""
        for i in range(5):
            k = theirs[(rnd * 5 + i) % len(theirs)]
            pipe += f"set {k} 0 0 1 noreply\r\nz\r\n"
            pipe += f"delete {k} noreply\r\nincr {k} 1 noreply\r\ntouch {k} 10 noreply\r\n"
            pipe += f"get {mine[i]}\r\n"
        t.send(pipe)
        for i in range(5):
            assert read_value(t, mine[i]) == mine[i].encode()
        # meta: q quiets successes, never errors: each quiet failure gets its SERVER_ERROR
        k = theirs[rnd]
        t.send(f"ms {k} 1 q\r\nz\r\nmg {mine[0]} v\r\nmd {k} q\r\nmg {k} v q\r\nmn\r\n")
        line = t.readline()
        assert line.startswith(b"SERVER_ERROR forward to b failed"), line
        assert t.readline() == f"VA {len(mine[0])}\r\n".encode()
        assert t.readline() == f"{mine[0]}\r\n".encode()
        for _ in range(2):
            line = t.readline()
            assert line.startswith(b"SERVER_ERROR forward to b failed"), line
        assert t.readline() == b"MN\r\n"
        # binary: quiet commands report errors (memcached quiets their successes only)
        kb = k.encode()
        bc.send(req(SETQ, kb, struct.pack(">II", 0, 0), b"v", opaque=10) +
                req(GET, mine[1].encode(), opaque=11) +
                req(DELETEQ, kb, opaque=12) +
                req(INCRQ, kb, struct.pack(">QQI", 1, 0, 0), opaque=13) +
                req(NOOP, opaque=14))
        op, st, opq, body = bin_recv(bc)
        assert (op, st, opq) == (SETQ, 0x86, 10) and body.startswith(b"forward to b failed")
        op, st, opq, body = bin_recv(bc)
        assert (op, st, opq) == (GET, 0, 11) and body[4:] == mine[1].encode()
        assert bin_recv(bc)[:3] == (DELETEQ, 0x86, 12)
        assert bin_recv(bc)[:3] == (INCRQ, 0x86, 13)
        assert bin_recv(bc)[:3] == (NOOP, 0, 14)
    assert_nothing_more(t)
    assert_nothing_more(bc)
    st = stats(a)
    assert int(st["forward_errors"]) >= 1
    if park_ms:
        # every failure waited for a map first (none came)
        assert int(st["forward_park_timeouts"]) >= 1 and int(st["forward_parked"]) >= 1
        assert time.monotonic() - started >= 0.3
    else:
        assert int(st["forward_parked"]) == 0


# ---------------------------------------------------------------------------------------
# (b) Parked requests are served once a new map names an owner; the worker serves its other
# connections meanwhile.

def wait_parked(s, n):
    return mc.wait_for(lambda: int(stats(s)["forward_parked"]) >= n, timeout=5,
                       what=f"{n} parked requests")


@pytest.mark.parametrize("new_owner", ["c", "a"])
def test_parked_requests_follow_the_new_map(node, new_owner):
    # a bound far above what the test takes, even on a loaded machine
    a, b, c, nodes = three(node, "-t", "1", "-o", "forward_park_ms=5000")
    mine = keys_in(0, 4, 3, "m")
    theirs = keys_in(5, 10, 6, "t")
    at_c = keys_in(11, 15, 2, "c")
    x = a.connect(timeout=10)
    for k in mine + theirs + at_c:
        assert x.cmd(f"set {k} 0 0 {len(k)}\r\n{k}") == b"STORED\r\n"
    bx = a.connect(timeout=10)  # binary, on the same (only) worker
    bx.send(req(GET, theirs[0].encode(), opaque=1))
    assert bin_recv(bx)[:3] == (GET, 0, 1)
    b.kill9()
    killed = time.monotonic()
    # Right after the kill: a write, a read, a split multi-get and quiet/noreply commands
    x.send(f"set {theirs[1]} 0 0 3\r\nnew\r\n"
           f"get {theirs[1]}\r\n"
           f"get {mine[0]} {theirs[2]} {at_c[0]} {theirs[3]}\r\n"
           f"set {theirs[4]} 0 0 2 noreply\r\nnr\r\n"
           f"ms {theirs[5]} 1 q\r\nq\r\n"
           f"mn\r\n")
    bx.send(req(SETQ, theirs[0].encode(), struct.pack(">II", 0, 0), b"bin", opaque=2) +
            req(GET, theirs[0].encode(), opaque=3))
    wait_parked(a, 2)
    # another connection of the same worker is served meanwhile, without delay
    y = a.connect()
    for k in mine:
        t0 = time.monotonic()
        assert y.cmd(f"get {k}") == f"VALUE {k} 0 {len(k)}\r\n".encode()
        assert y.readline() == f"{k}\r\n".encode() and y.readline() == b"END\r\n"
        assert time.monotonic() - t0 < 0.5  # not the park's seconds
    assert_nothing_more(x, 0.05)  # still parked
    # the coordinator's new map
    ranges = [(0, 4, "a"), (5, 10, new_owner), (11, 15, "c")]
    text = map_text(2, [("a", a), ("c", c)], ranges)
    admin_c = c.connect()  # ready before: a sends again for 250 ms only
    assert auth(admin_c) == b"OK\r\n"
    astats = a.connect()
    install([a], text)
    installed = time.monotonic()
    if new_owner == "c":
        # c does not have the map yet: it refuses what a now sends it, and a sends it again
        mc.wait_for(lambda: int(astats.stats("cluster")["forward_peer_behind"]) >= 1,
                    timeout=5, interval=0.001, what="a forward refused by c, whose map is older")
    assert setmap(admin_c, text) == b"OK\r\n"
    assert installed - killed < 4  # before the bound passes
    # every reply, in order; the moved bucket's data died with b (no replica): misses
    assert x.readline() == b"STORED\r\n"
    assert read_value(x, theirs[1]) == b"new"
    lines = x.read_until(b"END\r\n")
    assert lines == (f"VALUE {mine[0]} 0 {len(mine[0])}\r\n{mine[0]}\r\n"
                     f"VALUE {at_c[0]} 0 {len(at_c[0])}\r\n{at_c[0]}\r\n"
                     "END\r\n").encode()
    assert x.readline() == b"MN\r\n"  # noreply set and ms q: silent
    assert time.monotonic() - installed < 2
    op, st, opq, body = bin_recv(bx)
    assert (op, st, opq) == (GET, 0, 3) and body[4:] == b"bin"
    # the writes are on the new owner
    owner = c if new_owner == "c" else a
    oc = owner.connect()
    for k, v in [(theirs[1], b"new"), (theirs[4], b"nr"), (theirs[5], b"q"),
                 (theirs[0], b"bin")]:
        assert oc.get_value(k)[1] == v, k
    st = stats(a)
    assert int(st["forward_park_resumed"]) >= 2 and st["forward_park_timeouts"] == "0"
    assert_nothing_more(x)
    assert_nothing_more(bx)


# ---------------------------------------------------------------------------------------
# (c) The bound: without a new map the error comes after about forward_park_ms.

def test_park_bound_without_a_new_map(node):
    a, b, c, nodes = three(node, "-o", "forward_park_ms=400")
    k = keys_in(5, 10, 1, "t")[0]
    mine = keys_in(0, 4, 1, "m")[0]
    x = a.connect(timeout=10)
    assert x.cmd(f"set {mine} 0 0 1\r\nm") == b"STORED\r\n"
    b.kill9()
    t0 = time.monotonic()
    line = x.cmd(f"get {k}")
    waited = time.monotonic() - t0
    assert line.startswith(b"SERVER_ERROR forward to b failed"), line
    assert 0.35 < waited < 1.5, waited
    # noreply: silent at the bound too, and the next reply is the next request's
    t0 = time.monotonic()
    x.send(f"set {k} 0 0 1 noreply\r\nv\r\nget {mine}\r\n")
    assert read_value(x, mine) == b"m"
    assert time.monotonic() - t0 > 0.35
    st = stats(a)
    assert int(st["forward_park_timeouts"]) >= 2 and st["forward_park_ms"] == "400"
    # a map with the bucket unowned: NOT_MY_BUCKET at the bound
    install([a, c], map_text(2, [("a", a), ("c", c)], [(0, 4, "a"), (11, 15, "c")]))
    t0 = time.monotonic()
    assert x.cmd(f"get {k}") == f"SERVER_ERROR NOT_MY_BUCKET {bucket(k, BUCKETS)} 2\r\n".encode()
    assert 0.35 < time.monotonic() - t0 < 1.5


# ---------------------------------------------------------------------------------------
# (d) A fresh server without a map parks requests and serves them once a map arrives.

def test_fresh_server_parks_until_its_first_map(node):
    a, z = node("a"), node("z", "-t", "1")
    ka = keys_in(0, 7, 1, "a")[0]
    kz = keys_in(8, 15, 1, "z")[0]
    x = z.connect(timeout=10)
    x.send(f"set {kz} 0 0 1\r\nz\r\nget {kz}\r\nset {ka} 0 0 1\r\na\r\nget {ka} {kz}\r\n")
    wait_parked(z, 1)
    assert_nothing_more(x, 0.1)
    # stats and control commands still work on that worker
    admin = z.connect()
    assert auth(admin) == b"OK\r\n"
    text = map_text(1, [("a", a), ("z", z)], [(0, 7, "a"), (8, 15, "z")])
    admin_a = a.connect()  # ready before: z sends again for 250 ms only
    assert auth(admin_a) == b"OK\r\n"
    zstats = z.connect()
    assert setmap(admin, text) == b"OK\r\n"
    # a has no map yet: it refuses what z forwards it, and z sends it again until it has
    mc.wait_for(lambda: int(zstats.stats("cluster")["forward_peer_behind"]) >= 1, timeout=5,
                interval=0.001, what="a forward refused by a, which has no map")
    assert setmap(admin_a, text) == b"OK\r\n"
    assert x.readline() == b"STORED\r\n"
    assert read_value(x, kz) == b"z"
    assert x.readline() == b"STORED\r\n"
    assert x.read_until(b"END\r\n") == (f"VALUE {ka} 0 1\r\na\r\nVALUE {kz} 0 1\r\nz\r\n"
                                        "END\r\n").encode()
    assert a.connect().get_value(ka) == (0, b"a")
    assert int(stats(z)["forward_park_resumed"]) >= 1


def test_park_off_answers_at_once(node):
    z = node("z", "-o", "forward_park_ms=0")
    x = z.connect()
    k = "k1"
    t0 = time.monotonic()
    assert x.cmd(f"get {k}") == f"SERVER_ERROR NOT_MY_BUCKET {bucket(k, BUCKETS)} 0\r\n".encode()
    x.send(f"set {k} 0 0 1 noreply\r\nv\r\nmn\r\n")  # noreply: silent
    assert x.readline() == b"MN\r\n"
    assert time.monotonic() - t0 < 0.5
    assert stats(z)["forward_parked"] == "0"


# ---------------------------------------------------------------------------------------
# A write for a bucket pending here (a handover under way) waits parked too: its worker
# serves other connections meanwhile.

def test_pending_write_waits_without_holding_the_worker(node):
    a = node("a", "-t", "1")
    install([a], map_text(1, [("a", a)], [(0, 15, "a")]))
    k = keys_in(3, 3, 1, "p")[0]
    other = keys_in(9, 9, 1, "o")[0]
    admin = a.connect()
    assert auth(admin) == b"OK\r\n"
    assert admin.cmd(f"set {other} 0 0 1\r\no") == b"STORED\r\n"
    assert admin.cmd("cluster state 3 pending") == b"OK\r\n"
    x = a.connect()
    t0 = time.monotonic()
    x.send(f"set {k} 0 0 1\r\nv\r\nget {k}\r\n")
    wait_parked(a, 1)
    y = a.connect()
    assert y.get_value(other) == (0, b"o")
    # served while x's write still waits (a sleeping worker would have answered x first)
    assert_nothing_more(x, 0.01)
    assert admin.cmd("cluster state 3 active") == b"OK\r\n"
    assert x.readline() == b"STORED\r\n"  # not NOT_MY_BUCKET: served on activation
    assert read_value(x, k) == b"v"
    # and without a state change, the old answer after 250 ms
    assert admin.cmd("cluster state 3 pending") == b"OK\r\n"
    t0 = time.monotonic()
    line = x.cmd(f"set {k} 0 0 1\r\nw")
    assert line == f"SERVER_ERROR NOT_MY_BUCKET 3 1\r\n".encode(), line
    assert 0.24 < time.monotonic() - t0 < 1.0
    assert x.get_value(k) == (0, b"v")  # reads of a pending bucket are served at once
