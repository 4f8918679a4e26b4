#!/usr/bin/python3
"""Cluster throughput with stock clients (issue 14's benchmark; doc/performance.md).

The same load, from the same clients, against N servers set up four ways, one after another
in one run:

  memcached   Debian's memcached x N, client-side hashing
  standalone  this server x N, client-side hashing
  managed     this server x N in managed mode (mc-coordinator, one replica), the same stock
              clients: they hash keys their own way, so most requests land on a server that
              does not own the key and are forwarded one hop
  aware       managed, with a map-aware client: each key goes straight to its bucket's
              active server (mcload --buckets, the map read from the coordinator)

Client-side hashing is modelled the way a hashing client spreads keys: one mcload per server,
each with a key space of its own (its own prefix), so every key lives on one server and each
server gets 1/N of the load. The map-aware client is one mcload per server whose keys are
exactly those of the buckets active there. Reported per set-up, mix (90% get, 50% set) and
pipeline depth (1, 16): total ops/s, server CPU per request (utime + stime of every server
process over the run, divided by the requests), p50 and p99 (the worst of the N clients'),
the share of requests the servers forwarded, and ratios against memcached. Each set-up is
also driven by real Python applications' clients (bench/pyload.py, --py-procs processes, one
request at a time): pymemcache's HashClient for memcached, standalone and managed, and the
map-aware ClusterClient (clients/python) for aware. Numbers on a
shared 2-CPU machine are noisy: the set-ups run back to back, and the ratios are what to
read.

    bench/cluster.py [--nodes 2 4] [--seconds 5] [--json out.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "t", "lib"))
import mc  # noqa: E402
from coord import Coordinator, parse_map, wait_settled  # noqa: E402

MCLOAD = os.path.join(TOP, "mcload")
OURS = os.path.join(TOP, "memcached")
SECRET = b"bench-cluster-secret-0123456789"
BUCKETS = 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIXES = {"90get": "9:1", "50set": "1:1"}


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            w = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(w[11]) + int(w[12])) / CLK_TCK


def thread_cpu(pid):
    """CPU seconds of a process by thread name (mc-worker, mc-repl, memcached: the main
    thread and what it runs, such as the coordinator's heartbeats)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + cpu_seconds(f"{pid}/task/{t}")
    return out


def stat_cluster(port, key):
    s = mc.Conn(("127.0.0.1", port))
    try:
        return int(s.stats("cluster").get(key, 0))
    finally:
        s.close()


def ranges(buckets):
    """[1, 2, 3, 7] -> "1-3,7" (mcload --buckets)."""
    out, start, prev = [], None, None
    for b in sorted(buckets):
        if start is None:
            start = prev = b
        elif b == prev + 1:
            prev = b
        else:
            out.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = b
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(out)


def run_loads(ports, extra, a, mix, depth, seconds, prefill):
    """One mcload per port (extra[i]: its own key arguments); returns their JSON results."""
    procs = []
    for i, p in enumerate(ports):
        cmd = [MCLOAD, "-s", f"127.0.0.1:{p}", "-t", "1", "-c", str(a.conns), "-d",
               str(depth), "-r", MIXES[mix], "-v", str(a.value), "-D", str(seconds), "-j"]
        cmd += extra[i]
        if prefill:
            cmd = [c for c in cmd if c not in ("-D", str(seconds))] + ["-F"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    out = []
    for p in procs:
        o, e = p.communicate(timeout=seconds * 4 + 300)
        if p.returncode != 0:
            raise RuntimeError(f"mcload failed: {e.decode(errors='replace')}")
        out.append(json.loads(o))
    return out


def summarize(res, setup, ports, mix, depth, cpu, wall, fwd):
    """One row from the clients' JSON results (mcload -j or bench/pyload.py)."""
    reqs = sum(r["gets"] + r["sets"] for r in res)
    return {
        "setup": setup, "nodes": len(ports), "mix": mix, "depth": depth,
        "ops_per_sec": sum(r["ops_per_sec"] for r in res),
        "cpu_us_per_req": cpu / reqs * 1e6 if reqs else None,
        "server_cpu_cores": cpu / wall,
        "p50_us": max(r["latency_us"]["p50"] for r in res),
        "p99_us": max(r["latency_us"]["p99"] for r in res),
        "misses": sum(r["misses"] for r in res),
        "errors": sum(r["errors"] for r in res),
        "forwarded_share": fwd / reqs if reqs else 0.0,
    }


def measure(setup, servers, ports, extra, a):
    """Every mix and depth against one set-up; servers: mc.Server objects (for CPU)."""
    rows = []
    run_loads(ports, extra, a, "90get", 1, 0, prefill=True)
    for mix in MIXES:
        for depth in a.depths:
            fwd0 = sum(stat_cluster(p, "forwarded") for p in ports) if setup in (
                "managed", "aware") else 0
            cpu0 = sum(cpu_seconds(s.proc.pid) for s in servers)
            th0 = [thread_cpu(s.proc.pid) for s in servers]
            t0 = time.monotonic()
            res = run_loads(ports, extra, a, mix, depth, a.seconds, prefill=False)
            wall = time.monotonic() - t0
            cpu = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu0
            threads = {}
            for s, before in zip(servers, th0):
                for name, sec in thread_cpu(s.proc.pid).items():
                    threads[name] = threads.get(name, 0.0) + sec - before.get(name, 0.0)
            fwd = sum(stat_cluster(p, "forwarded") for p in ports) - fwd0 if setup in (
                "managed", "aware") else 0
            reqs = sum(r["gets"] + r["sets"] for r in res)
            row = summarize(res, setup, ports, mix, depth, cpu, wall, fwd)
            row.update({
                "thread_cpu_us_per_req": {k: v / reqs * 1e6 for k, v in threads.items()}
                if reqs else {},
            })
            rows.append(row)
            print(f"{setup:10} N={len(ports)} {mix:5} d={depth:<2} {row['ops_per_sec']:>10,.0f}"
                  f" ops/s  {row['cpu_us_per_req']:6.2f} us CPU/req  p50 {row['p50_us']:7.1f}"
                  f"  p99 {row['p99_us']:8.1f} us  fwd {row['forwarded_share']:.0%}"
                  f"  err {row['errors']}  by thread: " +
                  " ".join(f"{k} {v:.2f}" for k, v in
                           sorted(row["thread_cpu_us_per_req"].items())), flush=True)
    return rows


PYLOAD = os.path.join(TOP, "bench", "pyload.py")


def measure_py(setup, servers, ports, client, a):
    """A Python application's load (bench/pyload.py: pymemcache's HashClient, or the
    map-aware ClusterClient when client == "cluster"), a.py_procs processes, one request at
    a time each, every mix; same columns as measure()."""
    if a.py_procs <= 0:
        return []
    spec = ",".join(f"127.0.0.1:{p}" for p in ports)
    base = ["/usr/bin/python3", PYLOAD, "--client", client, "--servers", spec,
            "--keys", str(a.py_keys), "--value", str(a.value)]
    subprocess.run(base + ["--prefill"], check=True, capture_output=True, timeout=600)
    rows = []
    for mix in MIXES:
        fwd0 = sum(stat_cluster(p, "forwarded") for p in ports) if setup in (
            "managed", "aware") else 0
        cpu0 = sum(cpu_seconds(s.proc.pid) for s in servers)
        t0 = time.monotonic()
        procs = [subprocess.Popen(base + ["--seconds", str(a.seconds), "--mix", MIXES[mix],
                                          "--seed", str(i + 1)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in range(a.py_procs)]
        res = []
        for pr in procs:
            o, e = pr.communicate(timeout=a.seconds * 4 + 300)
            if pr.returncode != 0:
                raise RuntimeError(f"pyload failed: {e.decode(errors='replace')}")
            res.append(json.loads(o.decode().strip().splitlines()[-1]))
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu0
        fwd = sum(stat_cluster(p, "forwarded") for p in ports) - fwd0 if setup in (
            "managed", "aware") else 0
        row = summarize(res, setup, ports, mix, 1, cpu, wall, fwd)
        row["client"] = "ClusterClient" if client == "cluster" else "HashClient"
        rows.append(row)
        print(f"{setup:10} N={len(ports)} {mix:5} {row['client']:13} "
              f"{row['ops_per_sec']:>10,.0f} ops/s  {row['cpu_us_per_req']:6.2f} us CPU/req  "
              f"p50 {row['p50_us']:7.1f}  p99 {row['p99_us']:8.1f} us  "
              f"fwd {row['forwarded_share']:.0%}  err {row['errors']}", flush=True)
    return rows


def plain(binary, n, tmp, a, name):
    servers = []
    try:
        for i in range(n):
            d = os.path.join(tmp, f"{name}{i}")
            os.makedirs(d)
            servers.append(mc.Server(d, binary=binary,
                                     args=["-m", str(a.memory), "-t", str(a.threads)]))
        ports = [s.port for s in servers]
        extra = [["-P", f"c{i}:", "-k", str(a.keys // n)] for i in range(n)]
        return measure(name, servers, ports, extra, a) + measure_py(name, servers, ports,
                                                                    "hash", a)
    finally:
        for s in servers:
            s.stop()


def managed(n, tmp, a):
    secret = os.path.join(tmp, "secret")
    with open(secret, "wb") as f:
        f.write(SECRET)
    servers, coord = {}, None
    try:
        for i in range(n):
            d = os.path.join(tmp, f"m{i}")
            os.makedirs(d)
            servers[f"n{i}"] = mc.Server(
                d, binary=OURS, args=["-m", str(a.memory), "-t", str(a.threads), "-o",
                                      f"node_id=n{i},cluster_secret_file={secret}"])
        coord = Coordinator(os.path.join(tmp, "coord"), secret, sorted(servers.items()),
                            buckets=BUCKETS, replicas=1)
        wait_settled(coord, 1, sorted(servers), timeout=60)
        names = sorted(servers)
        ports = [servers[x].port for x in names]
        procs = [servers[x] for x in names]
        # Stock clients: the same per-server key spaces as the plain set-ups.
        stock = [["-P", f"c{i}:", "-k", str(a.keys // n)] for i in range(n)]
        rows = measure("managed", procs, ports, stock, a)
        rows += measure_py("managed", procs, ports, "hash", a)
        # Map-aware: one key space, each server's client takes the keys of its buckets.
        m = parse_map(coord.map_text())
        aware = []
        for x in names:
            mine = [b for b in range(BUCKETS) if m["active"][b] == x]
            aware.append(["-P", "a:", "-k", str(a.keys), "--buckets",
                          f"{BUCKETS}:{ranges(mine)}"])
        rows += measure("aware", procs, ports, aware, a)
        rows += measure_py("aware", procs, ports, "cluster", a)
        return rows
    finally:
        if coord is not None:
            coord.stop()
        for s in servers.values():
            s.stop()


def table(rows):
    def key(r):  # mcload rows and Python-client rows compare among themselves
        return (r["nodes"], r["mix"], r["depth"], r.get("client", "mcload") != "mcload")

    base = {key(r): r for r in rows if r["setup"] == "memcached"}
    own = {key(r): r for r in rows if r["setup"] == "standalone"}
    lines = ["| N | mix | depth | client | set-up | ops/s | vs memcached | vs standalone | "
             "CPU us/req (vs memcached) | p50 / p99 us | forwarded |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        k = key(r)
        b, s = base.get(k), own.get(k)
        vs = f"{r['ops_per_sec'] / b['ops_per_sec']:.2f}x" if b else "-"
        vo = f"{r['ops_per_sec'] / s['ops_per_sec']:.2f}x" if s else "-"
        cpu = (f"{r['cpu_us_per_req']:.2f} ({r['cpu_us_per_req'] / b['cpu_us_per_req']:.2f}x)"
               if b and b["cpu_us_per_req"] else f"{r['cpu_us_per_req']:.2f}")
        lines.append(f"| {r['nodes']} | {r['mix']} | {r['depth']} | {r.get('client', 'mcload')} | "
                     f"{r['setup']} | "
                     f"{r['ops_per_sec']:,.0f} | {vs} | {vo} | {cpu} | "
                     f"{r['p50_us']:.0f} / {r['p99_us']:.0f} | {r['forwarded_share']:.0%} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[2, 4])
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 16])
    p.add_argument("--conns", type=int, default=8, help="connections per client")
    p.add_argument("--keys", type=int, default=200000)
    p.add_argument("--value", type=int, default=100)
    p.add_argument("--memory", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="server worker threads")
    p.add_argument("--memcached", default="/usr/bin/memcached")
    p.add_argument("--py-procs", type=int, default=4,
                   help="Python client processes (bench/pyload.py); 0: none")
    p.add_argument("--py-keys", type=int, default=20000, help="their key space")
    p.add_argument("--json")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcm-cluster-") as tmp:
        for n in a.nodes:
            d = os.path.join(tmp, f"n{n}")
            os.makedirs(d)
            if os.access(a.memcached, os.X_OK):
                rows += plain(a.memcached, n, d, a, "memcached")
            rows += plain(OURS, n, d, a, "standalone")
            rows += managed(n, d, a)
    print()
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
