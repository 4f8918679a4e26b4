#!/usr/bin/python3
"""Replication's cost, side by side (doc/performance.md, "Replication"):

  none          one managed server, every bucket active on it, no replicas in the map
  one-replica   the same server with a second one as every bucket's replica

Write-heavy workloads run on both set-ups in turn (A B, A B, ...). The active is pinned to
CPU 0, mcload to CPU 1, and the replica to CPU 1 too: in production it is another machine, and
here its apply work can only slow the client, never flatter the replicated case. The
active's CPU time per request is measured as well. Then the lag: writes paced at 70% of the one-replica peak write rate, and the
active's `stats replication` record lag (write to acknowledgement) p50/p99 over the run.
Standard library only; re-run: bench/replication.py [--reps N] [--duration S] [--only W ...]
[--no-lag]. Environment: REPLICA_CPU puts the replica on another CPU (default: the client's);
REPL_EXTRA appends -o options to both servers (e.g. ",repl_backlog_mb=16"). Per request it
reports the active's CPU, split into its workers and its replication thread, and the
replica's CPU."""

import argparse
import os
import socket
import subprocess
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from managed import alternate, control, secret_file  # noqa: E402

WORKLOADS = {
    "get90_100B": ["-r", "9:1", "-v", "100", "-c", "8"],
    "set50_100B": ["-r", "1:1", "-v", "100", "-c", "8"],
    "set100_100B": ["-r", "0:1", "-v", "100", "-c", "8"],
    "set100_100B_p16": ["-r", "0:1", "-v", "100", "-c", "8", "-d", "16"],
}


def node(secret_path, name):
    return compare.Server("ours", extra=["-o", f"node_id={name},cluster_secret_file={secret_path},"
                                               "no_lru_crawler" + os.environ.get("REPL_EXTRA", "")])


def stats(port, group):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    s.sendall(f"stats {group}\r\n".encode())
    out = {}
    for line in iter(f.readline, b"END\r\n"):
        w = line.decode().split()
        out[w[1]] = w[2]
    s.close()
    return out


def setup(kind, secret_path):
    a = node(secret_path, "a")
    if kind == "none":
        control(a.port, [f"MAP 1 1024\r\nNODE a 127.0.0.1:{a.port}\r\nRANGE 0 1023 a\r\nEND\r\n"])
        return [a], a.port
    b = node(secret_path, "b")
    subprocess.run(["taskset", "-a", "-p", "-c", os.environ.get("REPLICA_CPU", compare.CLIENT_CPU), str(b.proc.pid)],
                   check=True, capture_output=True)
    text = (f"MAP 1 1024\r\nNODE a 127.0.0.1:{a.port}\r\nNODE b 127.0.0.1:{b.port}\r\n"
            "RANGE 0 1023 a b\r\nEND\r\n")
    control(a.port, [text])
    control(b.port, [text])
    compare.wait_for(lambda: stats(a.port, "replication").get("link:b:buckets_out_in_sync") ==
                     "1024", timeout=30, what="replica in sync")
    return [a, b], a.port


def stop(servers):
    for s in servers:
        s.stop()


def run(kind, name, duration, secret_path):
    servers, port = setup(kind, secret_path)
    try:
        compare.mcload(port, ["-F", "-k", str(compare.KEYS), "-v", "100"])
        cpu0 = servers[0].cpu_seconds()
        threads0 = [s.thread_cpu_seconds() for s in servers]
        res = compare.mcload(port, WORKLOADS[name] + ["-k", str(compare.KEYS), "-D",
                                                      str(duration), "-w", "0.5"])
        ops = res["ops_per_sec"] * (res["seconds"] + 0.5)
        per = (lambda sec: sec * 1e6 / ops) if ops else (lambda sec: 0)
        res["cpu_us"] = per(servers[0].cpu_seconds() - cpu0)
        a1 = servers[0].thread_cpu_seconds()
        res["worker_us"] = per(a1.get("mc-worker", 0) - threads0[0].get("mc-worker", 0))
        res["repl_us"] = per(a1.get("mc-repl", 0) - threads0[0].get("mc-repl", 0))
        res["replica_us"] = (per(sum(servers[1].thread_cpu_seconds().values()) -
                                 sum(threads0[1].values())) if len(servers) > 1 else 0)
        return res
    finally:
        stop(servers)


def lag(rate, duration, secret_path):
    servers, port = setup("one-replica", secret_path)
    try:
        res = compare.mcload(port, ["-r", "0:1", "-v", "100", "-c", "8", "-k",
                                    str(compare.KEYS), "-D", str(duration), "-R", str(rate)])
        st = compare.wait_for(
            lambda: (lambda s: s if s["link:b:lag_records"] == "0" else None)(
                stats(port, "replication")), timeout=30, what="replica drained")
        # that snapshot of the figures already counts every acknowledgement
        return res, int(st["link:b:lag_p50_us"]), int(st["link:b:lag_p99_us"])
    finally:
        stop(servers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="these workloads only")
    ap.add_argument("--no-lag", action="store_true", help="skip the lag measurement")
    a = ap.parse_args()
    workloads = {w: WORKLOADS[w] for w in (a.only or WORKLOADS)}
    secret_path = secret_file("mcm-repl")
    runs = alternate(["none", "one-replica"], workloads, a.reps,
                     lambda k, w: run(k, w, a.duration, secret_path),
                     lambda r: f"{r['ops_per_sec']:>12,.0f} ops/s  "
                               f"p50 {r['latency_us']['p50']:.0f} "
                               f"p99 {r['latency_us']['p99']:.0f} us  "
                               f"active cpu {r['cpu_us']:.2f} us/req "
                               f"(workers {r['worker_us']:.2f}, "
                               f"repl thread {r['repl_us']:.2f}), "
                               f"replica {r['replica_us']:.2f}")
    print()
    print(f"{'workload':17s} {'ops/s one-replica/none':>28s} {'active cpu/req':>16s}"
          f" {'workers':>8s} {'repl thr':>9s} {'replica':>8s} (us/req, medians)")
    for w in workloads:
        ratios = [x["ops_per_sec"] / b["ops_per_sec"]
                  for x, b in zip(runs[w]["one-replica"], runs[w]["none"])]
        cpu = [x["cpu_us"] / b["cpu_us"] for x, b in zip(runs[w]["one-replica"], runs[w]["none"])
               if b["cpu_us"]]
        print(f"{w:17s} {statistics.median(ratios):>11.3f}x ({min(ratios):.3f}-{max(ratios):.3f})"
              f" {statistics.median(cpu):>10.3f}x"
              f" {statistics.median(r['worker_us'] for r in runs[w]['none']):>5.2f}->"
              f"{statistics.median(r['worker_us'] for r in runs[w]['one-replica']):.2f}"
              f" {statistics.median(r['repl_us'] for r in runs[w]['one-replica']):>6.2f}"
              f" {statistics.median(r['replica_us'] for r in runs[w]['one-replica']):>8.2f}"
              f"   none {statistics.median(r['ops_per_sec'] for r in runs[w]['none']):,.0f}"
              f"  one-replica "
              f"{statistics.median(r['ops_per_sec'] for r in runs[w]['one-replica']):,.0f} ops/s")
    if a.no_lag or "set100_100B" not in workloads:
        return
    peak = statistics.median(r["ops_per_sec"] for r in runs["set100_100B"]["one-replica"])
    rate = int(0.7 * peak)
    res, p50, p99 = lag(rate, max(a.duration, 5.0), secret_path)
    print(f"lag at 70% of the unpipelined peak write rate ({rate:,} sets/s asked, "
          f"{res['ops_per_sec']:,.0f} done): p50 {p50} us, p99 {p99} us "
          f"(write to acknowledgement, bins of 1/4 octave)")


if __name__ == "__main__":
    main()
