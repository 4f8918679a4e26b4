"""mc-coordinator against real servers (doc/coordinator.md): the first map is dealt evenly,
a server killed with SIGKILL is failed over to its warm replicas within a second, a restarted
server is reset and rejoins as a replica, a restarted coordinator changes nothing, and the
admin API's mutating calls need a fresh HMAC challenge."""

import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from lib import mc
from lib.cluster import SECRET

BUCKETS = 64
COORD = os.path.join(mc.TOP, "mc-coordinator")

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("managed mode is this server's own", allow_module_level=True)
if not os.path.exists(COORD):
    pytest.skip("mc-coordinator is not built", allow_module_level=True)


class Coordinator:
    def __init__(self, tmp_path, secret_file, nodes, *extra):
        self.dir = tmp_path
        self.port_file = tmp_path / "coord.port"
        if self.port_file.exists():
            self.port_file.unlink()
        self.log_path = tmp_path / "coord.log"
        cmd = [COORD, "--secret-file", str(secret_file), "--state", str(tmp_path / "state"),
               "--buckets", str(BUCKETS), "--listen", "127.0.0.1:0",
               "--port-file", str(self.port_file), *extra]
        for name, s in nodes:
            cmd += ["--node", f"{name}=127.0.0.1:{s.port}"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        mc.wait_for(lambda: self.port_file.exists() and self.port_file.read_text().strip(),
                    what="coordinator port file")
        self.port = int(self.port_file.read_text())

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            body = r.read().decode()
            return json.loads(body) if path != "/metrics" else body

    def call(self, method, path, body=b"", challenge=None, secret=SECRET):
        ch = challenge or self.get("/auth")["challenge"]
        msg = f"{ch}\n{method}\n{path}\n".encode() + body
        proof = hmac.new(secret, msg, hashlib.sha256).hexdigest()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body or None,
                                     method=method,
                                     headers={"Authorization": f"MC-HMAC {ch} {proof}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode

    def read_log(self):
        return self.log_path.read_text(errors="replace")


def server_map(s):
    c = s.connect()
    c.send("cluster map\r\n")
    lines = []
    while True:
        line = c.readline().decode().rstrip()
        lines.append(line)
        if line == "END":
            break
    c.close()
    return lines


def owners(lines):
    """{bucket: (active, [replicas])} of a map's RANGE lines."""
    out = {}
    for line in lines:
        w = line.split()
        if w and w[0] == "RANGE":
            for b in range(int(w[1]), int(w[2]) + 1):
                out[b] = (w[3], w[4:])
    return out


@pytest.fixture
def cluster(make_server, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    made = {"coords": []}

    def start_node(name, port=None):
        extra = ["-p", str(port)] if port else []
        return make_server("-U", "0", "-o", f"node_id={name},cluster_secret_file={secret},"
                           f"buckets={BUCKETS}", *extra)

    def start_coord(nodes, *extra):
        c = Coordinator(tmp_path, secret, nodes, *extra)
        made["coords"].append(c)
        return c

    yield start_node, start_coord
    for c in made["coords"]:
        rc = c.stop()
        assert rc == 0, c.read_log()


def test_deal_failover_rejoin(cluster):
    start_node, start_coord = cluster
    nodes = [(f"n{i}", start_node(f"n{i}")) for i in range(1, 4)]
    co = start_coord(nodes)
    mc.wait_for(lambda: all(server_map(s)[0] != "MAP 0 64" and len(owners(server_map(s))) ==
                            BUCKETS for _, s in nodes), what="first map on every server")
    m = owners(server_map(nodes[0][1]))
    for name, _ in nodes:
        actives = sum(1 for a, _ in m.values() if a == name)
        assert 21 <= actives <= 22
    assert all(len(r) == 1 and r[0] != a for a, r in m.values())
    mc.wait_for(lambda: all(s["replicas_in_sync"] == s["replicas"] for s in
                            co.get("/status")["servers"]), what="replicas in sync")

    # SIGKILL n2: its buckets move to their warm replicas within a second.
    victim = nodes[1][1]
    port = victim.port
    t0 = time.monotonic()
    victim.killed = True  # the fixture expects no clean exit
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    victim.log.close()
    victim.stop = lambda *a, **kw: 0  # killed on purpose: the fixture must not count it
    survivor = nodes[0][1]
    mc.wait_for(lambda: all(a != "n2" for a, _ in owners(server_map(survivor)).values()),
                timeout=3, what="n2's buckets moved")
    assert time.monotonic() - t0 < 1.0
    st = co.get("/status")
    assert st["last_failover"]["node"] == "n2" and st["cold_buckets"] == 0
    assert [s["health"] for s in st["servers"]] == ["up", "dead", "up"]
    mc.wait_for(lambda: all(len(r) == 1 and r[0] != "n2" for a, r in
                            owners(server_map(survivor)).values()), what="replicas restored")

    # n2 restarts (a new boot): reset, map, extra replicas, in sync, trimmed; no actives.
    nodes[1] = ("n2", start_node("n2", port))
    mc.wait_for(lambda: co.get("/status")["servers"][1]["health"] == "up", timeout=10,
                what="n2 back up")
    st = co.get("/status")
    assert st["servers"][1]["actives"] == 0
    mc.wait_for(lambda: all(len(r) == 1 for _, r in owners(server_map(survivor)).values()),
                what="surplus replicas trimmed")
    n2_reps = sum(1 for _, r in owners(server_map(survivor)).values() if "n2" in r)
    assert 15 <= n2_reps <= 25
    metrics = co.get("/metrics")
    assert "mc_coordinator_failovers_total 1" in metrics
    assert 'mc_coordinator_servers{state="up"} 3' in metrics

    # A restarted coordinator adopts the state and changes nothing.
    epoch = co.get("/status")["epoch"]
    assert co.stop() == 0
    co2 = start_coord(nodes)
    time.sleep(1.0)
    st = co2.get("/status")
    assert st["epoch"] == epoch and not st["cut_off"]
    assert all(s["health"] == "up" for s in st["servers"])
    assert "failover of" not in co2.read_log().split("state loaded")[-1]


def test_admin_auth_and_manual_failover(cluster):
    start_node, start_coord = cluster
    nodes = [(f"n{i}", start_node(f"n{i}")) for i in range(1, 4)]
    co = start_coord(nodes)
    mc.wait_for(lambda: co.get("/status")["epoch"] > 0, what="first map")
    time.sleep(0.5)  # the grace: a majority in contact for 400 ms
    ch = co.get("/auth")["challenge"]
    assert co.call("POST", "/failover/n1", challenge=ch, secret=b"x" * 20)[0] == 401
    assert co.call("POST", "/failover/n1", challenge=ch)[0] == 401  # used
    assert co.call("POST", "/failover/nope")[0] == 404
    code, body = co.call("POST", "/failover/n1")
    assert code == 200 and body["ok"], body
    mc.wait_for(lambda: all(a != "n1" for a, _ in owners(server_map(nodes[1][1])).values()),
                what="n1's actives moved")
    assert co.call("POST", "/nodes", b"{}")[0] == 400
    # n1 was reachable: it is reset and rejoins as a replica.
    mc.wait_for(lambda: co.get("/status")["servers"][0]["health"] == "up", timeout=10,
                what="n1 back")


def test_bad_options_exit_64(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"short\n")
    for args in (["--bogus"], [], ["--secret-file", str(secret)],
                 ["--secret-file", str(tmp_path / "none")]):
        r = subprocess.run([COORD, *args], capture_output=True, timeout=10)
        assert r.returncode == 64, (args, r.stderr)
        assert len(r.stderr.decode().strip().splitlines()) == 1
    secret.write_bytes(SECRET)
    r = subprocess.run([COORD, "--secret-file", str(secret), "--heartbeat-ms", "100",
                        "--dead-after-ms", "300"], capture_output=True, timeout=10)
    assert r.returncode == 64 and b"5x heartbeat" in r.stderr


def test_state_file_refused_and_untouched(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    state = tmp_path / "state"
    base = [COORD, "--secret-file", str(secret), "--state", str(state), "--listen",
            "127.0.0.1:0"]
    state.write_text("{not json")
    r = subprocess.run(base, capture_output=True, timeout=10)
    assert r.returncode == 1 and b"corrupt" in r.stderr
    assert state.read_text() == "{not json"
    # A state from another cluster (the secret check differs), or for another bucket count.
    other = {"format": 1, "cluster_id": "abc", "secret_check": "00", "buckets": BUCKETS,
             "replicas": 1, "epoch": 3, "members": [], "map": f"MAP 3 {BUCKETS}\r\nEND\r\n"}
    state.write_text(json.dumps(other))
    r = subprocess.run(base + ["--buckets", str(BUCKETS)], capture_output=True, timeout=10)
    assert r.returncode == 1 and b"another cluster" in r.stderr
    other["secret_check"] = hmac.new(SECRET, b"abc", hashlib.sha256).hexdigest()
    state.write_text(json.dumps(other))
    r = subprocess.run(base + ["--buckets", "128"], capture_output=True, timeout=10)
    assert r.returncode == 1 and b"buckets" in r.stderr
    assert json.loads(state.read_text()) == other


def test_first_start_needs_every_node(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    r = subprocess.run([COORD, "--secret-file", str(secret), "--state", str(tmp_path / "st"),
                        "--listen", "127.0.0.1:0", "--node", "n1=127.0.0.1:1"],
                       capture_output=True, timeout=20)
    assert r.returncode == 1 and b"n1 (127.0.0.1:1)" in r.stderr
    assert not (tmp_path / "st").exists()


def test_paused_server_is_fenced_and_failed_over(cluster):
    start_node, start_coord = cluster
    nodes = [(f"n{i}", start_node(f"n{i}")) for i in range(1, 4)]
    co = start_coord(nodes)
    mc.wait_for(lambda: all(s["replicas_in_sync"] == s["replicas"] > 0 for s in
                            co.get("/status")["servers"]), what="replicas in sync")
    time.sleep(0.5)
    victim = nodes[2][1]
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        mc.wait_for(lambda: all(a != "n3" for a, _ in owners(server_map(nodes[0][1])).values()),
                    timeout=3, what="n3's buckets moved")
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    # Back from the pause: its lease ran out (fenced), it is reset and rejoins.
    mc.wait_for(lambda: co.get("/status")["servers"][2]["health"] == "up", timeout=10,
                what="n3 back")
    assert co.get("/status")["servers"][2]["actives"] == 0


def test_cut_off_changes_nothing(cluster):
    start_node, start_coord = cluster
    nodes = [(f"n{i}", start_node(f"n{i}")) for i in range(1, 4)]
    co = start_coord(nodes)
    mc.wait_for(lambda: co.get("/status")["epoch"] > 0, what="first map")
    time.sleep(0.5)
    epoch = co.get("/status")["epoch"]
    for _, s in nodes[1:]:  # two of three at once: the coordinator may be the one cut off
        s.proc.send_signal(signal.SIGSTOP)
    try:
        mc.wait_for(lambda: co.get("/status")["cut_off"], timeout=3, what="cut off")
        time.sleep(0.5)
        st = co.get("/status")
        assert st["epoch"] == epoch and st["failovers"] == 0
        assert "mc_coordinator_cut_off 1" in co.get("/metrics")
        assert co.call("POST", "/failover/n2")[0] == 409
    finally:
        for _, s in nodes[1:]:
            s.proc.send_signal(signal.SIGCONT)
    mc.wait_for(lambda: not co.get("/status")["cut_off"], what="no longer cut off")
    time.sleep(0.3)
    assert co.get("/status")["epoch"] == epoch
