"""The command line: memcached's flags and their effects, refusals with a message and exit code."""

import os
import signal
import socket
import subprocess

import pytest

import mc


def run(*args, timeout=10):
    return subprocess.run([mc.server_binary()] + list(args), capture_output=True,
                          timeout=timeout)


def test_help_lists_options():
    r = run("-h")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert out.startswith("memcached 1.6.")
    for line in ["-p, --port=<num>", "-s, --unix-socket=<file>", "-m, --memory-limit=<num>",
                 "-c, --conn-limit=<num>", "-t, --threads=<num>", "-I, --max-item-size=<num>",
                 "-o, --extended"]:
        assert line in out
    assert "unix-socket" in out


def test_version_flag():
    r = run("-V")
    assert r.returncode == 0
    assert r.stdout.decode().startswith("memcached 1.6.")


@pytest.mark.parametrize("args,message", [
    (["-t", "0"], "Number of threads must be greater than 0"),
    (["-R", "0"], "Number of requests per event must be greater than 0"),
    (["-B", "bogus"], "Invalid value for binding protocol: bogus"),
    (["-I", "1k"], "slab_chunk_max (bytes: 524288) cannot be larger than -I"),
    (["-m", "1", "-I", "1m"], "Cannot set item size limit higher than 1/2 of memory max."),
    (["-o", "nonsense"], 'Illegal suboption "nonsense"'),
    (["-o", "hashpower=5"], "Initial hashtable multiplier of 5 is too low"),
    (["-o", "hashpower=12"], "Hash table power size (12) cannot be equal to or less than item"),
    (["-f", "0.5"], "Factor must be greater than 1"),
])
def test_invalid_values(args, message):
    r = run(*(mc.root_args() + ["-p", "0"] + args))
    assert r.returncode != 0
    assert message in r.stderr.decode()


def test_unknown_option():
    r = run("--no-such-option")
    assert r.returncode != 0
    assert r.stderr


def test_root_needs_u():
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    r = run("-p", "0")
    assert r.returncode != 0
    assert b"can't run as root without the -u switch" in r.stderr


def test_unix_socket(tmp_path):
    path = str(tmp_path / "mc.sock")
    p = subprocess.Popen([mc.server_binary()] + mc.root_args() + ["-s", path, "-a", "700"],
                         stderr=subprocess.PIPE)
    try:
        # The file appears at bind(), a moment before listen(): wait until it accepts.
        def accepting():
            try:
                mc.Conn(path, family=socket.AF_UNIX).close()
                return True
            except OSError:
                return False
        mc.wait_for(accepting, timeout=10, what="the unix socket to accept")
        assert oct(os.stat(path).st_mode & 0o777) == "0o700"
        c = mc.Conn(path, family=socket.AF_UNIX)
        assert c.cmd("set k 0 0 1\r\nx") == b"STORED\r\n"
        assert c.get_value("k") == (0, b"x")
        c.close()
    finally:
        p.kill()
        p.wait()


@pytest.mark.no_tls("starts its own plain server process")
def test_daemon_and_pidfile(tmp_path):
    pidfile = str(tmp_path / "mc.pid")
    portfile = str(tmp_path / "ports")
    env = dict(os.environ, MEMCACHED_PORT_FILENAME=portfile)
    r = subprocess.run([mc.server_binary()] + mc.root_args() +
                       ["-d", "-P", pidfile, "-l", "127.0.0.1", "-p", "-1"],
                       env=env, timeout=10, capture_output=True)
    assert r.returncode == 0
    pid = mc.wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(),
                      timeout=10, what="the pid file")
    pid = int(pid)
    try:
        port = mc.wait_for(lambda: os.path.exists(portfile) and open(portfile).read().split(),
                           timeout=10, what="the port file")
        c = mc.Conn(("127.0.0.1", int(port[2])))
        assert int(c.stats()["pid"]) == pid
        c.close()
    finally:
        os.kill(pid, signal.SIGTERM)
    mc.wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                open(f"/proc/{pid}/stat").read().split()[2] == "Z", timeout=10,
                what="the daemon to exit")


def test_memory_limit_evicts_oldest(make_server):
    c = make_server("-m", "2").connect()
    value = b"v" * 1000
    for i in range(4000):
        c.send(b"set key%d 0 0 1000 noreply\r\n" % i + value + b"\r\n")
    st = c.stats()
    assert int(st["evictions"]) > 0
    assert int(st["bytes"]) <= 2 * 1024 * 1024
    assert c.get_value("key0") is None
    assert c.get_value("key3999") == (0, value)


def test_no_evictions_gives_out_of_memory(make_server):
    c = make_server("-m", "2", "-M").connect()
    value = b"v" * 1000
    replies = set()
    for i in range(4000):
        c.send(b"set key%d 0 0 1000\r\n" % i + value + b"\r\n")
        replies.add(c.readline())
    assert b"SERVER_ERROR out of memory storing object\r\n" in replies
    assert c.get_value("key0") == (0, value)
    assert c.stats()["evictions"] == "0"


def test_disable_cas(make_server):
    c = make_server("-C").connect()
    c.cmd("set k 0 0 1\r\nx")
    c.send("gets k\r\n")
    assert c.read_until() == b"VALUE k 0 1 0\r\nx\r\nEND\r\n"


def test_threads_and_reqs_per_event(make_server):
    c = make_server("-t", "1", "-R", "2").connect()
    c.send("version\r\n" * 50)
    for _ in range(50):
        assert c.readline().startswith(b"VERSION ")
    st = c.stats()
    assert st["threads"] == "1"
    assert int(st["conn_yields"]) > 0


@pytest.mark.no_tls("the refusal is written in plain text before any handshake")
def test_connection_limit(make_server):
    s = make_server("-c", "50")
    conns = []
    rejected = None
    for i in range(60):
        c = s.connect()
        c.send("version\r\n")
        line = c.readline()
        if not line.startswith(b"VERSION"):
            rejected = (i, line)
            break
        conns.append(c)
    assert rejected == (26, b"ERROR Too many open connections\r\n")
    conns[0].close()
    mc.wait_for(lambda: conns[1].stats()["curr_connections"] == "25", timeout=5,
                what="the closed connection to be counted")
    assert int(conns[1].stats()["rejected_connections"]) == 1


def test_very_verbose_logs_commands(make_server):
    import re
    s = make_server("-vv")
    c = s.connect()
    assert c.cmd("set vvkey 0 0 1\r\nx") == b"STORED\r\n"
    # -vv prints each command line as "<fd command" on stderr, as memcached does
    mc.wait_for(lambda: re.search(r"<\d+ set vvkey 0 0 1\n", s.read_log()), timeout=5,
                what="the command in the -vv log")


def test_idle_timeout(make_server):
    s = make_server("-o", "idle_timeout=1")
    idle = s.connect()
    assert idle.cmd("version").startswith(b"VERSION ")
    # memcached checks about once a second; an idle connection is closed after the timeout
    assert idle.expect_closed(timeout=8)
    assert s.connect().cmd("version").startswith(b"VERSION ")


def test_no_hashexpand(make_server):
    c = make_server("-o", "hashpower=13,no_hashexpand").connect()
    for i in range(0, 20000, 1000):
        c.send("".join(f"set k{j} 0 0 1 noreply\r\nx\r\n" for j in range(i, i + 1000)))
    st = c.stats()
    assert st["curr_items"] == "20000"
    assert st["hash_power_level"] == "13"
    assert c.get_value("k19999") == (0, b"x")
