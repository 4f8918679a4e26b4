#!/usr/bin/python3
"""Side-by-side benchmark: this server, Debian's memcached and the trivial ceiling server.

Runs the servers alternately (A B C A B C ..., a fresh server each run, -t 1 pinned to CPU 0,
the load generator pinned to CPU 1) over standard workloads and prints ratios with their spread
over the repetitions. Also measures memory (RSS per item, items held by -m 64 before the first
eviction), instructions per request under callgrind, server CPU time and syscalls per request.

    bench/compare.py                 # full run (several minutes), writes bench/results.json
    bench/compare.py --quick         # a short smoke run (CI): sane numbers, no ratios asserted
    bench/compare.py --plot doc/performance.png

Servers bind 127.0.0.1 on ports the OS picks and are stopped by PID. Standard library only
(matplotlib for --plot).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OURS = os.environ.get("MC_BENCH_OURS", os.path.join(TOP, "memcached"))
STOCK = "/usr/bin/memcached"
CEILING = os.environ.get("MC_BENCH_CEILING", os.path.join(TOP, "bench", "trivial_server"))
MCLOAD = os.environ.get("MC_BENCH_MCLOAD", os.path.join(TOP, "mcload"))
SERVER_CPU, CLIENT_CPU = "0", "1"

sys.path.insert(0, os.path.join(TOP, "t", "lib"))
from mc import root_args, wait_for  # noqa: E402  (the test harness's helpers)

# name -> mcload arguments
WORKLOADS = {
    "get90_32B": ["-r", "9:1", "-v", "32", "-c", "8", "-d", "1"],
    "get90_32B_p16": ["-r", "9:1", "-v", "32", "-c", "8", "-d", "16"],
    "get90_1K": ["-r", "9:1", "-v", "1024", "-c", "8", "-d", "1"],
    "get90_1K_p16": ["-r", "9:1", "-v", "1024", "-c", "8", "-d", "16"],
    "set_only_32B": ["-r", "0:1", "-v", "32", "-c", "8", "-d", "1"],
    "get_flood": ["-r", "1:0", "-v", "32", "-c", "4", "-d", "64"],
}
KEYS = 100000


def stat_cpu_seconds(path):
    """utime + stime from a /proc/.../stat file."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process pinned to SERVER_CPU on a port the OS picks."""

    def __init__(self, kind, extra=(), wrapper=()):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="mcbench")
        portfile = os.path.join(self.dir, "ports")
        env = dict(os.environ, MEMCACHED_PORT_FILENAME=portfile)
        if kind == "ceiling":
            cmd = list(wrapper) + [CEILING, "-p", "0"]
            self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd,
                                         stdout=subprocess.PIPE, text=True)
            line = self.proc.stdout.readline()
            self.port = int(line.split()[2])
            return
        binary = OURS if kind == "ours" else STOCK
        cmd = list(wrapper) + [binary] + root_args() + ["-l", "127.0.0.1", "-p", "-1", "-t", "1"]
        cmd += list(extra)
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def port():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {self.proc.returncode}")
            try:
                with open(portfile) as f:
                    for ln in f:
                        p = ln.split()
                        if p[:2] == ["TCP", "INET:"]:
                            return int(p[2])
            except FileNotFoundError:
                return None
        self.port = wait_for(port, timeout=120 if wrapper else 10, what=f"{kind} port")

    def cpu_seconds(self):
        # utime + stime of the server process (the first child under taskset is exec'd)
        return stat_cpu_seconds(f"/proc/{self.proc.pid}/stat")

    def thread_cpu_seconds(self):
        """CPU seconds by thread name (mc-worker, mc-repl; the main thread is memcached)."""
        out = {}
        for t in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{t}/comm") as f:
                    name = f.read().strip()
                sec = stat_cpu_seconds(f"/proc/{self.proc.pid}/task/{t}/stat")
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            out[name] = out.get(name, 0.0) + sec
        return out

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return 0

    def stats(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        s.close()
        out = {}
        for ln in buf.decode().split("\r\n"):
            p = ln.split(" ", 2)
            if len(p) == 3 and p[0] == "STAT":
                out[p[1]] = p[2]
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def mcload(port, args, timeout=600):
    cmd = ["taskset", "-c", CLIENT_CPU, MCLOAD, "-s", f"127.0.0.1:{port}", "-j"] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode not in (0, 1) or not r.stdout.strip():
        raise RuntimeError(f"mcload failed: {r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_workload(kind, name, duration):
    srv = Server(kind)
    try:
        vsize = WORKLOADS[name][WORKLOADS[name].index("-v") + 1]
        if kind != "ceiling":
            mcload(srv.port, ["-F", "-k", str(KEYS), "-v", vsize])
        cpu0 = srv.cpu_seconds()
        res = mcload(srv.port, WORKLOADS[name] + ["-k", str(KEYS), "-D", str(duration),
                                                  "-w", "0.5"])
        cpu = srv.cpu_seconds() - cpu0
        ops = res["ops_per_sec"] * (res["seconds"] + 0.5)
        res["server_cpu_us_per_req"] = cpu * 1e6 / ops if ops else 0
        return res
    finally:
        srv.stop()


def spread(values):
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / statistics.median(values)


def throughput(reps, duration, names, kinds):
    runs = {n: {k: [] for k in kinds} for n in names}
    for rep in range(reps):
        for n in names:
            for k in kinds:  # A B C alternation, fresh server each run
                r = run_workload(k, n, duration)
                runs[n][k].append(r)
                print(f"  rep {rep + 1} {n:15s} {k:9s} {r['ops_per_sec']:>12,.0f} ops/s  "
                      f"p99 {r['latency_us']['p99']:.0f} us  "
                      f"cpu {r['server_cpu_us_per_req']:.2f} us/req", flush=True)
    return runs


def memory_per_item(kind, n=1000000):
    """RSS growth per item for n items of 12-byte keys and 100-byte values under -m 1024."""
    srv = Server(kind, extra=["-m", "1024"])
    try:
        base = srv.rss_kib()
        mcload(srv.port, ["-F", "-k", str(n), "-v", "100", "-P", "k", "-W", "11"], timeout=900)
        st = srv.stats()
        assert int(st["curr_items"]) == n, st["curr_items"]
        return {"rss_bytes_per_item": (srv.rss_kib() - base) * 1024 / n,
                "rss_total_mib": srv.rss_kib() / 1024}
    finally:
        srv.stop()


def items_before_eviction(kind):
    """How many 12-byte-key/100-byte-value items -m 64 holds before its first eviction."""
    srv = Server(kind, extra=["-m", "64"])
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        value = b"v" * 100
        i = 0
        batch = 2000
        while i < 5000000:
            s.sendall(b"".join(b"set k%011d 0 0 100 noreply\r\n%s\r\n" % (j, value)
                               for j in range(i, i + batch)))
            i += batch
            st = srv.stats()
            if int(st["evictions"]) > 0:
                # Once full, each new item of the same size evicts one: the count held stays
                # what it was at the first eviction.
                return int(st["curr_items"])
        return None
    finally:
        srv.stop()


def callgrind_instructions(kind, depth, n=20000):
    """Instructions per request: the difference between runs of 2n and n requests."""
    if shutil.which("valgrind") is None:
        return None
    totals = []
    for count in (n, 2 * n):
        out = tempfile.mktemp(prefix="cg.", suffix=".out")
        # memcached sets its descriptor limit to -c (1024) and valgrind only allows the limit it
        # leaves itself (12 below the hard limit): give it 1036 so the two agree.
        wrapper = ["prlimit", "--nofile=1036:1036", "valgrind", "--tool=callgrind",
                   f"--callgrind-out-file={out}"]
        srv = Server(kind, extra=["-o", "no_lru_crawler"] if kind == "ours" else
                     ["-o", "no_lru_crawler,no_lru_maintainer"], wrapper=wrapper)
        try:
            conns = 4
            per_conn = count // conns
            mcload(srv.port, ["-F", "-k", "1000", "-v", "32"])
            mcload(srv.port, ["-r", "9:1", "-v", "32", "-k", "1000", "-c", str(conns),
                              "-d", str(depth), "-n", str(per_conn)])
        finally:
            srv.stop()
        with open(out) as f:
            text = f.read()
        os.unlink(out)
        m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)",
                                                                    text, re.M)
        totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / n


def syscalls_per_request(kind, depth, n=20000):
    if shutil.which("strace") is None:
        return None
    srv = Server(kind)
    try:
        mcload(srv.port, ["-F", "-k", "1000", "-v", "32"])
        log = tempfile.mktemp(prefix="strace.")
        tids = os.listdir(f"/proc/{srv.proc.pid}/task")  # every thread, not just the main one
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", log] +
                                  [a for t in tids for a in ("-p", t)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        conns = 4
        mcload(srv.port, ["-r", "9:1", "-v", "32", "-k", "1000", "-c", str(conns),
                          "-d", str(depth), "-n", str(n // conns)])
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        with open(log) as f:
            text = f.read()
        os.unlink(log)
        # "100.00  0.001234  12  <calls>  [<errors>]  total"
        for ln in text.splitlines():
            f = ln.split()
            if f and f[-1] == "total":
                return int(f[3]) / n
        return None
    finally:
        srv.stop()


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results["throughput"])
    kinds = ["ours", "memcached", "ceiling"]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.27
    for i, k in enumerate(kinds):
        med = [results["throughput"][n][k]["median_ops"] / 1000 for n in names]
        lo = [m - results["throughput"][n][k]["min_ops"] / 1000 for n, m in zip(names, med)]
        hi = [results["throughput"][n][k]["max_ops"] / 1000 - m for n, m in zip(names, med)]
        ax.bar([x + (i - 1) * width for x in range(len(names))], med, width, yerr=[lo, hi],
               label={"ours": "this server", "memcached": "memcached 1.6.18",
                      "ceiling": "trivial ceiling"}[k], capsize=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=15)
    ax.set_ylabel("thousand ops/s (median, min-max)")
    ax.set_title("One server thread on CPU 0, mcload on CPU 1 (loopback)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--only", help="comma separated workloads")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-profile", action="store_true")
    ap.add_argument("--out", default=os.path.join(TOP, "bench", "results.json"))
    ap.add_argument("--plot")
    a = ap.parse_args()
    for b in (OURS, MCLOAD, CEILING):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: build the tree first (make)")
    kinds = ["ours", "memcached", "ceiling"] if os.access(STOCK, os.X_OK) else ["ours",
                                                                                "ceiling"]
    names = a.only.split(",") if a.only else list(WORKLOADS)
    if a.quick:
        a.reps, a.duration = 1, 1.0
        names = names if a.only else ["get90_32B", "get90_32B_p16"]
        a.skip_memory = a.skip_profile = True
    print(f"throughput: {a.reps} repetitions x {a.duration:.0f} s, servers {kinds}")
    runs = throughput(a.reps, a.duration, names, kinds)
    results = {"throughput": {}, "ratios": {}, "meta": {
        "reps": a.reps, "duration": a.duration, "keys": KEYS,
        "memcached": subprocess.run([STOCK, "-V"], capture_output=True,
                                    text=True).stdout.strip() if "memcached" in kinds else None}}
    for n in names:
        results["throughput"][n] = {}
        for k in kinds:
            ops = [r["ops_per_sec"] for r in runs[n][k]]
            results["throughput"][n][k] = {
                "median_ops": statistics.median(ops), "min_ops": min(ops), "max_ops": max(ops),
                "spread": spread(ops),
                "p50_us": statistics.median(r["latency_us"]["p50"] for r in runs[n][k]),
                "p99_us": statistics.median(r["latency_us"]["p99"] for r in runs[n][k]),
                "p999_us": statistics.median(r["latency_us"]["p999"] for r in runs[n][k]),
                "server_cpu_us_per_req": statistics.median(
                    r["server_cpu_us_per_req"] for r in runs[n][k]),
                "errors": sum(r["errors"] for r in runs[n][k]),
            }
        if "memcached" in kinds:
            per_rep = [o["ops_per_sec"] / m["ops_per_sec"]
                       for o, m in zip(runs[n]["ours"], runs[n]["memcached"])]
            results["ratios"][n] = {"ours_vs_memcached": statistics.median(per_rep),
                                    "min": min(per_rep), "max": max(per_rep),
                                    "ours_vs_ceiling": results["throughput"][n]["ours"][
                                        "median_ops"] / results["throughput"][n]["ceiling"][
                                        "median_ops"]}
    print("\nworkload          ours/memcached (min-max)   ours/ceiling   p99 us ours/memcached")
    for n in names:
        t = results["throughput"][n]
        r = results["ratios"].get(n)
        if r:
            print(f"{n:17s} {r['ours_vs_memcached']:6.2f}x ({r['min']:.2f}-{r['max']:.2f})"
                  f"         {r['ours_vs_ceiling']:5.2f}x      "
                  f"{t['ours']['p99_us']:.0f}/{t['memcached']['p99_us']:.0f}")
        else:
            print(f"{n:17s} ours {t['ours']['median_ops']:,.0f} ops/s")
    for n in names:
        for k in kinds:
            if results["throughput"][n][k]["errors"]:
                print(f"WARNING: {results['throughput'][n][k]['errors']} errors in {n}/{k}")
            assert results["throughput"][n][k]["median_ops"] > 0
    if not a.skip_memory:
        results["memory"] = {}
        for k in [x for x in kinds if x != "ceiling"]:
            m = memory_per_item(k)
            m["items_in_64m"] = items_before_eviction(k)
            results["memory"][k] = m
            print(f"memory {k}: {m['rss_bytes_per_item']:.1f} B RSS per item, "
                  f"{m['items_in_64m']} items in -m 64 before the first eviction", flush=True)
    if not a.skip_profile:
        results["profile"] = {}
        for k in kinds:
            prof = {}
            for depth in (1, 16):
                prof[f"instructions_per_req_d{depth}"] = callgrind_instructions(k, depth)
                prof[f"syscalls_per_req_d{depth}"] = syscalls_per_request(k, depth)
            results["profile"][k] = prof
            print(f"profile {k}: {prof}", flush=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results: {a.out}")
    if a.plot:
        plot(results, a.plot)
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
