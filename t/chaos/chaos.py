"""Chaos harness for a managed cluster (doc/chaos.md): servers, mc-coordinator, fault
proxies on the coordinator's and the peers' paths, client threads recording every operation,
a seeded fault schedule, and the checker that judges the history afterwards.

Owns only processes it started (stopped by PID); every server binds 127.0.0.1 on a port the
OS picked, in a temporary directory. Standard library plus Debian's python3-pymemcache."""

import bisect
import json
import os
import random
import signal
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
for p in (os.path.join(TOP, "t", "lib"), os.path.join(TOP, "clients", "python")):
    if p not in sys.path:
        sys.path.insert(0, p)

import mc  # noqa: E402
from cluster import SECRET, FaultProxy, auth, dump  # noqa: E402
from coord import COORD_BIN, Coordinator, parse_map, settled  # noqa: E402

INF = float("inf")

# Words in a log that mean a crash or a broken invariant, whatever the exit code says.
CRASH_MARKS = ("Sanitizer", "runtime error:", "Assertion", "terminate called",
               "Segmentation fault", "stack smashing", "double free")


# ---------------------------------------------------------------------------------------
# The history

class Op:
    """One operation: client, kind ('write' | 'delete' | 'read'), key, value (str: a
    write's value, a read's result; None for a miss or a delete), invoke, complete
    (time.monotonic()), outcome ('ok' | 'fail' | 'unknown'), err (the exception's text),
    via (the port the client meant to send it to: a hint for debugging, as a retry may go
    elsewhere). Slots, since a long run keeps millions."""

    __slots__ = ("client", "kind", "key", "value", "invoke", "complete", "outcome", "err",
                 "via")

    def __init__(self, client, kind, key, value=None, invoke=None, complete=None,
                 outcome=None, err=None, via=None):
        self.client = client
        self.kind = kind
        self.key = key
        self.value = value
        self.invoke = invoke
        self.complete = complete
        self.outcome = outcome
        self.err = err
        self.via = via

    @classmethod
    def of(cls, o):
        return o if isinstance(o, cls) else cls(**o)

    def as_dict(self, t0=0.0):
        d = {k: getattr(self, k) for k in self.__slots__}
        for k in ("invoke", "complete"):
            if d[k] is not None:
                d[k] = round(d[k] - t0, 4)
        return d


class History:
    """Every operation (Op), appended by the client threads."""

    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()

    def add(self, op):
        with self.lock:
            self.ops.append(op)

    def snapshot(self):
        with self.lock:
            return list(self.ops)


# ---------------------------------------------------------------------------------------
# The checker

def check(ops, nbuckets, failovers=None, unsafe=None, durable=None, ack_timeout_ms=500):
    """Judge a history against what the design promises (doc/chaos.md, "The checker").

    The system is a cache with asynchronous replication, one active server per bucket. Per
    key it is a register whose losses are allowed only where the design allows them:

    - A miss is always allowed (a cache may evict, expire, lose data). So are failed reads.
    - A write that failed or timed out ('unknown') may have taken effect at any moment after
      it was invoked, even much later (it may sit in a socket through a pause): it is never
      "older" than anything. A write is *complete* at its acknowledgement, or at the end of
      the first read that returned its value, whichever comes first.

    Anomalies (each with the ops involved):

    1. never-written: a read returned a value no write of that key ever carried.
    2. future-read: a read returned the value of a write invoked after the read completed.
    3. refused-write-read: a read returned the value of a write the cluster definitely
       refused (outcome 'fail': connection refused, SERVER_ERROR FENCED, NOT_MY_BUCKET:
       doc/managed.md says the value is discarded).
    4. stale-read / resurrected-delete: a read R returned the value of write W although a
       write or delete D of the same key was acknowledged after W completed and before R
       was invoked (W.complete < D.invoke, D.complete < R.invoke), i.e. R returned a value
       already overwritten (or deleted) in real time. doc/replication.md allows an
       acknowledged write to be lost only when its bucket's active dies before the record
       reaches a replica, i.e. at a failover; planned moves lose nothing
       (doc/coordinator.md, Moving a bucket), and a rejoined server serves nothing of its
       old data (Rejoin). So D's loss is excused iff an unplanned failover of the key's
       bucket may have happened between D's invocation and R's invocation: some interval
       (t0, t1] in failovers[bucket] with t1 > D.invoke and t0 < R.invoke.
    5. Durable writes (durable='delete': deletes; 'all': every write) cannot be excused by
       a failover: with -o repl_ack the reply waited for a replica's acknowledgement, and
       failover promotes the in-sync replica with the highest sequence number. The promise
       holds only when the wait happened and did not time out, so D counts as durable only
       if it was acknowledged in less than 0.8 x ack_timeout_ms and invoked outside every
       interval of unsafe[bucket] (no in-sync replica guaranteed: a map change of the
       bucket, a fault on a server holding it).

    failovers, unsafe: {bucket: [(t0, t1)]}. Returns {"ops", "reads_checked", "anomalies":
    [...], "counts": {kind: n}, "durable": writes that counted as durable}."""
    failovers = failovers or {}
    unsafe = unsafe or {}
    by_key = {}
    for op in ops:
        op = Op.of(op)
        by_key.setdefault(op.key, []).append(op)
    anomalies = []
    reads_checked = 0

    def flag(kind, read, write=None, witness=None, why=""):
        anomalies.append({"kind": kind, "key": read.key, "read": read, "write": write,
                          "witness": witness, "why": why})

    # Failover excuse lookup per bucket: intervals sorted by start, prefix max of ends.
    fo_index = {}
    for b, ivs in failovers.items():
        ivs = sorted(ivs)
        starts = [a for a, _ in ivs]
        ends, m = [], -INF
        for _, e in ivs:
            m = max(m, e)
            ends.append(m)
        fo_index[b] = (starts, ends)

    def last_failover_end(b, before):
        """The latest end of a failover interval that started before `before`."""
        if b not in fo_index:
            return -INF
        starts, ends = fo_index[b]
        i = bisect.bisect_left(starts, before)
        return ends[i - 1] if i else -INF

    def in_unsafe(b, t0, t1):
        return any(a <= t1 and t0 <= e for a, e in unsafe.get(b, ()))

    limit = 0.8 * ack_timeout_ms / 1000.0
    durable_count = 0
    for key, kops in by_key.items():
        b = zlib.crc32(key.encode()) % nbuckets
        writes = [o for o in kops if o.kind in ("write", "delete")]
        by_value = {}
        for w in writes:
            if w.kind == "write":
                by_value[w.value] = w
        # A write's effective completion: its acknowledgement or the first read of it.
        eff = {}
        for w in writes:
            eff[id(w)] = w.complete if w.outcome == "ok" else INF
        reads = [o for o in kops if o.kind == "read" and o.outcome == "ok"]
        for r in reads:
            w = by_value.get(r.value)
            if w is not None and r.complete < eff[id(w)] and w.outcome != "fail":
                eff[id(w)] = r.complete

        def index(ws):
            ws = sorted(ws, key=lambda o: o.invoke)
            inv = [o.invoke for o in ws]
            suf = [None] * len(ws)
            best = None
            for i in range(len(ws) - 1, -1, -1):
                if best is None or eff[id(ws[i])] < eff[id(best)]:
                    best = ws[i]
                suf[i] = best
            return inv, suf

        done = [w for w in writes if eff[id(w)] < INF]
        inv_all, suf_all = index(done)
        if durable:
            dur = [w for w in writes if w.outcome == "ok"
                   and (durable == "all" or w.kind == "delete")
                   and w.complete - w.invoke < limit
                   and not in_unsafe(b, w.invoke, w.complete)]
            durable_count += len(dur)
            dur_eff = {id(w): w.complete for w in dur}
            dur_sorted = sorted(dur, key=lambda o: o.invoke)
            inv_dur = [o.invoke for o in dur_sorted]
            suf_dur, best = [None] * len(dur_sorted), None
            for i in range(len(dur_sorted) - 1, -1, -1):
                if best is None or dur_eff[id(dur_sorted[i])] < dur_eff[id(best)]:
                    best = dur_sorted[i]
                suf_dur[i] = best
        for r in reads:
            if r.value is None:
                continue  # a miss: always allowed
            reads_checked += 1
            w = by_value.get(r.value)
            if w is None:
                flag("never-written", r, why="no write of this key carried the value")
                continue
            if w.invoke > r.complete:
                flag("future-read", r, w, why="the write was invoked after the read ended")
                continue
            if w.outcome == "fail":
                flag("refused-write-read", r, w, why="the cluster refused this write")
                continue
            wc = w.complete if w.outcome == "ok" else INF
            if wc == INF:
                continue  # an unacknowledged write may take effect at any later moment
            # Overwritten before R began, and not excused by a failover in between?
            x = max(wc, last_failover_end(b, r.invoke))
            i = bisect.bisect_right(inv_all, x)
            if i < len(suf_all):
                d = suf_all[i]
                if eff[id(d)] < r.invoke:
                    kind = "resurrected-delete" if d.kind == "delete" else "stale-read"
                    flag(kind, r, w, d, why="overwritten before the read began, no failover "
                                            "of the bucket in between")
                    continue
            if durable:
                i = bisect.bisect_right(inv_dur, wc)
                if i < len(suf_dur):
                    d = suf_dur[i]
                    if d.complete < r.invoke:
                        kind = ("resurrected-delete" if d.kind == "delete"
                                else "stale-read")
                        flag(kind, r, w, d, why=f"a durable {d.kind} (repl_ack="
                                                f"{durable}) was lost")
    counts = {}
    for a in anomalies:
        counts[a["kind"]] = counts.get(a["kind"], 0) + 1
    return {"ops": len(ops), "reads_checked": reads_checked, "anomalies": anomalies,
            "counts": counts, "durable": durable_count}


# ---------------------------------------------------------------------------------------
# Clients

def _classify_error(e):
    """'fail' when the request was certainly not applied, else 'unknown'."""
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, ConnectionRefusedError):
        return "fail", text
    for word in ("FENCED", "NOT_MY_BUCKET", "All servers seem to be down"):
        if word in str(e):
            return "fail", text
    return "unknown", text


def make_client(kind, ports, timeout):
    """'hash': pymemcache's stock HashClient over the servers' own addresses (the servers
    forward); 'map': the map-aware ClusterClient (clients/python). No silent skips: a server
    that fails is dropped at once (retry_attempts=0) and taken back after a second."""
    from pymemcache.client.hash import HashClient
    servers = [("127.0.0.1", p) for p in ports]
    kw = dict(connect_timeout=timeout, timeout=timeout, ignore_exc=False, retry_attempts=0,
              retry_timeout=0.5, dead_timeout=1.0, default_noreply=False)
    if kind == "map":
        from mcm_client import ClusterClient
        return ClusterClient(servers, **kw)
    return HashClient(servers, **kw)


class ClientThread:
    """One application thread: random get / set / delete over a small key space, values
    unique per write ("c<client>-<seq>"), every operation recorded in the history."""

    def __init__(self, cid, kind, ports, keys, history, seed, timeout=1.0, rate=0.0,
                 mix=(0.5, 0.4, 0.1)):
        self.cid = cid
        self.kind = kind
        self.ports = ports
        self.keys = keys
        self.history = history
        self.rnd = random.Random(seed * 1000 + cid)
        self.timeout = timeout
        self.period = 1.0 / rate if rate else 0.0
        self.mix = mix
        self.seq = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name=f"client{cid}")
        self.client = None
        self.errors = 0

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()

    def join(self, timeout=10):
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def one(self, kind, key):
        value = None
        if kind == "write":
            self.seq += 1
            value = f"c{self.cid}-{self.seq}"
        op = Op(self.cid, kind, key, value, time.monotonic())
        try:
            if self.client is None:
                self.client = make_client(self.kind, self.ports, self.timeout)
            try:
                op.via = self.client._get_client(key).server[1]
            except Exception:
                pass
            if kind == "write":
                ok = self.client.set(key, value.encode(), noreply=False)
                op.outcome = "ok" if ok else "unknown"
            elif kind == "delete":
                ok = self.client.delete(key, noreply=False)
                # False is NOT_FOUND, or a server HashClient skipped: not known to be sent.
                op.outcome = "ok" if ok else "unknown"
            else:
                v = self.client.get(key)
                op.value = None if v is None else v.decode()
                op.outcome = "ok"
        except Exception as e:  # every failure is a recorded outcome, never a crash
            self.errors += 1
            out, text = _classify_error(e)
            op.outcome = "fail" if kind == "read" else out
            op.err = text[:200]
            if kind == "read":
                op.value = None
        op.complete = time.monotonic()
        self.history.add(op)
        return op

    def run(self):
        nxt = time.monotonic()
        while not self.stopping.is_set():
            x = self.rnd.random()
            kind = "read" if x < self.mix[0] else (
                "write" if x < self.mix[0] + self.mix[1] else "delete")
            self.one(kind, self.rnd.choice(self.keys))
            if self.period:
                nxt += self.period
                d = nxt - time.monotonic()
                if d > 0:
                    self.stopping.wait(d)
                else:
                    nxt = time.monotonic()
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass


# ---------------------------------------------------------------------------------------
# The cluster under test

class Node:
    """One server name: its current process, its port (kept across restarts), the proxy the
    coordinator reaches it through (ctl) and the proxy its peers reach it through (peer,
    the map address)."""

    def __init__(self, name):
        self.name = name
        self.server = None
        self.port = None
        self.ctl = None
        self.peer = None
        self.killed = False
        self.paused = False
        self.incarnation = 0
        self.exits = []  # (incarnation, exit code, how)


class ChaosCluster:
    """nservers servers (n0..), one spare (n<nservers>) for add/remove, mc-coordinator with
    `replicas`, fault proxies in front of every server on the coordinator's path and, with
    peer_proxies, on the peers' path (the map names the proxy: replication links, forwarding
    and map-aware clients all go through it; stock clients use the server's own port)."""

    def __init__(self, tmpdir, nservers=4, replicas=1, buckets=64, memory_mb=32, threads=2,
                 repl_ack="delete", ack_timeout_ms=500, backlog_mb=8, peer_proxies=True,
                 binary=None, hb_ms=100, dead_ms=500, log=print):
        self.tmp = str(tmpdir)
        os.makedirs(self.tmp, exist_ok=True)
        self.secret = os.path.join(self.tmp, "secret")
        with open(self.secret, "wb") as f:
            f.write(SECRET + b"\n")
        self.buckets = buckets
        self.replicas = replicas
        self.memory_mb = memory_mb
        self.threads = threads
        self.repl_ack = repl_ack
        self.ack_timeout_ms = ack_timeout_ms
        self.backlog_mb = backlog_mb
        self.peer_proxies = peer_proxies
        self.binary = binary or mc.server_binary()
        self.hb_ms = hb_ms
        self.dead_ms = dead_ms
        self.log = log
        self.nodes = {}
        self.base = [f"n{i}" for i in range(nservers)]
        self.spare = f"n{nservers}"
        for n in self.base + [self.spare]:
            self.nodes[n] = Node(n)
        # The spare runs from the start (holding no map) so that its proxies, and the
        # coordinator's --control address for it, exist before it is ever added.
        for n in self.base + [self.spare]:
            self.start_server(n)
        self.coord = None
        self.coord_down = False
        self.coord_runs = []  # every Coordinator object, for their exit codes and logs
        self.start_coordinator(first=True)
        self.members = set(self.base)

    # -- servers
    def server_args(self, name):
        opts = [f"node_id={name}", f"cluster_secret_file={self.secret}",
                f"buckets={self.buckets}", f"repl_backlog_mb={self.backlog_mb}"]
        if self.repl_ack and self.repl_ack != "none":
            opts += [f"repl_ack={self.repl_ack}", f"repl_ack_timeout={self.ack_timeout_ms}"]
        return ["-m", str(self.memory_mb), "-t", str(self.threads), "-o", ",".join(opts)]

    def start_server(self, name):
        node = self.nodes[name]
        node.incarnation += 1
        d = os.path.join(self.tmp, f"{name}.{node.incarnation}")
        os.makedirs(d)
        args = self.server_args(name)
        if node.port:
            args += ["-p", str(node.port)]
        node.server = mc.Server(d, args=args, binary=self.binary)
        node.port = node.server.port
        node.killed = False
        node.paused = False
        if node.ctl is None:
            node.ctl = FaultProxy(node.port)
            if self.peer_proxies:
                node.peer = FaultProxy(node.port)
        return node.server

    def map_port(self, name):
        n = self.nodes[name]
        return n.peer.port if n.peer else n.port

    def client_ports(self):
        """The addresses stock clients are configured with: the base servers' own ports."""
        return [self.nodes[n].port for n in self.base]

    def kill9(self, name):
        node = self.nodes[name]
        if node.paused:
            os.kill(node.server.proc.pid, signal.SIGCONT)
            node.paused = False
        node.server.kill9()
        node.exits.append((node.incarnation, node.server.proc.returncode, "kill -9"))
        node.server.log.close()
        node.killed = True

    def pause(self, name):
        node = self.nodes[name]
        node.server.pause()
        node.paused = True

    def resume(self, name):
        node = self.nodes[name]
        if node.paused and node.server.alive():
            os.kill(node.server.proc.pid, signal.SIGCONT)
        node.paused = False

    # -- the coordinator
    def start_coordinator(self, first=False):
        control = {n: self.nodes[n].ctl.port for n in self.base + [self.spare]}
        extra = ["--takeover", "off"] if self.peer_proxies else []

        class Addr:
            def __init__(self, port):
                self.port = port
        nodes = [(n, Addr(self.map_port(n))) for n in self.base] if first else []
        state = os.path.join(self.tmp, "coord", "coord.state")
        self.coord = Coordinator(os.path.join(self.tmp, "coord"), self.secret, nodes,
                                 replicas=self.replicas, buckets=self.buckets,
                                 hb_ms=self.hb_ms, dead_ms=self.dead_ms,
                                 state=state, control=control, extra=extra)
        self.coord_runs.append(self.coord)
        self.coord_down = False

    def kill_coordinator(self):
        self.coord.kill()
        self.coord.log.close()
        self.coord_down = True

    # -- membership
    def add_spare(self):
        """Start the spare server again if it was removed, and add it through the admin API
        (POST /nodes)."""
        name = self.spare
        node = self.nodes[name]
        if node.server is None or not node.server.alive():
            self.start_server(name)
        st, j = self.coord.request("POST", "/nodes",
                                   {"name": name, "addr": f"127.0.0.1:{self.map_port(name)}"})
        if st != 200:
            self.log(f"add {name}: {st} {j}")
            self.nodes[name].server.stop()
            return False
        self.members.add(name)
        return True

    def remove_spare(self):
        """Drain the spare and take it out of the map (POST /nodes/<name>/drain remove);
        the process is stopped once the map no longer names it (reap_spare)."""
        st, j = self.coord.request("POST", f"/nodes/{self.spare}/drain", {"remove": True})
        if st != 200:
            self.log(f"remove {self.spare}: {st} {j}")
            return False
        self.members.discard(self.spare)
        return True

    def reap_spare(self):
        """Stop the spare once it has left the map; True when it is gone (or was)."""
        node = self.nodes[self.spare]
        if self.spare in self.members or node.server is None or not node.server.alive():
            return True
        try:
            m = parse_map(self.coord.map_text())
        except Exception:
            return False
        if self.spare in m["nodes"]:
            return False
        rc = node.server.stop()
        node.exits.append((node.incarnation, rc, "SIGTERM after removal"))
        return True

    # -- teardown
    def heal(self):
        """Every fault undone: processes resumed, killed servers started again on their
        ports, proxies open and without delay, the coordinator running."""
        for n in self.base:
            node = self.nodes[n]
            for p in (node.ctl, node.peer):
                if p:
                    p.unblock()
                    p.delay(0)
            if node.paused:
                self.resume(n)
            if node.killed:
                self.start_server(n)
        if self.coord_down:
            self.start_coordinator()

    def stop(self):
        """SIGTERM to everything still running; returns {name: [(incarnation, exit code,
        how)]} and the coordinators' exit codes."""
        out = {}
        for n, node in self.nodes.items():
            if node.server is not None and node.server.alive():
                self.resume(n)
                rc = node.server.stop()
                node.exits.append((node.incarnation, rc, "SIGTERM at the end"))
            for p in (node.ctl, node.peer):
                if p:
                    p.stop()
            out[n] = node.exits
        coords = []
        for c in self.coord_runs:
            if c.killed:
                coords.append((None, "kill -9"))
            else:
                coords.append((c.stop(), "SIGTERM at the end"))
        return out, coords


# ---------------------------------------------------------------------------------------
# Watchers: the map history (for the checker's excuses) and memory

class MapWatcher:
    """Polls the coordinator's map and status every `interval` s and records, per bucket,
    the intervals (previous poll, this poll] in which its entry changed: `changes`; and those
    in which its active changed by a failover (the old active is not a replica in the new
    map, or the coordinator's failover count moved): `failovers`."""

    def __init__(self, cluster, interval=0.1):
        self.cl = cluster
        self.interval = interval
        self.failovers = {}
        self.changes = {}
        self.last = None  # (time the poll started, parsed map, failovers count)
        self.timeline = []  # (poll start, poll end, epoch, actives, replicas) per new epoch
        self.epochs = 0
        self.errors = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="mapwatch")

    def poll(self):
        if self.cl.coord_down:
            return
        # The interval a change is placed in runs from the start of the poll that saw the
        # old map to the end of the one that saw the new one.
        started = time.monotonic()
        try:
            m = parse_map(self.cl.coord.map_text())
            fo = self.cl.coord.status().get("failovers", 0)
        except Exception:
            self.errors += 1
            return
        now = time.monotonic()
        if self.last is None or m["epoch"] != self.last[1]["epoch"]:
            self.timeline.append((started, now, m["epoch"], tuple(m["active"]),
                                  tuple(tuple(r) for r in m["replicas"])))
        if self.last is not None:
            t0, old, old_fo = self.last
            if m["epoch"] != old["epoch"]:
                self.epochs += 1
                counted = fo != old_fo
                for b in range(min(len(m["active"]), len(old["active"]))):
                    a0, a1 = old["active"][b], m["active"][b]
                    if (a0, old["replicas"][b]) != (a1, m["replicas"][b]):
                        self.changes.setdefault(b, []).append((t0, now))
                    if a0 != a1 and a0 is not None and (
                            counted or a0 not in m["replicas"][b]):
                        self.failovers.setdefault(b, []).append((t0, now))
        self.last = (started, m, fo)

    def holders(self, name):
        """Buckets the named server is active or replica for, in the last map seen."""
        if self.last is None:
            return set(range(self.cl.buckets))
        m = self.last[1]
        return {b for b in range(len(m["active"]))
                if m["active"][b] == name or name in m["replicas"][b]}

    def run(self):
        while not self.stopping.is_set():
            self.poll()
            self.stopping.wait(self.interval)

    def start(self):
        self.poll()
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(10)


def rss_kb(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class MemWatcher:
    """Samples VmRSS of every server and coordinator process once a second (and VmHWM, the
    peak, at each sample): the highest per process name."""

    def __init__(self, cluster, interval=1.0):
        self.cl = cluster
        self.interval = interval
        self.max_kb = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="memwatch")

    def sample(self):
        procs = [(n, node.server.proc.pid) for n, node in self.cl.nodes.items()
                 if node.server is not None and node.server.alive()]
        if not self.cl.coord_down and self.cl.coord.proc.poll() is None:
            procs.append(("coordinator", self.cl.coord.proc.pid))
        for name, pid in procs:
            for field in ("VmRSS", "VmHWM"):
                kb = rss_kb(pid, field)
                if kb is not None and kb > self.max_kb.get(name, 0):
                    self.max_kb[name] = kb

    def run(self):
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(10)
        self.sample()


# ---------------------------------------------------------------------------------------
# The fault schedule

FAULT_KINDS = {
    # kind: weight
    "kill": 3, "pause": 3, "peer-cut": 2, "peer-block": 2, "peer-delay": 2, "ctl-cut": 1,
    "ctl-block": 2, "ctl-delay": 1, "coord-kill": 2, "membership": 1, "rebalance": 1,
}


class Nemesis:
    """Draws faults from a seeded generator and runs them one at a time: inject, hold for a
    drawn time, heal, wait a drawn gap. Every fault is logged with its times and target;
    faults touching a server mark the buckets it holds 'unsafe' for durable acks (the
    checker's rule 5) from 4 s before (a replication link is cut after 3 s of silence) to
    2 s after the heal."""

    def __init__(self, cluster, watcher, seed, kinds=None, log=print, max_gap=2.0):
        self.cl = cluster
        self.watcher = watcher
        self.rnd = random.Random(seed)
        self.kinds = dict(kinds or FAULT_KINDS)
        if not cluster.peer_proxies:  # no proxy on the peers' path to fault
            self.kinds = {k: v for k, v in self.kinds.items() if not k.startswith("peer-")}
        self.log = log
        self.max_gap = max_gap
        self.events = []
        self.counts = {}
        self.unsafe = {}
        self.errors = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="nemesis")

    def draw(self):
        ks = sorted(self.kinds)
        return self.rnd.choices(ks, weights=[self.kinds[k] for k in ks])[0]

    def mark(self, name, t0, t1):
        for b in self.watcher.holders(name):
            self.unsafe.setdefault(b, []).append((t0 - 4.0, t1 + 2.0))

    def hold(self, lo, hi):
        self.stopping.wait(self.rnd.uniform(lo, hi))

    def proxy_fault(self, ev, kind, p, target, block, delay_ms, delay_hold):
        """A cut, block or delay (kind's suffix) on the fault proxy p, held for a time drawn
        from block / delay_hold; a delay of delay_ms (range) with a quarter of it as jitter."""
        ev["target"] = target
        if kind.endswith("-cut"):
            p.cut()
        elif kind.endswith("-block"):
            p.block()
            self.hold(*block)
            p.unblock()
        else:
            ms = self.rnd.randint(*delay_ms)
            ev["delay_ms"] = ms
            p.delay(ms, ms // 4)
            self.hold(*delay_hold)
            p.delay(0)

    def one(self, kind):
        cl = self.cl
        target = self.rnd.choice(cl.base)
        t0 = time.monotonic()
        ev = {"kind": kind, "start": t0}
        if cl.coord_down and kind in ("membership", "rebalance"):
            kind = ev["kind"] = "coord-restart"
        if kind == "kill":
            ev["target"] = target
            cl.kill9(target)
            self.hold(0.3, 3.0)
            cl.start_server(target)
        elif kind == "pause":
            ev["target"] = target
            cl.pause(target)
            self.hold(0.2, 2.5)
            cl.resume(target)
        elif kind.startswith("peer-") and cl.peer_proxies:
            self.proxy_fault(ev, kind, cl.nodes[target].peer, target,
                             block=(0.5, 4.0), delay_ms=(20, 300), delay_hold=(1.0, 5.0))
        elif kind.startswith("ctl-"):
            self.proxy_fault(ev, kind, cl.nodes[target].ctl, target,
                             block=(0.3, 2.0), delay_ms=(50, 400), delay_hold=(1.0, 4.0))
        elif kind == "coord-kill":
            cl.kill_coordinator()
            self.hold(0.3, 3.0)
            cl.start_coordinator()
        elif kind == "coord-restart":
            cl.start_coordinator()
        elif kind == "membership":
            if cl.spare in cl.members:
                ev["kind"] = kind = "remove-node"
                ok = cl.remove_spare()
            else:
                spare = cl.nodes[cl.spare]
                if spare.server is not None and spare.server.alive():
                    if not cl.reap_spare():
                        ev["kind"] = "remove-node-pending"
                        ok = False
                        ev["ok"] = ok
                        return ev
                ev["kind"] = kind = "add-node"
                ok = cl.add_spare()
            ev["ok"] = ok
            ev["target"] = cl.spare
        elif kind == "rebalance":
            st, j = cl.coord.request("POST", "/rebalance", {})
            ev["ok"] = st == 200
        else:
            ev["kind"] = "none"
        ev["end"] = time.monotonic()
        if ev.get("target") and kind not in ("ctl-cut", "ctl-delay", "add-node",
                                             "remove-node"):
            self.mark(ev["target"], t0, ev["end"])
        return ev

    def run(self):
        while not self.stopping.is_set():
            kind = self.draw()
            try:
                ev = self.one(kind)
            except Exception as e:
                ev = {"kind": kind, "error": f"{type(e).__name__}: {e}"}
                self.errors.append(ev["error"])
            self.events.append(ev)
            self.counts[ev["kind"]] = self.counts.get(ev["kind"], 0) + 1
            self.log(f"fault {ev}")
            if not self.cl.coord_down:
                try:
                    self.cl.reap_spare()  # a removed spare is stopped once the map drops it
                except Exception as e:
                    self.errors.append(f"reap: {type(e).__name__}: {e}")
            self.stopping.wait(self.rnd.uniform(0.2, self.max_gap))

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(60)


# ---------------------------------------------------------------------------------------
# End state

def server_states(node, buckets):
    """{bucket: state} from `stats buckets` of one server."""
    c = node.server.connect(timeout=5)
    try:
        st = c.stats("buckets")
    finally:
        c.close()
    out = {}
    for k, v in st.items():
        w = k.split(":")
        if len(w) == 3 and w[0] == "bucket" and w[2] == "state":
            out[int(w[1])] = v
    return out


def end_state(cl, timeout=60):
    """After healing: the cluster settles (every member up, holding the coordinator's map,
    every bucket with `replicas` in-sync replicas; coord.settled), and every bucket is
    active on exactly one server, the one the map names, and `replica` on exactly the
    servers the map lists. Returns a list of problems (empty: good) and the settle time."""
    names = sorted(cl.members)
    t0 = time.monotonic()
    problems = []
    kicks = []

    def done():
        if settled(cl.coord, cl.replicas, names):
            return True
        # A removal whose drain gave moves up leaves the spare in the map holding buckets
        # until the next rebalance (doc/chaos.md, Findings): ask for one, as an operator
        # would, at most every 5 s.
        if cl.spare not in cl.members and (not kicks or time.monotonic() - kicks[-1] > 5):
            try:
                if cl.spare in parse_map(cl.coord.map_text())["nodes"]:
                    kicks.append(time.monotonic())
                    cl.coord.request("POST", "/rebalance", {})
            except Exception:
                pass
        return False
    try:
        mc.wait_for(done, timeout=timeout, interval=0.1, what="settled")
        cl.removal_kicks = len(kicks)
    except TimeoutError as e:
        st = {}
        try:
            st = cl.coord.status()
        except Exception:
            pass
        problems.append(f"not settled in {timeout}s: {e}; status {json.dumps(st)[:1500]}")
        return problems, time.monotonic() - t0
    settle_s = time.monotonic() - t0
    m = parse_map(cl.coord.map_text())
    states = {n: server_states(cl.nodes[n], cl.buckets) for n in names}
    for b in range(cl.buckets):
        active = [n for n in names if states[n].get(b) == "active"]
        reps = sorted(n for n in names if states[n].get(b) == "replica")
        if active != [m["active"][b]]:
            problems.append(f"bucket {b}: active on {active}, map says {m['active'][b]}")
        if reps != sorted(m["replicas"][b]):
            problems.append(f"bucket {b}: replica on {reps}, map says {m['replicas'][b]}")
    return problems, settle_s


def compare_replicas(cl, timeout=20):
    """Once the writes have stopped: every bucket's replicas hold what its active holds
    (keys and values; `cluster dump`), polled until equal or the deadline."""
    m = parse_map(cl.coord.map_text())

    def dump_kv(name, b):
        return {k: item[4] for k, item in dump(cl.nodes[name].server, b).items()}

    pending = list(range(cl.buckets))
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        left = []
        for b in pending:
            a = dump_kv(m["active"][b], b)
            if any(dump_kv(r, b) != a for r in m["replicas"][b]):
                left.append(b)
        pending = left
        if pending:
            time.sleep(0.2)
    return [f"bucket {b}: a replica differs from the active" for b in pending]


def scan_logs(cl):
    """Crash marks in every server's and coordinator's log."""
    found = []
    for n in cl.nodes:
        for i in range(1, cl.nodes[n].incarnation + 1):
            path = os.path.join(cl.tmp, f"{n}.{i}", "server.log")
            try:
                text = open(path, "rb").read().decode(errors="replace")
            except OSError:
                continue
            for mark in CRASH_MARKS:
                if mark in text:
                    found.append(f"{n}.{i}: '{mark}' in {path}")
    try:
        text = open(os.path.join(cl.tmp, "coord", "coord.log"), "rb").read().decode(
            errors="replace")
        for mark in CRASH_MARKS:
            if mark in text:
                found.append(f"coordinator: '{mark}' in its log")
    except OSError:
        pass
    return found


# ---------------------------------------------------------------------------------------
# One run

def run(tmpdir, seconds, seed, nservers=4, clients=4, keys=32, rate=0.0, kinds=None,
        repl_ack="delete", memory_mb=32, rss_allowance_mb=160, coord_rss_mb=64,
        peer_proxies=True, buckets=64, settle_timeout=60, log=print, max_gap=2.0):
    """Run the cluster under load and faults for `seconds`, heal, settle, check. Returns
    the report (a dict; "ok" is the verdict)."""
    t_start = time.monotonic()
    cl = ChaosCluster(tmpdir, nservers=nservers, buckets=buckets, memory_mb=memory_mb,
                      repl_ack=repl_ack, peer_proxies=peer_proxies, log=log)
    report = {"seed": seed, "seconds": seconds, "servers": nservers, "clients": clients,
              "keys": keys, "repl_ack": repl_ack, "buckets": buckets,
              "peer_proxies": peer_proxies}
    history = History()
    watcher = MapWatcher(cl)
    mem = MemWatcher(cl)
    nemesis = Nemesis(cl, watcher, seed, kinds=kinds, log=log, max_gap=max_gap)
    threads = []
    try:
        mc.wait_for(lambda: settled(cl.coord, cl.replicas, cl.base), timeout=60,
                    interval=0.05, what="first settle")
        watcher.start()
        mem.start()
        keyset = [f"k{i}" for i in range(keys)]
        for i in range(clients):
            t = ClientThread(i, "hash" if i % 2 == 0 else "map", cl.client_ports(), keyset,
                             history, seed, rate=rate)
            threads.append(t)
            t.start()
        nemesis.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            alive = [n for n, node in cl.nodes.items() if node.server is not None
                     and not node.killed and node.server.proc.poll() is not None
                     and (n in cl.members)]
            if alive:
                report.setdefault("died", []).extend(alive)
                log(f"servers died on their own: {alive}")
                break
        nemesis.stop()
        cl.heal()
        # Clients keep running through the settle, so the healed cluster is checked too.
        problems, settle_s = end_state(cl, timeout=settle_timeout)
        if cl.spare not in cl.members:
            mc.wait_for(cl.reap_spare, timeout=30, interval=0.1, what="spare removed")
        for t in threads:
            t.stop()
        for t in threads:
            t.join()
        # Final reads: every key once, through a fresh stock client.
        final = ClientThread(clients, "hash", cl.client_ports(), keyset, history, seed)
        for k in keyset:
            final.one("read", k)
        watcher.poll()
        watcher.stop()
        replica_problems = compare_replicas(cl) if not problems else []
        mem.stop()
        report["heal_to_settled_s"] = round(settle_s, 2)
        report["removal_rebalances_at_end"] = getattr(cl, "removal_kicks", 0)
        report["end_state_problems"] = problems + replica_problems
    finally:
        nemesis.stop()
        for t in threads:
            t.stop()
        watcher.stop()
        mem.stop()
        exits, coord_exits = cl.stop()
    ops = history.snapshot()
    # Durable acks cannot be relied on around a map change of the bucket either (a replica
    # just added or removed, a promotion): from 1 s before to 2 s after.
    unsafe = {b: list(v) for b, v in nemesis.unsafe.items()}
    for b, ivs in watcher.changes.items():
        unsafe.setdefault(b, []).extend((t0 - 1.0, t1 + 2.0) for t0, t1 in ivs)
    verdict = check(ops, buckets, failovers=watcher.failovers, unsafe=unsafe,
                    durable=repl_ack if repl_ack in ("delete", "all") else None,
                    ack_timeout_ms=cl.ack_timeout_ms)
    # Crashes: every exit we did not cause must be 0.
    crashes = []
    for n, ex in exits.items():
        for inc, rc, how in ex:
            if how != "kill -9" and rc != 0:
                crashes.append(f"{n}.{inc} exited {rc} ({how})")
    for rc, how in coord_exits:
        if how != "kill -9" and rc != 0:
            crashes.append(f"coordinator exited {rc} ({how})")
    crashes += scan_logs(cl)
    crashes += [f"{n} died on its own" for n in report.get("died", [])]
    # Memory: -m plus an allowance (backlogs, link buffers, threads, the debug build).
    bound_kb = {n: (memory_mb + rss_allowance_mb) * 1024 for n in cl.nodes}
    # An AddressSanitizer build (the CI's second pass) keeps shadow memory and a quarantine
    # of freed blocks: the coordinator's bound is four times larger there.
    asan = "asan" in os.path.basename(COORD_BIN)
    bound_kb["coordinator"] = coord_rss_mb * 1024 * (4 if asan else 1)
    over = [f"{n}: {kb // 1024} MiB > {bound_kb[n] // 1024} MiB"
            for n, kb in mem.max_kb.items() if kb > bound_kb.get(n, INF)]
    by_kind, by_outcome, errors = {}, {}, {}
    for o in ops:
        by_kind[o.kind] = by_kind.get(o.kind, 0) + 1
        key = f"{o.kind}:{o.outcome}"
        by_outcome[key] = by_outcome.get(key, 0) + 1
        if o.err:
            # the exception's type and the first word of its text (FENCED, forward, ...)
            words = o.err.split(":", 1)[-1].replace("b'", "").split()
            e = o.err.split(":")[0] + (": " + words[0] if words else "")
            errors[e] = errors.get(e, 0) + 1
    hits = sum(1 for o in ops if o.kind == "read" and o.outcome == "ok"
               and o.value is not None)
    report.update({
        "wall_s": round(time.monotonic() - t_start, 1),
        "faults": nemesis.counts,
        "fault_events": [{k: (round(v - t_start, 3) if k in ("start", "end") else v)
                          for k, v in e.items()} for e in nemesis.events],
        "nemesis_errors": nemesis.errors,
        "ops": len(ops), "ops_by_kind": by_kind, "ops_by_outcome": by_outcome,
        "client_errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:12]),
        "read_hits": hits, "reads_checked": verdict["reads_checked"],
        "durable_writes": verdict["durable"],
        "map_epochs_seen": watcher.epochs,
        "failover_intervals": sum(len(v) for v in watcher.failovers.values()),
        "anomalies": verdict["counts"],
        "anomaly_examples": [_brief(a, t_start, watcher, buckets)
                             for a in verdict["anomalies"][:20]],
        "crashes": crashes,
        "max_rss_mib": {n: round(kb / 1024, 1) for n, kb in sorted(mem.max_kb.items())},
        "rss_over_bound": over,
    })
    report["ports"] = {n: {"own": node.port, "peer": node.peer.port if node.peer else None,
                           "ctl": node.ctl.port if node.ctl else None}
                       for n, node in cl.nodes.items()}
    report["ok"] = (not verdict["anomalies"] and not crashes and not over
                    and not report.get("end_state_problems"))
    return report


def _brief(a, t0, watcher=None, nbuckets=None):
    """An anomaly for the report: its ops, and the owners of its bucket (epoch, active,
    replicas, as seen by the map watcher) from 3 s before the write to the read's end."""
    def op(o):
        return None if o is None else o.as_dict(t0)
    out = {"kind": a["kind"], "key": a["key"], "why": a["why"], "read": op(a["read"]),
           "write": op(a["write"]), "witness": op(a["witness"])}
    if watcher is not None:
        b = zlib.crc32(a["key"].encode()) % nbuckets
        lo = (a["write"] or a["read"]).invoke - 3.0
        hi = a["read"].complete
        out["bucket"] = b
        out["owners"] = [(round(s0 - t0, 4), round(s1 - t0, 4), e, act[b], list(reps[b]))
                         for s0, s1, e, act, reps in watcher.timeline if lo <= s1 and s0 <= hi]
        out["failovers"] = [(round(x - t0, 4), round(y - t0, 4))
                            for x, y in watcher.failovers.get(b, []) if lo <= y and x <= hi]
    return out
