#!/usr/bin/python3
"""Managed mode's cost, side by side (doc/performance.md, "Managed mode"):

  standalone     this server without managed options
  managed-local  one managed server whose map makes every bucket active here
  forwarded      two managed servers; the client talks to A, every bucket is active on B

Each workload runs on the three set-ups in turn (A B C, A B C, ...), servers pinned to CPU 0
(both of the forwarded pair), mcload on CPU 1. Also instructions per request (callgrind) for
standalone and managed-local. Standard library only; re-run: bench/managed.py [--reps N]."""

import argparse
import hashlib
import hmac
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

SECRET = b"bench-cluster-secret-0123456789"
WORKLOADS = {
    "get90_32B": ["-r", "9:1", "-v", "32", "-c", "8"],
    "get90_32B_p16": ["-r", "9:1", "-v", "32", "-c", "8", "-d", "16"],
}


def control(port, lines, tls_context=None):
    """Authenticates and installs each map text; over peer TLS with tls_context (a client
    context with the cluster's certificate, offering ALPN mcm-peer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if tls_context is not None:
        s = tls_context.wrap_socket(s)
    f = s.makefile("rb")
    s.sendall(b"cluster auth\r\n")
    nonce = f.readline().split()[1]
    s.sendall(b"cluster auth " + hmac.new(SECRET, nonce, hashlib.sha256).hexdigest().encode() +
              b"\r\n")
    assert f.readline() == b"OK\r\n"
    for text in lines:
        s.sendall(b"cluster setmap %d\r\n" % len(text) + text.encode() + b"\r\n")
        line = f.readline()
        assert line == b"OK\r\n", line
    s.close()


def secret_file(prefix):
    """A temporary file holding SECRET, for the servers' -o cluster_secret_file."""
    path = os.path.join(tempfile.mkdtemp(prefix=prefix), "secret")
    with open(path, "wb") as f:
        f.write(SECRET)
    return path


def alternate(kinds, workloads, reps, run_one, describe):
    """Runs every workload on every kind in turn (A B, A B, ...), reps times, printing
    describe(result) for each run. Returns {workload: {kind: [result, ...]}}."""
    runs = {w: {k: [] for k in kinds} for w in workloads}
    for rep in range(reps):
        for w in workloads:
            for k in kinds:
                r = run_one(k, w)
                runs[w][k].append(r)
                print(f"  rep {rep + 1} {w:16s} {k:14s} {describe(r)}", flush=True)
    return runs


def managed(secret_path, name, wrapper=()):
    return compare.Server("ours", extra=["-o", f"node_id={name},cluster_secret_file={secret_path},"
                                               "no_lru_crawler"], wrapper=wrapper)


def setup(kind, secret_path, wrapper=()):
    """Returns (servers, port the client uses)."""
    if kind == "standalone":
        s = compare.Server("ours", extra=["-o", "no_lru_crawler"], wrapper=wrapper)
        return [s], s.port
    if kind == "managed-local":
        s = managed(secret_path, "a", wrapper)
        control(s.port, [f"MAP 1 1024\r\nNODE a 127.0.0.1:{s.port}\r\nRANGE 0 1023 a\r\nEND\r\n"])
        return [s], s.port
    a, b = managed(secret_path, "a"), managed(secret_path, "b")
    text = (f"MAP 1 1024\r\nNODE a 127.0.0.1:{a.port}\r\nNODE b 127.0.0.1:{b.port}\r\n"
            "RANGE 0 1023 b\r\nEND\r\n")
    control(a.port, [text])
    control(b.port, [text])
    return [a, b], a.port


def run(kind, name, duration, secret_path):
    servers, port = setup(kind, secret_path)
    try:
        compare.mcload(port, ["-F", "-k", str(compare.KEYS), "-v", "32"])
        cpu0 = sum(s.cpu_seconds() for s in servers)
        res = compare.mcload(port, WORKLOADS[name] + ["-k", str(compare.KEYS), "-D",
                                                      str(duration), "-w", "0.5"])
        cpu = sum(s.cpu_seconds() for s in servers) - cpu0
        ops = res["ops_per_sec"] * (res["seconds"] + 0.5)
        res["cpu_us"] = cpu * 1e6 / ops if ops else 0
        return res
    finally:
        for s in servers:
            s.stop()


def instructions(kind, depth, secret_path, n=20000):
    totals = []
    for count in (n, 2 * n):
        out = tempfile.mktemp(prefix="cg.", suffix=".out")
        wrapper = ["prlimit", "--nofile=1036:1036", "valgrind", "--tool=callgrind",
                   f"--callgrind-out-file={out}"]
        servers, port = setup(kind, secret_path, wrapper)
        try:
            compare.mcload(port, ["-F", "-k", "1000", "-v", "32"])
            compare.mcload(port, ["-r", "9:1", "-v", "32", "-k", "1000", "-c", "4", "-d",
                                  str(depth), "-n", str(count // 4)])
        finally:
            for s in servers:
                s.stop()
        with open(out) as f:
            m = re.search(r"^(?:summary|totals):\s+(\d+)", f.read(), re.M)
        os.unlink(out)
        totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--skip-profile", action="store_true")
    a = ap.parse_args()
    secret_path = secret_file("mcm-managed")
    kinds = ["standalone", "managed-local", "forwarded"]
    runs = alternate(kinds, WORKLOADS, a.reps,
                     lambda k, w: run(k, w, a.duration, secret_path),
                     lambda r: f"{r['ops_per_sec']:>12,.0f} ops/s  "
                               f"p50 {r['latency_us']['p50']:.0f} "
                               f"p99 {r['latency_us']['p99']:.0f} us  "
                               f"cpu {r['cpu_us']:.2f} us/req")
    print()
    print(f"{'workload':16s} {'managed/standalone':>20s} {'forwarded/standalone':>22s}")
    for w in WORKLOADS:
        base = [r["ops_per_sec"] for r in runs[w]["standalone"]]
        for k in ("managed-local", "forwarded"):
            ratios = [x["ops_per_sec"] / b for x, b in zip(runs[w][k], base)]
            runs[w][k + "_ratio"] = (statistics.median(ratios), min(ratios), max(ratios))
        ml, fw = runs[w]["managed-local_ratio"], runs[w]["forwarded_ratio"]
        print(f"{w:16s} {ml[0]:>9.3f}x ({ml[1]:.3f}-{ml[2]:.3f}) {fw[0]:>9.3f}x "
              f"({fw[1]:.3f}-{fw[2]:.3f})")
        for k in kinds:
            rs = runs[w][k]
            print(f"   {k:14s} median {statistics.median(r['ops_per_sec'] for r in rs):>12,.0f} "
                  f"ops/s  p99 {statistics.median(r['latency_us']['p99'] for r in rs):.0f} us  "
                  f"cpu {statistics.median(r['cpu_us'] for r in rs):.2f} us/req")
    if not a.skip_profile:
        for depth in (1, 16):
            s = instructions("standalone", depth, secret_path)
            m = instructions("managed-local", depth, secret_path)
            print(f"instructions/request depth {depth}: standalone {s:.0f}, managed-local "
                  f"{m:.0f} ({m / s:.3f}x)")


if __name__ == "__main__":
    main()
