#!/usr/bin/python3
"""Read hints, measured (doc/replication.md, "Read hints"): how many of the hottest keys a
bucket's replica holds after minutes of a Zipf(0.99) read load on a full cache, with read hints
and without; the hints' bytes on the link; the active's CPU per operation.

Two pairs of servers run side by side under the same load, one with the default hint rate
and one with -o repl_hint_rate=0. In each pair n0 is active for every bucket and n1 its
replica, both with -m MEMORY (default 8). The load is mcload against n0:

  mixed   one key space of --keys keys (default 100,000 of --value 200 bytes: about 3x
          memory), prefilled, then gets and sets 9:1, both Zipf(0.99), paced at --rate
  split   --keys hot keys (default 20,000: 5 MB, prefilled) read with Zipf(0.99) at --rate,
          while a second mcload sets filler keys spread uniformly over 50x as many at
          --rate / 10: the writes go round memory every ~16 s, the reads never write: the
          case where a replica without hints loses the hot keys

Key rank r is mcload's key r ("key:%010d"), so the top 1% are the first keys/100. Presence is
read with `cluster dump` on the replica (and the active, for reference) after the load.
CPU: the active process's user+system time over the run, divided by the operations mcload
did. Re-run: bench/hints.py [--mode split|mixed] [--seconds 180] [--rate 20000] [--json PATH]."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "t", "lib"))
import mc  # noqa: E402
from cluster import SECRET, auth, dump_keys, install  # noqa: E402

BUCKETS = 64
MCLOAD = os.path.join(mc.TOP, "mcload")
BINARY = os.path.join(mc.TOP, "memcached")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        w = f.read().rsplit(")", 1)[1].split()
    return (int(w[11]) + int(w[12])) / os.sysconf("SC_CLK_TCK")


def stats(server, arg):
    c = server.connect()
    try:
        return c.stats(arg)
    finally:
        c.close()


def keys_held(server):
    """Every live key of every bucket (values skipped)."""
    return dump_keys(server, range(BUCKETS), SECRET)


def mcload(port, *args):
    return subprocess.Popen([MCLOAD, "-s", f"127.0.0.1:{port}", "-j", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("split", "mixed"), default="split")
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--keys", type=int, help="default: 100,000 mixed, 20,000 split")
    ap.add_argument("--value", type=int, default=200)
    ap.add_argument("--memory", type=int, default=8)
    ap.add_argument("--rate", type=int, default=20_000, help="reads (split) or ops (mixed)/s")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.keys is None:
        a.keys = 100_000 if a.mode == "mixed" else 20_000
    tmp = tempfile.mkdtemp(prefix="hints-")
    secret = os.path.join(tmp, "secret")
    with open(secret, "wb") as f:
        f.write(SECRET + b"\n")
    pairs, servers = {}, []
    try:
        start(a, secret, tmp, pairs, servers)
        results = run(a, pairs)
    finally:
        for s in servers:
            s.stop()
    print(json.dumps(results, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def start(a, secret, tmp, pairs, servers):
    for tag, extra in (("hints", []), ("none", ["-o", "repl_hint_rate=0"])):
        ps = []
        for name in ("n0", "n1"):
            d = os.path.join(tmp, f"{tag}-{name}")
            os.mkdir(d)
            s = mc.Server(d, binary=BINARY, args=["-m", str(a.memory), "-t", "2", "-o",
                          f"node_id={name},cluster_secret_file={secret},buckets={BUCKETS}",
                          *extra])
            servers.append(s)
            ps.append(s)
        install(ps, f"MAP 1 {BUCKETS}\r\nNODE n0 127.0.0.1:{ps[0].port}\r\n"
                    f"NODE n1 127.0.0.1:{ps[1].port}\r\nRANGE 0 {BUCKETS - 1} n0 n1\r\nEND\r\n")
        pairs[tag] = ps


def run(a, pairs):
    common = ["-k", a.keys, "-z", "0.99", "-v", a.value, "-t", 1, "-c", 4, "-d", 4]
    for tag, (n0, _) in pairs.items():  # prefill the key space
        p = mcload(n0.port, *common, "-F")
        p.communicate()
    procs, before = {}, {}
    for tag, (n0, n1) in pairs.items():
        before[tag] = (cpu_seconds(n0.proc.pid), stats(n0, "replication"), time.monotonic())
    for tag, (n0, _) in pairs.items():
        if a.mode == "mixed":
            procs[tag] = [mcload(n0.port, *common, "-r", "9:1", "-R", a.rate, "-D", a.seconds)]
        else:
            procs[tag] = [
                mcload(n0.port, *common, "-r", "1:0", "-R", a.rate, "-D", a.seconds),
                mcload(n0.port, "-k", a.keys * 50, "-P", "fill:", "-v", a.value, "-t", 1,
                       "-c", 2, "-d", 4, "-r", "0:1", "-R", a.rate // 10, "-D", a.seconds)]
    outs = {tag: [json.loads(p.communicate()[0]) for p in ps] for tag, ps in procs.items()}
    results = {"mode": a.mode, "seconds": a.seconds, "keys": a.keys, "value": a.value,
               "memory_mb": a.memory, "rate": a.rate}
    for tag, (n0, n1) in pairs.items():
        cpu0, st0, t0 = before[tag]
        cpu = cpu_seconds(n0.proc.pid) - cpu0
        elapsed = time.monotonic() - t0
        ops = sum(o["gets"] + o["sets"] for o in outs[tag])
        gets = sum(o["gets"] for o in outs[tag])
        hits = sum(o["hits"] for o in outs[tag])
        mc.wait_for(lambda: all(
            v == "0" for k, v in stats(n0, "replication").items() if k.endswith(":lag_records")),
            timeout=30, what="replica caught up")
        st, rst = stats(n0, "replication"), stats(n1, "replication")
        held_r, held_a = keys_held(n1), keys_held(n0)
        r = {"ops": ops, "gets": gets, "hit_ratio": round(hits / max(gets, 1), 4),
             "active_cpu_us_per_op": round(1e6 * cpu / max(ops, 1), 2),
             "evictions_replica": int(stats(n1, "")["evictions"]),
             "slabs_moved": [int(stats(n0, "")["slabs_moved"]), int(stats(n1, "")["slabs_moved"])]}
        for pct in (1, 10):
            top = [b"key:%010d" % i for i in range(a.keys * pct // 100)]
            r[f"replica_top{pct}pct"] = round(sum(k in held_r for k in top) / len(top), 4)
            r[f"active_top{pct}pct"] = round(sum(k in held_a for k in top) / len(top), 4)
        r["replica_lacks_ranks"] = [i for i in range(a.keys // 10)
                                    if b"key:%010d" % i not in held_r][:20]
        sent = int(st["link:n1:hints_out"]) - int(st0["link:n1:hints_out"])
        hbytes = int(st["link:n1:hint_bytes_out"]) - int(st0["link:n1:hint_bytes_out"])
        r.update({"hints_sent_per_s": round(sent / elapsed), "hint_bytes_per_s": round(
            hbytes / elapsed), "hints_dropped": int(st["link:n1:hints_dropped"]),
            "hints_applied": int(rst["link:n0:hints_applied"]),
            "hints_missing": int(rst["link:n0:hints_missing"])})
        results[tag] = r
    return results


if __name__ == "__main__":
    main()
