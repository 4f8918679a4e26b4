#!/usr/bin/python3
"""What peer TLS costs (doc/performance.md, "Peer TLS"), plain and TLS side by side:

  replication  two managed servers, every bucket active on A with B as its replica; the client
               writes to A (records/s = writes/s); CPU per record on A's replication thread
               and on the replica
  forwarding   two managed servers, every bucket active on B; the client talks to A, so every
               request is forwarded over A's peer link to B

Each workload runs plain then TLS, in turn (A B, A B, ...). Servers on CPU 0, mcload on CPU 1
(the replica on CPU 1 too, as bench/replication.py). Certificates are made in a temporary
directory with the openssl command. TLS keeps a server's workers on the epoll loop, so the plain
runs use it too (--plain-engine uring compares with the default loop instead). Standard library
only; re-run: bench/peer_tls.py [--reps N] [--duration S] [--plain-engine epoll|uring]."""

import argparse
import os
import ssl
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from managed import alternate, control, secret_file  # noqa: E402
from replication import stats  # noqa: E402

WORKLOADS = {
    "repl_set100_100B": ("replication", ["-r", "0:1", "-v", "100", "-c", "8"]),
    "repl_set100_100B_p16": ("replication", ["-r", "0:1", "-v", "100", "-c", "8", "-d", "16"]),
    "fwd_get90_32B": ("forwarding", ["-r", "9:1", "-v", "32", "-c", "8"]),
    "fwd_get90_32B_p16": ("forwarding", ["-r", "9:1", "-v", "32", "-c", "8", "-d", "16"]),
}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki():
    """A CA and one certificate for every process (the servers and this script)."""
    d = tempfile.mkdtemp(prefix="mcm-peer-tls.")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench-ca", cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "peer.key", "-out", "peer.csr", "-subj", "/CN=peer", cwd=d)
    openssl("x509", "-req", "-in", "peer.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "2", "-days", "2", "-extfile", "ext", "-out", "peer.pem", cwd=d)
    return {k: os.path.join(d, f) for k, f in (("ca", "ca.pem"), ("cert", "peer.pem"),
                                                 ("key", "peer.key"))}


def peer_context(pki):
    """What a peer dials with: the cluster's certificate, ALPN mcm-peer, the CA checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki["ca"])
    ctx.load_cert_chain(pki["cert"], pki["key"])
    ctx.set_alpn_protocols(["mcm-peer"])
    return ctx


def setup(scenario, tls, secret_path, pki, engine):
    # TLS keeps the workers on epoll: the plain run uses the same loop unless told otherwise
    opts = f"cluster_secret_file={secret_path},no_lru_crawler,io_engine={engine}"
    if tls:
        opts += f",peer_tls_cert={pki['cert']},peer_tls_key={pki['key']},peer_tls_ca={pki['ca']}"
    a = compare.Server("ours", extra=["-o", "node_id=a," + opts])
    b = compare.Server("ours", extra=["-o", "node_id=b," + opts])
    if scenario == "replication":
        subprocess.run(["taskset", "-a", "-p", "-c", compare.CLIENT_CPU, str(b.proc.pid)],
                       check=True, capture_output=True)
        ranges = "RANGE 0 1023 a b"
    else:
        ranges = "RANGE 0 1023 b"
    text = (f"MAP 1 1024\r\nNODE a 127.0.0.1:{a.port}\r\nNODE b 127.0.0.1:{b.port}\r\n"
            f"{ranges}\r\nEND\r\n")
    for s in (a, b):
        control(s.port, [text], peer_context(pki) if tls else None)
    if scenario == "replication":
        compare.wait_for(lambda: stats(a.port, "replication").get("link:b:buckets_out_in_sync") ==
                         "1024", timeout=30, what="replica in sync")
    return a, b


def run(kind, name, duration, secret_path, pki, engine):
    scenario, args = WORKLOADS[name]
    a, b = setup(scenario, kind == "tls", secret_path, pki, engine)
    try:
        compare.mcload(a.port, ["-F", "-k", str(compare.KEYS), "-v", "100"])
        cpu0 = a.cpu_seconds() + b.cpu_seconds()
        t0 = a.thread_cpu_seconds()
        b0 = sum(b.thread_cpu_seconds().values())
        res = compare.mcload(a.port, args + ["-k", str(compare.KEYS), "-D", str(duration),
                                             "-w", "0.5"])
        ops = res["ops_per_sec"] * (res["seconds"] + 0.5)
        per = (lambda sec: sec * 1e6 / ops) if ops else (lambda sec: 0)
        res["cpu_us"] = per(a.cpu_seconds() + b.cpu_seconds() - cpu0)
        t1 = a.thread_cpu_seconds()
        res["repl_us"] = per(t1.get("mc-repl", 0) - t0.get("mc-repl", 0))
        res["b_us"] = per(sum(b.thread_cpu_seconds().values()) - b0)
        return res
    finally:
        a.stop()
        b.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--plain-engine", default="epoll", choices=["epoll", "uring"],
                    help="the plain runs' loop (TLS always runs on epoll; default epoll, so the "
                         "ratio is TLS's own cost)")
    a = ap.parse_args()
    secret_path = secret_file("mcm-peer-tls")
    pki = make_pki()
    runs = alternate(["plain", "tls"], WORKLOADS, a.reps,
                     lambda k, w: run(k, w, a.duration, secret_path, pki,
                                      a.plain_engine if k == "plain" else "epoll"),
                     lambda r: f"{r['ops_per_sec']:>12,.0f} ops/s  "
                               f"p50 {r['latency_us']['p50']:.0f} "
                               f"p99 {r['latency_us']['p99']:.0f} us  "
                               f"cpu (both servers) {r['cpu_us']:.2f} us/req, "
                               f"A's repl thread {r['repl_us']:.2f}, B {r['b_us']:.2f}")
    print()
    print(f"{'workload':22s} {'ops/s tls/plain':>24s}  medians plain -> tls")
    for w in WORKLOADS:
        p, t = runs[w]["plain"], runs[w]["tls"]
        ratios = [x["ops_per_sec"] / y["ops_per_sec"] for x, y in zip(t, p)]

        def med(rs, key):
            return statistics.median(r[key] for r in rs)
        print(f"{w:22s} {statistics.median(ratios):>9.3f}x ({min(ratios):.3f}-{max(ratios):.3f})"
              f"  {med(p, 'ops_per_sec'):,.0f} -> {med(t, 'ops_per_sec'):,.0f} ops/s;"
              f" p99 {statistics.median(r['latency_us']['p99'] for r in p):.0f} -> "
              f"{statistics.median(r['latency_us']['p99'] for r in t):.0f} us;"
              f" cpu/req {med(p, 'cpu_us'):.2f} -> {med(t, 'cpu_us'):.2f} us"
              f" (A repl {med(p, 'repl_us'):.2f} -> {med(t, 'repl_us'):.2f},"
              f" B {med(p, 'b_us'):.2f} -> {med(t, 'b_us'):.2f})")


if __name__ == "__main__":
    main()
