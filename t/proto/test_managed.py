"""Managed mode (doc/managed.md): the bucket map and its epochs, the control commands and
their authentication, NOT_MY_BUCKET, one-hop forwarding for stock clients, stats. Only for
this server (memcached has no managed mode); 3-node clusters on loopback, driven by the test
as the coordinator would."""

import socket
import struct
import time
import zlib

import pytest

from lib import cluster as cl
from lib import mc
from lib.cluster import SECRET, auth, setmap

# Forwarding dials the other servers' client ports in plain TCP: over -Z ports that is the
# peer TLS work (doc/managed.md, Peer TLS), not the clients' TLS.
pytestmark = pytest.mark.no_tls("forwarding to a -Z port takes peer TLS (cluster/test_peer_tls.py)")
BUCKETS = 16


@pytest.fixture(autouse=True)
def only_ours(server):
    if not mc.is_ours(server):
        pytest.skip("managed mode is this server's own")


def bucket(key, n=BUCKETS):
    return cl.bucket(key, n)


def map_text(servers, epoch=1, buckets=BUCKETS):
    lines = [f"MAP {epoch} {buckets}"]
    for i, s in enumerate(servers):
        lines.append(f"NODE n{i} 127.0.0.1:{s.port}")
    n = len(servers)
    per = buckets // n
    for i in range(n):
        first = i * per
        last = buckets - 1 if i == n - 1 else first + per - 1
        replica = f" n{(i + 1) % n}" if n > 1 else ""
        lines.append(f"RANGE {first} {last} n{i}{replica}")
    lines.append("END")
    return "\r\n".join(lines) + "\r\n"


def owner(key, nservers=3, buckets=BUCKETS):
    per = buckets // nservers
    return min(bucket(key, buckets) // per, nservers - 1)


@pytest.fixture
def cluster(make_server, tmp_path):
    def start(n=3, forward=1, epoch=1):
        path = tmp_path / "secret"
        path.write_bytes(SECRET + b"\n")
        servers = [make_server("-o", f"node_id=n{i},cluster_secret_file={path},"
                                     f"buckets={BUCKETS},bucket_forward={forward}")
                   for i in range(n)]
        text = map_text(servers, epoch)
        for s in servers:
            c = s.connect()
            assert auth(c) == b"OK\r\n"
            assert setmap(c, text) == b"OK\r\n"
            c.close()
        return servers
    return start


def test_bucket_function_is_zlib_crc32():
    # doc/managed.md lists these vectors
    assert [bucket(k, 1024) for k in ["", "a", "foo", "user:1000", "hello world"]] == \
        [0, 0xe8b7be43 % 1024, 0x8c736521 % 1024, zlib.crc32(b"user:1000") % 1024,
         0x0d4a1185 % 1024]


def test_standalone_has_no_cluster_commands(server):
    c = server.connect()
    assert c.cmd("cluster map") == b"ERROR\r\n"
    c.send("stats cluster\r\n")
    assert c.readline() == b"ERROR\r\n"


def test_control_commands_need_the_secret(cluster):
    s = cluster(n=1)[0]
    c = s.connect()
    text = map_text([s], epoch=5)
    assert setmap(c, text) == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert c.cmd("cluster state 0 dead") == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert c.cmd("cluster drop all") == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert c.cmd("cluster reset") == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert c.cmd("version").startswith(b"VERSION")  # the map text did not run as commands
    assert auth(c, b"wrong-secret-wrong-secret") == b"CLIENT_ERROR authentication failed\r\n"
    assert c.cmd("cluster auth 00") == b"CLIENT_ERROR authentication failed\r\n"  # no challenge
    st = c.stats("cluster")
    assert st["map_epoch"] == "1" and int(st["auth_failures"]) == 2
    # the read-only views are open to anyone
    c.send("cluster map\r\n")
    assert c.read_until() == map_text([s], epoch=1).encode()


def test_epochs_only_grow(cluster):
    servers = cluster()
    c = servers[0].connect()
    assert auth(c) == b"OK\r\n"
    assert setmap(c, map_text(servers, epoch=1)) == b"OK\r\n"  # the same map again
    assert setmap(c, map_text(servers[::-1], epoch=1)).startswith(b"CLIENT_ERROR stale map")
    assert setmap(c, map_text(servers, epoch=0)).startswith(b"CLIENT_ERROR stale map")
    assert setmap(c, map_text(servers, epoch=2)) == b"OK\r\n"
    assert c.stats("cluster")["map_epoch"] == "2"
    assert setmap(c, "MAP 3 16\r\nRANGE 0 3 nobody\r\nEND\r\n").startswith(b"CLIENT_ERROR bad map")
    assert setmap(c, "MAP 3 8\r\nEND\r\n").startswith(b"CLIENT_ERROR bad map")


def keys_by_owner(nkeys=60):
    out = {0: [], 1: [], 2: []}
    for i in range(nkeys):
        k = f"key{i}"
        out[owner(k)].append(k)
    return out


def test_not_my_bucket_without_forwarding(cluster):
    servers = cluster(forward=0)
    ks = keys_by_owner()
    c = servers[0].connect()
    mine, theirs = ks[0][0], ks[1][0]
    assert c.cmd(f"set {mine} 0 0 1\r\nx") == b"STORED\r\n"
    assert c.cmd(f"set {theirs} 0 0 1\r\nx") == f"SERVER_ERROR NOT_MY_BUCKET {bucket(theirs)} 1\r\n".encode()
    assert c.cmd("version").startswith(b"VERSION")  # the value was not run as a command
    assert c.cmd(f"mg {theirs} v") == f"SERVER_ERROR NOT_MY_BUCKET {bucket(theirs)} 1\r\n".encode()
    c.send(f"get {mine} {theirs}\r\n")
    assert c.readline() == f"SERVER_ERROR NOT_MY_BUCKET {bucket(theirs)} 1\r\n".encode()
    # binary (on its own connection: the protocol is chosen by a connection's first byte):
    # status 0x07 with the same words
    kb = theirs.encode()
    c = servers[0].connect()
    c.send(struct.pack(">BBHBBHIIQ", 0x80, 0, len(kb), 0, 0, 0, len(kb), 9, 0) + kb)
    h = c.readexact(24)
    st, bl = struct.unpack(">H", h[6:8])[0], struct.unpack(">I", h[8:12])[0]
    assert st == 7 and c.readexact(bl) == f"NOT_MY_BUCKET {bucket(theirs)} 1".encode()
    assert int(servers[0].connect().stats("cluster")["not_my_bucket"]) == 4


def test_forwarding_serves_every_key_from_every_node(cluster):
    servers = cluster()
    conns = [s.connect() for s in servers]
    keys = [f"key{i}" for i in range(60)]
    for i, k in enumerate(keys):  # written through whichever node, read through every node
        assert conns[i % 3].cmd(f"set {k} {i} 0 {len(k)}\r\n{k}") == b"STORED\r\n"
    for c in conns:
        for i, k in enumerate(keys):
            assert c.get_value(k) == (i, k.encode())
    # each item is served by its owner only (replicas hold copies, doc/replication.md)
    for n, s in enumerate(servers):
        st = s.connect().stats("buckets")
        items = sum(int(v) for k, v in st.items()
                    if k.endswith(":items") and st[k[:-len("items")] + "state"] == "active")
        assert items == sum(1 for k in keys if owner(k) == n)
    fw = [int(c.stats("cluster")["forwarded"]) for c in conns]
    assert all(f > 0 for f in fw)


def test_multiget_across_owners_keeps_order(cluster):
    servers = cluster()
    c = servers[0].connect()
    keys = [f"mk{i}" for i in range(30)]
    for k in keys[::2]:
        assert c.cmd(f"set {k} 0 0 {len(k)}\r\n{k}") == b"STORED\r\n"
    c.send("gets " + " ".join(keys) + "\r\n")
    got = []
    while True:
        line = c.readline()
        if line == b"END\r\n":
            break
        parts = line.split()
        assert parts[0] == b"VALUE" and len(parts) == 5
        got.append(parts[1].decode())
        assert c.readexact(int(parts[3]) + 2) == parts[1] + b"\r\n"
    assert got == keys[::2]


def test_forwarded_meta_binary_and_noreply(cluster):
    servers = cluster()
    ks = keys_by_owner()
    c = servers[0].connect()
    k = ks[2][0]
    assert c.cmd(f"ms {k} 3 T0 c k\r\nabc").startswith(b"HD c")
    c.send(f"mg {k} v k\r\n")
    assert c.readline() == f"VA 3 k{k}\r\n".encode() and c.readline() == b"abc\r\n"
    c.send(f"mg nope-{k} v q\r\nset {k} 0 0 1 noreply\r\nz\r\nmn\r\n")
    assert c.readline() == b"MN\r\n"  # q miss and noreply store: nothing, then mn
    assert c.get_value(k) == (0, b"z")
    kb = k.encode()
    c = servers[0].connect()
    c.send(struct.pack(">BBHBBHIIQ", 0x80, 0, len(kb), 0, 0, 0, len(kb), 0xabcd, 0) + kb)
    h = c.readexact(24)
    magic, op, kl, el, dt, st, bl, opq, cas = struct.unpack(">BBHBBHIIQ", h)
    assert (magic, st, el, opq) == (0x81, 0, 4, 0xabcd)
    assert c.readexact(bl)[4:] == b"z"
    # a binary set with its value, forwarded
    k2 = ks[1][0].encode()
    c.send(struct.pack(">BBHBBHIIQ", 0x80, 1, len(k2), 8, 0, 0, 8 + len(k2) + 5, 7, 0) +
           struct.pack(">II", 3, 0) + k2 + b"hello")
    h = c.readexact(24)
    assert struct.unpack(">H", h[6:8])[0] == 0 and c.readexact(struct.unpack(">I", h[8:12])[0]) == b""
    assert servers[1].connect().get_value(k2.decode()) == (3, b"hello")


def test_pymemcache_hashclient_reads_back_every_write(cluster):
    pymemcache = pytest.importorskip("pymemcache")
    from pymemcache.client.hash import HashClient
    servers = cluster()
    hc = HashClient([("127.0.0.1", s.port) for s in servers], timeout=5, connect_timeout=5)
    data = {f"hc{i}": f"value-{i}".encode() for i in range(200)}
    for k, v in data.items():
        assert hc.set(k, v)
    for k, v in data.items():
        assert hc.get(k) == v
    # and a client that only knows one node sees the same data
    from pymemcache.client.base import Client
    one = Client(("127.0.0.1", servers[1].port), timeout=5)
    assert one.get_many(list(data)) == data


def test_dead_owner_gives_a_clean_error(cluster):
    servers = cluster()
    ks = keys_by_owner()
    c = servers[0].connect(timeout=10)
    k = ks[1][0]
    assert c.cmd(f"set {k} 0 0 1\r\nx") == b"STORED\r\n"
    servers[1].stop()
    started = time.monotonic()
    line = c.cmd(f"get {k}")
    assert line.startswith(b"SERVER_ERROR forward to n1 failed"), line
    assert time.monotonic() - started < 5
    assert c.cmd(f"set {ks[0][0]} 0 0 1\r\ny") == b"STORED\r\n"  # local keys still work
    assert int(c.stats("cluster")["forward_errors"]) >= 1


def test_drop_and_bucket_stats(cluster):
    servers = cluster(n=1)
    c = servers[0].connect()
    for i in range(40):
        c.cmd(f"set d{i} 0 0 1\r\nx")
    st = c.stats("buckets")
    b = bucket("d0")
    n = int(st[f"bucket:{b}:items"])
    assert n >= 1 and st[f"bucket:{b}:state"] == "active"
    assert auth(c) == b"OK\r\n"
    assert c.cmd(f"cluster drop {b}") == f"OK {n}\r\n".encode()
    assert c.get_value("d0") is None
    assert c.cmd("cluster reset") == b"OK\r\n"
    assert c.stats("cluster")["buckets_active"] == "0"
    # no bucket is active here now and no map names an owner
    assert c.cmd("get d1") == f"SERVER_ERROR NOT_MY_BUCKET {bucket('d1')} 1\r\n".encode()


def test_pending_holds_writes_briefly(cluster):
    servers = cluster(n=1)
    admin = servers[0].connect()
    assert auth(admin) == b"OK\r\n"
    b = bucket("p1")
    assert admin.cmd(f"cluster state {b} pending") == b"OK\r\n"
    c = servers[0].connect()
    started = time.monotonic()
    line = c.cmd("set p1 0 0 1\r\nx")
    waited = time.monotonic() - started
    assert waited >= 0.2, line  # held, then refused: no other server owns it
    assert line.startswith(b"SERVER_ERROR")
    assert admin.cmd(f"cluster state {b} active") == b"OK\r\n"
    assert c.cmd("set p1 0 0 1\r\nx") == b"STORED\r\n"


def test_pipelined_forwarding_keeps_reply_order(cluster):
    """A client pipelining requests for many owners gets every reply, in request order, and
    noreply writes queued behind a link's handshake are not lost."""
    servers = cluster()
    c = servers[0].connect(timeout=10)
    keys = [f"pk{i}" for i in range(300)]
    c.send("".join(f"set {k} 0 0 {len(k)} noreply\r\n{k}\r\n" for k in keys))
    c.send("".join(f"get {k}\r\nmn\r\n" for k in keys))
    for k in keys:
        assert c.readline() == f"VALUE {k} 0 {len(k)}\r\n".encode()
        assert c.readline() == f"{k}\r\n".encode()
        assert c.readline() == b"END\r\n"
        assert c.readline() == b"MN\r\n"


def test_hung_owner_times_out(cluster):
    """An owner that accepts nothing and answers nothing (stopped with SIGSTOP) costs the
    client at most the forwarding timeout, then a clean error."""
    import os
    import signal
    servers = cluster()
    ks = keys_by_owner()
    c = servers[0].connect(timeout=10)
    k = ks[2][0]
    assert c.cmd(f"set {k} 0 0 1\r\nx") == b"STORED\r\n"  # the link to n2 is up
    servers[2].pause()
    try:
        started = time.monotonic()
        line = c.cmd(f"get {k}")
        waited = time.monotonic() - started
        assert line == b"SERVER_ERROR forward to n2 failed: timed out\r\n"
        assert 0.9 < waited < 3
        assert c.cmd(f"set {ks[0][0]} 0 0 1\r\ny") == b"STORED\r\n"
    finally:
        os.kill(servers[2].proc.pid, signal.SIGCONT)
    # once it answers again, so does forwarding
    mc.wait_for(lambda: c.cmd(f"get {k}").startswith(b"VALUE") and c.readline() and
                c.readline() == b"END\r\n", timeout=10, what="forwarding to n2 again")
