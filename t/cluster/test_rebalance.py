"""Planned moves (doc/coordinator.md, "Rebalance" and "Moving a bucket"): servers added,
drained and removed under a write load from stock pymemcache clients. Each writer records the
value of every acknowledged write; every read is checked against that record, so a miss for
a key that was present, a stale value or a lost write fails the test."""

import os
import random
import signal
import threading
import time

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from lib import mc
from lib.cluster import bucket, dump
from lib.coord import parse_map, server_map, wait_settled

BUCKETS = 64


def client(server, timeout=2.0):
    return Client(("127.0.0.1", server.port), connect_timeout=timeout, timeout=timeout)


class Load:
    """Writers on stock HashClients (the servers known at the start, default hashing), each
    with keys of its own: set a key, then read back one it wrote before. Bounded in time and
    count. A miss or a value other than the last acknowledged one is recorded, as is every
    client error."""

    def __init__(self, servers, threads=4, keys=300, seconds=60, seed=1):
        self.addrs = [("127.0.0.1", s.port) for s in servers]
        self.threads = threads
        self.keys = keys
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.records = [dict() for _ in range(threads)]
        self.misses, self.stale, self.errors = [], [], []
        self.writes = 0
        self.reads = 0
        self.lock = threading.Lock()
        self.seed = seed
        self.ts = [threading.Thread(target=self.run, args=(t,), daemon=True)
                   for t in range(threads)]

    def __enter__(self):
        for t in self.ts:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.ts:
            t.join(timeout=30)

    def run(self, t):
        rnd = random.Random(self.seed * 100 + t)
        # A failed server is retried at once, never skipped: a skip answers a get with None
        # without asking anyone, which would count as a miss here.
        c = HashClient(self.addrs, connect_timeout=2, timeout=2, use_pooling=False,
                       retry_attempts=10**9, retry_timeout=0, dead_timeout=0)
        rec = self.records[t]
        n = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline and n < 10**6:
            n += 1
            k = f"w{t}-{n % self.keys}"
            v = f"{t}-{n}".encode()
            try:
                if c.set(k, v, noreply=False):
                    rec[k] = v
                    with self.lock:
                        self.writes += 1
            except Exception as e:  # noqa: BLE001 - recorded, judged by the test
                with self.lock:
                    self.errors.append(f"set {k}: {type(e).__name__}: {e}")
                rec.pop(k, None)  # unknown outcome: not checked
            if not rec:
                continue
            r = rnd.choice(list(rec))
            want = rec[r]
            try:
                got = c.get(r)
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    self.errors.append(f"get {r}: {type(e).__name__}: {e}")
                continue
            with self.lock:
                self.reads += 1
                if got is None:
                    self.misses.append(r)
                elif got != want:
                    self.stale.append((r, want, got))

    def check_all(self, servers):
        """Every acknowledged key reads back its last value, through every server."""
        lost = []
        for s in servers:
            c = client(s)
            for rec in self.records:
                for k, v in rec.items():
                    got = c.get(k)
                    if got != v:
                        lost.append((s.port, k, v, got))
            c.close()
        return lost


def wait_rebalanced(coord, timeout=60, state="done"):
    def over():
        r = coord.status()["rebalance"]
        return r if r["state"] in ("done", "cancelled") else None
    r = mc.wait_for(over, timeout=timeout, interval=0.05, what="rebalance over")
    assert r["state"] == state, r
    return r


def add_node(cluster, coord, servers, name, **body):
    servers[name] = cluster.node(name)
    st, j = coord.request("POST", "/nodes", {"name": name,
                                             "addr": f"127.0.0.1:{servers[name].port}", **body})
    assert st == 200, j


def loads(coord):
    return {n: (s["actives"], s["replicas"]) for n, s in coord.servers().items()}


def assert_even(coord, names, replicas):
    by = loads(coord)
    n = len(names)
    for name in names:
        a, r = by[name]
        assert BUCKETS // n <= a <= -(-BUCKETS // n), (name, by)
        assert (BUCKETS * replicas) // n <= r <= -(-BUCKETS * replicas // n), (name, by)


def test_add_a_server_under_load_loses_nothing(cluster):
    servers, coord = cluster(n=3, replicas=1)
    first = [servers[n] for n in ("n0", "n1", "n2")]
    with Load(first, seconds=60) as load:
        mc.wait_for(lambda: load.writes > 500, timeout=20, what="load running")
        add_node(cluster, coord, servers, "n3")
        r = wait_rebalanced(coord)
        settled = load.writes
        mc.wait_for(lambda: load.writes > settled + 300, timeout=20, what="load after")
    assert load.misses == [] and load.stale == [], (load.misses[:5], load.stale[:5])
    assert load.errors == [], load.errors[:5]
    wait_settled(coord, 1, sorted(servers))
    assert_even(coord, sorted(servers), 1)
    assert r["buckets_done"] >= 16 and r["failed"] == 0, r
    assert r["bytes_moved"] > 0
    assert load.check_all(servers.values()) == []
    # the old actives handed over continue as replicas, resumed rather than backfilled
    st = cluster_stats(servers["n0"])
    assert int(st["handoffs"]) > 0 and int(st["handoffs_cancelled"]) == 0, st

    # what the old servers gave away is dropped, its memory freed
    def dropped():
        n = 0
        for name in ("n0", "n1", "n2"):
            c = servers[name].connect()
            n += int(c.stats("replication")["given_away_items_dropped"])
            c.close()
        return n
    mc.wait_for(lambda: dropped() > 0, timeout=10, what="given-away items dropped")


def cluster_stats(server):
    c = server.connect()
    c.send("stats cluster\r\n")
    out = {}
    for line in c.read_until(b"END\r\n").decode().splitlines():
        w = line.split()
        if len(w) == 3 and w[0] == "STAT":
            out[w[1]] = w[2]
    c.close()
    return out


def test_remove_a_server_under_load_loses_nothing(cluster):
    servers, coord = cluster(n=4, replicas=1)
    with Load(list(servers.values()), seconds=60) as load:
        mc.wait_for(lambda: load.writes > 500, timeout=20, what="load running")
        st, j = coord.request("POST", "/nodes/n3/drain", {"remove": True})
        assert st == 200 and j["planned"] > 0, (st, j)
        wait_rebalanced(coord)
        mc.wait_for(lambda: "n3" not in coord.servers(), timeout=10, what="n3 removed")
        settled = load.writes
        mc.wait_for(lambda: load.writes > settled + 300, timeout=20, what="load after")
    assert load.misses == [] and load.stale == [], (load.misses[:5], load.stale[:5])
    assert load.errors == [], load.errors[:5]
    rest = ["n0", "n1", "n2"]
    wait_settled(coord, 1, rest)
    assert_even(coord, rest, 1)
    assert "n3" not in parse_map(coord.map_text())["nodes"]
    assert load.check_all([servers[n] for n in rest]) == []


def test_drain_then_stop_a_server(cluster):
    servers, coord = cluster(n=4, replicas=1)
    with Load(list(servers.values()), seconds=60) as load:
        mc.wait_for(lambda: load.writes > 500, timeout=20, what="load running")
        st, j = coord.request("POST", "/nodes/n2/drain", {"remove": False})
        assert st == 200, j
        wait_rebalanced(coord)
        assert loads(coord)["n2"] == (0, 0)
        assert coord.status()["rebalance"]["draining"] == ["n2"]
    assert load.misses == [] and load.stale == [] and load.errors == [], \
        (load.misses[:5], load.stale[:5], load.errors[:5])
    # it holds nothing: stopping it loses nothing
    servers["n2"].stop()
    rest = ["n0", "n1", "n3"]
    assert load.check_all([servers[n] for n in rest]) == []


def test_rebalance_after_failover_gives_the_rejoined_server_its_share(cluster):
    servers, coord = cluster(n=3, replicas=1)
    c = client(servers["n0"])
    for i in range(600):
        c.set(f"k{i}", b"v%d" % i, noreply=False)
    # Replication is asynchronous: kill only once n1's replicas hold its writes.
    m = parse_map(coord.map_text())
    for b in range(BUCKETS):
        if m["active"][b] != "n1":
            continue
        want = {f"k{i}".encode() for i in range(600) if bucket(f"k{i}", BUCKETS) == b}
        rep = servers[m["replicas"][b][0]]
        mc.wait_for(lambda: want <= set(dump(rep, b)), timeout=10, what=f"bucket {b} replicated")
    port = servers["n1"].port
    servers["n1"].kill9()
    mc.wait_for(lambda: "n1" not in parse_map(coord.map_text())["active"], timeout=10,
                what="n1 failed over")
    servers["n1"] = cluster.node("n1", port=port)
    wait_settled(coord, 1, sorted(servers), timeout=30)
    assert loads(coord)["n1"][0] == 0
    st, j = coord.request("POST", "/rebalance", {"parallel": 8})
    assert st == 200 and j["planned"] > 0, (st, j)
    wait_rebalanced(coord)
    wait_settled(coord, 1, sorted(servers))
    assert_even(coord, sorted(servers), 1)
    # already even: nothing to do
    st, j = coord.request("POST", "/rebalance", {})
    assert st == 200 and j["planned"] == 0, j
    c = client(servers["n2"])
    for i in range(0, 600, 7):
        assert c.get(f"k{i}") == b"v%d" % i


def test_rebalance_api_checks(cluster):
    servers, coord = cluster(n=3, replicas=1)
    st, j = coord.request("POST", "/rebalance", {}, auth=False)
    assert st == 401
    for body in ({"parallel": 0}, {"parallel": 65}, {"parallel": "x"}, b"nope"):
        st, j = coord.request("POST", "/rebalance", body)
        assert st == 400 and "error" in j, (body, st, j)
    st, j = coord.request("POST", "/nodes/nope/drain", {})
    assert st == 404
    st, j = coord.request("POST", "/nodes/n1/drain", {"remove": "yes"})
    assert st == 400
    st, j = coord.request("POST", "/rebalance/cancel", {})
    assert st == 200
    assert coord.status()["rebalance"]["state"] == "idle"


# ---- losing a server or the coordinator in the middle --------------------------------------

def start_slow_rebalance(cluster, coord, servers):
    """n3 joins without a rebalance; then one is started a bucket at a time, so that a move is
    under way whenever the test strikes."""
    add_node(cluster, coord, servers, "n3", rebalance=False)
    wait_settled(coord, 1, sorted(servers), timeout=30)
    st, j = coord.request("POST", "/rebalance", {"parallel": 1})
    assert st == 200 and j["planned"] >= 16, j
    mc.wait_for(lambda: coord.status()["rebalance"]["buckets_done"] >= 3, timeout=30,
                what="a few buckets moved")


def assert_consistent(coord, servers, live):
    """One active per bucket, on a live server; every live server holds the coordinator's
    map; no handover left pending anywhere."""
    m = parse_map(coord.map_text())
    assert all(a in live for a in m["active"]), m["active"]
    for n in live:
        mc.wait_for(lambda: server_map(servers[n]) == m, timeout=10, what=f"{n} holds the map")
        assert cluster_stats_h(servers[n]) == 0


def cluster_stats_h(server):
    """Buckets pending for a handover on a server, from its heartbeat (H lines)."""
    c = server.connect()
    from lib.cluster import auth
    assert auth(c) == b"OK\r\n"
    c.send("cluster hb 0 0 0\r\n")
    text = c.read_until(b"END\r\n").decode()
    c.close()
    return sum(1 for line in text.splitlines() if line.startswith("H "))


def lost_outside(load, servers, live, victim_buckets):
    """Acknowledged writes that did not survive, outside the buckets the victim was active for
    when it died (failover may lose the last writes of those, doc/replication.md)."""
    bad = load.check_all([servers[n] for n in live])
    return [x for x in bad if bucket(x[1], BUCKETS) not in victim_buckets]


def test_new_server_killed_mid_move(cluster):
    servers, coord = cluster(n=3, replicas=1)
    with Load([servers[n] for n in ("n0", "n1", "n2")], seconds=90) as load:
        start_slow_rebalance(cluster, coord, servers)
        m = parse_map(coord.map_text())
        mine = {b for b in range(BUCKETS) if m["active"][b] == "n3"}
        assert mine, "n3 took some buckets over before it dies"
        servers["n3"].kill9()
        wait_rebalanced(coord)
        live = ["n0", "n1", "n2"]
        wait_settled(coord, 1, live, timeout=30)
        assert_consistent(coord, servers, live)
        before = load.writes
        mc.wait_for(lambda: load.writes > before + 300, timeout=20, what="load after")
    # the buckets n3 had taken over failed over to their old owners (kept as replicas)
    st = coord.status()
    assert st["last_failover"]["node"] == "n3" and st["last_failover"]["cold"] == 0
    assert lost_outside(load, servers, live, mine) == []
    assert [k for k in load.misses if bucket(k, BUCKETS) not in mine] == []
    assert [x for x in load.stale if bucket(x[0], BUCKETS) not in mine] == []


def test_old_active_killed_mid_move(cluster):
    servers, coord = cluster(n=3, replicas=1)
    with Load([servers[n] for n in ("n0", "n1", "n2")], seconds=90) as load:
        start_slow_rebalance(cluster, coord, servers)
        m = parse_map(coord.map_text())
        victim = next(mv["from"] for mv in coord.status()["rebalance"]["moves"]) \
            if coord.status()["rebalance"]["moves"] else "n1"
        mine = {b for b in range(BUCKETS) if m["active"][b] == victim}
        servers[victim].kill9()
        live = [n for n in ("n0", "n1", "n2", "n3") if n != victim]
        mc.wait_for(lambda: victim not in parse_map(coord.map_text())["active"], timeout=10,
                    what=f"{victim} failed over")
        wait_rebalanced(coord)
        wait_settled(coord, 1, live, timeout=30)
        assert_consistent(coord, servers, live)
        before = load.writes
        mc.wait_for(lambda: load.writes > before + 300, timeout=20, what="load after")
    assert lost_outside(load, servers, live, mine) == []
    assert [k for k in load.misses if bucket(k, BUCKETS) not in mine] == []
    assert [x for x in load.stale if bucket(x[0], BUCKETS) not in mine] == []


def test_coordinator_restarted_mid_move(cluster):
    servers, coord = cluster(n=3, replicas=1)
    with Load([servers[n] for n in ("n0", "n1", "n2")], seconds=90) as load:
        start_slow_rebalance(cluster, coord, servers)
        coord.kill()
        coord2 = cluster.restart_coordinator(coord)
        # it carries the rebalance on (the state file says one was running)
        r = wait_rebalanced(coord2)
        assert r["reason"] == "resumed after a coordinator restart", r
        wait_settled(coord2, 1, sorted(servers), timeout=30)
        assert_consistent(coord2, servers, sorted(servers))
        assert_even(coord2, sorted(servers), 1)
        before = load.writes
        mc.wait_for(lambda: load.writes > before + 300, timeout=20, what="load after")
    # no server died: nothing may be lost or missed. Writes parked on a handover the dead
    # coordinator left behind get an error once their bound passes (never a wrong answer).
    assert load.check_all(servers.values()) == []
    assert load.misses == [] and load.stale == []
    assert all("SERVER_ERROR" in e or "MemcacheServerError" in e for e in load.errors), \
        load.errors[:5]


# ---- a held write holds its connection, not the worker --------------------------------------

def test_handoff_parks_the_writer_not_the_worker(node):
    from lib.cluster import auth, install
    from lib.coord import COORD_BIN  # noqa: F401 - managed mode is this server's own
    n = 16
    a = node("a", "-t", "1")  # one worker: every connection shares it
    install([a], f"MAP 1 {n}\r\nNODE a 127.0.0.1:{a.port}\r\nRANGE 0 {n - 1} a\r\nEND\r\n")
    ctl = a.connect()
    assert auth(ctl) == b"OK\r\n"
    key = next(f"h{i}" for i in range(1000) if bucket(f"h{i}", n) == 3)
    others = [f"o{i}" for i in range(1000) if bucket(f"o{i}", n) != 3][:100]
    # a bucket a map made active is pending until the replication thread prepared it
    mc.wait_for(lambda: ctl.cmd("cluster applied 3").startswith(b"APPLIED 3 active "),
                timeout=5, what="bucket 3 active")
    assert ctl.cmd("cluster handoff 3 1").startswith(b"HANDOFF 3 ")
    writer = a.connect()
    writer.send(f"set {key} 0 0 1\r\nx\r\nget {key}\r\n")  # parked, and its get behind it
    reader = a.connect()
    t0 = time.monotonic()
    reader.send("".join(f"set {k} 0 0 2\r\nvv\r\n" for k in others) +
                "".join(f"get {k}\r\n" for k in others))
    for k in others:
        assert reader.readline() == b"STORED\r\n"
    for k in others:
        assert reader.readline().startswith(b"VALUE ")
        reader.readline()
        assert reader.readline() == b"END\r\n"
    took = time.monotonic() - t0
    assert took < 0.15, took  # not behind the parked write (its bound is 200 ms)
    # the handover is called off: the parked write goes on, in order with its get
    assert ctl.cmd("cluster handoff 3 cancel") == b"OK 1\r\n"
    assert writer.readline() == b"STORED\r\n"
    assert writer.read_until(b"END\r\n") == f"VALUE {key} 0 1\r\nx\r\nEND\r\n".encode()
    # refused: the wrong epoch, a bucket not active here
    assert ctl.cmd("cluster handoff 3 2").startswith(b"CLIENT_ERROR epoch 2")
    assert ctl.cmd("cluster applied 3").startswith(b"APPLIED 3 active ")


def test_bucket_back_on_a_former_holder_starts_empty(node):
    """A server that held a bucket once (before a failover or a move took it away) still has
    its items; given the bucket again without a complete copy, it must not serve them: they
    are older than what was written elsewhere since."""
    from lib.cluster import install
    n = 16
    a, b = node("a"), node("b")
    nodes = f"NODE a 127.0.0.1:{a.port}\r\nNODE b 127.0.0.1:{b.port}\r\n"
    install([a, b], f"MAP 1 {n}\r\n{nodes}RANGE 0 {n - 1} a\r\nEND\r\n")
    key = "stale-key"
    c = client(a)
    assert c.set(key, b"old", noreply=False)
    install([a, b], f"MAP 2 {n}\r\n{nodes}RANGE 0 {n - 1} b\r\nEND\r\n")  # cold on b
    assert client(b).set(key, b"new", noreply=False)
    assert client(b).delete(key, noreply=False)
    install([a, b], f"MAP 3 {n}\r\n{nodes}RANGE 0 {n - 1} a\r\nEND\r\n")  # back to a, cold
    mc.wait_for(lambda: client(a).set("probe", b"x", noreply=False), timeout=5,
                what="a active again")
    assert client(a).get(key) is None  # not b"old"
