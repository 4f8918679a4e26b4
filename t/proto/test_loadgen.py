"""Smoke test of the load generator (mcload): it starts, drives a server, reports sane numbers.
Benchmarks themselves are not tests; see bench/compare.py and doc/performance.md."""

import json
import os
import subprocess

import pytest

import mc

MCLOAD = os.path.join(mc.TOP, "mcload")

pytestmark = pytest.mark.skipif(not os.access(MCLOAD, os.X_OK), reason="mcload not built")


def run(server, *args):
    tls = ["--tls"] if server.tls else []  # MC_TEST_TLS
    r = subprocess.run([MCLOAD, "-s", f"127.0.0.1:{server.port}", "-j"] + tls + list(args),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_prefill_then_mixed_load(server):
    assert run(server, "-F", "-k", "500", "-v", "100") == {"prefilled": 500}
    assert server.connect().stats()["curr_items"] == "500"
    res = run(server, "-k", "500", "-v", "100", "-c", "2", "-d", "4", "-n", "2000")
    assert res["gets"] + res["sets"] == 2 * 2000
    assert res["errors"] == 0
    assert res["misses"] == 0 and res["hits"] == res["gets"]  # every key was prefilled
    assert res["ops_per_sec"] > 0
    lat = res["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]


def test_zipf_and_value_range(server):
    res = run(server, "-k", "10000", "-z", "0.99", "-v", "10-2000", "-r", "1:1", "-n", "1000")
    assert res["errors"] == 0
    assert res["sets"] > 0 and res["gets"] > 0
    st = server.connect().stats()
    # Zipf: few distinct keys were written compared with the requests made
    assert 0 < int(st["curr_items"]) < res["sets"]


def test_duration_mode(server):
    res = run(server, "-D", "0.5", "-c", "1")
    assert 0.4 < res["seconds"] < 3
    assert res["errors"] == 0


def test_meta_protocol(server):
    c = server.connect()
    if c.cmd("mn") != b"MN\r\n":
        pytest.skip("this server does not speak the meta protocol yet")
    res = run(server, "-m", "-F", "-k", "100")
    res = run(server, "-m", "-k", "100", "-n", "500")
    assert res["errors"] == 0 and res["hits"] == res["gets"] and res["protocol"] == "meta"


def test_bad_arguments():
    r = subprocess.run([MCLOAD, "-c", "0"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2


def test_bucket_filter_takes_exactly_the_keys_of_those_buckets(server):
    """--buckets B:LIST: only keys whose CRC-32 mod B is listed (managed mode's bucket
    function), as a map-aware client sends a server only its own buckets' keys."""
    import zlib
    want = {f"key:{i:010d}".encode() for i in range(2000)
            if zlib.crc32(f"key:{i:010d}".encode()) % 64 in set(range(0, 8)) | {40}}
    assert run(server, "-F", "-k", "2000", "-b", "64:0-7,40") == {"prefilled": len(want)}
    c = server.connect()
    for k in sorted(want)[:50]:
        c.send(b"get " + k + b"\r\n")
        assert c.read_until(b"END\r\n").startswith(b"VALUE " + k + b" ")
    res = run(server, "-k", "2000", "-b", "64:0-7,40", "-n", "500")
    assert res["errors"] == 0 and res["misses"] == 0
    for bad in ("64", "0:1", "64:9-3", "64:64", "64:x"):
        r = subprocess.run([MCLOAD, "-s", f"127.0.0.1:{server.port}", "-b", bad, "-n", "1"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
