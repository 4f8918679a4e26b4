"""Fixtures shared by the cluster suites: `node` (a managed server, the test playing the
coordinator) and `cluster` (managed servers with a real mc-coordinator in front)."""

import pytest

from lib.cluster import SECRET
from lib.coord import Coordinator, wait_settled

BUCKETS = 16  # the bucket count of `node` servers
COORD_BUCKETS = 64  # ... and of `cluster` servers


@pytest.fixture
def node(make_server, tmp_path):
    """node(name, *extra_args) starts a managed server of a BUCKETS-bucket cluster whose
    secret is in the test's tmp_path."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"test-cluster-secret-0123456789\n")

    def start(name, *extra):
        return make_server("-o", f"node_id={name},cluster_secret_file={secret},"
                                 f"buckets={BUCKETS}", *extra)
    return start


@pytest.fixture
def cluster(make_server, tmp_path, request):
    """cluster(n, replicas) -> (servers {name: Server}, coordinator); cluster.node(name,
    port=None) starts (or restarts) one server. Coordinators are stopped by PID at the end and
    must exit 0 on SIGTERM (unless the test killed one); their logs are printed if the test
    failed."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    coords = []

    def node(name, port=None, extra=()):
        args = ["-o", f"node_id={name},cluster_secret_file={secret},buckets={COORD_BUCKETS}"]
        if port is not None:
            args += ["-p", str(port)]
        return make_server(*args, *extra)

    def start(n=3, replicas=1, control=None, settle=True, server_args=(), **kw):
        servers = {f"n{i}": node(f"n{i}", extra=server_args) for i in range(n)}
        c = Coordinator(tmp_path / "coord", secret, sorted(servers.items()), replicas=replicas,
                        buckets=COORD_BUCKETS, control=control(servers) if control else None, **kw)
        coords.append(c)
        if settle:
            wait_settled(c, replicas, sorted(servers))
        return servers, c

    def restart_coordinator(old, **kw):
        # the same state: the same file, or (MC_TEST_COORD_STATE=etcd) the same etcd prefix
        kw.setdefault("state_url", old.state_url)
        c = Coordinator(tmp_path / "coord", secret, [], replicas=kw.pop("replicas", 1),
                        buckets=COORD_BUCKETS, state=old.state, **kw)
        coords.append(c)
        return c

    start.node = node
    start.restart_coordinator = restart_coordinator
    start.secret = secret
    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    problems = []
    for c in coords:
        rc = c.stop()
        log = c.own_log()
        if failed:
            print(f"--- coordinator log (exit {rc}) ---\n{log[-8000:]}")
        if (rc != 0 and not c.killed) or "Sanitizer" in log or "runtime error:" in log:
            problems.append(f"{c.cmd} exited with {rc}:\n{log[-4000:]}")
    if problems and not failed:
        pytest.fail("\n".join(problems))
