"""The server side of the coordinator's work (doc/coordinator.md): the `cluster hb`
heartbeat and its lease, fencing when the lease runs out (and the "coordinator is gone"
rule that keeps a cluster serving when only the coordinator died), promoted replicas that
continue their bucket's history, and replicas added to buckets that already have writes.
The tests play the coordinator: they install maps and send heartbeats themselves."""

import os
import signal
import threading
import time

import pytest

from lib import mc
from lib.binproto import GET, SET, SETQ, Bin
from lib.cluster import Heartbeat, auth, bucket, dump, install

BUCKETS = 16  # as the `node` fixture (conftest.py) starts them

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("managed mode is this server's own", allow_module_level=True)


def map_text(epoch, nodes, ranges):
    """nodes: [(name, server)]; ranges: [(first, last, active, [replicas])]."""
    t = f"MAP {epoch} {BUCKETS}\r\n"
    for name, s in nodes:
        t += f"NODE {name} 127.0.0.1:{s.port}\r\n"
    for first, last, act, reps in ranges:
        t += f"RANGE {first} {last} {act}" + "".join(" " + r for r in reps) + "\r\n"
    return t + "END\r\n"


def stats(s, group):
    c = s.connect()
    st = c.stats(group)
    c.close()
    return st


def keys_in(b, n, prefix="k"):
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if bucket(k, BUCKETS) == b:
            out.append(k)
        i += 1
    return out


def test_heartbeat_reports_positions_and_grants_lease_from_token(node):
    a, b = node("a"), node("b")
    install([a, b], map_text(1, [("a", a), ("b", b)], [(0, 7, "a", ["b"]), (8, 15, "b", ["a"])]))
    c = a.connect()
    for k in keys_in(3, 3):
        assert c.cmd(f"set {k} 0 0 1\r\nx") == b"STORED\r\n"
    hb = Heartbeat(a)
    r = hb.beat()
    assert r["node"] == "a" and r["epoch"] == 1 and len(r["boot"]) == 16
    assert r["lease_left"] == 0 and not r["fenced"]  # token 0 grants nothing
    assert sorted(r["A"]) == list(range(8)) and sorted(r["R"]) == list(range(8, 16))
    assert r["A"][3][0] == 3
    r2 = hb.beat()
    assert 200 < r2["lease_left"] <= 300
    mc.wait_for(lambda: Heartbeat(b).beat(0)["R"][3] == (3, 1), what="b applied bucket 3")
    # a token from another connection (or an old one) grants nothing
    other = Heartbeat(a)
    other.token = r2["token"]
    assert other.beat()["lease_left"] <= r2["lease_left"]
    # bad arguments and no authentication
    assert hb.c.cmd("cluster hb 70000 0 1") == b"CLIENT_ERROR bad heartbeat\r\n"
    assert hb.c.cmd("cluster hb x 0 1") == b"CLIENT_ERROR bad heartbeat\r\n"
    plain = a.connect()
    assert plain.cmd("cluster hb 300 0 150") == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert stats(a, "cluster")["boot_id"] == r["boot"]


def test_lease_command_renews_from_the_reply_just_issued(node):
    a, b = node("a"), node("b")
    install([a, b], map_text(1, [("a", a), ("b", b)], [(0, 15, "a", [])]))
    hb = Heartbeat(a, lease_ms=300)
    r = hb.beat(0)
    hb.c.send(f"cluster lease 300 {r['token']} 150\r\n")
    w = hb.c.readline().split()
    assert w[0] == b"LEASE" and int(w[1]) > r["token"] and 290 <= int(w[2]) <= 300, w
    # its token is good for the next heartbeat, an old one for nothing
    hb.c.send(f"cluster lease 300 {r['token']} 150\r\n")
    assert hb.c.readline().split()[2] <= w[2]
    assert hb.c.cmd("cluster lease 1 2") == b"ERROR\r\n"
    assert hb.c.cmd("cluster lease 99999 0 1") == b"CLIENT_ERROR bad lease\r\n"
    plain = a.connect()
    assert plain.cmd("cluster lease 300 1 150") == \
        b"CLIENT_ERROR cluster command needs authentication\r\n"


def test_lease_runs_out_then_active_buckets_are_fenced(node):
    a, b = node("a"), node("b")
    install([a, b], map_text(1, [("a", a), ("b", b)], [(0, 7, "a", []), (8, 15, "b", [])]))
    k = keys_in(2, 1)[0]
    c = a.connect()
    assert c.cmd(f"set {k} 0 0 2\r\nv1") == b"STORED\r\n"
    hb = Heartbeat(a, lease_ms=300)
    hb.beat()
    started = time.monotonic()
    hb.beat()
    assert c.get_value(k)[1] == b"v1"
    # b never reports, so "the coordinator is gone" cannot hold: a fences itself
    mc.wait_for(lambda: c.cmd(f"mg {k}").startswith(b"SERVER_ERROR FENCED 2 1"),
                timeout=3, what="fenced")
    assert time.monotonic() - started >= 0.28
    assert c.cmd(f"set {k} 0 0 2\r\nv2") == b"SERVER_ERROR FENCED 2 1\r\n"
    assert c.cmd(f"mg {k} v") == b"SERVER_ERROR FENCED 2 1\r\n"
    st = stats(a, "cluster")
    assert st["fenced"] == "yes" and int(st["fenced_refusals"]) >= 3
    # a heartbeat whose token was issued before the lapse grants a lease already over; the
    # next one (as a coordinator beating every 100 ms sends) renews it
    assert hb.beat()["lease_left"] == 0
    assert hb.beat()["lease_left"] > 0
    assert c.get_value(k)[1] == b"v1"


def test_fenced_in_every_protocol_and_quiet_mode(node):
    """A fenced server's refusals: noreply writes are dropped silently (and change nothing),
    meta errors ignore q, binary quiet commands still get their error (0x07, FENCED body),
    and the value held before is there again once the lease is renewed."""
    a, b = node("a"), node("b")
    install([a, b], map_text(1, [("a", a), ("b", b)], [(0, 15, "a", [])]))
    k = keys_in(4, 1, "q")[0]
    c = a.connect()
    assert c.cmd(f"set {k} 0 0 2\r\nv1") == b"STORED\r\n"
    hb = Heartbeat(a, lease_ms=300)
    hb.beat()
    hb.beat()
    mc.wait_for(lambda: c.cmd(f"mg {k}").startswith(b"SERVER_ERROR FENCED"), timeout=3,
                what="fenced")
    c.send(f"set {k} 0 0 2 noreply\r\nv2\r\nmn\r\n")
    assert c.readline() == b"MN\r\n"  # nothing for the noreply set
    assert c.cmd(f"ms {k} 2 q\r\nv3") == b"SERVER_ERROR FENCED 4 1\r\n"
    assert c.cmd(f"mg {k} v q") == b"SERVER_ERROR FENCED 4 1\r\n"
    bc = Bin(a)
    for op in (SETQ, SET):
        _, st, _, _, body, _, _ = bc.call(op, k.encode(), ext=b"\0" * 8, val=b"v4")
        assert st == 0x07 and body == b"FENCED 4 1", (op, st, body)
    _, st, _, _, body, _, _ = bc.call(GET, k.encode())
    assert st == 0x07 and body == b"FENCED 4 1"
    hb.beat()
    hb.beat()  # renewed: served again, and no refused write took effect
    assert c.get_value(k)[1] == b"v1"


def test_heartbeat_buffered_during_a_pause_grants_nothing(node):
    """SIGSTOP past the lease with a heartbeat waiting in the socket: on SIGCONT the server
    reads it, but the lease it grants ran from the token's issue, long gone."""
    a, b = node("a"), node("b")
    install([a, b], map_text(1, [("a", a), ("b", b)], [(0, 15, "a", [])]))
    hb = Heartbeat(a, lease_ms=300)
    hb.beat()
    hb.beat()
    os.kill(a.proc.pid, signal.SIGSTOP)
    mc.wait_for(lambda: stopped(a.proc.pid), what="the server stopped")
    try:
        hb.c.send(f"cluster hb 300 {hb.token} 150\r\n")  # sits in the buffer
        time.sleep(0.6)  # the pause under test (a real SIGSTOP), not a wait for a condition
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    w = hb.c.readline().split()
    assert w[0] == b"HB" and w[5] == b"0" and w[6] == b"1", w
    hb.c.read_until()
    c = a.connect()
    assert c.cmd("get anything").startswith(b"SERVER_ERROR FENCED")


def test_fenced_server_forwards_nothing(node):
    """A write that sat in a paused server's socket (the client gave up on it and has written
    a newer value through another server since) must not be forwarded to the bucket's owner
    when the pause ends: a server whose lease ran out refuses buckets it does not own too."""
    a, b = node("a"), node("b")
    install([a, b], map_text(1, [("a", a), ("b", b)], [(0, 7, "a", []), (8, 15, "b", [])]))
    k = keys_in(9, 1, "late")[0]
    cb = b.connect()
    assert cb.cmd(f"set {k} 0 0 3\r\nold") == b"STORED\r\n"
    hb = Heartbeat(a, lease_ms=300)
    hb.beat()
    hb.beat()
    ca = a.connect()
    assert ca.get_value(k)[1] == b"old"  # forwarded to b while the lease holds
    os.kill(a.proc.pid, signal.SIGSTOP)
    mc.wait_for(lambda: stopped(a.proc.pid), what="the server stopped")
    try:
        ca.send(f"set {k} 0 0 5\r\nstale\r\n")  # sits in the buffer
        assert cb.cmd(f"set {k} 0 0 5\r\nnewer") == b"STORED\r\n"
        time.sleep(0.5)  # the pause under test, past the 300 ms lease
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert ca.readline() == b"SERVER_ERROR FENCED 9 1\r\n"
    assert cb.get_value(k)[1] == b"newer"
    assert int(stats(a, "cluster")["fenced_refusals"]) >= 1


def stopped(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def lease_all(servers, lease_ms=300, quiet_ms=150):
    hbs = [Heartbeat(s, lease_ms, quiet_ms) for s in servers]
    for h in hbs:
        h.beat()
        h.beat()
    return hbs


class Beater:
    """Heartbeats some servers every 50 ms in a thread, as a coordinator would."""

    def __init__(self, hbs):
        self.hbs = hbs
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        deadline = time.monotonic() + 60
        while not self.stop_ev.wait(0.05) and time.monotonic() < deadline:
            for h in self.hbs:
                h.beat()

    def stop(self):
        self.stop_ev.set()
        self.t.join(timeout=5)


def three(node):
    ns = [node(f"n{i}") for i in range(3)]
    nodes = [(f"n{i}", s) for i, s in enumerate(ns)]
    install(ns, map_text(1, nodes, [(0, 4, "n0", ["n1"]), (5, 9, "n1", ["n2"]),
                                    (10, 15, "n2", ["n0"])]))
    return ns


def test_coordinator_gone_keeps_serving(node):
    """Every server loses the coordinator at once: they tell each other over the replication
    links and keep serving, with no refused request."""
    ns = three(node)
    conns = [s.connect() for s in ns]
    ks = {i: keys_in(b, 1, "g")[0] for i, b in ((0, 0), (1, 5), (2, 10))}
    hbs = lease_all(ns)
    deadline = time.monotonic() + 1.5
    n = 0
    while time.monotonic() < deadline:  # bounded: 1.5 s, well past the 300 ms lease
        for i, c in enumerate(conns):
            assert c.cmd(f"set {ks[i]} 0 0 1\r\n{n % 10}") == b"STORED\r\n"
            assert c.get_value(ks[i])[1] == str(n % 10).encode()
        n += 1
    assert all(stats(s, "cluster")["lease_left_ms"] == "0" for s in ns)
    assert all(stats(s, "cluster")["fenced_refusals"] == "0" for s in ns)
    for h in hbs:
        h.close()


def test_cut_off_from_coordinator_alone_is_fenced(node):
    """Only n0 stops hearing the coordinator while n1 and n2 still do: n0 must fence itself
    even though its replication links to them are fine."""
    ns = three(node)
    hbs = lease_all(ns)
    beater = Beater(hbs[1:])
    try:
        k = keys_in(0, 1, "c")[0]
        c = ns[0].connect()
        mc.wait_for(lambda: c.cmd(f"mg {k}").startswith(b"SERVER_ERROR FENCED"), timeout=3,
                    what="n0 fenced")
        # and it stays fenced while the others hear the coordinator
        for _ in range(20):
            assert c.cmd(f"mg {k}").startswith(b"SERVER_ERROR FENCED")
        # the others serve
        k5 = keys_in(5, 1, "c")[0]
        c1 = ns[1].connect()
        assert c1.cmd(f"set {k5} 0 0 1\r\nz") == b"STORED\r\n"
    finally:
        beater.stop()


def test_newer_epoch_at_a_peer_keeps_a_server_fenced(node):
    """The coordinator died right after moving n0's buckets: n1 and n2 hold epoch 2, n0 still
    epoch 1. n0 must not serve its old buckets under the "gone" rule."""
    ns = three(node)
    hbs = lease_all(ns)
    nodes = [(f"n{i}", s) for i, s in enumerate(ns)]
    install(ns[1:], map_text(2, nodes, [(0, 4, "n1", ["n2"]), (5, 9, "n1", ["n2"]),
                                        (10, 15, "n2", ["n1"])]))
    k = keys_in(0, 1, "e")[0]
    c = ns[0].connect()
    mc.wait_for(lambda: c.cmd(f"mg {k}").startswith(b"SERVER_ERROR FENCED"), timeout=3,
                what="n0 fenced")
    time.sleep(0.3)  # past several rounds of pings: it must still refuse
    assert c.cmd(f"mg {k}").startswith(b"SERVER_ERROR FENCED")
    for h in hbs:
        h.close()


def drained(active, replica, b):
    a, r = stats(active, "buckets"), stats(replica, "buckets")
    p = f"bucket:{b}:"
    return (a.get(p + "seqno") == a.get(p + "repl_acked") and
            r.get(p + "in_sync") == "yes" and r.get(p + "applied_seqno") == a.get(p + "seqno"))


def test_replica_added_to_bucket_with_history(node):
    """The defect issue 11 names: a replica removed and added back (or added to a bucket that
    already has writes) must start from the bucket's sequence number, not cut the link."""
    a, b = node("a"), node("b")
    nodes = [("a", a), ("b", b)]
    install([a, b], map_text(1, nodes, [(0, 15, "a", ["b"])]))
    c = a.connect()
    k = "foo"
    bk = bucket(k, BUCKETS)
    epoch = 1
    for rnd in range(6):
        for i in range(3):
            assert c.cmd(f"set {k} 0 0 2\r\nv{i}") == b"STORED\r\n"
        mc.wait_for(lambda: drained(a, b, bk), timeout=5, what="drained")
        epoch += 1
        install([a, b], map_text(epoch, nodes, [(0, 15, "a", [])]))
        for i in range(3):  # writes while the bucket has no replica
            assert c.cmd(f"set {k}{i} 0 0 2\r\nw{rnd}") == b"STORED\r\n"
        epoch += 1
        install([a, b], map_text(epoch, nodes, [(0, 15, "a", ["b"])]))
        mc.wait_for(lambda: drained(a, b, bk), timeout=5, what="drained after re-add")
        st = stats(a, "buckets")
        assert st[f"bucket:{bk}:repl_lag"] == "0", st
    assert stats(a, "replication")["backlog_overflows"] == "0"
    assert dump(a, bk) == dump(b, bk)


def test_replicas_added_and_removed_under_writes(node):
    """The same, ten times over, with a writer that never stops: every re-added replica
    ends equal to its active, no link is cut for an overflow, and lag reads 0 once drained."""
    a, b = node("a"), node("b")
    nodes = [("a", a), ("b", b)]
    install([a, b], map_text(1, nodes, [(0, 15, "a", [])]))
    stop = threading.Event()
    errors = []

    def writer():
        c = a.connect()
        n = 0
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline and n < 10**6:
            r = c.cmd(f"set h{n % 300} 0 0 4\r\n{n % 10000:04d}")
            if r != b"STORED\r\n":
                errors.append(r)
            n += 1
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    epoch = 1
    try:
        for rnd in range(21):  # ends with the replica in the map
            epoch += 1
            reps = ["b"] if rnd % 2 == 0 else []
            install([a, b], map_text(epoch, nodes, [(0, 15, "a", reps)]))
            if not reps:  # the replication thread saw the replica go
                mc.wait_for(lambda: stats(b, "replication").get("buckets_replicated") == "0" and
                            stats(a, "replication").get("buckets_streaming") == "0",
                            timeout=5, what="replica removed, on both sides")
            else:  # each re-add backfills every bucket once more, and ends in sync
                want = str(BUCKETS * (rnd // 2 + 1))
                mc.wait_for(lambda: stats(b, "replication").get("link:a:backfills_in") == want,
                            timeout=5, what=f"backfill {rnd // 2 + 1}")
                mc.wait_for(lambda: all(stats(b, "buckets").get(f"bucket:{x}:in_sync") == "yes"
                                        for x in range(BUCKETS)),
                            timeout=5, what="the re-added replica in sync")
    finally:
        stop.set()
        t.join(timeout=10)
    assert not errors
    for bk in range(BUCKETS):
        mc.wait_for(lambda: drained(a, b, bk), timeout=5, what="drained")
        assert stats(a, "buckets")[f"bucket:{bk}:repl_lag"] == "0"
        assert dump(a, bk) == dump(b, bk)
    assert stats(a, "replication")["backlog_overflows"] == "0"


def test_promoted_replica_continues_history_and_other_replica_resumes(node):
    """R = 2: n0 active, n1 and n2 replicas. n1 is promoted: its sequence numbers continue
    n0's, and n2 resumes from n1 without a backfill."""
    ns = [node(f"n{i}") for i in range(3)]
    nodes = [(f"n{i}", s) for i, s in enumerate(ns)]
    install(ns, map_text(1, nodes, [(0, 15, "n0", ["n1", "n2"])]))
    c = ns[0].connect()
    ks = [f"p{i}" for i in range(40)]
    for k in ks:
        assert c.cmd(f"set {k} 0 0 3\r\nold") == b"STORED\r\n"
    for b in range(BUCKETS):
        mc.wait_for(lambda: drained(ns[0], ns[1], b) and drained(ns[0], ns[2], b), timeout=5,
                    what="drained")
    seq = {b: int(stats(ns[0], "buckets").get(f"bucket:{b}:seqno", 0)) for b in range(BUCKETS)}
    # (stats replication is published every other tick: wait for a copy that has the link)
    before = mc.wait_for(lambda: (lambda st: st if "link:n0:backfills_in" in st else None)(
        stats(ns[2], "replication")), timeout=3, what="n2's stats of its link to n0")
    ns[0].stop()
    install(ns[1:], map_text(2, nodes, [(0, 15, "n1", ["n2"])]))
    c1 = ns[1].connect()
    mc.wait_for(lambda: c1.cmd("set p0 0 0 3\r\nnew") == b"STORED\r\n", timeout=3,
                what="n1 active")
    assert c1.get_value("p1")[1] == b"old"
    b0 = bucket("p0", BUCKETS)
    mc.wait_for(lambda: stats(ns[1], "buckets").get(f"bucket:{b0}:seqno") == str(seq[b0] + 1),
                timeout=3, what="n1 continues the sequence numbers")
    mc.wait_for(lambda: drained(ns[1], ns[2], b0), timeout=5, what="n2 follows n1")
    # n2 resumed every bucket from n1 and was backfilled by nobody (its only backfills are
    # the first ones, from n0)
    after = mc.wait_for(lambda: (lambda st: st if st.get("link:n1:resumes_in") == str(BUCKETS)
                                 else None)(stats(ns[2], "replication")),
                        timeout=3, what="n2 resumed every bucket from n1")
    assert after.get("link:n1:backfills_in") == "0"
    assert after["link:n0:backfills_in"] == before["link:n0:backfills_in"]
    assert dump(ns[1], b0) == dump(ns[2], b0)


def test_reset_replica_is_backfilled_not_resumed(node):
    """`cluster reset` drops every item: a replica that then gets the same buckets back must
    be backfilled, not resume from the position it held before the reset."""
    a, b = node("a"), node("b")
    nodes = [("a", a), ("b", b)]
    install([a, b], map_text(1, nodes, [(0, 15, "a", ["b"])]))
    c = a.connect()
    for i in range(50):
        assert c.cmd(f"set r{i} 0 0 2\r\nv{i % 10}") == b"STORED\r\n"
    for bk in range(BUCKETS):
        mc.wait_for(lambda: drained(a, b, bk), timeout=5, what="drained")
    adm = b.connect()
    assert auth(adm) == b"OK\r\n"
    assert adm.cmd("cluster reset") == b"OK\r\n"
    install([a, b], map_text(2, nodes, [(0, 15, "a", ["b"])]))
    mc.wait_for(lambda: stats(b, "replication").get("link:a:backfills_in") == str(2 * BUCKETS),
                timeout=5, what="every bucket backfilled again")
    for bk in range(BUCKETS):
        mc.wait_for(lambda: drained(a, b, bk), timeout=5, what="drained after reset")
        assert dump(a, bk) == dump(b, bk)
