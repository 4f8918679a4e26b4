#!/usr/bin/python3
"""Soak a managed cluster under seeded random faults and check the history (doc/chaos.md).

    bench/chaos.py --minutes 30 --seed 1 --out /tmp/chaos

prints the figures (faults injected by kind, operations checked, anomalies found, max RSS per
process, end state) and writes chaos-<seed>.json in --out (the whole report, with up to 20
anomalies in full). Exit status 0 when the run is clean, 1 when anything was found."""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "t", "chaos"))
import chaos  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=4,
                    help="client threads: even ones stock HashClient, odd ones map-aware")
    ap.add_argument("--keys", type=int, default=32)
    ap.add_argument("--rate", type=float, default=150,
                    help="operations per second per client (0: as fast as it goes)")
    ap.add_argument("--buckets", type=int, default=64)
    ap.add_argument("--memory", type=int, default=32, help="-m of each server (MB)")
    ap.add_argument("--rss-allowance", type=int, default=160,
                    help="MB over -m a server's RSS may reach")
    ap.add_argument("--repl-ack", default="delete", choices=("none", "delete", "all"))
    ap.add_argument("--no-peer-proxies", action="store_true",
                    help="map addresses are the servers' own (address takeover on; no faults "
                         "on the peers' path)")
    ap.add_argument("--faults", default="",
                    help="comma-separated kinds to draw from (default all: "
                         + ",".join(sorted(chaos.FAULT_KINDS)) + ")")
    ap.add_argument("--max-gap", type=float, default=2.0, help="longest pause between faults")
    ap.add_argument("--settle-timeout", type=float, default=90)
    ap.add_argument("--out", default=".")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print every fault")
    a = ap.parse_args()
    kinds = None
    if a.faults:
        kinds = {k: chaos.FAULT_KINDS[k] for k in a.faults.split(",")}
    tmp = tempfile.mkdtemp(prefix=f"chaos-{a.seed}-")
    t0 = time.monotonic()

    def log(line):
        if not a.quiet:
            print(f"[{time.monotonic() - t0:8.2f}] {line}", flush=True)

    rep = chaos.run(tmp, a.minutes * 60, a.seed, nservers=a.servers, clients=a.clients,
                    keys=a.keys, rate=a.rate, kinds=kinds, repl_ack=a.repl_ack,
                    memory_mb=a.memory, rss_allowance_mb=a.rss_allowance,
                    peer_proxies=not a.no_peer_proxies, buckets=a.buckets,
                    settle_timeout=a.settle_timeout, log=log, max_gap=a.max_gap)
    rep["tmpdir"] = tmp
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"chaos-{a.seed}.json")
    with open(path, "w") as f:
        json.dump(rep, f, indent=1, default=str)
    print(f"\nseed {a.seed}, {rep['wall_s']} s wall, {a.servers} servers + spare, "
          f"{a.clients} clients, repl_ack={a.repl_ack}")
    print("faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(rep["faults"].items()))
          + f" (total {sum(rep['faults'].values())})")
    if rep.get("nemesis_errors"):
        print(f"faults that raised: {len(rep['nemesis_errors'])}: {rep['nemesis_errors'][:3]}")
    print(f"operations: {rep['ops']} " + json.dumps(rep["ops_by_outcome"], sort_keys=True))
    print(f"reads checked (hits): {rep['reads_checked']}; durable (repl_ack) writes "
          f"{rep['durable_writes']}; map epochs seen "
          f"{rep['map_epochs_seen']}, bucket failovers seen {rep['failover_intervals']}")
    print(f"anomalies: {json.dumps(rep['anomalies']) if rep['anomalies'] else 'none'}")
    print(f"crashes: {rep['crashes'] or 'none'}")
    print("max RSS (MiB): " + ", ".join(f"{k} {v}" for k, v in rep["max_rss_mib"].items())
          + (f"; OVER BOUND: {rep['rss_over_bound']}" if rep["rss_over_bound"] else ""))
    print(f"end state: settled {rep.get('heal_to_settled_s')} s after healing; problems: "
          f"{rep.get('end_state_problems') or 'none'}")
    print(f"verdict: {'clean' if rep['ok'] else 'FOUND PROBLEMS'}; report {path}")
    if not a.keep and rep["ok"]:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs kept in {tmp}")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
