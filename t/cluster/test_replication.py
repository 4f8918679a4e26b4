"""Replication (doc/replication.md): every write to a bucket reaches its replica, which ends
equal to the active item by item (value, flags, absolute exptime, CAS, marks); link cuts,
restarts and slow replicas. Two- and three-node clusters on loopback; the test installs the
maps as the coordinator would, and reads the replica's copy with `cluster dump`."""

import os
import random
import signal
import struct
import threading
import time

import pytest

from lib import mc
from lib.binproto import ADD, APPEND, DELETE, INCR, SET, TOUCH, Bin
from lib.cluster import FaultProxy, auth, bucket, dump, install

BUCKETS = 16  # as the `node` fixture (conftest.py) starts them

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("replication is this server's own", allow_module_level=True)


def two_node_map(ports, epoch=1, names=("n0", "n1")):
    """n0 is active for buckets 0-7 with n1 as replica, and the other way round for 8-15."""
    a, b = names
    return (f"MAP {epoch} {BUCKETS}\r\nNODE {a} 127.0.0.1:{ports[0]}\r\n"
            f"NODE {b} 127.0.0.1:{ports[1]}\r\nRANGE 0 7 {a} {b}\r\nRANGE 8 15 {b} {a}\r\nEND\r\n")


def repl_stats(s):
    c = s.connect()
    st = c.stats("replication")
    c.close()
    return st


def bucket_stats(s):
    c = s.connect()
    st = c.stats("buckets")
    c.close()
    return st


def drained(active, replica, buckets):
    """The replica acknowledged every record of these buckets and is in sync for them."""
    a, r = bucket_stats(active), bucket_stats(replica)
    for b in buckets:
        p = f"bucket:{b}:"
        if a.get(p + "seqno") != a.get(p + "repl_acked") or a.get(p + "replicas_in_sync") != "1":
            return False
        if r.get(p + "in_sync") != "yes" or r.get(p + "applied_seqno") != a.get(p + "seqno"):
            return False
    return True


def wait_drained(active, replica, buckets, timeout=10.0):
    mc.wait_for(lambda: drained(active, replica, buckets), timeout=timeout,
                what="replica drained and in sync")


def assert_same(active, replica, buckets):
    for b in buckets:
        a, r = dump(active, b), dump(replica, b)
        assert a == r, f"bucket {b}: active {len(a)} items, replica {len(r)}; " \
                       f"differ on {sorted(set(a) ^ set(r) | {k for k in a if k in r and a[k] != r[k]})[:5]}"


@pytest.fixture
def pair(node):
    """Two nodes replicating each other's half; returns (n0, n1)."""
    n0, n1 = node("n0"), node("n1")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    wait_drained(n0, n1, range(0, 8))
    wait_drained(n1, n0, range(8, 16))
    return n0, n1


def keys_in(buckets, n, prefix="k"):
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if bucket(k, BUCKETS) in buckets:
            out.append(k)
        i += 1
    return out


def test_text_writes_replicate_item_by_item(pair):
    n0, n1 = pair
    ks = keys_in(range(0, 8), 12)
    c = n0.connect()
    assert c.cmd(f"set {ks[0]} 5 0 3\r\nabc") == b"STORED\r\n"
    assert c.cmd(f"add {ks[1]} 6 1000 2\r\nxy") == b"STORED\r\n"
    assert c.cmd(f"set {ks[2]} 0 0 1\r\nz") == b"STORED\r\n"
    assert c.cmd(f"replace {ks[2]} 7 0 2\r\nzz") == b"STORED\r\n"
    assert c.cmd(f"append {ks[0]} 0 0 3\r\ndef") == b"STORED\r\n"
    assert c.cmd(f"prepend {ks[0]} 0 0 2\r\n__") == b"STORED\r\n"
    c.send(f"gets {ks[1]}\r\n")
    cas = int(c.readline().split()[4])
    c.read_until()
    assert c.cmd(f"cas {ks[1]} 9 0 3 {cas}\r\nnew") == b"STORED\r\n"
    assert c.cmd(f"set {ks[3]} 0 0 2\r\n10") == b"STORED\r\n"
    assert c.cmd(f"incr {ks[3]} 5") == b"15\r\n"
    assert c.cmd(f"decr {ks[3]} 3") == b"12\r\n"
    assert c.cmd(f"set {ks[4]} 0 0 1\r\nt") == b"STORED\r\n"
    assert c.cmd(f"touch {ks[4]} 5000") == b"TOUCHED\r\n"
    assert c.cmd(f"set {ks[5]} 0 0 1\r\ng") == b"STORED\r\n"
    c.send(f"gat 4000 {ks[5]}\r\n")
    c.read_until()
    assert c.cmd(f"set {ks[6]} 0 0 1\r\nd") == b"STORED\r\n"
    assert c.cmd(f"delete {ks[6]}") == b"DELETED\r\n"
    assert c.cmd(f"add {ks[0]} 0 0 1\r\nq") == b"NOT_STORED\r\n"  # no change, no record
    wait_drained(n0, n1, range(0, 8))
    assert_same(n0, n1, range(0, 8))
    items = {}
    for b in range(8):
        items.update(dump(n1, b))
    assert items[ks[0].encode()][4] == b"__abcdef"
    assert items[ks[1].encode()][0] == 9 and items[ks[1].encode()][4] == b"new"
    assert items[ks[3].encode()][4] == b"12"
    assert items[ks[4].encode()][1] > time.time() + 4000
    assert ks[6].encode() not in items


def test_meta_writes_replicate_item_by_item(pair):
    n0, n1 = pair
    ks = keys_in(range(8, 16), 8)  # n1's buckets, replicated to n0
    c = n1.connect()
    c.send(f"ms {ks[0]} 3 F7 T900\r\nabc\r\n")
    assert c.readline() == b"HD\r\n"
    c.send(f"ms {ks[1]} 2 MA\r\nxy\r\n")
    assert c.readline() == b"NS\r\n"  # append to a missing key: no record
    c.send(f"ms {ks[1]} 2 I\r\nxy\r\n")
    assert c.readline() == b"HD\r\n"
    assert c.cmd(f"ma {ks[2]} N0 J40 D2") == b"HD\r\n"  # auto-vivified counter
    assert c.cmd(f"ma {ks[2]} D5") == b"HD\r\n"
    assert c.cmd(f"mg {ks[0]} T1200") == b"HD\r\n"
    c.send(f"ms {ks[3]} 1\r\nx\r\n")
    assert c.readline() == b"HD\r\n"
    assert c.cmd(f"md {ks[3]} I T30") == b"HD\r\n"  # invalidated: stale mark travels
    c.send(f"ms {ks[4]} 1\r\ny\r\n")
    assert c.readline() == b"HD\r\n"
    assert c.cmd(f"md {ks[4]}") == b"HD\r\n"
    c.send(f"ms {ks[5]} 2 E424242\r\nee\r\n")  # client-chosen CAS
    assert c.readline() == b"HD\r\n"
    wait_drained(n1, n0, range(8, 16))
    assert_same(n1, n0, range(8, 16))
    items = {}
    for b in range(8, 16):
        items.update(dump(n0, b))
    assert items[ks[2].encode()][4] == b"45"
    assert items[ks[3].encode()][3] == b"s"
    assert items[ks[5].encode()][2] == 424242
    assert ks[4].encode() not in items


def test_binary_writes_replicate_item_by_item(pair):
    n0, n1 = pair
    ks = [k.encode() for k in keys_in(range(0, 8), 5, prefix="b")]
    b = Bin(n0)
    assert b.call(SET, ks[0], struct.pack(">II", 3, 0), b"hello")[1] == 0
    assert b.call(ADD, ks[1], struct.pack(">II", 4, 100), b"v")[1] == 0
    assert b.call(INCR, ks[2], struct.pack(">QQI", 1, 7, 0))[1] == 0  # created at 7
    assert b.call(INCR, ks[2], struct.pack(">QQI", 5, 0, 0))[1] == 0
    assert b.call(APPEND, ks[0], val=b"!")[1] == 0
    assert b.call(TOUCH, ks[1], struct.pack(">I", 3000))[1] == 0
    assert b.call(SET, ks[3], struct.pack(">II", 0, 0), b"gone")[1] == 0
    assert b.call(DELETE, ks[3])[1] == 0
    wait_drained(n0, n1, range(0, 8))
    assert_same(n0, n1, range(0, 8))
    items = {}
    for bk in range(8):
        items.update(dump(n1, bk))
    assert items[ks[0]][4] == b"hello!" and items[ks[0]][0] == 3
    assert items[ks[2]][4] == b"12"
    assert ks[3] not in items


def test_flush_all_replicates_and_delayed_flush_takes_effect(pair):
    n0, n1 = pair
    ks = keys_in(range(0, 8), 20)
    c = n0.connect()
    for k in ks:
        assert c.cmd(f"set {k} 0 0 1\r\nv") == b"STORED\r\n"
    wait_drained(n0, n1, range(0, 8))
    assert sum(len(dump(n1, b)) for b in range(8)) == 20
    assert c.cmd("flush_all") == b"OK\r\n"
    for k in ks[:5]:
        assert c.cmd(f"set {k} 0 0 1\r\nw") == b"STORED\r\n"
    wait_drained(n0, n1, range(0, 8))
    assert_same(n0, n1, range(0, 8))
    assert sum(len(dump(n1, b)) for b in range(8)) == 5
    assert c.cmd("flush_all 2") == b"OK\r\n"
    wait_drained(n0, n1, range(0, 8))
    assert sum(len(dump(n1, b)) for b in range(8)) == 5  # not yet
    mc.wait_for(lambda: sum(len(dump(n1, b)) for b in range(8)) == 0, timeout=5,
                what="the delayed flush on the replica")


def test_replica_keeps_the_cas_for_failover(pair):
    """After promoting the replica, a client's gets/cas pair made on the old active works."""
    n0, n1 = pair
    k = keys_in(range(0, 8), 1)[0]
    c = n0.connect()
    assert c.cmd(f"set {k} 0 0 1\r\na") == b"STORED\r\n"
    c.send(f"gets {k}\r\n")
    cas = int(c.readline().split()[4])
    c.read_until()
    wait_drained(n0, n1, range(0, 8))
    d = n1.connect()
    assert auth(d) == b"OK\r\n"
    assert d.cmd(f"cluster state {bucket(k, BUCKETS)} active") == b"OK\r\n"
    assert d.cmd(f"cas {k} 0 0 1 {cas}\r\nb") == b"STORED\r\n"
    assert d.cmd(f"set {k} 0 0 1\r\nc") == b"STORED\r\n"
    d.send(f"gets {k}\r\n")
    assert int(d.readline().split()[4]) > cas  # later uniques stay above the active's


def load(servers, keys, seconds, seed, stop=None, counts=None):
    """Random writes of every kind from one client per server list entry; bounded in time."""
    rnd = random.Random(seed)
    conns = [s.connect() for s in servers]
    deadline = time.time() + seconds
    n = 0
    while time.time() < deadline and n < 200000 and not (stop and stop.is_set()):
        c = rnd.choice(conns)
        k = rnd.choice(keys)
        op = rnd.random()
        try:
            if op < 0.5:
                v = "x" * rnd.randint(1, 300)
                c.cmd(f"set {k} {rnd.randint(0, 9)} {rnd.choice([0, 0, 3600])} {len(v)}\r\n{v}")
            elif op < 0.65:
                c.cmd(f"delete {k}")
            elif op < 0.75:
                c.cmd(f"append {k} 0 0 2\r\nap")
            elif op < 0.85:
                c.cmd(f"touch {k} {rnd.randint(100, 5000)}")
            else:
                c.send(f"ma {k} N0 J1\r\n")
                c.readline()
        except (OSError, AssertionError):
            break
        n += 1
    for c in conns:
        c.close()
    if counts is not None:
        counts.append(n)
    return n


def test_link_cuts_under_load_then_dumps_match(node):
    """Writes flow while a fault proxy cuts the replication link again and again; once the
    link stays up, every bucket on the replica equals the active's."""
    n0 = node("n0")
    n1 = node("n1")
    proxy = FaultProxy(n1.port)  # n0 dials n1 through the proxy
    try:
        install([n0, n1], two_node_map([n0.port, proxy.port]))
        wait_drained(n0, n1, range(0, 8))
        keys = keys_in(range(0, 8), 300)
        stop = threading.Event()
        t = threading.Thread(target=load, args=([n0], keys, 8.0, 7, stop))
        t.start()
        for i in range(6):
            # cut once the link is back and has carried some of the load
            before = int(repl_stats(n0)["link:n1:records_out"])
            mc.wait_for(lambda: repl_stats(n0)["link:n1:state"] == "up" and
                        int(repl_stats(n0)["link:n1:records_out"]) > before + 200,
                        timeout=10, what=f"the link carrying records again (cut {i})")
            proxy.cut()
        stop.set()
        t.join(timeout=20)
        wait_drained(n0, n1, range(0, 8), timeout=15)
        assert_same(n0, n1, range(0, 8))
        st = repl_stats(n0)
        assert int(st["link:n1:connects"]) >= 4
        assert int(st["link:n1:resumes"]) + int(st["link:n1:backfills"]) >= 8
    finally:
        proxy.stop()


def test_replica_restart_gets_a_full_backfill(node):
    """The replica dies and comes back empty while writes keep flowing: it is backfilled
    bucket by bucket as the writes go on, and ends equal to the active."""
    n0 = node("n0")
    n1 = node("n1")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    keys = keys_in(range(0, 8), 500)
    load([n0], keys, 1.0, 1)
    wait_drained(n0, n1, range(0, 8))
    stop = threading.Event()
    t = threading.Thread(target=load, args=([n0], keys, 20.0, 2, stop))
    t.start()
    try:
        port = n1.port
        n1.stop()
        mc.wait_for(lambda: repl_stats(n0)["link:n1:state"] == "down", what="the link down")
        n1b = node("n1", "-p", str(port))
        install([n1b], two_node_map([n0.port, port]))
        mc.wait_for(lambda: int(repl_stats(n0)["link:n1:backfills"]) >= 16, timeout=10,
                    what="n1's second life backfilled")
    finally:
        stop.set()
        t.join(timeout=30)
    wait_drained(n0, n1b, range(0, 8))
    assert_same(n0, n1b, range(0, 8))
    st = repl_stats(n0)
    assert int(st["link:n1:backfill_items"]) > 0
    assert int(repl_stats(n1b)["link:n0:backfill_items_in"]) > 0


def fill(server, keys, value_of):
    """Sets every key, pipelined (noreply), then one synchronous command as the barrier."""
    c = server.connect(timeout=30)
    for i in range(0, len(keys), 2000):
        batch = []
        for k in keys[i:i + 2000]:
            v = value_of(k)
            batch.append(f"set {k} 0 0 {len(v)} noreply\r\n{v}\r\n")
        c.send("".join(batch))
    assert c.cmd("version").startswith(b"VERSION")
    c.close()


def test_big_backfill_under_writes_ends_equal(node):
    """A replica is backfilled a bucket of 50k items while a client sets, appends, increments,
    touches and deletes keys of that bucket: the walk goes in steps with writes in between,
    and the replica ends equal to the active, with no step holding the bucket's lock long."""
    n0 = node("n0", "-m", "256")
    n1 = node("n1", "-m", "256")
    text = two_node_map([n0.port, n1.port])
    install([n0], text)  # n1 has no map yet: it subscribes to nothing
    keys = keys_in(range(0, 1), 50000)
    counters = set(keys[::10])
    hot_counters = sorted(counters)[:500]
    fill(n0, keys, lambda k: "0" if k in counters else "v" * 400)
    fresh = keys_in(range(0, 1), 2000, prefix="fresh")

    stop = threading.Event()
    writes = []

    def writer():
        rnd = random.Random(5)
        c = n0.connect()
        n = 0
        while not stop.is_set():
            op = rnd.random()
            k = rnd.choice(keys)
            if op < 0.3:
                v = "s" * rnd.randint(1, 300)
                c.cmd(f"set {k} {rnd.randint(0, 9)} 0 {len(v)}\r\n{v}")
            elif op < 0.45:
                k = rnd.choice(fresh)
                c.cmd(f"set {k} 0 0 1\r\nf")
            elif op < 0.6:
                c.cmd(f"append {k} 0 0 2\r\nap")
            elif op < 0.75:
                c.cmd(f"incr {rnd.choice(hot_counters)} 3")
            elif op < 0.85:
                c.cmd(f"touch {k} {rnd.randint(1000, 5000)}")
            else:
                c.cmd(f"delete {rnd.choice([k, rnd.choice(fresh)])}")
            n += 1
            writes.append(n)
        c.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        mc.wait_for(lambda: len(writes) > 200, what="the writer under way")
        install([n1], text)  # n1 subscribes: every bucket of n0's half is backfilled
        at_install = len(writes)
        mc.wait_for(lambda: bucket_stats(n1).get("bucket:0:in_sync") == "yes", timeout=30,
                    interval=0.002, what="bucket 0 backfilled")
        during = len(writes) - at_install
        mc.wait_for(lambda: len(writes) > at_install + during + 200,
                    what="writes after the backfill, streamed")
    finally:
        stop.set()
        t.join(timeout=30)
    wait_drained(n0, n1, range(0, 8), timeout=20)
    assert_same(n0, n1, range(0, 8))
    st = repl_stats(n0)
    assert int(st["link:n1:backfill_items"]) >= 50000 - len(keys) // 5
    assert int(st["link:n1:backfill_steps"]) >= 50000 // 256
    hold, cpu = int(st["link:n1:backfill_max_hold_us"]), int(st["link:n1:backfill_max_hold_cpu_us"])
    print(f"backfill: {st['link:n1:backfill_steps']} steps, longest hold {hold} us "
          f"({cpu} us of CPU), {during} writes during it")
    # A step costs a few hundred us; the wall time also counts any moment the thread sat
    # preempted holding the lock, which a loaded 2-core machine stretched to 24 ms once.
    assert 0 < cpu < 5000
    assert 0 < hold < 50000


def test_concurrent_incr_counters_end_equal(pair):
    n0, n1 = pair
    counters = keys_in(range(0, 8), 4, prefix="ctr")
    c = n0.connect()
    for k in counters:
        assert c.cmd(f"set {k} 0 0 1\r\n0") == b"STORED\r\n"
    per_client, clients = 300, 8

    def run(i):
        cc = n0.connect()
        for j in range(per_client):
            cc.cmd(f"incr {counters[(i + j) % len(counters)]} 1")
        cc.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    total = sum(int(c.get_value(k)[1]) for k in counters)
    assert total == per_client * clients
    wait_drained(n0, n1, range(0, 8))
    assert_same(n0, n1, range(0, 8))


def test_slow_replica_does_not_slow_the_active(node):
    """A stopped replica (SIGSTOP) neither blocks the active's clients nor grows its memory
    without bound: the backlog overflows, the link is cut, and after SIGCONT the replica
    catches up (backfill) and ends equal."""
    n0 = node("n0", "-o", "repl_backlog_mb=1")
    n1 = node("n1")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    wait_drained(n0, n1, range(0, 8))
    keys = keys_in(range(0, 8), 2000)
    load([n0], keys, 1.0, 11)
    os.kill(n1.proc.pid, signal.SIGSTOP)
    try:
        # Every write is answered while the replica sleeps (each within the connection's
        # 5 s timeout): big values, so the 1 MB of backlogs overflows many times over.
        c = n0.connect()
        v = "v" * 50000
        for i in range(400):
            assert c.cmd(f"set {keys[i]} 0 0 {len(v)}\r\n{v}") == b"STORED\r\n"
        load([n0], keys, 1.0, 12)
        # bounded: the backlogs' budget (at least 64 KiB per bucket) plus one record each
        st = mc.wait_for(lambda: (lambda s: s if int(s["backlog_dropped"]) > 0 else None)(
            repl_stats(n0)), what="records dropped from the backlogs")
        assert int(st["backlog_bytes"]) <= 8 * (128 * 1024 + 50100)
    finally:
        os.kill(n1.proc.pid, signal.SIGCONT)
    mc.wait_for(lambda: int(repl_stats(n0)["backlog_overflows"]) + int(
        repl_stats(n0)["link:n1:disconnects"]) >= 1, timeout=10, what="the link was cut")
    wait_drained(n0, n1, range(0, 8), timeout=20)
    assert_same(n0, n1, range(0, 8))


def test_stats_replication_names_the_links(pair):
    n0, n1 = pair
    # link figures are refreshed every 50 ms: wait for a snapshot taken after the sync
    st = mc.wait_for(lambda: (lambda s: s if s["link:n1:buckets_out_in_sync"] == "8" and
                              s["buckets_replicated_in_sync"] == "8" else None)(repl_stats(n0)),
                     what="a fresh snapshot")
    for k in ["repl_ack", "backlog_bytes", "backlog_limit", "backlog_overflows",
              "buckets_streaming", "buckets_replicated", "link:n1:state", "link:n1:records_out",
              "link:n1:bytes_in", "link:n1:lag_records", "link:n1:lag_ms", "link:n1:resumes",
              "link:n1:backfills"]:
        assert k in st, k
    assert st["link:n1:state"] == "up" and st["buckets_streaming"] == "8"
    assert st["buckets_replicated"] == "8" and st["buckets_replicated_in_sync"] == "8"
    assert repl_stats(n1)["link:n0:role"] == "acceptor"
    bs = bucket_stats(n0)
    assert bs["bucket:0:state"] == "active" and "bucket:0:repl_lag" in bs
    assert bs["bucket:8:state"] == "replica" and bs["bucket:8:source"] == "n1"


def test_repl_link_needs_the_secret(pair):
    n0, _ = pair
    c = n0.connect()
    assert c.cmd("cluster repl n9 abc") == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert c.cmd("cluster dump 0") == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert c.cmd("version").startswith(b"VERSION")


def test_repl_ack_delete_waits_for_the_replica(node):
    n0 = node("n0", "-o", "repl_ack=delete,repl_ack_timeout=300")
    n1 = node("n1")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    wait_drained(n0, n1, range(0, 8))
    ks = keys_in(range(0, 8), 20)
    c = n0.connect()
    for k in ks:
        assert c.cmd(f"set {k} 0 0 1\r\nv") == b"STORED\r\n"
    assert repl_stats(n0)["ack_waits"] == "0"  # sets do not wait under repl_ack=delete
    for k in ks[:10]:
        assert c.cmd(f"delete {k}") == b"DELETED\r\n"
        # the reply came after the replica applied the delete
        assert k.encode() not in dump(n1, bucket(k, BUCKETS))
    # pipelined: replies keep their order around a waiting delete
    c.send(f"delete {ks[10]}\r\nget {ks[11]}\r\ndelete {ks[12]} noreply\r\nmn\r\n")
    assert c.readline() == b"DELETED\r\n"
    assert c.readline().startswith(f"VALUE {ks[11]} ".encode())
    assert c.readline() == b"v\r\n" and c.readline() == b"END\r\n"
    assert c.readline() == b"MN\r\n"
    mc.wait_for(lambda: repl_stats(n0)["ack_waits"] == "11", what="stats (one tick old)")
    assert repl_stats(n0)["ack_timeouts"] == "0"
    # A replica that does not answer delays the reply by the timeout, no more.
    os.kill(n1.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert c.cmd(f"delete {ks[13]}") == b"DELETED\r\n"
        waited = time.monotonic() - t0
    finally:
        os.kill(n1.proc.pid, signal.SIGCONT)
    mc.wait_for(lambda: repl_stats(n0)["ack_timeouts"] == "1", what="the timeout counted")
    assert waited >= 0.25


def test_repl_ack_all_waits_for_every_write(node):
    n0 = node("n0", "-o", "repl_ack=all")
    n1 = node("n1")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    wait_drained(n0, n1, range(0, 8))
    ks = keys_in(range(0, 8), 10)
    c = n0.connect()
    for i, k in enumerate(ks):
        assert c.cmd(f"set {k} {i} 0 2\r\nv{i}") == b"STORED\r\n"
        assert dump(n1, bucket(k, BUCKETS))[k.encode()][4] == f"v{i}".encode()
    c.send(f"ms {ks[0]} 1 T99\r\nz\r\n")
    assert c.readline() == b"HD\r\n"
    assert dump(n1, bucket(ks[0], BUCKETS))[ks[0].encode()][4] == b"z"
    assert c.cmd(f"incr {ks[1]} 1") == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    mc.wait_for(lambda: repl_stats(n0)["ack_waits"] == "11", what="stats (one tick old)")
    assert repl_stats(n0)["ack_timeouts"] == "0"
