#!/usr/bin/python3
"""A fifth server added under load (doc/performance.md, "Rebalance under load"; issue 13).

A managed cluster of 4 servers (this repo's memcached, one replica, mc-coordinator with its
default 1024 buckets) is filled with --items keys through the servers (mcload -F, a quarter
of the keys, prefix p<i>:, through each server), then a steady --rate of 90% get / 10% set
runs against the 4 original servers (one mcload per server, its own quarter of the keys, in
1-second slices with -j, so every second has its throughput, hits, misses, errors and
get/set p50/p99). After --before seconds a fifth server is added with POST /nodes
{"rebalance": true}; the coordinator gives it its share of the buckets (copy, handoff,
switch, trim, doc/coordinator.md). The load runs on for --after seconds once the
rebalance is "done".

Beside it a small writer (Python, ~--writer-rate sets/s, keys w:<n> each written once, round
robin over the 4 servers) records every acknowledged value; after the run every one of them
is read back through every server (all 5): a missing or different value is a lost write.

Reported (stdout JSON, --json PATH, --plot PATH for a PNG):
  rebalance   POST -> state "done" (seconds), buckets moved, bytes moved (GET /status), rates
  windows     before / during / after: ops/s, get and set p50/p99, hit rate, errors, server
              CPU (utime+stime of every server process, /proc/<pid>/stat)
  holds       "writes held X ms" of the coordinator's "bucket N moved" lines: p50/p99/max
  backfill    backfill_max_hold_us and backfill_steps from every server's `stats
              replication` (null when the servers do not report them)
  lost        the writer's acknowledged writes not read back

Percentiles of a window are summaries of its 1-second slices: a slice's p50 is the
ops-weighted mean of the 4 clients' p50s, its p99 the largest of their p99s; a window's p50
is the median of its slices', its p99 the median of its slices' (and "p99_worst" the
worst slice's). mcload keeps no histogram across processes, so these are not exact
percentiles of the whole window.

Standard library (matplotlib for --plot). Re-run:
  bench/rebalance.py [--items 2000000] [--rate 12000] [--calibrate] [--json PATH] [--plot PATH]
  bench/rebalance.py --quick          (200k items, 3-second windows: a smoke test, < 60 s)
"""

import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(TOP, "t", "lib"))
import mc  # noqa: E402
from coord import Coordinator, wait_settled  # noqa: E402

SECRET = b"bench-cluster-secret-0123456789\n"
MCLOAD = os.path.join(TOP, "mcload")
HOLD_RE = re.compile(r"bucket (\d+) moved from (\S+) to (\S+) at seqno (\d+) "
                     r"\(writes held (\d+) ms\)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            w = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(w[11]) + int(w[12])) / CLK_TCK  # fields 14 and 15


def box_busy_seconds():
    """CPU seconds the whole machine spent busy (every process: /proc/stat, not idle/iowait)."""
    with open("/proc/stat") as f:
        w = [int(x) for x in f.readline().split()[1:]]
    return (sum(w[:8]) - w[3] - w[4]) / CLK_TCK


def children_cpu_seconds():
    """utime + stime of this script's reaped children (the mcload runs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def log_events(path, upto):
    """(byte offset, line) of the server's fencing lines, in its first `upto` bytes."""
    out, off = [], 0
    with open(path, "rb") as f:
        data = f.read(upto)
    for line in data.split(b"\n"):
        if b"fenced" in line or b"serving again" in line or b"refus" in line:
            out.append((off, line.decode(errors="replace")))
        off += len(line) + 1
    return out


CLUSTER_COUNTERS = ("fenced_refusals", "forwarded", "forward_errors", "forward_parked",
                    "forward_park_timeouts", "forward_peer_behind", "not_my_bucket",
                    "maps_installed", "maps_refused", "handoffs", "handoffs_cancelled")


def cluster_counters(servers):
    """{name: {counter: value}} from `stats cluster`, plus heartbeat_gap_max_ms."""
    out = {}
    for n, s in servers.items():
        st = stats(s.port, "cluster")
        out[n] = {k: int(st[k]) for k in CLUSTER_COUNTERS + ("heartbeat_gap_max_ms",)
                  if k in st and st[k].lstrip("-").isdigit()}
    return out


def counter_delta(a, b):
    """Sums over the servers of b - a (a server absent from a counts from 0)."""
    return {k: sum(b[n].get(k, 0) - a.get(n, {}).get(k, 0) for n in b)
            for k in CLUSTER_COUNTERS}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None


def stats(port, arg=""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    s.sendall(f"stats {arg}\r\n".encode() if arg else b"stats\r\n")
    out = {}
    for _ in range(100000):
        line = f.readline()
        if not line or line == b"END\r\n":
            break
        w = line.decode(errors="replace").split()
        if len(w) >= 3 and w[0] == "STAT":
            out[w[1]] = w[2]
    s.close()
    return out


class MiniClient:
    """A text-protocol connection: set (acknowledged) and multi-get."""

    def __init__(self, port, timeout=2.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.s.makefile("rb")

    def close(self):
        self.s.close()

    def set(self, key, value):
        self.s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value))
        return self.f.readline()

    def get_many(self, keys):
        self.s.sendall(("get " + " ".join(keys) + "\r\n").encode())
        out = {}
        for _ in range(len(keys) + 1):
            line = self.f.readline()
            if line == b"END\r\n":
                return out
            w = line.split()
            if not w or w[0] != b"VALUE":
                raise RuntimeError(f"unexpected reply {line[:200]!r}")
            n = int(w[3])
            out[w[1].decode()] = self.f.read(n + 2)[:-2]
        raise RuntimeError("no END")


class Writer:
    """Sets w:<n> (each key once) round robin over ports at about `rate` per second, records
    every acknowledged value with its time; a reply other than STORED or an exception is an
    error (the key's outcome unknown: not checked)."""

    def __init__(self, ports, rate, max_keys):
        self.ports = ports
        self.rate = rate
        self.max_keys = max_keys
        self.acked = {}  # key -> (value, monotonic time of the ack)
        self.errors = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        clients = {}
        t0 = time.monotonic()
        for n in range(self.max_keys):
            if self.stop_ev.is_set():
                break
            wait = t0 + n / self.rate - time.monotonic()
            if wait > 0:
                self.stop_ev.wait(wait)
            port = self.ports[n % len(self.ports)]
            k = f"w:{n}"
            v = b"%d-%d" % (n, (n * 7919) % 1000003)
            try:
                c = clients.get(port) or clients.setdefault(port, MiniClient(port))
                r = c.set(k, v)
            except Exception as e:  # noqa: BLE001 - recorded and reported
                self.errors.append((time.monotonic(), f"set {k} via {port}: {e!r}"))
                c = clients.pop(port, None)
                if c:
                    c.close()
                continue
            if r == b"STORED\r\n":
                self.acked[k] = (v, time.monotonic())
            else:
                self.errors.append((time.monotonic(), f"set {k} via {port}: {r[:200]!r}"))
        for c in clients.values():
            c.close()

    def stop(self):
        self.stop_ev.set()
        self.t.join(timeout=30)


class Load:
    """One mcload per original server in 1-second slices (bounded: max_slices), each
    slice's JSON kept with its times and the servers' CPU at its end."""

    def __init__(self, ports, a, keys_per, cpu_pids, logs):
        self.ports = ports
        self.logs = logs  # callable -> {name: server log path}
        self.a = a
        self.keys_per = keys_per
        self.cpu_pids = cpu_pids  # callable -> [pid]
        self.slices = []
        self.problems = []
        self.procs = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        per = self.a.rate / len(self.ports)
        for i in range(self.a.max_slices):
            if self.stop_ev.is_set():
                break
            t0 = time.monotonic()
            procs = []
            for j, port in enumerate(self.ports):
                cmd = [MCLOAD, "-s", f"127.0.0.1:{port}", "-P", f"p{j}:", "-k",
                       str(self.keys_per), "-v", self.a.value, "-r", "9:1", "-t", "1", "-c",
                       str(self.a.conns), "-R", str(per), "-D", str(self.a.slice), "-j"]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE))
            self.procs = procs
            res = []
            for j, p in enumerate(procs):
                try:
                    out, err = p.communicate(timeout=self.a.slice + 30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    out, err = p.communicate()
                    self.problems.append(f"slice {i} client {j}: mcload hung, killed")
                try:
                    r = json.loads(out.decode().strip().splitlines()[-1])
                except (ValueError, IndexError):
                    r = None
                if p.returncode != 0 or err.strip():
                    self.problems.append(f"slice {i} client {j} (port {self.ports[j]}): exit "
                                         f"{p.returncode}, errors "
                                         f"{r['errors'] if r else '?'}: "
                                         f"{err.decode(errors='replace').strip()[:300]}")
                res.append(r)
            self.procs = []
            t1 = time.monotonic()
            cpu = sum(cpu_seconds(pid) for pid in self.cpu_pids())
            self.slices.append({"t0": t0, "t1": t1, "cpu": cpu, "res": res,
                                "box": box_busy_seconds(), "client": children_cpu_seconds(),
                                "logs": {n: os.path.getsize(p) for n, p in self.logs().items()}})

    def stop(self):
        self.stop_ev.set()
        self.t.join(timeout=self.a.slice + 60)
        for p in list(self.procs):
            if p.poll() is None:
                p.kill()


def summarize_slice(s, t_base):
    res = [r for r in s["res"] if r]
    ops = sum(r["ops_per_sec"] for r in res)
    gets = sum(r["gets"] for r in res)
    sets = sum(r["sets"] for r in res)
    hits = sum(r["hits"] for r in res)
    misses = sum(r["misses"] for r in res)

    def p50(kind, n):
        tot = sum(r[n] for r in res)
        return sum(r[kind]["p50"] * r[n] for r in res) / tot if tot else None

    return {"t": round(s["t0"] - t_base, 3), "secs": round(s["t1"] - s["t0"], 3),
            "ops_per_sec": ops, "gets": gets, "sets": sets, "hits": hits, "misses": misses,
            "errors": sum(r["errors"] for r in res), "clients_failed": len(s["res"]) - len(res),
            "hit_rate": hits / (hits + misses) if hits + misses else None,
            "get_p50_us": p50("get_latency_us", "gets"),
            "get_p99_us": max((r["get_latency_us"]["p99"] for r in res), default=None),
            "set_p50_us": p50("set_latency_us", "sets"),
            "set_p99_us": max((r["set_latency_us"]["p99"] for r in res), default=None),
            "cpu_cores": None, "box_cores": None, "client_cores": None}


def window(series, cpu0, cpu1, t0, t1):
    if not series:
        return None
    gets = sum(s["gets"] for s in series)
    hits = sum(s["hits"] for s in series)
    med = lambda k: statistics.median([s[k] for s in series if s[k] is not None])  # noqa: E731
    return {"seconds": round(t1 - t0, 2), "slices": len(series),
            "ops_per_sec": sum(s["ops_per_sec"] * s["secs"] for s in series) /
            sum(s["secs"] for s in series),
            "ops_per_sec_lowest_slice": min(s["ops_per_sec"] for s in series),
            "gets": gets, "sets": sum(s["sets"] for s in series), "hits": hits,
            "misses": sum(s["misses"] for s in series),
            "hit_rate": hits / gets if gets else None,
            "errors": sum(s["errors"] for s in series),
            "get_p50_us": med("get_p50_us"), "get_p99_us": med("get_p99_us"),
            "get_p99_us_worst": max(s["get_p99_us"] or 0 for s in series),
            "set_p50_us": med("set_p50_us"), "set_p99_us": med("set_p99_us"),
            "set_p99_us_worst": max(s["set_p99_us"] or 0 for s in series),
            "server_cpu_s": round(cpu1 - cpu0, 2),
            "box_cpu_cores": round(sum(s["box_cores"] * s["secs"] for s in series) /
                                   sum(s["secs"] for s in series), 3),
            "client_cpu_cores": round(sum(s["client_cores"] * s["secs"] for s in series) /
                                      sum(s["secs"] for s in series), 3),
            "server_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3) if t1 > t0 else None}


def verify(acked, ports):
    """Every acknowledged writer key read back through every port: {port: [lost keys]}."""
    lost = {}
    keys = sorted(acked)
    for port in ports:
        c = MiniClient(port, timeout=10)
        bad = []
        for i in range(0, len(keys), 100):
            batch = keys[i:i + 100]
            got = c.get_many(batch)
            bad += [k for k in batch if got.get(k) != acked[k][0]]
        c.close()
        lost[port] = bad
    return lost


def plot(out, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ser = out["series"]
    ts = [s["t"] for s in ser]
    fig, axs = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    axs[0].plot(ts, [s["ops_per_sec"] for s in ser], marker=".")
    axs[0].set_ylabel("ops/s")
    axs[1].plot(ts, [s["get_p99_us"] for s in ser], marker=".", label="get p99")
    axs[1].plot(ts, [s["set_p99_us"] for s in ser], marker=".", label="set p99")
    axs[1].plot(ts, [s["get_p50_us"] for s in ser], marker=".", label="get p50")
    axs[1].set_yscale("log")
    axs[1].set_ylabel("latency (us)")
    axs[1].legend()
    axs[2].plot(ts, [100 * s["hit_rate"] if s["hit_rate"] is not None else float("nan")
                     for s in ser], marker=".")
    axs[2].set_ylabel("hit rate (%)")
    axs[3].plot(ts, [s["cpu_cores"] for s in ser], marker=".", label="servers")
    axs[3].plot(ts, [s["client_cores"] for s in ser], marker=".", label="mcload")
    axs[3].plot(ts, [s["box_cores"] for s in ser], marker=".", label="whole machine")
    axs[3].set_ylabel("CPU (cores)")
    axs[3].legend()
    axs[3].set_xlabel("seconds (shaded: POST /nodes to rebalance done)")
    rb = out["rebalance"]
    for ax in axs:
        ax.axvspan(rb["t_post"], rb["t_done"], color="orange", alpha=0.2)
        ax.grid(True, alpha=0.3)
    axs[0].set_title(f"4 -> 5 servers, {out['setup']['items']:,} items, "
                     f"{out['setup']['rate']:,.0f} req/s (90% get)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2_000_000)
    ap.add_argument("--value", default="32-100", help="value size (mcload -v)")
    ap.add_argument("--memory", type=int, default=768, help="-m of each server (MB)")
    ap.add_argument("--server-threads", type=int, default=2, help="-t of each server")
    ap.add_argument("--rate", type=float, default=12000,
                    help="requests per second, all 4 clients together")
    ap.add_argument("--conns", type=int, default=4, help="connections per client")
    ap.add_argument("--before", type=int, default=10, help="seconds")
    ap.add_argument("--after", type=int, default=10, help="seconds")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of load before 'before'")
    ap.add_argument("--slice", type=float, default=1.0, help="seconds per mcload run")
    ap.add_argument("--timeout", type=float, default=1800, help="rebalance deadline, seconds")
    ap.add_argument("--writer-rate", type=float, default=200)
    ap.add_argument("--calibrate", action="store_true",
                    help="first measure the 4 clients unpaced for 3 s (the capacity)")
    ap.add_argument("--quick", action="store_true",
                    help="200k items, 3-second windows: a smoke test")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    a = ap.parse_args(argv)
    if a.quick:
        a.items = min(a.items, 200_000)
        a.before = a.after = 3
        a.warmup = 1
        a.memory = min(a.memory, 128)
        a.timeout = min(a.timeout, 40)
    a.max_slices = int((a.warmup + a.before + a.after + a.timeout) / a.slice) + 10
    return a


def main(argv=None):
    a = parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="mcm-rebalance-")
    secret = os.path.join(tmp, "secret")
    with open(secret, "wb") as f:
        f.write(SECRET)
    t_start = time.monotonic()

    def start(name):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        return mc.Server(d, binary=os.path.join(TOP, "memcached"),
                         args=["-m", str(a.memory), "-t", str(a.server_threads), "-o",
                               f"node_id={name},cluster_secret_file={secret}"])

    servers, coord, load, writer = {}, None, None, None
    try:
        for n in ("n0", "n1", "n2", "n3"):
            servers[n] = start(n)
        coord = Coordinator(os.path.join(tmp, "coord"), secret, sorted(servers.items()),
                            buckets=1024)
        wait_settled(coord, 1, sorted(servers), timeout=60)
        orig = [servers[n].port for n in ("n0", "n1", "n2", "n3")]
        cc_start = cluster_counters(servers)
        keys_per = a.items // 4
        t = time.monotonic()
        prefill_rounds = []
        for _ in range(3):
            # mcload -F does not check its replies: count the copies (each key active on one
            # server, a replica on another) and fill again (same keys) if any is missing.
            fills = [subprocess.Popen([MCLOAD, "-s", f"127.0.0.1:{p}", "-P", f"p{j}:", "-k",
                                       str(keys_per), "-v", a.value, "-F", "-j"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for j, p in enumerate(orig)]
            for p in fills:
                out, err = p.communicate(timeout=900)
                if p.returncode != 0:
                    raise RuntimeError(f"prefill failed: {out!r} {err!r}")
            wait_settled(coord, 1, sorted(servers), timeout=300)
            items = {n: int(stats(s.port).get("curr_items", 0)) for n, s in servers.items()}
            prefill_rounds.append(sum(items.values()))
            if sum(items.values()) >= 2 * keys_per * 4:
                break
            print(f"prefill: {sum(items.values()):,} copies held, {2 * keys_per * 4:,} "
                  "wanted: filling again", flush=True)
        prefill_s = time.monotonic() - t
        cc_prefilled = cluster_counters(servers)
        print(f"prefilled {keys_per * 4:,} keys in {prefill_s:.1f} s; items held "
              f"(actives + replicas): {items}", flush=True)
        capacity = None
        if a.calibrate:
            procs = [subprocess.Popen([MCLOAD, "-s", f"127.0.0.1:{p}", "-P", f"p{j}:", "-k",
                                       str(keys_per), "-v", a.value, "-r", "9:1", "-t", "1",
                                       "-c", str(a.conns), "-D", "3", "-j"],
                                      stdout=subprocess.PIPE)
                     for j, p in enumerate(orig)]
            capacity = sum(json.loads(p.communicate(timeout=60)[0])["ops_per_sec"]
                           for p in procs)
            print(f"capacity (4 clients unpaced, {a.conns} conns each): {capacity:,.0f} ops/s;"
                  f" running at {a.rate:,.0f} ({a.rate / capacity:.0%})", flush=True)

        def pids():
            return [s.proc.pid for s in servers.values()]

        def logs():
            return {n: s.log_path for n, s in servers.items()}

        logs_base = {n: os.path.getsize(p) for n, p in logs().items()}
        cpu_base = sum(cpu_seconds(p) for p in pids())
        box_base, client_base = box_busy_seconds(), children_cpu_seconds()
        loadavg_start = os.getloadavg()
        cc_load = cluster_counters(servers)
        load = Load(orig, a, keys_per, pids, logs)
        mc.wait_for(lambda: len(load.slices) >= a.warmup, timeout=a.warmup * a.slice + 60,
                    interval=0.05, what="warm-up slices")
        writer = Writer(orig, a.writer_rate, int(a.writer_rate * (a.max_slices * a.slice + 60)))
        n_before = len(load.slices)
        mc.wait_for(lambda: len(load.slices) >= n_before + a.before,
                    timeout=a.before * a.slice + 60, interval=0.05, what="'before' slices")
        servers["n4"] = start("n4")
        t_post = time.monotonic()
        post_unix_ms = time.time() * 1000
        st, j = coord.request("POST", "/nodes", {"name": "n4",
                                                 "addr": f"127.0.0.1:{servers['n4'].port}",
                                                 "rebalance": True})
        if st != 200:
            raise RuntimeError(f"POST /nodes: {st} {j}")
        polls = []

        def done():
            r = coord.status()["rebalance"]
            polls.append((time.monotonic() - t_start, r["state"], r["buckets_done"],
                          r["bytes_moved"]))
            ok = (r["state"] in ("done", "cancelled") and r["started_unix_ms"] is not None
                  and r["started_unix_ms"] >= post_unix_ms - 1000)
            return r if ok else None
        rb = mc.wait_for(done, timeout=a.timeout, interval=0.2, what="rebalance done")
        t_done = time.monotonic()
        print(f"rebalance {rb['state']} in {t_done - t_post:.1f} s: {rb['buckets_done']} "
              f"buckets, {rb['bytes_moved']:,} bytes", flush=True)
        n_done = len(load.slices)
        mc.wait_for(lambda: len(load.slices) >= n_done + a.after + 1,
                    timeout=(a.after + 1) * a.slice + 60, interval=0.05, what="'after' slices")
        writer.stop()
        load.stop()
        wait_settled(coord, 1, sorted(servers), timeout=120)
        lost = verify(writer.acked, [s.port for s in servers.values()])
        repl = {n: stats(s.port, "replication") for n, s in servers.items()}
        cc_end = cluster_counters(servers)
        final_items = {n: int(stats(s.port).get("curr_items", 0)) for n, s in servers.items()}
        final_status = coord.status()
        log = coord.read_log()
        log_ends = {n: os.path.getsize(p) for n, p in logs().items()}
        loadavg_end = os.getloadavg()
    finally:
        if writer:
            writer.stop()
        if load:
            load.stop()
        if coord:
            coord.stop()
        for s in servers.values():
            s.stop()

    # --- figures ---
    t_base = load.slices[0]["t0"]
    series = []
    prev = {"cpu": cpu_base, "box": box_base, "client": client_base}
    for s in load.slices:
        x = summarize_slice(s, t_base)
        for k, name in (("cpu", "cpu_cores"), ("box", "box_cores"), ("client", "client_cores")):
            x[name] = round((s[k] - prev[k]) / (s["t1"] - s["t0"]), 3)
        prev = s
        series.append(x)
    idx = {"warmup": [], "before": [], "during": [], "after": []}
    for i, s in enumerate(load.slices):
        if i < a.warmup:
            idx["warmup"].append(i)
        elif s["t1"] <= t_post:
            idx["before"].append(i)
        elif s["t0"] < t_done:
            idx["during"].append(i)
        else:
            idx["after"].append(i)
    for k, ix in idx.items():
        for i in ix:
            series[i]["window"] = k
    # the servers' fencing lines, each put in the slice during which it was written
    fence_events = []
    for n, end in log_ends.items():
        for off, line in log_events(os.path.join(tmp, n, "server.log"), end):
            where = "before the load"
            if off >= logs_base.get(n, 0):
                where = "after the last slice"
                for s, x in zip(load.slices, series):
                    if off < s["logs"].get(n, 0):
                        where = f"slice t={x['t']:.2f} ({x.get('window', '?')})"
                        break
            fence_events.append(f"{n}: {where}: {line}")
    windows = {}
    for k in ("before", "during", "after"):
        ix = idx[k]
        if not ix:
            windows[k] = None
            continue
        cpu0 = load.slices[ix[0] - 1]["cpu"] if ix[0] > 0 else cpu_base
        windows[k] = window([series[i] for i in ix], cpu0, load.slices[ix[-1]]["cpu"],
                            load.slices[ix[0]]["t0"], load.slices[ix[-1]]["t1"])
    ratios = {}
    b = windows["before"]
    for k in ("during", "after"):
        w = windows[k]
        if b and w:
            ratios[k] = {m: (round(w[m] / b[m], 4) if b[m] else None)
                         for m in ("ops_per_sec", "hit_rate", "get_p50_us", "get_p99_us",
                                   "set_p50_us", "set_p99_us", "server_cpu_cores",
                                   "box_cpu_cores")}
    holds = [int(m.group(5)) for m in HOLD_RE.finditer(log)]
    during_acked = {k: v for k, v in writer.acked.items() if t_post <= v[1] <= t_done}
    lost_keys = sorted({k for ks in lost.values() for k in ks})
    bf = {}
    for n, st in repl.items():
        for k, v in st.items():
            if "backfill_max_hold_us" in k or "backfill_steps" in k:
                bf.setdefault(n, {})[k] = int(v) if v.isdigit() else v
    max_hold = [v for d in bf.values() for k, v in d.items()
                if "backfill_max_hold_us" in k and isinstance(v, int)]
    steps = [v for d in bf.values() for k, v in d.items()
             if "backfill_steps" in k and isinstance(v, int)]
    warns = [l for l in log.splitlines() if re.search(r" (WARN|ERR|ERROR|CRIT) ", l)]
    out = {
        "setup": {"servers_before": 4, "servers_after": 5, "replicas": 1, "buckets": 1024,
                  "items": keys_per * 4, "value": a.value, "memory_mb": a.memory,
                  "server_threads": a.server_threads, "rate": a.rate,
                  "mix": "90% get / 10% set", "clients": "4 mcload, one per original server, "
                  f"{a.conns} conns each, {a.slice:g}-s slices", "capacity_ops": capacity,
                  "prefill_s": round(prefill_s, 1), "prefill_copies": prefill_rounds, "items_held_before": items,
                  "items_held_after": final_items, "writer_rate": a.writer_rate},
        "rebalance": {"seconds": round(t_done - t_post, 2), "state": rb["state"],
                      "buckets_moved": rb["buckets_done"], "buckets_total": rb["buckets_total"],
                      "failed": rb["failed"], "bytes_moved": rb["bytes_moved"],
                      "coordinator_elapsed_s": rb["elapsed_s"],
                      "buckets_per_s": round(rb["buckets_done"] / (t_done - t_post), 2),
                      "mb_per_s": round(rb["bytes_moved"] / 1e6 / (t_done - t_post), 2),
                      "t_post": round(t_post - t_base, 2), "t_done": round(t_done - t_base, 2),
                      "final_actives": {s["name"]: s["actives"]
                                        for s in final_status["servers"]},
                      "final_replicas": {s["name"]: s["replicas"]
                                         for s in final_status["servers"]}},
        "windows": windows,
        "ratios_vs_before": ratios,
        "writes_held_ms": {"moves": len(holds), "p50": pct(holds, 50), "p99": pct(holds, 99),
                           "max": max(holds) if holds else None},
        "backfill": {"backfill_max_hold_us": max(max_hold) if max_hold else None,
                     "backfill_steps": sum(steps) if steps else None,
                     "per_server": bf or None,
                     "note": None if bf else "the servers do not report backfill_max_hold_us "
                     "/ backfill_steps in `stats replication`"},
        "writer": {"acked": len(writer.acked), "acked_during_move": len(during_acked),
                   "errors": len(writer.errors),
                   "error_samples": [f"t={t - t_base:.2f} {e}" for t, e in writer.errors[:10]],
                   "lost": len(lost_keys), "lost_during_move":
                   len([k for k in lost_keys if k in during_acked]),
                   "lost_samples": lost_keys[:10],
                   "lost_by_server": {p: len(ks) for p, ks in lost.items()}},
        "client_problems": load.problems[:20],
        "client_problem_count": len(load.problems),
        "coordinator_warnings": warns[:20],
        "server_fencing": fence_events[:40],
        "stats_cluster": {"prefill": counter_delta(cc_start, cc_prefilled),
                          "calibration": counter_delta(cc_prefilled, cc_load),
                          "load_and_move": counter_delta(cc_load, cc_end),
                          "heartbeat_gap_max_ms": {n: v.get("heartbeat_gap_max_ms")
                                                   for n, v in cc_end.items()}},
        "loadavg": {"start": loadavg_start, "end": loadavg_end},
        "series": series,
        "rebalance_polls": polls[::max(1, len(polls) // 200)],
        "total_s": round(time.monotonic() - t_start, 1),
        "tmpdir": tmp,
    }
    show = {k: v for k, v in out.items() if k not in ("series", "rebalance_polls")}
    print(json.dumps(show, indent=1))
    print("per second: t window ops/s hit% get_p99_us set_p99_us cores: servers clients box")
    for s in series:
        hr = f"{100 * s['hit_rate']:.3f}" if s["hit_rate"] is not None else "-"
        print(f"  {s['t']:7.2f} {s['window']:7s} {s['ops_per_sec']:9,.0f} {hr:>8s} "
              f"{s['get_p99_us'] or 0:9.0f} {s['set_p99_us'] or 0:9.0f} {s['cpu_cores']:.2f} "
              f"{s['client_cores']:.2f} {s['box_cores']:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if a.plot:
        plot(out, a.plot)
    return out


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    main()
