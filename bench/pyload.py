#!/usr/bin/python3
"""A load from a real Python application's client: pymemcache's HashClient (stock), or the
map-aware ClusterClient (clients/python), one request at a time, for bench/cluster.py.

    bench/pyload.py --client hash|cluster --servers 127.0.0.1:P1,127.0.0.1:P2 \\
        --seconds 5 --mix 9:1 --keys 20000 --value 100 [--prefill] [--seed 1]

Prints one JSON line with the same fields as mcload -j that cluster.py reads: ops_per_sec,
gets, sets, hits, misses, errors, latency_us {p50, p99}. The loop is bounded by --seconds
(and --prefill by the key count). Debian's python3-pymemcache; run it with /usr/bin/python3.
"""

import argparse
import json
import os
import random
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "clients", "python"))
from pymemcache.client.hash import HashClient  # noqa: E402
from mcm_client import ClusterClient  # noqa: E402


def percentile(sorted_ns, q):
    if not sorted_ns:
        return 0.0
    i = min(len(sorted_ns) - 1, int(q * len(sorted_ns)))
    return sorted_ns[i] / 1000.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--client", choices=("hash", "cluster"), required=True)
    p.add_argument("--servers", required=True, help="host:port,host:port,...")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--mix", default="9:1", help="gets:sets")
    p.add_argument("--keys", type=int, default=20000)
    p.add_argument("--value", type=int, default=100)
    p.add_argument("--prefix", default="py:")
    p.add_argument("--prefill", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)

    servers = []
    for s in a.servers.split(","):
        host, port = s.rsplit(":", 1)
        servers.append((host, int(port)))
    kw = dict(connect_timeout=2, timeout=2, retry_attempts=2, retry_timeout=0,
              dead_timeout=0, ignore_exc=False)
    client = (ClusterClient(servers, map_refresh_interval=5.0, **kw) if a.client == "cluster"
              else HashClient(servers, **kw))
    value = b"v" * a.value
    keys = [f"{a.prefix}{i}" for i in range(a.keys)]
    if a.prefill:
        for i in range(0, len(keys), 100):
            client.set_many({k: value for k in keys[i:i + 100]}, noreply=False)
        print(json.dumps({"prefilled": len(keys)}))
        return 0

    g, s = (int(x) for x in a.mix.split(":"))
    get_share = g / (g + s)
    rnd = random.Random(a.seed)
    lat = []
    gets = sets = hits = misses = errors = 0
    clock = time.perf_counter_ns
    start = clock()
    stop = start + int(a.seconds * 1e9)
    now = start
    while now < stop:
        k = keys[rnd.randrange(len(keys))]
        t0 = now
        try:
            if rnd.random() < get_share:
                gets += 1
                if client.get(k) is None:
                    misses += 1
                else:
                    hits += 1
            else:
                sets += 1
                client.set(k, value, noreply=False)
        except Exception:  # noqa: BLE001 -- counted: a stock client's failure is the datum
            errors += 1
        now = clock()
        lat.append(now - t0)
    elapsed = (now - start) / 1e9
    lat.sort()
    print(json.dumps({
        "ops_per_sec": (gets + sets) / elapsed if elapsed else 0.0, "seconds": elapsed,
        "gets": gets, "sets": sets, "hits": hits, "misses": misses, "errors": errors,
        "latency_us": {"p50": percentile(lat, 0.50), "p99": percentile(lat, 0.99)},
        "client": a.client,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
