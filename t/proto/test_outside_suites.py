"""Test suites nobody here wrote, run against the server under test: pymemcache's own
integration tests (shipped by Debian's python3-pymemcache). TLS cases wait for TLS."""

import os
import subprocess
import sys

import pytest

pymemcache = pytest.importorskip("pymemcache")


@pytest.mark.no_tls("pymemcache's own suite connects in plain TCP")
def test_pymemcache_integration_suite(server, tmp_path):
    tests = os.path.join(os.path.dirname(pymemcache.__file__), "test", "test_integration.py")
    if not os.path.exists(tests):
        pytest.skip("this pymemcache ships no integration tests")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         f"cache_dir={tmp_path}", tests, "--server", "127.0.0.1", "--port", str(server.port),
         "-k", "not tls"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    tail = r.stdout[-3000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and " failed" not in r.stdout, tail
