#!/usr/bin/python3
"""io_uring beside epoll beside memcached 1.6.18, in one run (doc/performance.md, io_uring).

Three servers, each -t 1 pinned to CPU 0 with the load generator on CPU 1, started fresh for
every run and taken in turn (A B C A B C ...): this server with -o io_engine=epoll, the same
binary with -o io_engine=uring, and Debian's /usr/bin/memcached. Workloads: unpipelined with
many connections, and pipelined. For each: requests/s, requests per server CPU second (the
server's utime+stime from /proc), p99 latency, and system calls per request (perf stat
counting raw_syscalls:sys_enter on every thread of the server during the measured window;
strace -c -f when perf is unavailable, which slows the server down a lot).

    bench/uring.py                        # 3 repetitions of 5 s, medians, bench/uring.json
    bench/uring.py --reps 1 --duration 2  # quick look
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (Server, mcload, pinning)

TOP = compare.TOP
KEYS = 100000
# name -> mcload arguments (one client thread)
WORKLOADS = {
    "unpipelined_50c": ["-r", "9:1", "-v", "32", "-c", "50", "-d", "1"],
    "unpipelined_200c": ["-r", "9:1", "-v", "32", "-c", "200", "-d", "1"],
    "pipelined_8c_d16": ["-r", "9:1", "-v", "32", "-c", "8", "-d", "16"],
    "pipelined_8c_d16_1K": ["-r", "9:1", "-v", "1024", "-c", "8", "-d", "16"],
}
SERVERS = {
    "epoll": ("ours", ["-o", "io_engine=epoll"]),
    "uring": ("ours", ["-o", "io_engine=uring"]),
    "memcached": ("stock", []),
}


class SyscallCounter:
    """Counts the system calls of every thread of pid while running."""

    def __init__(self, pid):
        self.log = tempfile.mktemp(prefix="sysc.")
        self.perf = shutil.which("perf") is not None and self._perf_works()
        if self.perf:
            cmd = ["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", str(pid),
                   "-o", self.log]
        else:
            tids = os.listdir(f"/proc/{pid}/task")
            cmd = ["strace", "-f", "-c", "-o", self.log] + [a for t in tids for a in ("-p", t)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    @staticmethod
    def _perf_works():
        r = subprocess.run(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "true"],
                           capture_output=True, text=True)
        return r.returncode == 0 and "not supported" not in r.stderr

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        with open(self.log) as f:
            text = f.read()
        os.unlink(self.log)
        for ln in text.splitlines():
            f = ln.split(",") if self.perf else ln.split()
            if self.perf and len(f) > 2 and "raw_syscalls:sys_enter" in f[2]:
                return int(f[0])
            if not self.perf and f and f[-1] == "total":
                return int(f[3])
        return None


def run(server, workload, duration):
    kind, extra = SERVERS[server]
    srv = compare.Server(kind, extra)
    try:
        vsize = WORKLOADS[workload][WORKLOADS[workload].index("-v") + 1]
        compare.mcload(srv.port, ["-F", "-k", str(KEYS), "-v", vsize])
        counter = SyscallCounter(srv.proc.pid)
        cpu0 = srv.cpu_seconds()
        t0 = time.monotonic()
        res = compare.mcload(srv.port, WORKLOADS[workload] + ["-k", str(KEYS),
                                                              "-D", str(duration)])
        cpu = srv.cpu_seconds() - cpu0
        calls = counter.stop()
        wall = time.monotonic() - t0
        reqs = res["ops_per_sec"] * res["seconds"]
        # the counter ran a little longer than the load (idle server: a few calls a second)
        return {
            "ops_per_sec": res["ops_per_sec"],
            "reqs_per_cpu_sec": reqs / cpu if cpu > 0 else 0.0,
            "p99_us": res["latency_us"]["p99"],
            "p50_us": res["latency_us"]["p50"],
            "syscalls_per_req": calls / reqs if calls is not None and reqs else None,
            "server_cpu_share": cpu / wall,
            "errors": res["errors"],
        }
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--only", help="comma separated workloads")
    ap.add_argument("--servers", default="epoll,uring,memcached")
    ap.add_argument("--out", default=os.path.join(TOP, "bench", "uring.json"))
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(WORKLOADS)
    servers = a.servers.split(",")
    if "memcached" in servers and not os.path.exists(compare.STOCK):
        servers.remove("memcached")
    raw = {w: {s: [] for s in servers} for w in names}
    for w in names:
        for _ in range(a.reps):
            for s in servers:
                raw[w][s].append(run(s, w, a.duration))
    med = {}
    keys = ["ops_per_sec", "reqs_per_cpu_sec", "p99_us", "p50_us", "syscalls_per_req",
            "server_cpu_share"]
    for w in names:
        med[w] = {}
        for s in servers:
            med[w][s] = {k: statistics.median([r[k] for r in raw[w][s] if r[k] is not None])
                         for k in keys if any(r[k] is not None for r in raw[w][s])}
    print(f"{'workload':22} {'server':10} {'req/s':>10} {'req/CPU-s':>10} {'p50 us':>8} "
          f"{'p99 us':>8} {'sysc/req':>9} {'CPU':>5}")
    for w in names:
        for s in servers:
            m = med[w][s]
            sc = m.get("syscalls_per_req")
            print(f"{w:22} {s:10} {m['ops_per_sec']:10.0f} {m['reqs_per_cpu_sec']:10.0f} "
                  f"{m['p50_us']:8.1f} {m['p99_us']:8.1f} "
                  f"{(f'{sc:.3f}' if sc is not None else '-'):>9} {m['server_cpu_share']:5.2f}")
    with open(a.out, "w") as f:
        json.dump({"medians": med, "runs": raw, "reps": a.reps, "duration": a.duration}, f,
                  indent=1)


if __name__ == "__main__":
    main()
