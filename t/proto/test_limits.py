"""Limits (hardening): what a client can make the server hold. A client that never reads its
replies, a megabyte of keys on one line, values declared and never sent, thousands of idle
connections: memory stays bounded, the errors are memcached's, other clients are served.
Run against this server and Debian's memcached alike (the bounds are memcached's too)."""

import resource
import socket
import time

import pytest

from lib import mc

MIB = 1024


@pytest.mark.no_tls("raw-socket buffering: TLS records change what is held where")
def test_a_client_that_never_reads_is_held_to_bounded_memory(make_server):
    s = make_server("-m", "64")
    c = s.connect()
    assert c.cmd("set v 0 0 500000\r\n" + "y" * 500000) == b"STORED\r\n"
    slow = socket.create_connection(("127.0.0.1", s.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    before = s.rss_kib()
    sent, blocked = 0, 0
    deadline = time.monotonic() + 2.0
    # Ask for the 500 KB value thousands of times and read nothing: the server stops reading
    # the requests once its replies are not taken (as memcached does).
    while time.monotonic() < deadline and sent < 8 << 20:
        try:
            sent += slow.send(b"get v\r\n" * 1000)
        except BlockingIOError:
            blocked += 1
            time.sleep(0.005)
    assert blocked > 0, "the server kept reading requests it could not answer"
    grew = s.rss_kib() - before
    assert grew < 16 * MIB, f"{grew} KiB held for a client that does not read"
    # Everyone else is served meanwhile.
    assert c.get_value("v") is not None
    assert c.cmd("set other 0 0 2\r\nok") == b"STORED\r\n"
    slow.close()
    c.close()


def test_a_megabyte_of_keys_on_one_get_line(make_server):
    s = make_server()
    c = s.connect()
    assert c.cmd("set present 0 0 3\r\nyes") == b"STORED\r\n"
    keys = " ".join(f"key{i:07d}" for i in range(100000))
    assert len(keys) > 1 << 20
    c.send(f"get {keys} present\r\n")
    assert c.read_until() == b"VALUE present 0 3\r\nyes\r\nEND\r\n"
    c.send(f"gets {keys}\r\n")
    assert c.read_until() == b"END\r\n"
    assert c.cmd("version").startswith(b"VERSION")


@pytest.mark.parametrize("length,reply", [
    ("4294967295", b"CLIENT_ERROR bad command line format\r\n"),
    ("2147483648", b"CLIENT_ERROR bad command line format\r\n"),
    ("-1", b"CLIENT_ERROR bad command line format\r\n"),
    ("99999999999999999999", b"CLIENT_ERROR bad command line format\r\n"),
])
def test_impossible_value_lengths_are_refused(server, length, reply):
    c = server.connect()
    assert c.cmd(f"set k 0 0 {length}") == reply
    assert c.cmd("version").startswith(b"VERSION")  # nothing is swallowed


def test_a_value_over_the_item_limit_is_swallowed(server):
    c = server.connect()
    c.send("set k 0 0 2000000\r\n")
    c.send(b"z" * 2000000 + b"\r\n")
    assert c.readline() == b"SERVER_ERROR object too large for cache\r\n"
    assert c.cmd("version").startswith(b"VERSION")  # the value did not run as commands
    assert c.cmd("get k") == b"END\r\n"


@pytest.mark.no_tls("raw sockets")
def test_values_declared_and_never_sent(make_server):
    s = make_server("-m", "64")
    c = s.connect()
    base = int(c.stats()["curr_connections"])
    before = s.rss_kib()
    conns = []
    for i in range(50):
        k = socket.create_connection(("127.0.0.1", s.port))
        k.sendall(b"set big%d 0 0 1000000\r\n" % i + b"x" * 1000)
        conns.append(k)
    mc.wait_for(lambda: int(c.stats()["curr_connections"]) == base + 50, what="50 writers")
    # At most one item each, as memcached allocates them; bounded by -m, not by the
    # lengths declared.
    assert s.rss_kib() - before < 72 * MIB
    assert c.cmd("set small 0 0 2\r\nok") == b"STORED\r\n"
    for k in conns:
        k.close()
    mc.wait_for(lambda: int(c.stats()["curr_connections"]) == base, what="the writers gone")
    for i in range(50):
        assert c.cmd(f"get big{i}") == b"END\r\n"  # a half-sent value is never stored
    c.close()


@pytest.mark.no_tls("raw sockets, ten thousand handshakes")
def test_ten_thousand_idle_connections(make_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 10300:
        pytest.skip(f"the open-files limit ({hard}) is below 10,300")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 10300), hard))
    s = make_server("-c", "10300", "-t", "2")
    before = s.rss_kib()
    idle = []
    try:
        for _ in range(10000):
            idle.append(socket.create_connection(("127.0.0.1", s.port), timeout=10))
        c = s.connect()
        mc.wait_for(lambda: int(c.stats()["curr_connections"]) >= 10001, timeout=20,
                    what="10,000 idle connections accepted")
        # Served as usual while they sit there.
        assert c.cmd("set k 0 0 2\r\nhi") == b"STORED\r\n"
        assert c.get_value("k")[1] == b"hi"
        grew = s.rss_kib() - before
        assert grew < 200 * MIB, f"{grew} KiB for 10,000 idle connections"
        assert c.stats()["rejected_connections"] == "0"
        c.close()
    finally:
        for k in idle:
            k.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
