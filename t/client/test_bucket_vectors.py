"""The bucket function's test vectors: doc/managed.md holds scripts/bucket_vectors.py's
output verbatim, the client computes the same buckets, and so does a managed server."""

import base64
import importlib.util
import os

import pytest

pytest.importorskip("pymemcache")  # mcm_client is built on it
from mcm_client import bucket_of  # noqa: E402

from lib import cluster as lc

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))


def load_script():
    spec = importlib.util.spec_from_file_location(
        "bucket_vectors", os.path.join(TOP, "scripts", "bucket_vectors.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_doc_holds_the_generated_table():
    bv = load_script()
    with open(os.path.join(TOP, "doc", "managed.md")) as f:
        doc = f.read()
    assert bv.table() in doc, "doc/managed.md's test vectors differ from " \
        "scripts/bucket_vectors.py's output: paste its output into the doc"
    assert "(B = 1024)" in doc and bv.BUCKETS == 1024


def test_client_bucket_function_matches_every_row():
    bv = load_script()
    rows = bv.vectors()
    assert len(rows) == len(bv.KEYS) >= 7
    for key, crc, b in rows:
        assert bucket_of(key, 1024) == b == crc % 1024, key
        assert bucket_of(key.decode(), 1024) == b  # str keys are their UTF-8 bytes
        assert lc.bucket(key, 1024) == b  # the test suites' helper agrees
    assert dict((k, c) for k, c, _ in rows)[b"123456789"] == 0xcbf43926  # CRC-32 check value


def test_a_managed_server_agrees(make_server, tmp_path):
    """A server holding none of the buckets (and not forwarding) names each key's bucket in
    its NOT_MY_BUCKET refusal; meta `b` keys carry the ones a text key cannot (a space)."""
    bv = load_script()
    secret = tmp_path / "secret"
    secret.write_bytes(lc.SECRET + b"\n")
    s = make_server("-o", f"node_id=me,cluster_secret_file={secret},buckets={bv.BUCKETS},"
                          "bucket_forward=0,forward_park_ms=0")
    text = (f"MAP 7 {bv.BUCKETS}\r\nNODE other 127.0.0.1:1\r\nNODE me 127.0.0.1:{s.port}\r\n"
            f"RANGE 0 {bv.BUCKETS - 1} other\r\nEND\r\n")
    lc.install([s], text)
    c = s.connect()
    checked = 0
    for key, _, b in bv.vectors():
        if not key:
            continue  # no protocol carries an empty key
        want = f"SERVER_ERROR NOT_MY_BUCKET {b} 7\r\n".encode()
        k64 = base64.b64encode(key).decode()
        assert c.cmd(f"mg {k64} b v") == want, key
        if b" " not in key:
            assert c.cmd(f"get {key.decode()}") == want, key
        checked += 1
    assert checked == len(bv.KEYS) - 1
    c.close()
