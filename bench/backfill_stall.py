#!/usr/bin/python3
"""A backfill's stall on the active's workers (doc/replication.md, "Subscribing, resuming,
backfilling"): one managed server holds a large bucket (64 buckets, so the bucket is a whole
store shard); a client reads keys of that bucket and times each get, before and while a
second server subscribes as the replica of every bucket and is backfilled.

The active is pinned to CPU 0 with one worker thread; the replica and the probing client to
CPU 1. The client sends gets at a fixed rate (open loop: a get's latency counts from when it
was due, so a stall shows in every get due during it). Reported per binary: the gets' p50,
p99 and max latency before the backfill and during it (from the map's installation to the
replica in sync, as `stats replication` shows it every 50 ms), how many gets took over 1 ms,
the backfill's duration, and the active's backfill_steps, backfill_max_hold_us and
backfill_max_hold_cpu_us where the binary has them. Standard library only; re-run:
bench/backfill_stall.py [--items N] [--reps N] [--rate N] [--bin NAME=PATH ...] (default:
new=./memcached); compare with an older build by passing both, e.g.
--bin old=../main/memcached --bin new=./memcached."""

import argparse
import os
import random
import socket
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from managed import control, secret_file  # noqa: E402

BUCKETS = 64


def node(binary, secret_path, name):
    compare.OURS = binary
    return compare.Server("ours", extra=["-m", "2048", "-o",
                                         f"node_id={name},cluster_secret_file={secret_path},"
                                         f"buckets={BUCKETS},no_lru_crawler"])


def repl_stats(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    s.sendall(b"stats replication\r\n")
    out = {}
    for line in iter(f.readline, b"END\r\n"):
        w = line.decode().split()
        out[w[1]] = w[2]
    s.close()
    return out


def bucket_keys(n):
    """n keys of bucket 0 (the servers' bucket function: CRC-32 mod the bucket count)."""
    out, i = [], 0
    while len(out) < n:
        k = f"bf:{i}"
        if zlib.crc32(k.encode()) % BUCKETS == 0:
            out.append(k)
        i += 1
    return out


def fill(port, keys, value):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    for i in range(0, len(keys), 5000):
        s.sendall("".join(f"set {k} 0 0 {len(value)} noreply\r\n{value}\r\n"
                          for k in keys[i:i + 5000]).encode())
    s.sendall(b"version\r\n")
    f = s.makefile("rb")
    assert f.readline().startswith(b"VERSION")
    s.close()


class Probe(threading.Thread):
    """Gets at a fixed rate whatever the replies (open loop, so a stall delays every get
    scheduled during it rather than the one that met it); keeps (scheduled time, latency in
    us from the scheduled time) of each, answers read in order on the same connection."""

    def __init__(self, port, keys, rate):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.keys = keys
        self.period = 1.0 / rate
        self.sent = []  # scheduled times, in order
        self.samples = []
        self.stop = threading.Event()
        self.receiver = threading.Thread(target=self.receive, daemon=True)

    def run(self):
        rnd = random.Random(1)
        self.receiver.start()
        t = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < t:
                time.sleep(t - now)
            self.sent.append(t)
            self.sock.sendall(f"get {rnd.choice(self.keys)}\r\n".encode())
            t += self.period
        self.receiver.join()
        self.sock.close()

    def receive(self):
        f = self.sock.makefile("rb")
        i = 0
        while not self.stop.is_set() or i < len(self.sent):
            line = f.readline()
            if line.startswith(b"VALUE"):
                f.read(int(line.split()[3]) + 2)
                line = f.readline()
            assert line == b"END\r\n", line
            t0 = self.sent[i]
            self.samples.append((t0, (time.monotonic() - t0) * 1e6))
            i += 1


def summary(lat):
    if not lat:
        return {"n": 0}
    lat = sorted(lat)
    return {"n": len(lat), "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)],
            "max": lat[-1], "over_1ms": sum(1 for x in lat if x > 1000)}


def run(binary, items, rate, secret_path):
    a = node(binary, secret_path, "a")
    b = None
    try:
        control(a.port, [f"MAP 1 {BUCKETS}\r\nNODE a 127.0.0.1:{a.port}\r\n"
                         f"RANGE 0 {BUCKETS - 1} a\r\nEND\r\n"])
        keys = bucket_keys(items)
        fill(a.port, keys, "v" * 100)
        b = node(binary, secret_path, "b")
        os.system(f"taskset -a -p -c {compare.CLIENT_CPU} {b.proc.pid} >/dev/null")
        os.sched_setaffinity(0, {int(compare.CLIENT_CPU)})
        probe = Probe(a.port, keys, rate)
        probe.start()
        time.sleep(2.0)  # before
        text = (f"MAP 2 {BUCKETS}\r\nNODE a 127.0.0.1:{a.port}\r\nNODE b 127.0.0.1:{b.port}\r\n"
                f"RANGE 0 {BUCKETS - 1} a b\r\nEND\r\n")
        t_start = time.monotonic()
        control(a.port, [text])
        control(b.port, [text])
        compare.wait_for(lambda: repl_stats(a.port).get("link:b:buckets_out_in_sync") ==
                         str(BUCKETS), timeout=120, interval=0.005, what="replica in sync")
        t_end = time.monotonic()
        time.sleep(0.5)
        probe.stop.set()
        probe.join()
        st = repl_stats(a.port)
    finally:
        a.stop()
        if b is not None:
            b.stop()
    before = [l for t, l in probe.samples if t < t_start]
    during = [l for t, l in probe.samples if t_start <= t <= t_end]
    return {"before": summary(before), "during": summary(during),
            "backfill_ms": (t_end - t_start) * 1000,
            "steps": st.get("link:b:backfill_steps", "-"),
            "max_hold_us": st.get("link:b:backfill_max_hold_us", "-"),
            "max_hold_cpu_us": st.get("link:b:backfill_max_hold_cpu_us", "-"),
            "items": st.get("link:b:backfill_items", "-"),
            "backfills": st.get("link:b:backfills", "-"),
            "last_error": st.get("link:b:last_error", "-")}


def fmt(s):
    if s["n"] == 0:
        return "n=0"
    return (f"n={s['n']:6d} p50={s['p50']:7.0f} p99={s['p99']:7.0f} max={s['max']:8.0f} us "
            f">1ms={s['over_1ms']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=200000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=int, default=2000, help="gets per second")
    ap.add_argument("--bin", action="append", default=[],
                    help="NAME=PATH of a server binary (repeatable)")
    args = ap.parse_args()
    bins = [x.split("=", 1) for x in args.bin] or [["new", compare.OURS]]
    secret_path = secret_file("mcbackfill")
    for rep in range(args.reps):
        for name, path in bins:
            r = run(os.path.abspath(path), args.items, args.rate, secret_path)
            print(f"rep {rep + 1} {name}: backfill {r['backfill_ms']:.0f} ms, {r['items']} items, "
                  f"{r['backfills']} backfills (last link error: {r['last_error']}), "
                  f"steps {r['steps']}, max hold {r['max_hold_us']} us "
                  f"({r['max_hold_cpu_us']} us CPU)", flush=True)
            print(f"    before  {fmt(r['before'])}", flush=True)
            print(f"    during  {fmt(r['during'])}", flush=True)


if __name__ == "__main__":
    main()
