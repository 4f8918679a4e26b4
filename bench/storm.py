#!/usr/bin/python3
"""The cache-miss storm (doc/failover.md): N servers behind stock clients, one killed under
load, side by side with Debian's memcached.

Application threads each use pymemcache's HashClient exactly as an application would (its
default hashing, ignore_exc=True, short timeouts, no knowledge of buckets) and read through:
`get`; on a miss, ask a database stand-in (fixed time per query, queries counted per second),
then `set` with a TTL. Keys follow Zipf(s) over K keys at a steady request rate; the cache is
pre-warmed so the curves are flat before the fault. At --fault-at the busiest server (by the
clients' own hashing) is killed with SIGKILL (--fault kill), paused with SIGSTOP (--fault
stop, resumed with SIGCONT at --restart-at) or killed and started again on its port at
--restart-at (--fault restart).

A probe writer updates 200 keys of its own (acknowledged sets) all run long and a reader
reads them back every second: a value older than the newest acknowledged one is stale.

Set-ups, one after another with the same keys and seeds: memcached (Debian's, the baseline),
standalone (this server, plain), managed (this server, managed mode, mc-coordinator, one
replica). Per second: hit rate, database queries, client errors, get p50/p99, stale probe
reads; a summary per set-up; a PNG plot and JSON.

Re-run: bench/storm.py [--fault kill|stop|restart] [--memory-full] [--out DIR]
Standard library plus Debian's python3-pymemcache and python3-matplotlib."""

import argparse
import bisect
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(TOP, "t", "lib"))
import mc  # noqa: E402
from pymemcache.client.hash import HashClient  # noqa: E402

SECRET = b"storm-cluster-secret-0123456789\n"
PROBES = 200


# --- the workload ---------------------------------------------------------------------------

class Zipf:
    """Ranks 0..n-1 with P(rank r) proportional to 1 / (r + 1)^s, drawn by inverse CDF."""

    def __init__(self, n, s):
        w = [1.0 / (r + 1) ** s for r in range(n)]
        total = sum(w)
        self.p = [x / total for x in w]
        self.cdf = []
        acc = 0.0
        for x in self.p:
            acc += x
            self.cdf.append(acc)

    def draw(self, rnd):
        return min(bisect.bisect_left(self.cdf, rnd.random()), len(self.cdf) - 1)


def key_names(n, seed):
    """Rank -> key; a seeded shuffle so that hot keys land on every server."""
    ids = list(range(n))
    random.Random(seed).shuffle(ids)
    return [f"key:{i}" for i in ids]


def value_of(key, size):
    base = f"v:{key}:"
    return (base + "x" * max(0, size - len(base))).encode()


class Database:
    """The database behind the cache: each query takes a fixed time; queries are counted per
    second of the run."""

    def __init__(self, query_ms, seconds):
        self.query_s = query_ms / 1000.0
        self.lock = threading.Lock()
        self.per_second = [0] * seconds
        self.t0 = None

    def query(self, key, size):
        time.sleep(self.query_s)
        if self.t0 is not None:
            s = int(time.monotonic() - self.t0)
            if 0 <= s < len(self.per_second):
                with self.lock:
                    self.per_second[s] += 1
        return value_of(key, size)


def count_errors(hc, counter):
    """Count the exceptions the underlying clients raise (HashClient's ignore_exc turns them
    into misses and False): wrap each client's get and set."""
    for cl in hc.clients.values():
        for name in ("get", "set"):
            fn = getattr(cl, name)

            def wrapped(*a, _fn=fn, **kw):
                try:
                    return _fn(*a, **kw)
                except Exception as e:
                    counter.add(type(e).__name__)
                    raise
            setattr(cl, name, wrapped)


class Counter:
    def __init__(self, seconds, t0_ref):
        self.per_second = [0] * seconds
        self.kinds = {}
        self.lock = threading.Lock()
        self.t0_ref = t0_ref

    def add(self, kind=""):
        t0 = self.t0_ref()
        if t0 is None:
            return
        s = int(time.monotonic() - t0)
        if 0 <= s < len(self.per_second):
            with self.lock:
                self.per_second[s] += 1
                self.kinds[kind] = self.kinds.get(kind, 0) + 1


def hash_client(ports, timeout):
    return HashClient([("127.0.0.1", p) for p in ports], ignore_exc=True,
                      connect_timeout=timeout, timeout=timeout)


class Run:
    """The application: reader threads at a steady rate, the probe writer and reader."""

    def __init__(self, a, ports, keys, zipf, victim_port):
        self.a = a
        self.ports = ports
        self.keys = keys
        self.zipf = zipf
        self.seconds = a.duration
        self.t0 = None
        self.stop_ev = threading.Event()
        self.db = Database(a.db_ms, self.seconds)
        self.errors = Counter(self.seconds, lambda: self.t0)
        self.victim = f"127.0.0.1:{victim_port}"
        n = self.seconds
        # per thread: [second] -> [gets, hits, victim gets, victim hits], latencies
        self.stats = [[[0, 0, 0, 0] for _ in range(n)] for _ in range(a.threads)]
        self.lat = [[[] for _ in range(n)] for _ in range(a.threads)]
        self.stale = [0] * n
        self.probe_missing = [0] * n
        self.acked = [0] * PROBES
        self.acked_lock = threading.Lock()
        self.behind = 0
        self.owner_of = {}

    def client(self):
        hc = hash_client(self.ports, self.a.timeout)
        count_errors(hc, self.errors)
        return hc

    def reader(self, i):
        rnd = random.Random(self.a.seed * 1000 + i)
        hc = self.client()
        interval = self.a.threads / self.a.rate
        nxt = time.monotonic() + rnd.random() * interval
        size = self.a.value_size
        for _ in range(10 ** 8):
            if self.stop_ev.is_set():
                break
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            elif now - nxt > 1.0:  # more than a second behind: drop the backlog
                self.behind += 1
                nxt = now
            nxt += interval
            key = self.keys[self.zipf.draw(rnd)]
            t_start = time.monotonic()
            v = hc.get(key)
            t_end = time.monotonic()
            if v is None:
                hc.set(key, self.db.query(key, size), expire=self.a.ttl)
            if self.t0 is None:
                continue
            s = int(t_start - self.t0)
            if not 0 <= s < self.seconds:
                continue
            row = self.stats[i][s]
            row[0] += 1
            hit = v is not None
            row[1] += hit
            if self.owner_of.get(key) == self.victim:
                row[2] += 1
                row[3] += hit
            self.lat[i][s].append(t_end - t_start)

    def probe_writer(self):
        hc = self.client()
        for n in range(1, 10 ** 8):
            if self.stop_ev.wait(0.02):
                break
            j = n % PROBES
            if hc.set(f"probe:{j}", str(n).encode(), expire=0, noreply=False):
                with self.acked_lock:
                    self.acked[j] = max(self.acked[j], n)

    def probe_reader(self):
        hc = self.client()
        names = [f"probe:{j}" for j in range(PROBES)]
        for _ in range(10 ** 6):
            if self.stop_ev.wait(0.5):
                break
            with self.acked_lock:
                before = list(self.acked)
            got = {}
            for k in names:  # one by one: get_many would hide which server failed
                v = hc.get(k)
                if v is not None:
                    got[k] = int(v)
            if self.t0 is None:
                continue
            s = int(time.monotonic() - self.t0)
            if not 0 <= s < self.seconds:
                continue
            for j, k in enumerate(names):
                if before[j] == 0:
                    continue
                if k not in got:
                    self.probe_missing[s] += 1
                elif got[k] < before[j]:
                    self.stale[s] += 1

    def start(self):
        self.threads = [threading.Thread(target=self.reader, args=(i,), daemon=True)
                        for i in range(self.a.threads)]
        self.threads.append(threading.Thread(target=self.probe_writer, daemon=True))
        self.threads.append(threading.Thread(target=self.probe_reader, daemon=True))
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)

    def series(self):
        out = []
        for s in range(self.seconds):
            gets = sum(self.stats[i][s][0] for i in range(self.a.threads))
            hits = sum(self.stats[i][s][1] for i in range(self.a.threads))
            vg = sum(self.stats[i][s][2] for i in range(self.a.threads))
            vh = sum(self.stats[i][s][3] for i in range(self.a.threads))
            lat = sorted(x for i in range(self.a.threads) for x in self.lat[i][s])
            out.append({
                "t": s, "gets": gets, "hits": hits,
                "hit_rate": hits / gets if gets else None,
                "victim_gets": vg, "victim_hit_rate": vh / vg if vg else None,
                "db_queries": self.db.per_second[s], "errors": self.errors.per_second[s],
                "get_p50_ms": pct(lat, 50) * 1000 if lat else None,
                "get_p99_ms": pct(lat, 99) * 1000 if lat else None,
                "stale": self.stale[s], "probe_missing": self.probe_missing[s],
            })
        return out


def pct(xs, p):
    """xs sorted."""
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# --- the summary (pure: tested by t/cluster/test_storm.py) ----------------------------------

def summarize(series, fault_at, window=30, before=8):
    """Figures of one set-up from its per-second series (dicts with gets, hits, db_queries,
    errors, victim_gets, victim_hit_rate, stale).

    before: the seconds [fault_at - before, fault_at); after: [fault_at, fault_at + window).
    hit_rate_after_ratio: hits / gets over the window, divided by the rate before.
    lowest_second: the lowest per-second hit rate in the window.
    db_avg_ratio, db_peak_ratio: database queries per second over the window (average and
    highest second) divided by the average before.
    recovery_s: seconds from the fault until the hit rate is back within 2 points of before
    and stays there to the end of the window (0: it never left; None: it never came back).
    victim_served_s: seconds from the fault to the end of the first second in which the dead
    server's share of keys (by the clients' hashing) is hit at >= 90% of its rate before."""
    pre = [r for r in series if fault_at - before <= r["t"] < fault_at]
    post = [r for r in series if fault_at <= r["t"] < fault_at + window]
    if not pre or not post:
        raise ValueError("the series does not cover the window")
    g0, h0 = sum(r["gets"] for r in pre), sum(r["hits"] for r in pre)
    g1, h1 = sum(r["gets"] for r in post), sum(r["hits"] for r in post)
    rate0 = h0 / g0 if g0 else 0.0
    rate1 = h1 / g1 if g1 else 0.0
    db0 = sum(r["db_queries"] for r in pre) / len(pre)
    db1 = sum(r["db_queries"] for r in post) / len(post)
    dbpeak = max(r["db_queries"] for r in post)
    rates = [(r["t"], r["hits"] / r["gets"] if r["gets"] else 0.0) for r in post]
    lowest = min(x for _, x in rates)
    recovery = None
    for k in range(len(rates)):
        if all(x >= rate0 - 0.02 for _, x in rates[k:]):
            recovery = rates[k][0] - fault_at
            break
    vg0 = sum(r["victim_gets"] for r in pre)
    vrate0 = (sum(r["victim_hit_rate"] * r["victim_gets"] for r in pre if r["victim_gets"])
              / vg0) if vg0 else None
    served = None
    if vrate0:
        for r in post:
            if r["victim_gets"] and r["victim_hit_rate"] >= 0.9 * vrate0:
                served = r["t"] + 1 - fault_at
                break
    ratio = lambda x, y: x / y if y else None  # noqa: E731
    return {
        "hit_rate_before": rate0, "hit_rate_after": rate1,
        "hit_rate_after_ratio": ratio(rate1, rate0), "lowest_second": lowest,
        "db_before_per_s": db0, "db_after_per_s": db1,
        "db_avg_ratio": ratio(db1, db0 if db0 >= 1 else 1.0),
        "db_peak_ratio": ratio(dbpeak, db0 if db0 >= 1 else 1.0),
        "recovery_s": recovery, "victim_served_s": served,
        "errors_after": sum(r["errors"] for r in post),
        "errors_before": sum(r["errors"] for r in pre),
        "stale_reads": sum(r.get("stale", 0) for r in series),
    }


# --- the set-ups ----------------------------------------------------------------------------

class Cluster:
    """N server processes of one set-up (and the coordinator for managed)."""

    def __init__(self, kind, a, tmp):
        self.kind = kind
        self.a = a
        self.tmp = os.path.join(tmp, kind)
        os.makedirs(self.tmp)
        self.secret = os.path.join(self.tmp, "secret")
        with open(self.secret, "wb") as f:
            f.write(SECRET)
        self.names = [f"n{i}" for i in range(a.servers)]
        self.servers = {n: self.start(n) for n in self.names}
        self.coord = None
        if kind == "managed":
            from coord import Coordinator, wait_settled
            self.coord = Coordinator(os.path.join(self.tmp, "coord"), self.secret,
                                     sorted(self.servers.items()), buckets=a.buckets,
                                     replicas=1, extra=a.coord_arg)
            wait_settled(self.coord, 1, self.names, timeout=60)

    def binary(self):
        if self.kind == "memcached":
            return self.a.memcached
        return self.a.binary

    def start(self, name, port=None):
        d = os.path.join(self.tmp, f"{name}-{time.monotonic_ns()}")
        os.makedirs(d)
        args = ["-m", str(self.a.memory), "-t", str(self.a.server_threads)]
        if port:
            args += ["-p", str(port)]
        if self.kind == "managed":
            args += ["-o", f"node_id={name},cluster_secret_file={self.secret},"
                           f"buckets={self.a.buckets}"]
            args += self.a.managed_arg
        return mc.Server(d, args=args, binary=self.binary())

    def ports(self):
        return [self.servers[n].port for n in self.names]

    def restart(self, name):
        port = self.servers[name].port
        self.servers[name].stop()
        self.servers[name] = self.start(name, port=port)

    def stop(self):
        if self.coord:
            self.coord.stop()
        for s in self.servers.values():
            if s.alive():
                try:
                    os.kill(s.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
            s.stop()


def prewarm(ports, keys, zipf, a):
    """The cache as the read-through load leaves it in its steady state: a key read at rate
    L (requests per second) with TTL T is cached a share L*T / (1 + L*T) of the time, and a
    cached key's remaining TTL is uniform over (0, T]. Fill each key with that probability
    and such a TTL, so the curves are flat from the start."""
    rnd = random.Random(a.seed + 7)
    by_ttl = {}
    for r, k in enumerate(keys):
        lt = zipf.p[r] * a.rate * a.ttl
        if rnd.random() < lt / (1 + lt):
            by_ttl.setdefault(rnd.randint(1, a.ttl), []).append(k)
    hc = hash_client(ports, a.timeout)
    filled = 0
    for ttl, ks in sorted(by_ttl.items()):
        for i in range(0, len(ks), 500):
            hc.set_many({k: value_of(k, a.value_size) for k in ks[i:i + 500]}, expire=ttl,
                        noreply=False)
        filled += len(ks)
    hc.close()
    return filled


def hot_presence(cl, keys, victim_name):
    """For the managed set-up, just before the fault: of the hottest 1% and 10% of keys whose
    bucket is active on the victim, the share present on the bucket's replica (and, for
    comparison, on the victim itself: with memory full it does not hold them all either)."""
    import zlib
    from cluster import dump_keys
    from coord import parse_map
    m = parse_map(cl.coord.map_text())
    n = len(m["active"])
    out = {}
    held = {}
    for frac in (0.01, 0.10):
        top = keys[:max(1, int(len(keys) * frac))]
        mine = [k for k in top if m["active"][zlib.crc32(k.encode()) % n] == victim_name]
        present = on_active = 0
        for k in mine:
            b = zlib.crc32(k.encode()) % n
            if not m["replicas"][b]:
                continue
            for who in (m["replicas"][b][0], victim_name):
                if (b, who) not in held:
                    held[(b, who)] = dump_keys(cl.servers[who], [b],
                                               SECRET.rstrip(b"\n"))
            present += k.encode() in held[(b, m["replicas"][b][0])]
            on_active += k.encode() in held[(b, victim_name)]
        out[f"top{int(frac * 100)}pct"] = {"keys": len(mine),
                                            "on_replica": present / len(mine) if mine else None,
                                            "on_active": on_active / len(mine) if mine else None}
    return out


def run_setup(kind, a, tmp, keys, zipf):
    print(f"--- {kind} ---", flush=True)
    cl = Cluster(kind, a, tmp)
    run = None
    try:
        ports = cl.ports()
        filled = prewarm(ports, keys, zipf, a)
        print(f"  pre-warmed {filled} of {len(keys)} keys", flush=True)
        # The busiest server by the clients' hashing (Zipf-weighted share of requests).
        hc = hash_client(ports, a.timeout)
        owner = {k: hc.hasher.get_node(k) for k in keys}
        weight = {}
        for r, k in enumerate(keys):
            weight[owner[k]] = weight.get(owner[k], 0.0) + zipf.p[r]
        victim_addr = max(weight, key=weight.get)
        victim_port = int(victim_addr.rsplit(":", 1)[1])
        victim = next(n for n in cl.names if cl.servers[n].port == victim_port)
        run = Run(a, ports, keys, zipf, victim_port)
        run.owner_of = owner
        run.start()
        if a.settle:
            print(f"  settling {a.settle} s under load", flush=True)
            deadline = time.monotonic() + a.settle
            while time.monotonic() < deadline and not run.stop_ev.is_set():
                time.sleep(0.2)
        run.t0 = time.monotonic()
        run.db.t0 = run.t0
        presence = None
        t_fault = run.t0 + a.fault_at
        if kind == "managed" and a.hot_presence:
            time.sleep(max(0.0, t_fault - 2.0 - time.monotonic()))
            presence = hot_presence(cl, keys, victim)
        time.sleep(max(0.0, t_fault - time.monotonic()))
        proc = cl.servers[victim].proc
        if a.fault == "stop":
            os.kill(proc.pid, signal.SIGSTOP)
        else:
            proc.kill()
            proc.wait(timeout=10)
        print(f"  {a.fault} {victim} (port {victim_port}, {weight[victim_addr]:.0%} of "
              f"requests) at t={a.fault_at}", flush=True)
        if a.fault in ("stop", "restart"):
            time.sleep(max(0.0, run.t0 + a.restart_at - time.monotonic()))
            if a.fault == "stop":
                os.kill(proc.pid, signal.SIGCONT)
            else:
                cl.servers[victim] = cl.start(victim, port=victim_port)
            print(f"  {'resumed' if a.fault == 'stop' else 'restarted'} {victim} at "
                  f"t={a.restart_at}", flush=True)
        time.sleep(max(0.0, run.t0 + a.duration - time.monotonic()))
        run.stop()
        series = run.series()
        summary = summarize(series, a.fault_at, window=min(30, a.duration - a.fault_at),
                            before=min(8, a.fault_at - 1))
        summary["victim"] = victim
        summary["victim_share"] = weight[victim_addr]
        summary["fell_behind"] = run.behind
        # A socket error (a reset, a refused connection, a timeout) makes HashClient skip the
        # server for retry_timeout (1 s); other exceptions cost one miss.
        summary["error_kinds"] = dict(run.errors.kinds)
        if presence is not None:
            summary["hot_on_replica"] = presence
        if cl.coord:
            st = cl.coord.status()
            summary["failovers"] = st.get("failovers")
        print("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                 for k, v in summary.items()}), flush=True)
        return {"series": series, "summary": summary}
    finally:
        if run and not run.stop_ev.is_set():
            run.stop()
        cl.stop()


def plot(results, a, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for kind, res in results.items():
        ts = [r["t"] + 0.5 for r in res["series"]]
        ax1.plot(ts, [100 * r["hit_rate"] if r["hit_rate"] is not None else math.nan
                      for r in res["series"]], label=kind, marker=".")
        ax2.plot(ts, [r["db_queries"] for r in res["series"]], label=kind, marker=".")
    for ax in (ax1, ax2):
        ax.axvline(a.fault_at, color="red", linestyle="--", linewidth=1)
        if a.fault in ("stop", "restart"):
            ax.axvline(a.restart_at, color="green", linestyle="--", linewidth=1)
        ax.grid(True, alpha=0.3)
    ax1.set_ylabel("hit rate (%)")
    ax2.set_ylabel("database queries / s")
    ax2.set_xlabel("seconds (red: %s of the busiest server%s)" % (
        {"kill": "kill -9", "stop": "SIGSTOP", "restart": "kill -9"}[a.fault],
        {"kill": "", "stop": "; green: SIGCONT", "restart": "; green: restarted"}[a.fault]))
    ax1.legend()
    ax1.set_title(f"{a.servers} servers, {a.rate} gets/s, Zipf({a.zipf}) over {a.keys} keys, "
                  f"-m {a.memory}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", default="memcached,standalone,managed")
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--server-threads", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8, help="application threads")
    ap.add_argument("--rate", type=float, default=2000, help="gets per second, all threads")
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--zipf", type=float, default=0.99)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--ttl", type=int, default=600,
                    help="TTL of the fills (600 s: about 94%% hits at the defaults)")
    ap.add_argument("--db-ms", type=float, default=2.0, help="time per database query")
    ap.add_argument("--timeout", type=float, default=0.25, help="client timeouts, seconds")
    ap.add_argument("--memory", type=int, default=64, help="-m of each server")
    ap.add_argument("--memory-full", action="store_true",
                    help="-m 8 and 400,000 keys of 200 bytes: the working set is several "
                         "times the memory; 180 s of load before the recording")
    ap.add_argument("--buckets", type=int, default=1024)
    ap.add_argument("--fault", choices=("kill", "stop", "restart"), default="kill")
    ap.add_argument("--fault-at", type=int, default=10)
    ap.add_argument("--restart-at", type=int, default=25)
    ap.add_argument("--duration", type=int, default=40)
    ap.add_argument("--settle", type=float, default=0, help="seconds of load before t=0")
    ap.add_argument("--hot-presence", action="store_true",
                    help="managed: measure the hottest keys' presence on the replicas")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--memcached", default="/usr/bin/memcached", help="the baseline's binary")
    ap.add_argument("--binary", default=os.path.join(TOP, "memcached"), help="this server")
    ap.add_argument("--coord-arg", action="append", default=[],
                    help="an extra mc-coordinator argument (repeatable)")
    ap.add_argument("--managed-arg", action="append", default=[],
                    help="an extra argument of the managed servers (repeatable), e.g. "
                         "--managed-arg=-o --managed-arg=repl_hint_rate=0")
    ap.add_argument("--label", default="", help="a suffix for the output files' names")
    ap.add_argument("--out", default=None, help="directory for storm-<fault>.json and .png")
    a = ap.parse_args(argv)
    if a.memory_full:
        a.memory = 8
        a.keys = max(a.keys, 400000)
        a.value_size = max(a.value_size, 200)
        a.settle = a.settle or 180
        a.hot_presence = True
    return a


def main(argv=None):
    a = parse_args(argv)
    keys = key_names(a.keys, a.seed)
    zipf = Zipf(a.keys, a.zipf)
    tmp = tempfile.mkdtemp(prefix="mcm-storm-")
    results = {}
    for kind in a.setups.split(","):
        results[kind] = run_setup(kind, a, tmp, keys, zipf)
    out = {"args": vars(a), "results": results}
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        name = f"storm-{a.fault}{'-full' if a.memory_full else ''}{a.label}"
        with open(os.path.join(a.out, name + ".json"), "w") as f:
            json.dump(out, f, indent=1)
        plot(results, a, os.path.join(a.out, name + ".png"))
        print(f"wrote {a.out}/{name}.json and .png")
    print("\n%-11s %8s %8s %8s %8s %8s %8s %8s %6s" % (
        "set-up", "hit0", "after/0", "lowest", "db avg", "db peak", "recov s", "served s",
        "errors"))
    for kind, res in results.items():
        s = res["summary"]
        f = lambda x, fmt="%.3f": (fmt % x) if x is not None else "-"  # noqa: E731
        print("%-11s %8s %8s %8s %8s %8s %8s %8s %6d" % (
            kind, f(s["hit_rate_before"]), f(s["hit_rate_after_ratio"]), f(s["lowest_second"]),
            f(s["db_avg_ratio"], "%.2fx"), f(s["db_peak_ratio"], "%.1fx"),
            f(s["recovery_s"], "%d"), f(s["victim_served_s"], "%d"), s["errors_after"]))
    return out


if __name__ == "__main__":
    main()
