"""Test harness: a real etcd cluster (1 or 3 members) on 127.0.0.1, and a small KV client over
etcd's v3 JSON gateway. Standard library only.

Every member binds a client and a peer port on 127.0.0.1 that the harness picked (bound to
port 0, then closed), keeps its data dir (e<i>.data) and log (e<i>.log) in the cluster's
tmpdir, and is stopped by its PID. If a port was taken meanwhile, the whole start is retried
on fresh ports (a bounded number of times).

etcd's default timing is kept (--heartbeat-interval 100 ms, --election-timeout 1000 ms): a
leader is elected 1-2 s after it is lost, and the shortest lease etcd grants is
ceil(1.5 * election-timeout) = 2 s (a shorter TTL is silently raised to that). Pass
extra_args to change them; the self-tests (t/cluster/test_etcd_fixture.py) need no shorter
timing.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import uuid

import mc

ETCD_BIN = os.environ.get("MC_TEST_ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"


def etcd_binary():
    """The etcd binary, or None when it is not installed."""
    return ETCD_BIN if os.access(ETCD_BIN, os.X_OK) else None


class EtcdError(Exception):
    """A KV call no live member answered (refused, timed out, or an error reply). A write
    that failed by a timeout is ambiguous, as in any Raft store: a member without a quorum
    may keep it in its log and commit it once the quorum is back (the self-test sees that in
    most runs)."""


def _b64(x):
    if isinstance(x, str):
        x = x.encode()
    return base64.b64encode(x).decode()


def _unb64(s):
    return base64.b64decode(s) if s else b""


def prefix_end(prefix):
    """The range_end that makes [prefix, end) every key starting with prefix."""
    p = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"  # every key


def free_ports(n):
    """n distinct ports the OS had free on 127.0.0.1 (all bound at once, then closed)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _prefix_range(prefix):
    """The range body for every key starting with prefix ("" is every key: etcd wants a
    non-empty key, and key "\\0" with range_end "\\0" means all of them)."""
    return {"key": _b64(prefix or b"\0"), "range_end": _b64(prefix_end(prefix))}


class EtcdCluster:
    """members real etcd processes e0, e1, ... in tmpdir, started and healthy (every member
    answers /health and a leader exists) when the constructor returns.

    endpoints: ["127.0.0.1:PORT", ...] (client addresses, member order); url(prefix): the
    coordinator's --state value for them. kill/stop/start/pause/resume(i) act on member i by
    its PID. get/get_kv/put/delete/range_prefix talk to any live, unpaused member."""

    def __init__(self, tmpdir, members=1, extra_args=(), start_timeout=30.0, attempts=3,
                 tls=None):
        """tls: (CA, certificate, key) for the client URLs (https, and --client-cert-auth: a
        client needs a certificate of that CA); the harness's own calls present the same
        certificate. None: plain http."""
        self.tls = tls
        self.tmpdir = str(tmpdir)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.n = members
        self.extra_args = list(extra_args)
        self.procs = [None] * members
        self.logs = [None] * members
        self.paused = set()
        self.down = set()  # members the harness stopped or killed (not expected healthy)
        self.log_paths = [os.path.join(self.tmpdir, f"e{i}.log") for i in range(members)]
        self.data_dirs = [os.path.join(self.tmpdir, f"e{i}.data") for i in range(members)]
        self.cmds = [None] * members
        if etcd_binary() is None:
            raise FileNotFoundError(f"no etcd binary ({ETCD_BIN})")
        last = None
        for attempt in range(attempts):
            ports = free_ports(2 * members)
            self.client_ports = ports[:members]
            self.peer_ports = ports[members:]
            self.token = f"mc-t-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            try:
                for i in range(members):
                    self._spawn(i, "new", f"--- start attempt {attempt + 1} ---")
                self.wait_healthy(start_timeout)
                return
            except Exception as e:  # noqa: BLE001 - retried only on a port clash
                clash = any("address already in use" in self.read_log(i)
                            for i in range(members))
                self.stop_all()
                if not clash:
                    raise RuntimeError(f"etcd cluster did not start: {e}\n" +
                                       self._log_tails()) from e
                last = e
                for i in range(members):
                    shutil.rmtree(self.data_dirs[i], ignore_errors=True)
                    if os.path.exists(self.log_paths[i]):  # kept, out of the next one's way
                        os.replace(self.log_paths[i], f"{self.log_paths[i]}.clash{attempt + 1}")
        raise RuntimeError(f"etcd: port clash on {attempts} attempts: {last}\n" +
                           self._log_tails())

    # -- addresses
    @property
    def endpoints(self):
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def url(self, prefix):
        """etcd://127.0.0.1:p1,127.0.0.1:p2,.../prefix (prefix given without a leading /)."""
        return f"etcd://{','.join(self.endpoints)}/{prefix.lstrip('/')}"

    def _initial_cluster(self):
        return ",".join(f"e{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))

    # -- processes
    def _spawn(self, i, cluster_state, banner):
        c, p = self.client_ports[i], self.peer_ports[i]
        scheme = "https" if self.tls else "http"
        tls_args = []
        if self.tls:
            ca, cert, key = self.tls
            tls_args = ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca,
                        "--client-cert-auth"]
        cmd = [ETCD_BIN, "--name", f"e{i}", "--data-dir", self.data_dirs[i],
               "--listen-client-urls", f"{scheme}://127.0.0.1:{c}",
               "--advertise-client-urls", f"{scheme}://127.0.0.1:{c}",
               "--listen-peer-urls", f"http://127.0.0.1:{p}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
               "--initial-cluster", self._initial_cluster(),
               "--initial-cluster-token", self.token,
               "--initial-cluster-state", cluster_state,
               "--logger", "zap", "--log-outputs", "stderr"] + tls_args + self.extra_args
        self.cmds[i] = cmd
        log = open(self.log_paths[i], "ab")
        log.write(f"{banner}\n{' '.join(cmd)}\n".encode())
        log.flush()
        self.logs[i] = log
        # etcd reads ETCD_* variables as flags: none of the caller's may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self.procs[i] = subprocess.Popen(cmd, cwd=self.tmpdir, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
        self.paused.discard(i)
        self.down.discard(i)

    def alive(self, i):
        p = self.procs[i]
        return p is not None and p.poll() is None

    def pid(self, i):
        return self.procs[i].pid

    def _reap(self, i, timeout):
        p = self.procs[i]
        self.down.add(i)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)
        self.paused.discard(i)
        if self.logs[i] is not None:
            self.logs[i].close()
            self.logs[i] = None
        return p.returncode

    def kill(self, i):
        """SIGKILL member i and wait for it."""
        if self.alive(i):
            self.procs[i].send_signal(signal.SIGKILL)
        if self.procs[i] is not None:
            return self._reap(i, 10)

    def stop(self, i, timeout=10.0):
        """SIGTERM member i and wait for it (SIGKILL after timeout)."""
        if self.alive(i):
            self.procs[i].send_signal(signal.SIGTERM)
            if i in self.paused:
                self.procs[i].send_signal(signal.SIGCONT)  # so that it sees the SIGTERM
        if self.procs[i] is not None:
            return self._reap(i, timeout)

    def start(self, i, timeout=None):
        """Restart stopped member i on its ports and data dir (--initial-cluster-state
        existing). With timeout, waits until it answers /health (which needs a quorum)."""
        if self.alive(i):
            raise RuntimeError(f"etcd member e{i} is running")
        self._spawn(i, "existing", "--- restarted ---")
        if timeout is not None:
            mc.wait_for(lambda: self._healthy(i), timeout=timeout, interval=0.05,
                        what=f"etcd member e{i} healthy")

    def pause(self, i):
        """SIGSTOP member i (its sockets stay open: peers and clients time out on it)."""
        os.kill(self.procs[i].pid, signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i):
        os.kill(self.procs[i].pid, signal.SIGCONT)
        self.paused.discard(i)

    def stop_all(self):
        for i in range(self.n):
            if self.procs[i] is not None:
                self.stop(i)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()

    def read_log(self, i):
        try:
            with open(self.log_paths[i], "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tails(self, n=3000):
        return "".join(f"--- {self.log_paths[i]} ---\n{self.read_log(i)[-n:]}\n"
                       for i in range(self.n))

    # -- health
    def _usable(self):
        return [i for i in range(self.n) if self.alive(i) and i not in self.paused]

    def _post(self, i, path, body, timeout):
        """(HTTP status, parsed JSON) from member i; raises OSError on a connection failure
        or a timeout."""
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[0])
            ctx.check_hostname = False
            ctx.load_cert_chain(self.tls[1], self.tls[2])
            c = http.client.HTTPSConnection("127.0.0.1", self.client_ports[i], timeout=timeout,
                                            context=ctx)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.client_ports[i], timeout=timeout)
        try:
            if body is None:
                c.request("GET", path)
            else:
                c.request("POST", path, body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, {"error": data.decode(errors="replace")}

    def _healthy(self, i, timeout=2.0):
        if not self.alive(i):
            raise RuntimeError(f"etcd member e{i} exited with {self.procs[i].returncode}:\n"
                               f"{self.read_log(i)[-3000:]}")
        if i in self.paused:
            return False
        try:
            st, j = self._post(i, "/health", None, timeout)
        except OSError:
            return False
        return st == 200 and j.get("health") == "true"

    def status(self, i, timeout=2.0):
        """Member i's /v3/maintenance/status (int64s as the strings etcd sends)."""
        st, j = self._post(i, "/v3/maintenance/status", {}, timeout)
        if st != 200:
            raise EtcdError(f"e{i}: status {st}: {j}")
        return j

    def leader(self):
        """The index of the member the live members agree leads, or None."""
        ids = {}
        leaders = set()
        for i in self._usable():
            try:
                j = self.status(i, timeout=1.0)
            except (OSError, EtcdError):
                continue
            ids[j["header"]["member_id"]] = i
            leaders.add(j.get("leader", "0"))
        if len(leaders) != 1:
            return None
        lead = leaders.pop()
        return ids.get(lead) if lead not in ("0", "", None) else None

    def wait_healthy(self, timeout=30.0):
        """Until every member the harness did not stop, kill or pause answers /health and
        they agree on a leader; raises at once if one of them exited."""
        def ok():
            expected = [i for i in range(self.n) if i not in self.down and i not in self.paused]
            if not all(self._healthy(i) for i in expected):
                return False
            return self.leader() is not None
        return mc.wait_for(ok, timeout=timeout, interval=0.05, what="etcd members healthy")

    def has_quorum(self, timeout=1.0):
        """A linearizable range on some live member answers within timeout (it needs the
        leader's read index, so a quorum)."""
        for i in self._usable():
            try:
                st, _ = self._post(i, "/v3/kv/range", {"key": _b64("quorum-probe")}, timeout)
            except OSError:
                continue
            if st == 200:
                return True
        return False

    # -- KV client
    def call(self, path, body, timeout=5.0, member=None):
        """POST body to path on the first live, unpaused member (or on member only) that
        answers 200; raises EtcdError naming every member's failure."""
        errors = []
        for i in self._usable() if member is None else [member]:
            try:
                st, j = self._post(i, path, body, timeout)
            except OSError as e:
                errors.append(f"e{i}: {e!r}")
                continue
            if st == 200:
                return j
            errors.append(f"e{i}: HTTP {st}: {j}")
        raise EtcdError(f"{path}: " + ("; ".join(errors) or "no live member"))

    @staticmethod
    def _kv(kv):
        return {"key": _unb64(kv.get("key")).decode(errors="replace"),
                "value": _unb64(kv.get("value")).decode(errors="replace"),
                "raw": _unb64(kv.get("value")),
                "create_revision": int(kv.get("create_revision", 0)),
                "mod_revision": int(kv.get("mod_revision", 0)),
                "version": int(kv.get("version", 0)),
                "lease": int(kv.get("lease", 0))}

    def get_kv(self, key, timeout=5.0, member=None):
        """{"value" (str), "raw" (bytes), "create_revision", "mod_revision", "version",
        "lease" (ints)} or None. A linearizable read (it needs a quorum)."""
        j = self.call("/v3/kv/range", {"key": _b64(key)}, timeout, member)
        kvs = j.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    def get(self, key, timeout=5.0, member=None):
        """The value (UTF-8 decoded) or None."""
        kv = self.get_kv(key, timeout, member)
        return kv["value"] if kv else None

    def put(self, key, value, lease=0, timeout=5.0):
        """Stores value (str or bytes); returns the revision of the write."""
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        j = self.call("/v3/kv/put", body, timeout)
        return int(j["header"]["revision"])

    def delete(self, key, timeout=5.0):
        """Deletes key; returns how many keys were deleted (0 or 1)."""
        j = self.call("/v3/kv/deleterange", {"key": _b64(key)}, timeout)
        return int(j.get("deleted", 0))

    def delete_prefix(self, prefix, timeout=5.0):
        j = self.call("/v3/kv/deleterange", _prefix_range(prefix), timeout)
        return int(j.get("deleted", 0))

    def range_prefix(self, prefix, timeout=5.0, member=None):
        """{key: value} of every key starting with prefix (str, UTF-8 decoded)."""
        j = self.call("/v3/kv/range", _prefix_range(prefix), timeout, member)
        return {_unb64(kv["key"]).decode(errors="replace"):
                _unb64(kv.get("value")).decode(errors="replace") for kv in j.get("kvs") or []}

    def grant_lease(self, ttl, timeout=5.0):
        """A new lease of ttl seconds: (id, granted TTL) (etcd raises a TTL below its
        minimum)."""
        j = self.call("/v3/lease/grant", {"TTL": str(ttl)}, timeout)
        return int(j["ID"]), int(j["TTL"])
