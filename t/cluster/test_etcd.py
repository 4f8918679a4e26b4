"""Several coordinators on etcd (doc/coordinator.md, "State in etcd"): one leads, the others
take over when it dies; a deposed leader cannot change the map; etcd losing a member changes
nothing, etcd losing its quorum changes no map and the cache keeps serving. Real etcd (the
`etcd` and `etcd3` fixtures), real servers, real coordinators; no mocks.

The whole coordinator suite also runs on this backend: MC_TEST_COORD_STATE=etcd (see
lib/coord.py and scripts/test.sh)."""

import os
import threading
import time

import pytest

from lib import mc
from lib.cluster import SECRET
from lib.coord import COORD_BIN, Coordinator, keys_on, parse_map, settled

import etcd as etcd_lib

BUCKETS = 64
TTL = 3  # the coordinators' --etcd-lease-ttl default

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("managed mode is this server's own", allow_module_level=True)
if not os.path.exists(COORD_BIN):
    pytest.skip("mc-coordinator is not built", allow_module_level=True)
if etcd_lib.etcd_binary() is None:
    pytest.skip("etcd is not installed (scripts/deps.sh installs etcd-server)",
                allow_module_level=True)

pymemcache = pytest.importorskip("pymemcache")
from pymemcache.client.base import Client  # noqa: E402


def client(server, timeout=1.0):
    return Client(("127.0.0.1", server.port), connect_timeout=timeout, timeout=timeout)


class HA:
    """n servers and k coordinators on one etcd prefix."""

    def __init__(self, make_server, tmp_path, etcd, n=3, k=3, replicas=1, prefix="ha",
                 coord_extra=()):
        self.tmp = tmp_path
        self.coord_extra = list(coord_extra)
        self.secret = tmp_path / "secret"
        self.secret.write_bytes(SECRET + b"\n")
        self.etcd = etcd
        self.prefix = "/" + prefix + "/" + os.path.basename(str(tmp_path))
        self.url = etcd.url(self.prefix.lstrip("/"))
        self.servers = {}
        for i in range(n):
            name = f"n{i}"
            self.servers[name] = make_server(
                "-o", f"node_id={name},cluster_secret_file={self.secret},buckets={BUCKETS}")
        self.replicas = replicas
        self.coords = {}
        for i in range(k):
            self.start_coordinator(f"c{i}")

    def start_coordinator(self, cid):
        nodes = sorted(self.servers.items())
        c = Coordinator(self.tmp / cid, self.secret, nodes, replicas=self.replicas,
                        buckets=BUCKETS, state_url=self.url,
                        extra=["--id", cid] + self.coord_extra)
        self.coords[cid] = c
        return c

    def alive(self):
        return {cid: c for cid, c in self.coords.items()
                if c.proc.poll() is None and not getattr(c, "paused", False)}

    def roles(self):
        out = {}
        for cid, c in self.alive().items():
            try:
                out[cid] = c.status()["role"]
            except (OSError, AssertionError):
                out[cid] = None
        return out

    def leader(self, timeout=15):
        """The one coordinator that says it leads (the others follow), once there is one."""
        def one():
            r = self.roles()
            leaders = [cid for cid, role in r.items() if role == "leader"]
            return leaders[0] if len(leaders) == 1 else None
        return self.coords[mc.wait_for(one, timeout=timeout, interval=0.02, what="one leader")]

    def settle(self, names=None, timeout=20):
        names = sorted(names or self.servers)
        return mc.wait_for(lambda: settled(self.leader(), self.replicas, names),
                           timeout=timeout, interval=0.05, what=f"{names} settled")

    def stop(self):
        rcs = {}
        for cid, c in self.coords.items():
            if getattr(c, "paused", False):
                os.kill(c.proc.pid, 18)  # SIGCONT, so SIGTERM can end it
            rcs[cid] = c.stop()
        return rcs


@pytest.fixture
def ha(make_server, tmp_path, request):
    made = []

    def start(etcd, **kw):
        h = HA(make_server, tmp_path, etcd, **kw)
        made.append(h)
        return h
    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    problems = []
    for h in made:
        rcs = h.stop()
        for cid, c in h.coords.items():
            log = c.own_log()
            if failed:
                print(f"--- coordinator {cid} log (exit {rcs[cid]}) ---\n{log[-6000:]}")
            if (rcs[cid] != 0 and not c.killed) or "Sanitizer" in log or "runtime error:" in log:
                problems.append(f"coordinator {cid} exited with {rcs[cid]}:\n{log[-3000:]}")
    if problems and not failed:
        pytest.fail("\n".join(problems))


class EpochWatch:
    """Polls every server's map epoch (`cluster map`) in a thread, bounded in time and count:
    no server's epoch may ever go down, and one epoch number always names one map."""

    def __init__(self, servers, seconds=120):
        self.servers = servers
        self.seen = {n: [] for n in servers}
        self.maps = {}  # epoch -> map text (one per epoch, cluster-wide)
        self.errors = []
        self.stop_at = time.monotonic() + seconds
        self._stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        for _ in range(100000):
            if self._stop.is_set() or time.monotonic() > self.stop_at:
                return
            for name, s in self.servers.items():
                if not s.alive():
                    continue
                try:
                    c = s.connect(timeout=1)
                    c.send("cluster map\r\n")
                    text = c.read_until(b"END\r\n").decode()
                    c.close()
                except (OSError, RuntimeError):
                    continue
                m = parse_map(text)
                e = m["epoch"]
                body = text.split("\r\n", 1)[1]
                if self.maps.setdefault(e, body) != body:
                    self.errors.append(f"epoch {e} names two maps")
                if self.seen[name] and e < self.seen[name][-1]:
                    self.errors.append(f"{name}: epoch {self.seen[name][-1]} then {e}")
                if not self.seen[name] or self.seen[name][-1] != e:
                    self.seen[name].append(e)
            self._stop.wait(0.02)

    def finish(self):
        self._stop.set()
        self.t.join(timeout=10)
        assert not self.errors, self.errors
        return self.seen


def write_keys(servers, n=300):
    """n keys written through each server (forwarded to their actives): {key: value}."""
    vals = {}
    for i, s in enumerate(servers.values()):
        c = client(s)
        for j in range(n):
            k, v = f"k{i}-{j}", b"v%d-%d" % (i, j)
            assert c.set(k, v, noreply=False)
            vals[k] = v
        c.close()
    return vals


def test_leader_and_a_server_killed_new_leader_fails_it_over(etcd, ha):
    """kill -9 of the leading coordinator, then of a server: another coordinator is elected
    and fails the server over; the time from the server's kill to its buckets served again
    is reported (target: the lease TTL + 1 s)."""
    h = ha(etcd, n=3, k=3, replicas=1)
    h.settle()
    old = h.leader()
    m = parse_map(old.map_text())
    epoch0 = m["epoch"]
    victim = "n0"
    vkeys = keys_on(m, victim, 20, "victim")
    c0 = client(h.servers["n1"])
    for k in vkeys:
        assert c0.set(k, b"before", noreply=False)
    # Replicated before the kills: the failover finds warm replicas.
    mc.wait_for(lambda: settled(old, 1, sorted(h.servers)), timeout=10, what="in sync")
    watch = EpochWatch(h.servers)
    survivors = [h.servers["n1"], h.servers["n2"]]

    old.kill()
    coord_killed = time.monotonic()
    h.servers[victim].kill9()
    killed = time.monotonic()
    probe = client(survivors[0], timeout=0.5)

    def served():
        try:
            return all(probe.get(k) == b"before" for k in vkeys)
        except Exception:
            return False
    mc.wait_for(served, timeout=TTL + 10, interval=0.02,
                what="the dead server's buckets served again")
    took = time.monotonic() - killed
    new = h.leader()
    assert new is not old
    elected_after = None
    for line in new.own_log().splitlines():
        if "elected leader" in line:
            elected_after = line
    print(f"\nserver killed {killed - coord_killed:.3f}s after the leader; its buckets served "
          f"again {took:.3f}s after its kill (TTL {TTL}s); new leader {new.cmd[-1]}")
    assert elected_after is not None
    assert took <= TTL + 1.0 + 1.5, f"served again after {took:.3f}s"
    st = h.settle(["n1", "n2"])
    assert st["failovers"] >= 1 and st["cold_buckets"] == 0
    assert st["epoch"] > epoch0
    m2 = parse_map(new.map_text())
    assert victim not in m2["active"]
    for k in vkeys:
        assert probe.get(k) == b"before"
    seen = watch.finish()
    # etcd holds what the servers hold.
    assert int(etcd.get(h.prefix + "/epoch")) == st["epoch"]
    for name in ("n1", "n2"):
        assert seen[name][-1] == st["epoch"]


def test_deposed_leader_cannot_install_a_map(etcd, ha):
    """A leader paused past its lease (SIGSTOP) is replaced; the new leader changes the map
    (a server dies); when the old one runs again (SIGCONT) it stands down at once: it sends
    no map and writes nothing, and no server's epoch ever goes down."""
    h = ha(etcd, n=3, k=3, replicas=1)
    h.settle()
    old = h.leader()
    watch = EpochWatch(h.servers)
    epoch0 = old.status()["epoch"]
    os.kill(old.proc.pid, 19)  # SIGSTOP
    old.paused = True
    paused_at = time.monotonic()
    new = h.leader(timeout=TTL + 10)
    print(f"\nnew leader {time.monotonic() - paused_at:.3f}s after the pause")
    # The new leader fails a server over: the paused one's view of the map is now stale.
    h.servers["n2"].kill9()
    st = mc.wait_for(lambda: (lambda s: s if s["epoch"] > epoch0 and s["failovers"] >= 1
                              else None)(new.status()), timeout=10, what="failover by the new")
    epoch1 = st["epoch"]
    log_at = os.path.getsize(old.log_path)
    os.kill(old.proc.pid, 18)  # SIGCONT
    old.paused = False
    resumed = time.monotonic()
    mc.wait_for(lambda: old.status()["role"] == "follower", timeout=5,
                what="the deposed leader follows")
    # Give it time to have done harm if it could: its links saw n2 die and its map is old.
    mc.wait_for(lambda: time.monotonic() - resumed > 2, timeout=5)
    with open(old.log_path, "rb") as f:
        f.seek(log_at)
        after = f.read().decode(errors="replace")
    assert "standing down" in after or "no longer the leader" in after, after
    assert "declaring" not in after and "epoch " not in after.replace("stored_epoch", ""), after
    assert "setmap" not in after
    # Its own answer: it follows, and writes go to the leader.
    st_old = old.status()
    assert st_old["control_plane"]["leader"]["id"] == new.cmd[new.cmd.index("--id") + 1]
    code, _ = old.request("POST", "/rebalance", {})
    assert code == 307
    # The new leader kept leading; nobody issued an epoch twice or went back.
    assert new.status()["role"] == "leader"
    assert new.status()["control_plane"]["leadership_lost"] == 0
    seen = watch.finish()
    for name in ("n0", "n1"):
        assert seen[name][-1] >= epoch1
    assert int(etcd.get(h.prefix + "/epoch")) == new.status()["epoch"]


def serve_check(servers, seconds, tag):
    """Every server serves sets and gets (through forwarding) for `seconds`: a bounded loop
    that raises on any error. Returns the number of round trips."""
    clients = [client(s, timeout=2) for s in servers.values()]
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline and n < 10**6:
        c = clients[n % len(clients)]
        k = f"{tag}{n % 300}"
        assert c.set(k, b"%d" % n, noreply=False)
        assert c.get(k) == b"%d" % n
        n += 1
    return n


def test_one_etcd_member_killed_changes_nothing(etcd3, ha):
    h = ha(etcd3, n=3, k=3, replicas=1)
    h.settle()
    lead = h.leader()
    lead_id = lead.status()["control_plane"]["id"]
    epoch = lead.status()["epoch"]
    watch = EpochWatch(h.servers)
    # The hardest member to lose: etcd's own raft leader (etcd elects another).
    victim = etcd3.leader()
    assert victim is not None
    etcd3.kill(victim)
    n = serve_check(h.servers, 2 * TTL + 1, "m")
    st = lead.status()
    assert st["role"] == "leader" and st["epoch"] == epoch
    for cid, c in h.alive().items():
        cp = c.status()["control_plane"]
        assert cp["leadership_lost"] == 0, (cid, cp)
        assert cp["leader"]["id"] == lead_id
    # The dead member shows in every coordinator's view of etcd.
    down = etcd3.endpoints[victim]
    mc.wait_for(lambda: any(e["endpoint"] == down and not e["ok"]
                            for e in lead.status()["control_plane"]["etcd"]),
                timeout=5, what="the dead member reported")
    seen = watch.finish()
    assert all(s == [epoch] for s in seen.values()), seen
    print(f"\n{n} round trips while etcd ran on two members; leader and epoch unchanged")
    etcd3.start(victim)
    etcd3.wait_healthy()


def test_etcd_quorum_lost_no_map_change_and_cache_serves(etcd3, ha):
    h = ha(etcd3, n=3, k=2, replicas=1)
    h.settle()
    lead = h.leader()
    epoch = lead.status()["epoch"]
    keys = write_keys(h.servers, 100)
    watch = EpochWatch(h.servers)
    lost = [i for i in range(3) if i != etcd3.leader()][:1] + [etcd3.leader()]
    for i in lost:
        etcd3.kill(i)
    t0 = time.monotonic()
    # The leader stops leading within its lease: nobody leads while etcd has no quorum.
    mc.wait_for(lambda: all(r != "leader" for r in h.roles().values()), timeout=TTL + 2,
                what="the leader stands down")
    stood_down = time.monotonic() - t0
    # The cache keeps serving all along (the servers' "coordinator gone" rule).
    n = serve_check(h.servers, 2 * TTL, "q")
    assert all(r != "leader" for r in h.roles().values())
    seen = watch.finish()
    assert all(s == [epoch] for s in seen.values()), seen
    c = client(h.servers["n1"])
    assert all(c.get(k) == v for k, v in list(keys.items())[::7])
    # Quorum back: a leader again, on the same map.
    for i in lost:
        etcd3.start(i)
    etcd3.wait_healthy()
    back = time.monotonic()
    st = h.settle(timeout=30)
    print(f"\nstood down {stood_down:.2f}s after quorum loss; {n} round trips without a "
          f"leader; settled {time.monotonic() - back:.2f}s after quorum came back, epoch "
          f"{st['epoch']} (was {epoch})")
    assert st["epoch"] == epoch
    assert st["failovers"] == 0


def test_follower_answers_reads_and_redirects_writes(etcd, ha):
    h = ha(etcd, n=3, k=2, replicas=1)
    h.settle()
    lead = h.leader()
    fol = next(c for c in h.alive().values() if c is not lead)
    st = fol.status()
    assert st["role"] == "follower"
    assert st["epoch"] == lead.status()["epoch"]
    assert sorted(s["name"] for s in st["servers"]) == sorted(h.servers)
    cp = st["control_plane"]
    assert cp["backend"] == "etcd" and cp["prefix"] == h.prefix
    assert cp["leader"]["admin"] == f"127.0.0.1:{lead.port}"
    assert sorted(p["id"] for p in cp["coordinators"]) == ["c0", "c1"]
    assert cp["etcd"] and all(e["ok"] for e in cp["etcd"])
    assert fol.map_text() == lead.map_text()
    code, j = fol.request("POST", "/failover/n1")
    assert code == 307 and j["leader"]["admin"] == f"127.0.0.1:{lead.port}"
    assert "mc_coordinator_leader 0" in fol.metrics()
    assert "mc_coordinator_leader 1" in lead.metrics()
    # Nothing changed: the redirect did not fail anything over.
    assert lead.status()["failovers"] == 0
    # A graceful stop of the leader hands over at once (the lease is revoked).
    t0 = time.monotonic()
    lead.stop()
    mc.wait_for(lambda: fol.status()["role"] == "leader", timeout=TTL + 2, what="hand-over")
    took = time.monotonic() - t0
    assert took < 1.5, took
    h.settle(timeout=20)


def test_etcd_over_tls(make_server, tmp_path, ha):
    """etcd with https and client certificates (--client-cert-auth): coordinators given
    --etcd-cacert/--etcd-cert/--etcd-key elect a leader, settle the cluster and hand over when
    it dies; one without them never reaches etcd, and says so."""
    from lib.certs import Pki
    pki = Pki(tmp_path / "etcd-pki", "etcd-ca")
    server_cert, server_key = pki.issue("etcd")
    client_cert, client_key = pki.issue("coordinator")
    e = etcd_lib.EtcdCluster(tmp_path / "etcd-tls", tls=(pki.ca, server_cert, server_key))
    try:
        tls_args = ["--etcd-cacert", pki.ca, "--etcd-cert", client_cert, "--etcd-key", client_key]
        h = ha(e, k=2, coord_extra=tls_args)
        first = h.leader()
        h.settle()
        assert e.get(h.prefix + "/state") is not None  # the state is in etcd
        first.kill()
        second = h.leader(timeout=TTL + 10)
        assert second is not first
        h.settle(timeout=TTL + 15)
        # without the certificates: no answer from etcd, never a leader
        plain = Coordinator(tmp_path / "plain", h.secret, [], replicas=1, buckets=BUCKETS,
                            state_url=h.url, extra=["--id", "plain"], wait_elected=False)
        try:
            def refused():
                st = plain.status()
                return st["role"] != "leader" and st["control_plane"].get("last_error")
            mc.wait_for(refused, timeout=10, what="the plain coordinator's etcd error")
        finally:
            plain.stop()
    finally:
        e.stop_all()
