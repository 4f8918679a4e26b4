"""-o io_engine=uring|epoll: the workers' network loop (doc/performance.md, io_uring).

Our server only. The io_uring loop is used where the kernel allows it; where it refuses, the
server logs one line and serves through epoll. MC_URING_FORCE_FAIL=1 in the server's
environment is the test hook that makes the io_uring setup fail (server/uring.h)."""

import os

import pytest

from lib import mc


def ring_fds(server):
    n = 0
    for fd in os.listdir(f"/proc/{server.proc.pid}/fd"):
        try:
            if "io_uring" in os.readlink(f"/proc/{server.proc.pid}/fd/{fd}"):
                n += 1
        except OSError:
            pass
    return n


def serves(server):
    c = server.connect()
    try:
        assert c.cmd("set k 0 0 5\r\nhello") == b"STORED\r\n"
        assert c.get_value("k") == (0, b"hello")
        big = b"v" * 300000  # received straight into the item, sent in more than one piece
        c.send(b"set big 0 0 %d\r\n" % len(big) + big + b"\r\n")
        assert c.readline() == b"STORED\r\n"
        assert c.get_value("big") == (0, big)
        c.send(b"get k\r\n" * 500)  # pipelined
        assert c.readexact(500 * len(b"VALUE k 0 5\r\nhello\r\nEND\r\n")) == \
            b"VALUE k 0 5\r\nhello\r\nEND\r\n" * 500
    finally:
        c.close()


@pytest.fixture
def ours_binary(server):
    if not mc.is_ours(server):
        pytest.skip("this project's option")


@pytest.mark.no_tls("TLS keeps every worker on epoll (test_tls_keeps_epoll)")
def test_uring_engine_serves(ours_binary, make_server):
    s = make_server("-t", "2", "-o", "io_engine=uring")
    serves(s)
    if "io_uring unavailable" in s.read_log():
        pytest.skip("this kernel refuses io_uring: " + s.read_log())
    assert ring_fds(s) == 2  # one ring per worker


@pytest.mark.no_tls("TLS keeps every worker on epoll (test_tls_keeps_epoll)")
def test_uring_is_the_default(ours_binary, make_server):
    s = make_server("-t", "3")
    c = s.connect()
    st = c.stats("settings")
    if "io_uring unavailable" in s.read_log():
        assert st["io_engine"] == "epoll"
        pytest.skip("this kernel refuses io_uring")
    engine = os.environ.get("MC_TEST_IO_ENGINE", "uring")
    assert st["io_engine"] == engine
    assert ring_fds(s) == (3 if engine == "uring" else 0)


def test_epoll_engine_has_no_ring(ours_binary, make_server):
    s = make_server("-t", "2", "-o", "io_engine=epoll")
    serves(s)
    assert ring_fds(s) == 0


@pytest.mark.no_tls("TLS keeps every worker on epoll (test_tls_keeps_epoll)")
def test_uring_setup_failure_falls_back_to_epoll(ours_binary, make_server):
    s = make_server("-t", "2", "-o", "io_engine=uring", env={"MC_URING_FORCE_FAIL": "1"})
    serves(s)
    log = s.read_log()
    assert log.count("io_uring unavailable") == 1, log
    assert "using epoll" in log
    assert ring_fds(s) == 0
    assert s.connect().stats("settings")["io_engine"] == "epoll"


def test_bad_engine_refused(ours_binary, tmp_path):
    import subprocess
    p = subprocess.run([mc.server_binary()] + mc.root_args() + ["-o", "io_engine=kqueue"],
                       capture_output=True, timeout=10)
    assert p.returncode != 0
    assert b"io_engine" in p.stderr


def test_tls_keeps_epoll(ours_binary, make_server):
    """-Z asks for io_uring in vain: every worker serves through epoll, said at -v as a choice
    (not as io_uring failing), and TLS clients are served."""
    s = make_server("-Z", "-o", "ssl_chain_cert={},ssl_key={}".format(*mc.test_pki()[1:]),
                    "-o", "io_engine=uring", "-v", tls=True)
    c = s.connect()
    assert c.stats("settings")["io_engine"] == "epoll"
    assert c.cmd("version").startswith(b"VERSION")
    c.close()
    assert ring_fds(s) == 0
    log = s.read_log()
    assert "io_uring not used (TLS (-Z) is served by the epoll loop): using epoll" in log, log
    assert "io_uring unavailable" not in log
