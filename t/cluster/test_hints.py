"""Read hints (doc/replication.md, section Read hints): the active tells a bucket's replica
which items are read, so that the replica's eviction keeps them and the replica is warm for
the hot keys when it takes over. A full cache (-m 8, a working set four times larger) with a
Zipf(0.99) read load on the active: the replica holds the hottest keys with hints and none of
them without. Also: the per-link rate bound, and a peer's unknown frames are skipped."""

import collections
import itertools
import os
import random
import struct
import time

import pytest

from lib import mc
from lib.cluster import auth, dump, install

BUCKETS = 16  # as the `node` fixture (conftest.py) starts them
VALUE = b"v" * 1000  # one size class: the 1056-byte chunks, 62 to a page

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("replication is this server's own", allow_module_level=True)


def one_way_map(ports):
    """n0 active for every bucket, n1 its replica: n1 holds nothing but replica copies."""
    return (f"MAP 1 {BUCKETS}\r\nNODE n0 127.0.0.1:{ports[0]}\r\nNODE n1 127.0.0.1:{ports[1]}\r\n"
            f"RANGE 0 {BUCKETS - 1} n0 n1\r\nEND\r\n")


def repl_stats(s):
    c = s.connect()
    st = c.stats("replication")
    c.close()
    return st


def drained(active):
    c = active.connect()
    st = c.stats("buckets")
    c.close()
    return all(st.get(f"bucket:{b}:seqno") == st.get(f"bucket:{b}:repl_acked")
               and st.get(f"bucket:{b}:replicas_in_sync") == "1" for b in range(BUCKETS))


def pair(node, *extra):
    n0, n1 = node("n0", "-m", "8", *extra), node("n1", "-m", "8", *extra)
    install([n0, n1], one_way_map([n0.port, n1.port]))
    mc.wait_for(lambda: drained(n0), timeout=10, what="replica in sync")
    return n0, n1


def keys_held(server):
    held = set()
    for b in range(BUCKETS):
        held.update(dump(server, b))
    return held


def test_replica_keeps_the_hot_keys(node):
    """Two pairs under the same load, one with read hints (the default) and one without.
    The active of each keeps every hot key (its readers mark them); the replica with hints
    keeps them too, the one without loses them all once the writes have gone round its memory
    a few times."""
    hot_n = 2000                       # hot keys h0..h1999 (2 MB), read with Zipf(0.99)
    per_round, rounds, slot = 500, 64, 0.2   # filler writes: 32,000 (32 MB, 4x -m) in ~13 s
    on = pair(node)
    off = pair(node, "-o", "repl_hint_rate=0")
    conns = {"on": on[0].connect(timeout=30), "off": off[0].connect(timeout=30)}
    for c in conns.values():
        c.send(b"".join(b"set h%d 0 0 %d noreply\r\n%s\r\n" % (k, len(VALUE), VALUE)
                        for k in range(hot_n)))
    rng = random.Random(12)
    cum = list(itertools.accumulate((r + 1) ** -0.99 for r in range(hot_n)))
    reads = collections.Counter()
    misses = collections.Counter()

    def read(sample):
        for tag, c in conns.items():
            c.send(b"".join(b"mg h%d\r\n" % k for k in sample))
            missed = {k for k in sample if c.readline() == b"EN\r\n"}
            misses[tag] += len(missed)
            if missed:  # cache-aside: the reader stores what it missed
                c.send(b"".join(b"set h%d 0 0 %d noreply\r\n%s\r\n" % (k, len(VALUE), VALUE)
                                for k in missed))

    # Rounds of filler writes, each followed by reads until its time slot ends: the writes go
    # round memory every ~3 s, long against the hints' 200 ms interval, as in a real cache.
    t0, fill = time.monotonic(), 0
    for r in range(rounds):
        batch = b"".join(b"set f%d 0 0 %d noreply\r\n%s\r\n" % (fill + i, len(VALUE), VALUE)
                         for i in range(per_round))
        fill += per_round
        for c in conns.values():
            c.send(batch)
        while True:
            sample = rng.choices(range(hot_n), cum_weights=cum, k=500)
            reads.update(sample)
            read(sample)
            if time.monotonic() >= t0 + (r + 1) * slot:
                break
    for s in (on[0], off[0]):
        mc.wait_for(lambda: drained(s), timeout=20, what="replica caught up")

    ranked = [b"h%d" % k for k, _ in reads.most_common()]
    top1, top10 = ranked[:hot_n // 100], ranked[:hot_n // 10]

    def presence(held, keys):
        return sum(k in held for k in keys) / len(keys)

    got = {}
    for tag, (active, replica) in (("on", on), ("off", off)):
        a, r = keys_held(active), keys_held(replica)
        got[tag] = (presence(r, top1), presence(r, top10))
        # Memory did turn over: most filler is gone, on both sides.
        assert sum(k.startswith(b"f") for k in r) < fill / 3, tag
        # The active keeps its hot keys either way (its own reads mark them).
        assert presence(a, top1) == 1.0 and presence(a, top10) >= 0.99, tag
    print(f"replica presence top 1%/10%: hints {got['on']}, none {got['off']}; "
          f"{sum(reads.values())} reads, misses {dict(misses)}")
    assert got["on"][0] >= 0.99 and got["on"][1] >= 0.95, got
    assert got["off"][0] <= 0.5 and got["off"][1] <= 0.5, got  # without: mostly gone

    s_on, r_on = repl_stats(on[0]), repl_stats(on[1])
    assert int(s_on["hints_noted"]) > 0 and s_on["hints_lost"] == "0"
    sent = int(s_on["link:n1:hints_out"])
    assert sent > 0 and s_on["link:n1:hints_dropped"] == "0"
    assert int(s_on["link:n1:hint_bytes_out"]) >= 8 * sent
    mc.wait_for(lambda: int(repl_stats(on[1])["link:n0:hints_in"]) == sent, timeout=5,
                what="every hint received")
    r_on = repl_stats(on[1])
    assert int(r_on["link:n0:hints_applied"]) + int(r_on["link:n0:hints_missing"]) == sent
    assert int(r_on["link:n0:hints_applied"]) > 0.9 * sent
    s_off = repl_stats(off[0])
    assert s_off["hint_rate"] == "0" and s_off["hints_noted"] == "0"
    assert s_off["link:n1:hints_out"] == "0"


def test_hint_rate_is_bounded_per_link(node):
    """-o repl_hint_rate=50 with 100 ms batches: 5 hints a batch reach the replica, the rest
    of 3000 first reads are dropped and counted; the records themselves are not held back."""
    n0, n1 = pair(node, "-o", "repl_hint_rate=50,repl_hint_ms=100")
    c = n0.connect()
    n = 3000
    c.send(b"".join(b"set k%d 0 0 1 noreply\r\nx\r\n" % i for i in range(n)))
    mc.wait_for(lambda: drained(n0), timeout=10, what="replica in sync")
    t0 = time.monotonic()
    c.send(b"".join(b"mg k%d\r\n" % i for i in range(n)))
    for _ in range(n):
        assert c.readline() == b"HD\r\n"
    c.send(b"mg k0\r\n")  # a second read: no second hint
    assert c.readline() == b"HD\r\n"

    def settled():
        st = repl_stats(n0)
        return st if int(st["link:n1:hints_out"]) + int(st["link:n1:hints_dropped"]) == n \
            else None
    st = mc.wait_for(settled, timeout=10, what="every hint sent or dropped")
    elapsed = time.monotonic() - t0
    assert int(st["hints_noted"]) == n
    sent = int(st["link:n1:hints_out"])
    assert 1 <= sent <= 50 * elapsed + 5, (sent, elapsed)
    assert int(st["link:n1:hints_dropped"]) >= n - sent
    mc.wait_for(lambda: int(repl_stats(n1)["link:n0:hints_applied"]) == sent, timeout=5,
                what="hints applied on the replica")
    assert repl_stats(n1)["link:n0:hints_missing"] == "0"


def read_frame(sock, buf):
    while True:
        if len(buf) >= 5:
            (n,) = struct.unpack_from("<I", buf)
            if len(buf) >= 4 + n:
                return buf[4], buf[5:4 + n], buf[4 + n:]
        chunk = sock.recv(65536)
        assert chunk, "link closed by the server"
        buf += chunk


def test_unknown_frames_do_not_break_a_link(node):
    """A peer that sends a frame type this version does not know keeps its link: the frame is
    skipped and counted, and the link answers the next Ping. A Hints frame for items the
    server does not hold counts them as missing and changes nothing."""
    n0 = node("n0")
    # n9 is a peer in the map (a replication link is refused to any other name); nothing
    # listens at its address, and no bucket makes n0 dial it.
    install([n0], f"MAP 1 {BUCKETS}\r\nNODE n0 127.0.0.1:{n0.port}\r\nNODE n9 127.0.0.1:1\r\n"
                  f"RANGE 0 {BUCKETS - 1} n0\r\nEND\r\n")
    c = n0.connect()
    assert auth(c) == b"OK\r\n"
    c.send("cluster repl n9 0123456789abcdef\r\n")
    sock, buf = c.sock, c.buf
    t, _, buf = read_frame(sock, buf)
    assert t == 1  # Hello
    frames = struct.pack("<IB", 1 + 6, 200) + b"future"                    # unknown type
    frames += struct.pack("<IB", 1 + 16, 12) + struct.pack("<QQ", 1, 2)    # Hints
    frames += struct.pack("<IBQ", 1 + 8, 8, 4242)                          # Ping
    sock.sendall(frames)
    deadline = time.monotonic() + 5
    while True:
        assert time.monotonic() < deadline, "no Pong"
        t, payload, buf = read_frame(sock, buf)
        if t == 9 and struct.unpack("<Q", payload)[0] == 4242:  # Pong
            break
    st = mc.wait_for(lambda: (lambda s: s if s.get("link:n9:hints_in") == "2" else None)(
        repl_stats(n0)), timeout=5, what="stats of the fake peer's link")
    assert st["link:n9:state"] == "up"
    assert st["link:n9:unknown_frames"] == "1"
    assert st["link:n9:hints_missing"] == "2" and st["link:n9:hints_applied"] == "0"
    sock.close()
