#!/usr/bin/python3
"""Failover, measured (doc/performance.md, "Failover"): a managed cluster (default 3 servers,
one replica, the coordinator's default timings) under a steady write load from stock clients
(pymemcache) spread over every server; the busiest server is killed with SIGKILL, the time to each step is measured,
then the server is restarted on its port and the cluster left to settle (rejoin), and the
next round kills another. Per kill:

  detect    kill -> the coordinator declares the server dead (its status' last_failover
            timestamp; the same machine's clock)
  map       kill -> every survivor holds the new map (polled every 2 ms)
  served    kill -> first successful read of a key whose bucket was active on the dead server
            (through a survivor, polled every 2 ms)
  lost      of the newest keys acknowledged >= 100 ms before the kill (each key is written
            once), those whose value or CAS unique was not read back after the failover

Reports p50/p99/max of each time and the keys lost. Standard library plus Debian's
python3-pymemcache; re-run: bench/failover.py [--kills 20] [--servers 3] [--check N] [--json PATH]."""

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "t", "lib"))
import mc  # noqa: E402
from coord import Coordinator, parse_map, server_map, wait_settled  # noqa: E402
from pymemcache.client.base import Client  # noqa: E402

SECRET = b"bench-cluster-secret-0123456789\n"
BUCKETS = 1024


def client(port, timeout=0.5):
    return Client(("127.0.0.1", port), connect_timeout=timeout, timeout=timeout)


class Load:
    """Writers (set, then gets for the CAS) spread over every live server, each write to a
    new key w<i>-<n> that is never written again, so "read back what was acknowledged" has
    one answer."""

    def __init__(self, ports):
        self.ports = ports  # name -> port (updated when a server restarts)
        self.acked = {}
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.paused = set()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(3)]
        for t in self.threads:
            t.start()

    def run(self, i):
        clients = {}
        n = 0
        while not self.stop_ev.is_set() and n < 10**7:
            names = sorted(set(self.ports) - self.paused)
            if not names:
                time.sleep(0.01)
                continue
            name = names[n % len(names)]
            c = clients.get((name, self.ports[name]))
            if c is None:
                c = clients[(name, self.ports[name])] = client(self.ports[name])
            k = f"w{i}-{n}"
            v = f"{n * 7919 % 100003}".encode()
            n += 1
            try:
                c.set(k, v, noreply=False)
                got = c.gets(k)
            except Exception:
                clients.pop((name, self.ports[name]), None)
                continue
            t = time.monotonic()
            if got and got[0] == v:
                with self.lock:
                    self.acked[k] = (v, int(got[1]), t)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=10)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--check", type=int, default=3000,
                    help="keys read back per kill (the newest acknowledged >= 100 ms before)")
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mcm-failover-")
    secret = os.path.join(tmp, "secret")
    with open(secret, "wb") as f:
        f.write(SECRET)
    names = [f"n{i}" for i in range(a.servers)]

    def start(name, port=None):
        d = os.path.join(tmp, f"{name}-{time.monotonic_ns()}")
        os.makedirs(d)
        args = ["-o", f"node_id={name},cluster_secret_file={secret},buckets={BUCKETS}"]
        if port:
            args += ["-p", str(port)]
        return mc.Server(d, args=args, binary=os.path.join(mc.TOP, "memcached"))

    servers = {n: start(n) for n in names}
    coord = Coordinator(os.path.join(tmp, "coord"), secret, sorted(servers.items()),
                        buckets=BUCKETS)
    rounds = []
    load = None
    try:
        wait_settled(coord, 1, names, timeout=60)
        load = Load({n: s.port for n, s in servers.items()})
        mc.wait_for(lambda: len(load.acked) > 2000, timeout=60, what="load warm")
        rnd = random.Random(7)
        for r in range(a.kills):
            wait_settled(coord, 1, names, timeout=60)
            m = parse_map(coord.map_text())
            # The busiest server (rejoined servers hold replicas only until a rebalance
            # gives them actives back), ties broken at random.
            victim = max(names, key=lambda n: (m["active"].count(n), rnd.random()))
            survivors = [n for n in names if n != victim]
            epoch0 = m["epoch"]
            vkeys = [f"probe{i}" for i in range(5000)
                     if m["active"][mc_bucket(f"probe{i}")] == victim][:1]
            client(servers[victim].port).set(vkeys[0], b"p", noreply=False)
            time.sleep(0.5)  # steady load before the kill (the probe key long replicated)
            probe = client(servers[survivors[0]].port, timeout=0.2)
            old_failovers = coord.status()["failovers"]
            with load.lock:
                snapshot = dict(load.acked)
            t0 = time.monotonic()
            t0_unix_ms = time.time() * 1000
            load.paused.add(victim)
            os.kill(servers[victim].proc.pid, signal.SIGKILL)
            servers[victim].proc.wait(timeout=5)
            t_map = t_served = None
            deadline = t0 + 10
            while (t_map is None or t_served is None) and time.monotonic() < deadline:
                now = time.monotonic()
                if t_map is None and all(server_map(servers[n])["epoch"] > epoch0
                                         for n in survivors):
                    t_map = now - t0
                if t_served is None:
                    try:
                        if probe.get(vkeys[0]) is not None:
                            t_served = now - t0
                    except Exception:
                        probe = client(servers[survivors[0]].port, timeout=0.2)
                time.sleep(0.002)
            st = mc.wait_for(lambda: (lambda s: s if s["failovers"] > old_failovers else None)(
                coord.status()), timeout=10, what="failover recorded")
            # kill -> declared dead (the coordinator's wall clock, the same machine's)
            detect = (st["last_failover"]["at_unix_ms"] - t0_unix_ms) / 1000.0
            # the newest keys acknowledged >= 100 ms before the kill
            old = sorted((v[2], k) for k, v in snapshot.items() if v[2] <= t0 - 0.1)
            check = [k for _, k in old[-a.check:]]
            c = client(servers[survivors[-1]].port, timeout=1.0)
            lost = 0
            for k in check:
                got = c.gets(k)
                if got is None or got[0] != snapshot[k][0] or int(got[1]) != snapshot[k][1]:
                    lost += 1
            rounds.append({"victim": victim, "detect_s": detect, "map_s": t_map,
                           "served_s": t_served, "checked": len(check), "lost": lost})
            print(f"  kill {r + 1:2d} {victim}: detect {detect * 1000:6.1f} ms  map "
                  f"{(t_map or -1) * 1000:6.1f} ms  served {(t_served or -1) * 1000:6.1f} ms  "
                  f"lost {lost}/{len(check)}", flush=True)
            servers[victim] = start(victim, port=servers[victim].port)
            load.ports[victim] = servers[victim].port
            load.paused.discard(victim)
    finally:
        if load:
            load.stop()
        coord.stop()
        for s in servers.values():
            s.stop()
    summary = {}
    for key in ("detect_s", "map_s", "served_s"):
        xs = [r[key] for r in rounds if r[key] is not None]
        summary[key] = {"p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs) if xs else None,
                        "missing": len(rounds) - len(xs)}
    summary["lost"] = sum(r["lost"] for r in rounds)
    summary["checked"] = sum(r["checked"] for r in rounds)
    print(json.dumps(summary, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rounds": rounds, "summary": summary}, f, indent=1)


def mc_bucket(k):
    import zlib
    return zlib.crc32(k.encode()) % BUCKETS


if __name__ == "__main__":
    main()
