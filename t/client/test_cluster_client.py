"""The map-aware client (clients/python/, mcm_client.ClusterClient) against real servers: a
3-server cluster with the real coordinator (requests go straight to owners: the servers'
`forwarded` counter does not move for its traffic, it does for a stock HashClient's), a kill -9
failover, a rebalance onto a 4th server, NOT_MY_BUCKET refusals, and plain memcached."""

import os
import time

import pytest

pytest.importorskip("pymemcache")
from pymemcache.client.base import Client  # noqa: E402
from pymemcache.client.hash import HashClient  # noqa: E402
from pymemcache.exceptions import MemcacheError, MemcacheIllegalInputError  # noqa: E402

from mcm_client import ClusterClient, MapError  # noqa: E402
from mcm_client import parse_map as client_parse_map  # noqa: E402

from lib import cluster as lc  # noqa: E402
from lib import mc  # noqa: E402
from lib.coord import keys_on, parse_map  # noqa: E402

BUCKETS = 64  # the `cluster` fixture's servers


def addr(s):
    return ("127.0.0.1", s.port)


def forwarded(servers):
    """Sum of the live servers' `forwarded` counters."""
    n = 0
    for s in servers.values():
        if s.alive():
            c = s.connect()
            n += int(c.stats("cluster")["forwarded"])
            c.close()
    return n


def same_actives(client, coord):
    m = parse_map(coord.map_text())
    return client.cluster_map is not None and client.cluster_map.active == m["active"]


def test_parse_map():
    m = client_parse_map("MAP 3 8\r\nNODE a 10.0.0.1:11211\r\nNODE b [::1]:11212\r\n"
                         "RANGE 0 3 a b\r\nRANGE 4 6 b\r\nEND\r\n")
    assert (m.epoch, m.nbuckets) == (3, 8)
    assert m.owner(0) == ("10.0.0.1", 11211) and m.owner(6) == ("::1", 11212)
    assert m.owner(7) is None  # in no range
    assert client_parse_map(b"MAP 1 16\r\nEND\r\n").active == [None] * 16  # no map yet
    for bad in ("ERROR\r\n", "MAP 1 8\r\n", "MAP 1 8\r\nRANGE 0 8 a\r\nEND\r\n",
                "MAP x 8\r\nEND\r\n", "MAP 1 8\r\nNODE a nowhere\r\nEND\r\n"):
        with pytest.raises(MapError):
            client_parse_map(bad)


def test_every_command_goes_straight_to_the_owner(cluster):
    servers, coord = cluster(n=3, replicas=1)
    m = parse_map(coord.map_text())
    client = ClusterClient([addr(servers["n0"])], connect_timeout=2, timeout=2,
                           default_noreply=False)
    assert client.managed is True and client.epoch == m["epoch"]
    assert client.cluster_map.active == m["active"]
    keys = [k for n in ("n0", "n1", "n2") for k in keys_on(m, n, 4, prefix=f"c{n}-")]
    for k in keys:
        assert client.bucket(k) == lc.bucket(k, BUCKETS)
    before = forwarded(servers)

    for k in keys:
        v = k.encode()
        assert client.set(k, v) is True
        assert client.get(k) == v
        assert client.add(k, b"x") is False
        assert client.replace(k, b"r") is True
        assert client.append(k, b"-a") is True
        assert client.prepend(k, b"p-") is True
        assert client.get(k) == b"p-r-a"
        value, token = client.gets(k)
        assert value == b"p-r-a"
        assert client.cas(k, b"c", token) is True
        assert client.cas(k, b"d", token) is False
        assert client.touch(k, 100) is True
        assert client.get(k) == b"c"
        assert client.delete(k) is True
        assert client.get(k) is None and client.get(k, default=b"dflt") == b"dflt"
        assert client.delete(k) is False and client.touch(k, 1) is False
        assert client.add(k, b"10") is True
        assert client.incr(k, 5) == 15
        assert client.decr(k, 20) == 0
        assert client.incr(k + "-missing", 1) is None

    data = {f"m{i}": f"value {i}".encode() for i in range(300)}
    assert len({m["active"][lc.bucket(k, BUCKETS)] for k in data}) == 3  # across owners
    assert client.set_many(data) == []
    assert client.get_many(list(data) + ["nobody-has-this"]) == data
    got = client.gets_many(list(data)[:30])
    assert {k: v for k, (v, _) in got.items()} == {k: data[k] for k in list(data)[:30]}
    assert client.delete_many(list(data)[:100]) is True
    assert client.get_many(list(data)[:100]) == {}
    with pytest.raises(MemcacheIllegalInputError):
        client.get("has space")

    # a key_prefix is part of the key the servers hash
    ns = ClusterClient([addr(servers["n1"])], key_prefix=b"ns:", default_noreply=False)
    for i in range(50):
        assert ns.set(f"p{i}", b"x") is True
    assert ns.get_many([f"p{i}" for i in range(50)]) == {f"p{i}": b"x" for i in range(50)}
    assert client.get("ns:p7") == b"x"

    assert forwarded(servers) == before, "the client's requests were forwarded"
    assert client.retries == 0

    # A stock HashClient over the same servers hashes differently: the servers forward.
    stock = HashClient([addr(s) for s in servers.values()], connect_timeout=2, timeout=2)
    rest = list(data)[100:]
    assert stock.get_many(rest) == {k: data[k] for k in rest}
    for k in rest[:50]:
        assert stock.get(k) == data[k]
    assert forwarded(servers) - before > 10
    for c in (client, ns, stock):
        c.close()


def test_kill9_of_an_owner_client_keeps_working(cluster):
    servers, coord = cluster(n=3, replicas=1)
    # Only errors make it read the map here (no routine reads).
    client = ClusterClient([addr(s) for s in servers.values()], connect_timeout=1, timeout=1,
                           default_noreply=False, map_refresh_interval=None)
    m = parse_map(coord.map_text())
    data = {f"f{i}": f"v{i}".encode() for i in range(300)}
    assert client.set_many(data) == []
    victim = "n0"
    vb = [b for b in range(BUCKETS) if m["active"][b] == victim]
    vkeys = {k for k in data if lc.bucket(k, BUCKETS) in vb}
    assert vkeys

    def replicated():
        have = set()
        for n, s in servers.items():
            if n != victim:
                have |= {k.decode() for k in lc.dump_keys(s, vb)}
        return vkeys <= have
    mc.wait_for(replicated, timeout=10, what="the victim's keys on its replicas")

    epoch0, reads0 = client.epoch, client.map_reads
    servers[victim].kill9()
    t0 = time.monotonic()
    # At once: every key reads back; a request for the victim's buckets fails, the map is read
    # again and the request retried through a survivor, which forwards it and parks it until
    # the coordinator moves the bucket (up to forward_park_ms, 200 ms). Until the coordinator
    # has proof of the death (here up to ~0.5 s), such a retry can still fail: those errors
    # are counted, and must stop once the map moved.
    errors = []
    moved = None
    while True:
        for k, v in data.items():
            try:
                got = client.get(k)
            except (MemcacheError, OSError) as e:
                errors.append((k, e))
                continue
            assert got == v, k
        if moved is not None:
            break
        moved = victim not in parse_map(coord.map_text())["active"]
        if moved:
            before_last_pass = len(errors)
        else:
            moved = None
            assert time.monotonic() - t0 < 10, "the victim's buckets did not move"
    print(f"failover: {len(errors)} errors, {client.retries} retries, "
          f"{client.map_reads - reads0} map reads in {time.monotonic() - t0:.2f} s")
    assert len(errors) == before_last_pass, f"errors after the map moved: {errors[-3:]}"
    assert {k for k, _ in errors} <= vkeys, errors[:3]
    assert len(errors) <= 10, errors  # a few requests in the failover window, not a pass
    assert client.retries >= 1

    # The client takes the new map as requests come (it re-reads for a while after an error)
    def caught_up():
        client.get("f1")
        return same_actives(client, coord)
    mc.wait_for(caught_up, timeout=10, interval=0.05, what="the client on the new map")
    assert client.epoch > epoch0
    # rate-limited: at most one read per 100 ms (plus the one forced at most per error burst)
    elapsed = time.monotonic() - t0
    assert client.map_reads - reads0 <= elapsed / 0.1 + 2, (client.map_reads, elapsed)

    live = {n: s for n, s in servers.items() if n != victim}
    before = forwarded(live)
    for k, v in data.items():
        assert client.get(k) == v
    assert client.set_many({k: b"after" for k in data}) == []
    assert client.get_many(list(data)) == {k: b"after" for k in data}
    assert forwarded(live) == before, "requests forwarded after the client took the new map"
    client.close()


def test_rebalance_client_follows_the_new_owners(cluster):
    servers, coord = cluster(n=3, replicas=1)
    client = ClusterClient([addr(servers["n1"])], connect_timeout=3, timeout=3,
                           default_noreply=False, map_refresh_interval=0.3)
    data = {f"r{i}": f"v{i}".encode() for i in range(300)}
    assert client.set_many(data) == []
    epoch0 = client.epoch

    servers["n3"] = cluster.node("n3")
    st, j = coord.request("POST", "/nodes", {"name": "n3",
                                             "addr": f"127.0.0.1:{servers['n3'].port}"})
    assert st == 200, j
    # Requests during the rebalance succeed (planned moves park writes briefly; the old
    # owner forwards once the bucket moved).
    deadline = time.monotonic() + 60
    keys = list(data)
    i = 0
    while coord.status()["rebalance"]["state"] not in ("done", "cancelled"):
        assert time.monotonic() < deadline, "rebalance not over in 60 s"
        for k in keys[i % 300:i % 300 + 20]:
            assert client.get(k) == data[k], k
            data[k] = f"w{i}".encode()
            assert client.set(k, data[k]) is True
        i += 20
    assert coord.status()["rebalance"]["state"] == "done"
    assert i > 0  # requests ran while buckets moved

    def caught_up():
        client.get("r0")
        return same_actives(client, coord)
    mc.wait_for(caught_up, timeout=10, interval=0.05, what="the client on the new map")
    assert client.epoch > epoch0
    assert "n3" in client.cluster_map.active

    before = forwarded(servers)
    assert client.get_many(keys) == data
    for k in keys[:100]:
        assert client.get(k) == data[k]
        assert client.set(k, b"x") is True
    assert forwarded(servers) == before, "requests forwarded after the client took the map"
    # and n3 does serve some of them directly: its keys read back through a plain client
    c3 = Client(addr(servers["n3"]), connect_timeout=2, timeout=2)
    on3 = [k for k in keys[:100] if client.cluster_map.active[lc.bucket(k, BUCKETS)] == "n3"]
    assert on3 and all(c3.get(k) == b"x" for k in on3)
    c3.close()
    client.close()


def map_text(nodes, owner_of, epoch, buckets=16):
    """nodes: {name: server}; owner_of(b) -> name."""
    lines = [f"MAP {epoch} {buckets}"] + [f"NODE {n} 127.0.0.1:{s.port}" for n, s in nodes.items()]
    lines += [f"RANGE {b} {b} {owner_of(b)}" for b in range(buckets)]
    return "\r\n".join(lines + ["END"]) + "\r\n"


@pytest.mark.parametrize("min_interval", [0.0, 30.0])
def test_not_my_bucket_reads_the_map_and_retries_once(node, min_interval):
    """Servers that refuse instead of forwarding (bucket_forward=0): a map moved behind the
    client's back costs one refusal per request, then the retry lands on the new owner: after
    a map read when the rate limit allows one, else through the other server."""
    nodes = {n: node(n, "-o", "bucket_forward=0,forward_park_ms=0") for n in ("a", "b")}
    lc.install(nodes.values(), map_text(nodes, lambda b: "ab"[b % 2], 1))
    client = ClusterClient([addr(nodes["a"])], default_noreply=False,
                           map_min_interval=min_interval, map_refresh_interval=None)
    assert client.epoch == 1
    keys = [f"k{i}" for i in range(40)]
    for k in keys:
        assert client.set(k, b"1") is True
    assert client.retries == 0
    reads = client.map_reads

    lc.install(nodes.values(), map_text(nodes, lambda b: "ba"[b % 2], 2))  # every bucket moves
    for k in keys:
        assert client.set(k, b"2") is True
        assert client.get(k) == b"2"
    assert client.get_many(keys) == {k: b"2" for k in keys}
    if min_interval == 0.0:
        assert client.epoch == 2 and client.retries == 1  # one refusal, then the new map
    else:
        assert client.epoch == 1 and client.map_reads == reads  # none allowed: via the other
        assert client.retries >= len(keys)
    client.close()


def test_no_map_yet_goes_through_the_seeds(node):
    """A managed server without a map: keys hashed over the seeds (they would forward); a map
    installed later is picked up by the routine read."""
    a = node("a")
    client = ClusterClient([addr(a)], default_noreply=False, map_refresh_interval=0.2)
    assert client.managed is True and client.cluster_map.active == [None] * 16
    lc.install([a], map_text({"a": a}, lambda b: "a", 3))
    mc.wait_for(lambda: client.get("x") is None and client.epoch == 3, timeout=5,
                what="the map read")
    assert client.set("x", b"1") is True and client.get("x") == b"1"
    client.close()


@pytest.mark.parametrize("kind", ["standalone", "debian"])
def test_plain_memcached_is_a_hash_client(make_server, kind):
    """`cluster map` answers ERROR: exactly HashClient over the seeds."""
    if kind == "debian":
        if not os.path.exists("/usr/bin/memcached"):
            pytest.skip("no /usr/bin/memcached")
        servers = [make_server(binary="/usr/bin/memcached") for _ in range(2)]
    else:
        servers = [make_server() for _ in range(2)]  # this tree's server without node_id
    seeds = [addr(s) for s in servers]
    client = ClusterClient(seeds, default_noreply=False)
    assert client.managed is False and client.cluster_map is None and client.epoch == 0
    stock = HashClient(seeds, default_noreply=False)
    data = {f"p{i}": str(i).encode() for i in range(100)}
    assert client.set_many(data) == []
    assert stock.get_many(list(data)) == data  # same hashing: HashClient finds every key
    for k in list(data)[:20]:
        assert client.get(k) == data[k] and stock.get(k) == data[k]
        assert client.incr(k, 1) == int(data[k]) + 1
    # each key is where HashClient's hashing put it
    direct = [Client(a) for a in seeds]
    for k in list(data)[20:]:
        where = stock._get_client(k).server
        assert direct[seeds.index(where)].get(k) == data[k]
    assert client.delete_many(list(data)) is True
    assert client.get_many(list(data)) == {}

    # ignore_exc honoured as HashClient does: a dead server's keys read as misses
    servers[1].kill9()
    quiet = ClusterClient(seeds, default_noreply=False, ignore_exc=True)
    assert quiet.managed is False
    for k in list(data)[:20]:
        assert quiet.get(k) is None
        assert quiet.set(k, b"v") in (True, False)
    for c in [client, stock, quiet] + direct:
        c.close()
