"""Shared pytest fixtures for the protocol suites.

`server` starts a fresh server per test (the binary from $MC_TEST_BIN, default ./memcached-debug)
in the test's tmp_path and stops it by PID afterwards; its log is printed if the test failed.
`make_server(*args)` starts extra servers with other flags. `conn` is a raw connection to `server`.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))

import mc  # noqa: E402


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def make_server(tmp_path, request):
    servers = []

    def start(*args, **kw):
        d = tmp_path / f"srv{len(servers)}"
        d.mkdir()
        s = mc.Server(d, args=args, **kw)
        servers.append(s)
        return s

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    problems = []
    for s in servers:
        rc = s.stop()
        log = s.read_log()
        if failed:
            sys.stderr.write(f"--- log of {s.cmd} ---\n{log}\n")
        # Our server must exit cleanly on SIGTERM; a sanitizer report (leak, overflow, UB)
        # fails the test that provoked it.
        ours = os.path.abspath(s.binary).startswith(mc.TOP + os.sep)
        killed = getattr(s, "killed", False)  # a test's SIGKILL, not a crash
        if ours and ((rc != 0 and not killed) or "Sanitizer" in log or "runtime error:" in log):
            problems.append(f"{s.cmd} exited with {rc}:\n{log[-4000:]}")
    if problems and not failed:
        pytest.fail("\n".join(problems))


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def conn(server):
    c = server.connect()
    yield c
    c.close()


@pytest.fixture
def ours(server):
    """Skip unless the binary is this project's debug build (needs the `debug` command)."""
    if not mc.is_ours(server):
        pytest.skip("needs this project's debug build")
    return server


def pytest_collection_modifyitems(config, items):
    """Tests marked `documented` assert memcached's documented behaviour where 1.6.18 differs:
    they are expected to fail against a stock binary and must pass against ours."""
    binary = os.path.abspath(mc.server_binary())
    stock = not binary.startswith(mc.TOP + os.sep) and not os.environ.get("MC_TEST_OURS")
    for item in items:
        if stock and item.get_closest_marker("documented"):
            item.add_marker(pytest.mark.xfail(strict=True,
                                              reason="memcached 1.6.18 differs from its docs"))
