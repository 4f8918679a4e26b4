"""Test harness for the coordinator: start `mc-coordinator` beside real servers, talk to its
admin API (doc/coordinator.md), wait for the cluster to settle. Standard library only."""

import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess

import mc

COORD_BIN = os.environ.get("MC_TEST_COORD_BIN", os.path.join(mc.TOP, "mc-coordinator"))
MCCTL = os.path.join(mc.TOP, "mcctl", "mcctl")

# The state backend of every Coordinator the tests start: MC_TEST_COORD_STATE=file (the
# default) or etcd. With etcd, the session's etcd (t/conftest.py starts it) is in
# ETCD_ENDPOINTS, set by that conftest, else in $MC_TEST_ETCD_ENDPOINTS
# ("127.0.0.1:P1,127.0.0.1:P2"), which it sets too (for harnesses that import this module
# under another name, e.g. chaos.py, or run outside pytest).
ETCD_ENDPOINTS = None


def state_backend():
    b = os.environ.get("MC_TEST_COORD_STATE", "") or "file"
    if b not in ("file", "etcd"):
        raise ValueError(f"MC_TEST_COORD_STATE={b!r}: file or etcd")
    return b


def etcd_endpoints():
    eps = ETCD_ENDPOINTS or [e for e in os.environ.get("MC_TEST_ETCD_ENDPOINTS", "").split(",")
                             if e]
    if not eps:
        raise RuntimeError("MC_TEST_COORD_STATE=etcd, but no etcd: run under pytest in t/ "
                           "(its conftest starts one) or set MC_TEST_ETCD_ENDPOINTS")
    return list(eps)


def etcd_prefix(state_path):
    """t/<12 hex of sha1 of the absolute state path>: a coordinator restarted on the same
    state path finds the same state; two tests (two tmpdirs) never share a prefix."""
    return "t/" + hashlib.sha1(os.path.abspath(str(state_path)).encode()).hexdigest()[:12]


def state_arg(state_path):
    """The --state value for a coordinator whose file-backend state is state_path."""
    if state_backend() == "etcd":
        return f"etcd://{','.join(etcd_endpoints())}/{etcd_prefix(state_path)}"
    return str(state_path)


class Coordinator:
    """One mc-coordinator process in tmpdir. nodes: [(name, server)] (their map address is
    the server's port); control: {name: port} where the coordinator should reach a server
    instead (a fault proxy in front of it).

    state: the state file's path (default tmpdir/coord.state); with MC_TEST_COORD_STATE=etcd
    the coordinator gets --state etcd://<session etcd>/t/<hash of that path> instead (see
    state_arg). state_url: an explicit --state value, overriding both (several coordinators
    on one etcd prefix). self.state is always the file path, self.state_arg what --state
    got. On etcd without state_url the constructor waits until the coordinator leads
    (wait_elected=False: not, e.g. for a stand-in binary)."""

    def __init__(self, tmpdir, secret_path, nodes=(), replicas=1, buckets=64, hb_ms=100,
                 dead_ms=500, state=None, control=None, extra=(), state_url=None,
                 wait_elected=True):
        self.tmpdir = str(tmpdir)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.secret = open(secret_path, "rb").read().rstrip(b"\r\n")
        self.state = str(state) if state else os.path.join(self.tmpdir, "coord.state")
        self.state_url = state_url
        self.state_arg = state_url or state_arg(self.state)
        self.port_file = os.path.join(self.tmpdir, "coord.port")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log_path = os.path.join(self.tmpdir, "coord.log")
        # A restarted coordinator appends to the same log: own_log() is this process's part.
        self.log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.killed = False
        cmd = [COORD_BIN, "--secret-file", str(secret_path), "--state", self.state_arg,
               "--buckets", str(buckets), "--replicas", str(replicas),
               "--heartbeat-ms", str(hb_ms), "--dead-after-ms", str(dead_ms),
               "--listen", "127.0.0.1:0", "--port-file", self.port_file, "-v"]
        for name, s in nodes:
            cmd += ["--node", f"{name}=127.0.0.1:{s.port}"]
        for name, port in (control or {}).items():
            cmd += ["--control", f"{name}=127.0.0.1:{port}"]
        cmd += list(extra)
        self.cmd = cmd
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.tmpdir, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.port = mc.wait_for(self._read_port, timeout=15, what="coordinator's port file")
        # On etcd, the only coordinator of its prefix leads once elected: at once on a new
        # prefix, or when a killed predecessor's lease runs out (3 s). Tests written for the
        # file backend expect the coordinator in charge as soon as it listens. A first start
        # that fails (exit 1) is the test's to see.
        if self.state_arg.startswith("etcd://") and state_url is None and wait_elected:
            mc.wait_for(self._leading_or_gone, timeout=15, what="coordinator elected")

    def _leading_or_gone(self):
        if self.proc.poll() is not None:
            return True
        try:
            st, j = self.request("GET", "/status")
        except OSError:
            return None
        return st == 200 and isinstance(j, dict) and j.get("role") == "leader"

    def _read_port(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"mc-coordinator exited with {self.proc.returncode}: "
                               f"{self.read_log()[-3000:]}")
        try:
            with open(self.port_file) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text.rsplit(":", 1)[-1]) if text else None

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def own_log(self):
        """The log lines written by this process (not by an earlier one in the same tmpdir)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def challenge(self):
        """A fresh challenge from GET /auth (good for one mutating call)."""
        st, j = self.request("GET", "/auth")
        assert st == 200, j
        return j["challenge"]

    def request(self, method, path, body=b"", auth=True, secret=None, challenge=None):
        """(status, parsed JSON or text). A mutating call is signed with the cluster secret
        (or `secret`) over a fresh challenge (or `challenge`, e.g. one already used)."""
        headers = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        if method != "GET" and auth:
            ch = challenge or self.challenge()
            key = self.secret if secret is None else secret
            msg = f"{ch}\n{method}\n{path}\n".encode() + body
            proof = hmac.new(key, msg, hashlib.sha256).hexdigest()
            headers["Authorization"] = f"MC-HMAC {ch} {proof}"
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data.decode(errors="replace")

    def status(self):
        st, j = self.request("GET", "/status")
        assert st == 200, j
        return j

    def servers(self):
        """{name: that server's entry in GET /status}"""
        return {s["name"]: s for s in self.status()["servers"]}

    def map_text(self):
        st, j = self.request("GET", "/map")
        assert st == 200, j
        return j["text"]

    def metrics(self):
        st, text = self.request("GET", "/metrics")
        assert st == 200
        return text

    def kill(self):
        """SIGKILL, as a test of the coordinator's death does (not a crash)."""
        self.killed = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.log.close()
        return self.proc.returncode


def parse_map(text):
    """{"epoch", "nodes": {name: addr}, "active": [name per bucket], "replicas": [[names]]}"""
    lines = [l.split() for l in text.replace("\r\n", "\n").split("\n") if l.strip()]
    assert lines[0][0] == "MAP"
    epoch, n = int(lines[0][1]), int(lines[0][2])
    m = {"epoch": epoch, "nodes": {}, "active": [None] * n, "replicas": [[] for _ in range(n)]}
    for w in lines[1:]:
        if w[0] == "NODE":
            m["nodes"][w[1]] = w[2]
        elif w[0] == "RANGE":
            for b in range(int(w[1]), int(w[2]) + 1):
                m["active"][b] = w[3]
                m["replicas"][b] = w[4:]
    return m


def keys_on(m, owner, n, prefix="k"):
    """n keys (prefix0, prefix1, ...) whose bucket is active on owner in the parsed map m."""
    import zlib
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if m["active"][zlib.crc32(k.encode()) % len(m["active"])] == owner:
            out.append(k)
        i += 1
    return out


def server_map(server):
    c = server.connect()
    c.send("cluster map\r\n")
    text = c.read_until(b"END\r\n").decode()
    c.close()
    return parse_map(text)


def settled(coord, replicas, names):
    """Every named server up, not fenced and holding the coordinator's map, every bucket with
    `replicas` replicas, all in sync. The map and the status are read around one epoch: a
    status read just before a map change counts the old map's replicas. (A server whose link
    was re-made answers its first heartbeat without a lease: it reports up but refuses its
    actives until the next beat.)"""
    m = parse_map(coord.map_text())
    st = coord.status()
    if st.get("cut_off") or st["epoch"] == 0 or st["epoch"] != m["epoch"]:
        return None  # epoch 0: no map dealt yet
    by = {s["name"]: s for s in st["servers"]}
    for n in names:
        s = by.get(n)
        if s is None or s["health"] != "up" or s["fenced"] or s["epoch"] != st["epoch"]:
            return None
        if s["replicas_in_sync"] != s["replicas"]:
            return None
    if len(m["active"]) != st["buckets"]:
        return None
    for b, reps in enumerate(m["replicas"]):
        if m["active"][b] not in names or len([r for r in reps if r in names]) != replicas:
            return None
    return st


def wait_settled(coord, replicas, names, timeout=15):
    return mc.wait_for(lambda: settled(coord, replicas, names), timeout=timeout,
                       interval=0.05, what=f"cluster {names} settled")
