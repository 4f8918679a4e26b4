"""Hardening of managed mode (issue 15): replication links only from peers of the map, stats
that forget links that are gone, frames of impossible lengths, and the control commands'
authentication: without it, with a wrong proof or with a replayed one, no command changes
anything, and the secret never shows in a reply, a stat or a log."""

import hashlib
import hmac
import os
import socket
import struct
import time

import pytest

from lib import mc
from lib.cluster import SECRET, auth, install, setmap

BUCKETS = 16  # as the `node` fixture starts them
NODE_SECRET = b"test-cluster-secret-0123456789"  # conftest.py's `node` secret

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("managed mode is this server's own", allow_module_level=True)


def two_node_map(ports, epoch=1):
    return (f"MAP {epoch} {BUCKETS}\r\nNODE n0 127.0.0.1:{ports[0]}\r\n"
            f"NODE n1 127.0.0.1:{ports[1]}\r\nRANGE 0 7 n0 n1\r\nRANGE 8 15 n1 n0\r\nEND\r\n")


def stats(s, group):
    c = s.connect()
    st = c.stats(group)
    c.close()
    return st


def closed_port():
    k = socket.socket()
    k.bind(("127.0.0.1", 0))
    port = k.getsockname()[1]
    k.close()
    return port


def authed(s, secret=NODE_SECRET):
    c = s.connect()
    assert auth(c, secret) == b"OK\r\n"
    return c


def test_repl_refused_for_names_that_are_not_peers(node):
    n0 = node("n0")
    c = authed(n0)
    # no map yet: nobody is a peer
    assert c.cmd("cluster repl n1 abc") == b"CLIENT_ERROR n1 is not a peer in the map\r\n"
    install([n0], two_node_map([n0.port, closed_port()]))
    assert c.cmd("cluster repl n0 abc") == \
        b"CLIENT_ERROR n0 is not a peer in the map of epoch 1\r\n"  # itself
    assert c.cmd("cluster repl n7 abc") == \
        b"CLIENT_ERROR n7 is not a peer in the map of epoch 1\r\n"
    assert c.cmd("cluster repl " + "x" * 65 + " abc") == b"CLIENT_ERROR bad node name\r\n"
    assert c.cmd("cluster repl n/1 abc") == b"CLIENT_ERROR bad node name\r\n"
    assert c.cmd("version").startswith(b"VERSION")  # the connection stayed a client's
    assert c.stats("cluster")["repl_links_refused"] == "5"
    st = stats(n0, "replication")
    assert not [k for k in st if k.startswith(("link:n7:", "link:n0:", "link:x"))], st
    c.close()


def test_stats_forget_a_peer_the_map_dropped(node):
    n0, n1 = node("n0"), node("n1")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    mc.wait_for(lambda: stats(n0, "replication").get("link:n1:state") == "up", timeout=10,
                what="the link up")
    # n1 leaves the map: n0 closes the link and forgets its stats
    install([n0], f"MAP 2 {BUCKETS}\r\nNODE n0 127.0.0.1:{n0.port}\r\n"
                  f"RANGE 0 15 n0\r\nEND\r\n")
    mc.wait_for(lambda: not [k for k in stats(n0, "replication") if k.startswith("link:n1:")],
                timeout=5, what="n0's stats to forget n1")
    # and n1 can no longer open one to n0
    c = authed(n1)
    c.close()
    c = authed(n0)
    assert c.cmd("cluster repl n1 abc").startswith(b"CLIENT_ERROR n1 is not a peer")
    c.close()
    assert n0.alive() and n1.alive()


def read_frame(sock, buf, deadline):
    while True:
        if len(buf) >= 5:
            (n,) = struct.unpack_from("<I", buf)
            if len(buf) >= 4 + n:
                return buf[4], buf[5:4 + n], buf[4 + n:]
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, "link closed by the server"
        buf += chunk


def fake_peer_link(server, name="n0"):
    """An authenticated replication link to server from the peer `name`, Hello read."""
    c = authed(server)
    c.send(f"cluster repl {name} 0123456789abcdef n1\r\n")
    t, _, rest = read_frame(c.sock, c.buf, time.monotonic() + 5)
    assert t == 1  # Hello
    return c


def wait_closed(sock, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            break
        except ConnectionResetError:
            return True
    return False


@pytest.mark.parametrize("length", [0, 0xFFFFFFFF, 1 << 31, (4 << 20) + 1])
def test_frames_of_impossible_length_close_the_link(node, length):
    """A peer that announces a frame of up to 4 GB: the link closes before anything is
    buffered, it is counted, and clients are served throughout."""
    n1 = node("n1")
    install([n1], two_node_map([closed_port(), n1.port]))
    client = n1.connect()
    before = n1.rss_kib()
    c = fake_peer_link(n1)
    sock = c.sock
    sock.sendall(struct.pack("<IB", length & 0xFFFFFFFF, 4))
    junk = b"\0" * 65536
    sent = 0
    try:
        for _ in range(128):  # 8 MB more, if the server still reads
            sock.sendall(junk)
            sent += len(junk)
    except OSError:
        pass
    assert wait_closed(sock), "the link stayed open"
    st = mc.wait_for(lambda: (lambda s: s if s.get("links_bad_frames") == "1" else None)(
        stats(n1, "replication")), timeout=5, what="the bad frame counted")
    assert st["max_frame"] == str(4 << 20)  # -I 1m: twice that, at least 4 MB
    assert st["link:n0:last_error"].startswith(f"frame_length_{length}_outside_1..")
    assert n1.rss_kib() - before < 16 * 1024
    assert client.cmd("version").startswith(b"VERSION")
    assert n1.alive()


# Every control and replication command, as an unauthenticated client could send it. The
# state they would change is compared before and after.
def control_commands(port, free_port):
    text = f"MAP 9 {BUCKETS}\r\nNODE n0 127.0.0.1:{port}\r\nRANGE 0 15 n0\r\nEND\r\n"
    return [
        f"cluster setmap {len(text)}\r\n{text}",
        "cluster setmap 99999999",
        "cluster state 0 dead", "cluster state 0-15 active", "cluster state all pending",
        "cluster drop all", "cluster drop 0", "cluster reset", "cluster peer",
        "cluster peer binary", "cluster repl n1 abc", "cluster repl n1 abc n0",
        "cluster dump 0", "cluster hb 1000 5 500", "cluster lease 1000 5 500",
        f"cluster listen 127.0.0.1:{free_port}", f"cluster unlisten 127.0.0.1:{free_port}",
        "cluster steer", "cluster handoff 0 9", "cluster handoff 0-3 cancel",
        "cluster applied 0", "cluster state", "cluster drop", "cluster hb",
    ]


NEEDS_AUTH = b"CLIENT_ERROR cluster command needs authentication\r\n"


def snapshot(s):
    c = s.connect()
    c.send("cluster map\r\n")
    m = c.read_until()
    st = c.stats("cluster")
    keep = {k: st[k] for k in ("map_epoch", "buckets_active", "buckets_replica",
                               "buckets_pending", "buckets_dead", "fenced", "lease_left_ms",
                               "heartbeats", "handoffs", "takeover_listeners",
                               "maps_installed")}
    items = c.stats()["curr_items"]
    values = [c.cmd(f"get key{i}") for i in range(40)]
    c.close()
    return m, keep, items, values


@pytest.mark.parametrize("how", ["none", "wrong_secret", "replayed_proof", "no_challenge"])
def test_no_control_command_changes_anything_without_authentication(node, how):
    n0, n1 = node("n0"), node("n1")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    c = n0.connect()
    for i in range(40):
        assert c.cmd(f"set key{i} 0 0 2\r\nv{i % 10}") == b"STORED\r\n"  # forwarded or not
    c.close()
    mc.wait_for(lambda: stats(n0, "replication").get("link:n1:state") == "up", timeout=10,
                what="the link up")
    # n1 replicates the keys it owns to n0 asynchronously: the snapshot waits for all 40, or
    # a copy arriving between the two snapshots would look like a change.
    mc.wait_for(lambda: stats(n0, "")["curr_items"] == "40", timeout=10, what="n1's keys on n0")
    before = snapshot(n0)
    free_port = closed_port()
    # A proof that was good once, on another connection.
    used = n0.connect()
    nonce = used.cmd("cluster auth").split()[1]
    old_proof = hmac.new(NODE_SECRET, nonce, hashlib.sha256).hexdigest()
    assert used.cmd("cluster auth " + old_proof) == b"OK\r\n"
    used.close()
    failures = int(stats(n0, "cluster")["auth_failures"])
    for line in control_commands(n0.port, free_port):
        c = n0.connect()
        if how == "wrong_secret":
            assert auth(c, b"not-the-secret-0123456789") == b"CLIENT_ERROR authentication failed\r\n"
        elif how == "replayed_proof":
            assert c.cmd("cluster auth").startswith(b"CHALLENGE ")
            assert c.cmd("cluster auth " + old_proof) == b"CLIENT_ERROR authentication failed\r\n"
        elif how == "no_challenge":
            assert c.cmd("cluster auth " + old_proof) == b"CLIENT_ERROR authentication failed\r\n"
        c.send(line + "\r\n")
        assert c.readline() == NEEDS_AUTH, line
        # the connection is still a client's, and nothing after the line ran as a command
        # (a setmap whose text never comes swallows what follows, as a value would)
        if line != "cluster setmap 99999999":
            assert c.cmd("version").startswith(b"VERSION"), line
        c.close()
    assert snapshot(n0) == before
    k = socket.socket()
    assert k.connect_ex(("127.0.0.1", free_port)) != 0  # `cluster listen` opened nothing
    k.close()
    st = stats(n0, "cluster")
    expect = failures + (0 if how == "none" else len(control_commands(0, 0)))
    assert int(st["auth_failures"]) == expect
    assert st["repl_links_refused"] == "0"  # refused before the name was even looked at


def test_one_try_per_challenge(node):
    n0 = node("n0")
    a, b = n0.connect(), n0.connect()
    na = a.cmd("cluster auth").split()[1]
    nb = b.cmd("cluster auth").split()[1]
    assert na != nb
    pa = hmac.new(NODE_SECRET, na, hashlib.sha256).hexdigest()
    pb = hmac.new(NODE_SECRET, nb, hashlib.sha256).hexdigest()
    assert b.cmd("cluster auth " + pa) == b"CLIENT_ERROR authentication failed\r\n"
    assert b.cmd("cluster auth " + pb) == b"CLIENT_ERROR authentication failed\r\n"  # used up
    assert a.cmd("cluster auth " + pa) == b"OK\r\n"
    assert b.cmd("cluster drop all") == NEEDS_AUTH
    assert a.cmd("cluster drop all").startswith(b"OK")


def test_a_replayed_hello_is_refused_by_the_dialer(node):
    """n0 dials n1's address, where an impostor answers with a Hello whose proof was made for
    another nonce: n0 closes the link and never counts it up."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    n0 = node("n0")
    install([n0], two_node_map([n0.port, lst.getsockname()[1]]))
    lst.settimeout(5)
    peer, _ = lst.accept()
    peer.settimeout(5)
    peer.sendall(b"CHALLENGE 00112233445566778899aabbccddeeff\r\n")
    got = b""
    while b"cluster repl" not in got or not got.endswith(b"\r\n"):
        chunk = peer.recv(4096)
        assert chunk
        got += chunk
    peer.sendall(b"OK\r\n")
    stale = hmac.new(NODE_SECRET, b"repl some-other-nonce", hashlib.sha256).hexdigest().encode()
    name = b"n1"
    payload = struct.pack("<H", len(name)) + name + stale
    peer.sendall(struct.pack("<IB", 1 + len(payload), 1) + payload)
    assert wait_closed(peer)
    st = mc.wait_for(lambda: (lambda s: s if "link:n1:last_error" in s else None)(
        stats(n0, "replication")), timeout=5, what="the refusal in stats")
    assert st["link:n1:last_error"] == "peer_failed_to_prove_the_cluster_secret"
    assert st["link:n1:state"] != "up" and st["link:n1:connects"] == "0"
    peer.close()
    lst.close()


def test_the_secret_never_shows(node, tmp_path):
    n0 = node("n0", "-vv")
    n1 = node("n1", "-vv")
    install([n0, n1], two_node_map([n0.port, n1.port]))
    mc.wait_for(lambda: stats(n0, "replication").get("link:n1:state") == "up", timeout=10,
                what="the link up")
    seen = []
    c = n0.connect()
    seen.append(auth(c, b"wrong"))
    seen.append(c.cmd("cluster auth " + NODE_SECRET.decode()))
    seen.append(c.cmd("cluster auth " + NODE_SECRET.hex()))
    seen.append(auth(c))
    seen.append(setmap(c, "MAP 1 16\r\nNODE zz nowhere\r\nEND\r\n"))
    for group in ("", "settings", "cluster", "replication", "buckets", "conns", "items",
                  "slabs", "detail dump"):
        c.send(f"stats {group}\r\n")
        seen.append(c.read_until())
    c.send("cluster map\r\n")
    seen.append(c.read_until())
    c.close()
    blob = b"".join(seen) + n0.read_log().encode() + n1.read_log().encode()
    for form in (NODE_SECRET, NODE_SECRET.hex().encode(), NODE_SECRET[:12]):
        assert form not in blob


# Every mutating call of the coordinator's admin API (doc/coordinator.md), with a body that
# would be accepted with the right proof.
ADMIN_MUTATIONS = [
    ("POST", "/failover/n1", b""),
    ("DELETE", "/nodes/n1", b""),
    ("POST", "/nodes", b'{"name": "n9", "addr": "127.0.0.1:1"}'),
    ("POST", "/nodes/n1/drain", b'{"remove": true}'),
    ("POST", "/rebalance", b"{}"),
    ("POST", "/rebalance/cancel", b""),
]


def test_no_admin_call_changes_anything_without_the_secret(cluster):
    servers, coord = cluster(n=2, replicas=1)
    before = (coord.map_text(), coord.status()["epoch"], sorted(coord.servers()))
    used = coord.challenge()
    st, _ = coord.request("GET", "/status")  # reads are open
    assert st == 200
    for method, path, body in ADMIN_MUTATIONS:
        st, j = coord.request(method, path, body, auth=False)
        assert st == 401, (method, path, st, j)
        st, j = coord.request(method, path, body, secret=b"wrong-secret-0123456789")
        assert st == 401, (method, path, st, j)
        # a challenge signed right but used before (replayed) is refused
        st, j = coord.request(method, path, body, challenge=used, secret=b"x" * 24)
        assert st == 401, (method, path, st, j)
        st, j = coord.request(method, path, body, challenge=used)
        assert st == 401, (method, path, st, j)
    # a proof for one call does not sign another: same challenge, other path
    ch = coord.challenge()
    st, _ = coord.request("POST", "/rebalance/cancel", b"", challenge=ch, secret=b"y" * 24)
    assert st == 401
    assert (coord.map_text(), coord.status()["epoch"], sorted(coord.servers())) == before
    for s in servers.values():
        assert s.alive()


def test_the_secret_never_shows_from_the_coordinator(cluster):
    servers, coord = cluster(n=2, replicas=1)
    seen = []
    for method, path, body in ADMIN_MUTATIONS:
        seen.append(repr(coord.request(method, path, body, auth=False)))
        seen.append(repr(coord.request(method, path, body, secret=b"wrong-secret-0123456789")))
    for path in ("/status", "/map", "/metrics", "/auth"):
        seen.append(repr(coord.request("GET", path)))
    blob = "".join(seen).encode() + coord.read_log().encode()
    for s in servers.values():
        blob += s.read_log().encode()
    for form in (SECRET, SECRET.hex().encode()):
        assert form not in blob
