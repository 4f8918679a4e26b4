"""Fixtures shared by the cluster suites."""

import pytest

BUCKETS = 16  # the bucket count of `node` servers


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
