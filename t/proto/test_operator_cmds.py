"""Operators' commands as memcached 1.6.18 answers them: stats cachedump, stats sizes*,
lru_crawler (metadump, crawl, sleep, tocrawl, enable, disable), slabs automove/reassign and
watch. Every test here passes against /usr/bin/memcached too, except the ones using `ours`.

Small items (key of a few bytes, one-byte value) live in class 1 on both servers. Item sizes
(metadump's size=, stats sizes' buckets) are each server's own and only checked for form.
"""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import mc


def reply(conn, line):
    """All reply lines up to END (or the single line of an error)."""
    conn.send(line + "\r\n")
    first = conn.readline()
    if first.startswith((b"ITEM ", b"STAT ")):
        return first + conn.read_until(b"END\r\n")
    return first


def store(conn, key, value, exptime=0, flags=0):
    assert conn.cmd(f"set {key} {flags} {exptime} {len(value)}\r\n{value}") == b"STORED\r\n"


BUSY = b"BUSY currently processing crawler request\r\n"


def crawler_cmd(conn, line, timeout=10.0):
    """A crawler command's first reply line. memcached answers BUSY while its crawler (it
    also runs on its own) is busy, so this retries then; this server never answers BUSY."""
    deadline = time.monotonic() + timeout
    while True:
        conn.send(line + "\r\n")
        while b"\n" not in conn.buf:
            conn._fill()
        if not conn.buf.startswith(BUSY):
            return
        conn.buf = conn.buf[len(BUSY):]
        assert time.monotonic() < deadline, "crawler stayed busy"
        time.sleep(0.05)


def read_metadump(conn, arg):
    """lru_crawler metadump's "\\n"-terminated lines, up to END."""
    crawler_cmd(conn, f"lru_crawler metadump {arg}")
    while not conn.buf.endswith(b"END\r\n"):
        conn._fill()
    data, conn.buf = conn.buf, b""
    assert data.endswith(b"END\r\n")
    body = data[: -len(b"END\r\n")]
    return [l for l in body.decode().split("\n") if l] if body else []


# --- stats cachedump -------------------------------------------------------------------------


def test_cachedump_lists_class_items(server, conn):
    store(conn, "a", "x")
    store(conn, "bb", "xy", exptime=100)
    now = time.time()
    out = reply(conn, "stats cachedump 1 0")
    lines = out.decode().split("\r\n")
    assert lines[-2:] == ["END", ""]
    items = {}
    for l in lines[:-2]:
        m = re.fullmatch(r"ITEM (\S+) \[(\d+) b; (\d+) s\]", l)
        assert m, l
        items[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    # memcached lists only the items still in the class's HOT segment, which its LRU
    # maintainer empties on its own schedule; this server lists every item of the class.
    assert set(items) <= {"a", "bb"}
    if mc.is_ours(server):
        assert set(items) == {"a", "bb"}
    if "a" in items:
        assert items["a"] == (1, 0)  # no expiry: 0 s
    if "bb" in items:
        assert items["bb"][0] == 2
        assert abs(items["bb"][1] - (now + 100)) <= 3  # an absolute unix time


def test_cachedump_limit(server, conn):
    for k in ("a", "b", "c"):
        store(conn, k, "x")
    # limit 0 means all; extra arguments are ignored
    n = reply(conn, "stats cachedump 1 0 extra").count(b"ITEM ")
    assert n <= 3 and (n == 3 or not mc.is_ours(server))  # see above: memcached's HOT segment
    out = reply(conn, "stats cachedump 1 2")
    assert out.count(b"ITEM ") <= 2 and out.endswith(b"END\r\n")
    if mc.is_ours(server):
        assert out.count(b"ITEM ") == 2


@pytest.mark.parametrize(
    "line,expected",
    [
        ("stats cachedump", b"CLIENT_ERROR bad command line\r\n"),
        ("stats cachedump 1", b"CLIENT_ERROR bad command line\r\n"),
        ("stats cachedump x 0", b"CLIENT_ERROR bad command line format\r\n"),
        ("stats cachedump 1 x", b"CLIENT_ERROR bad command line format\r\n"),
        ("stats cachedump -1 0", b"CLIENT_ERROR bad command line format\r\n"),
        ("stats cachedump 1 -1", b"CLIENT_ERROR bad command line format\r\n"),
        ("stats cachedump 64 0", b"CLIENT_ERROR Illegal slab id\r\n"),
        ("stats cachedump 0 0", b"END\r\n"),
        ("stats cachedump 63 0", b"END\r\n"),
        ("stats cachedump 2 0", b"END\r\n"),
    ],
)
def test_cachedump_errors_and_empty_classes(conn, line, expected):
    store(conn, "a", "x")
    assert conn.cmd(line) == expected


def test_cachedump_disabled_by_X(make_server):
    c = make_server("-X").connect()
    assert c.cmd("stats cachedump 1 0") == b"CLIENT_ERROR stats cachedump not allowed\r\n"
    assert c.cmd("lru_crawler metadump all") == b"ERROR metadump not allowed\r\n"


def test_pymemcache_cachedump(server):
    pymemcache = pytest.importorskip("pymemcache")
    from pymemcache.client.base import Client

    c = Client(("127.0.0.1", server.port), connect_timeout=5, timeout=5, **mc.pymemcache_tls())
    try:
        c.set("pk", b"v")
        c.set("pq", b"vw")
        got = c.stats("cachedump", "1", "0")
        want = {b"pk": b"[1 b; 0 s]", b"pq": b"[2 b; 0 s]"}
        assert got.items() <= want.items()  # memcached: only its HOT segment (see above)
        if mc.is_ours(server):
            assert got == want
    finally:
        c.close()


# --- lru_crawler -----------------------------------------------------------------------------

META = re.compile(
    r"key=(\S+) exp=(-1|\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)")


@pytest.mark.parametrize("arg", ["all", "1", "1,2", "hash"])
def test_metadump(conn, arg):
    store(conn, "a", "x")
    store(conn, "k%x", "z", exptime=100)
    assert conn.get_value("a") == (0, b"x")
    now = time.time()
    got = {}
    for l in read_metadump(conn, arg):
        m = META.fullmatch(l)
        assert m, l
        got[m.group(1)] = m.groups()[1:]
    assert set(got) == {"a", "k%25x"}  # keys are URI-encoded
    exp, la, cas, fetch, cls, _size = got["a"]
    assert (exp, fetch, cls) == ("-1", "yes", "1")
    assert abs(int(la) - now) <= 3
    exp, la, cas2, fetch, cls, _size = got["k%25x"]
    assert abs(int(exp) - (now + 100)) <= 3 and fetch == "no" and cls == "1"
    assert int(cas2) > int(cas) > 0
    assert read_metadump(conn, "2") == []


@pytest.mark.parametrize(
    "line,expected",
    [
        ("lru_crawler", b"ERROR\r\n"),
        ("lru_crawler foo", b"ERROR\r\n"),
        ("lru_crawler metadump", b"ERROR\r\n"),
        ("lru_crawler metadump all extra", b"ERROR\r\n"),
        ("lru_crawler metadump 0", b"BADCLASS invalid class id\r\n"),
        ("lru_crawler metadump 64", b"BADCLASS invalid class id\r\n"),
        ("lru_crawler metadump x", b"BADCLASS invalid class id\r\n"),
        ("lru_crawler metadump 1,64", b"BADCLASS invalid class id\r\n"),
        ("lru_crawler mgdump 1", b"ERROR\r\n"),
        ("lru_crawler crawl", b"ERROR\r\n"),
        ("lru_crawler crawl all extra", b"ERROR\r\n"),
        ("lru_crawler crawl all", b"OK\r\n"),
        ("lru_crawler crawl 1", b"OK\r\n"),
        ("lru_crawler crawl 1,2", b"OK\r\n"),
        ("lru_crawler crawl 0", b"BADCLASS invalid class id\r\n"),
        ("lru_crawler crawl x", b"BADCLASS invalid class id\r\n"),
        ("lru_crawler crawl 1,0", b"BADCLASS invalid class id\r\n"),
        ("lru_crawler sleep", b"ERROR\r\n"),
        ("lru_crawler sleep 100", b"OK\r\n"),
        ("lru_crawler sleep 1000000", b"OK\r\n"),
        ("lru_crawler sleep 1000001", b"CLIENT_ERROR sleep must be one second or less\r\n"),
        ("lru_crawler sleep x", b"CLIENT_ERROR bad command line format\r\n"),
        ("lru_crawler sleep -1", b"CLIENT_ERROR bad command line format\r\n"),
        ("lru_crawler sleep 100 extra", b"ERROR\r\n"),
        ("lru_crawler tocrawl", b"ERROR\r\n"),
        ("lru_crawler tocrawl 0", b"OK\r\n"),
        ("lru_crawler tocrawl 5", b"OK\r\n"),
        ("lru_crawler tocrawl x", b"CLIENT_ERROR bad command line format\r\n"),
        ("lru_crawler tocrawl -1", b"CLIENT_ERROR bad command line format\r\n"),
        ("lru_crawler enable extra", b"ERROR\r\n"),
        ("lru_crawler disable extra", b"ERROR\r\n"),
    ],
)
def test_lru_crawler_replies(conn, line, expected):
    crawler_cmd(conn, line)
    assert conn.readline() == expected


def test_lru_crawler_enable_disable(server, conn):
    # Enabling a running crawler fails as memcached's does (its thread already runs).
    assert conn.cmd("lru_crawler enable") == b"ERROR failed to start lru crawler thread\r\n"
    assert conn.cmd("lru_crawler disable") == b"OK\r\n"
    assert conn.cmd("lru_crawler disable") == b"OK\r\n"
    if mc.is_ours(server):
        assert conn.stats("settings")["lru_crawler"] == "no"
    else:  # memcached's crawler thread stops after the OK: its setting follows a moment later
        mc.wait_for(lambda: conn.stats("settings")["lru_crawler"] == "no", timeout=10,
                    what="memcached's crawler stopped")
    assert conn.cmd("lru_crawler metadump all") == b"CLIENT_ERROR lru crawler disabled\r\n"
    crawler_cmd(conn, "lru_crawler crawl all")
    assert conn.readline() == b"CLIENT_ERROR lru crawler disabled\r\n"
    # memcached may still be stopping its crawler thread: it then refuses for a moment.
    deadline = time.monotonic() + 10
    while (r := conn.cmd("lru_crawler enable")) != b"OK\r\n" and not mc.is_ours(server):
        assert r == b"ERROR failed to start lru crawler thread\r\n"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert r == b"OK\r\n"
    assert conn.stats("settings")["lru_crawler"] == "yes"
    assert read_metadump(conn, "all") == []


def test_lru_crawler_started_disabled(make_server):
    c = make_server("-o", "no_lru_crawler").connect()
    assert c.cmd("lru_crawler metadump all") == b"CLIENT_ERROR lru crawler disabled\r\n"
    assert c.cmd("lru_crawler crawl 1") == b"CLIENT_ERROR lru crawler disabled\r\n"
    assert c.cmd("lru_crawler enable") == b"OK\r\n"
    store(c, "a", "x")
    assert [l.split()[0] for l in read_metadump(c, "all")] == ["key=a"]


@pytest.mark.no_tls("memcached-tool speaks plain TCP")
def test_memcached_tool_dump(server):
    tool = "/usr/share/memcached/scripts/memcached-tool"
    if not os.path.exists(tool) or shutil.which("perl") is None:
        pytest.skip("memcached-tool not installed")
    c = server.connect()
    store(c, "a", "x")
    store(c, "bb", "xy", flags=3)
    out = subprocess.run(["perl", tool, f"127.0.0.1:{server.port}", "dump"],
                         capture_output=True, timeout=30, check=True).stdout
    lines = out.split(b"\r\n")
    assert b"add a 0 0 1" in lines and b"add bb 3 0 2" in lines
    assert lines[lines.index(b"add a 0 0 1") + 1] == b"x"
    assert lines[lines.index(b"add bb 3 0 2") + 1] == b"xy"


# --- stats sizes -----------------------------------------------------------------------------


def test_stats_sizes(conn):
    assert reply(conn, "stats sizes") == b"STAT sizes_status disabled\r\nEND\r\n"
    # sizes_enable and sizes_disable answer one STAT line and no END, as memcached does.
    assert conn.cmd("stats sizes_enable") == b"STAT sizes_status enabled\r\n"
    assert conn.cmd("stats sizes") == b"END\r\n"
    store(conn, "a", "x" * 100)
    out = reply(conn, "stats sizes").decode()
    m = re.fullmatch(r"STAT (\d+) 1\r\nEND\r\n", out)
    assert m and int(m.group(1)) % 32 == 0 and int(m.group(1)) >= 100, out
    assert conn.cmd("stats sizes_disable") == b"STAT sizes_status disabled\r\n"
    assert reply(conn, "stats sizes extra") == b"STAT sizes_status disabled\r\nEND\r\n"


# --- slabs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line,expected",
    [
        ("slabs automove 0", b"OK\r\n"),
        ("slabs automove 1", b"OK\r\n"),
        ("slabs automove 2", b"OK\r\n"),
        ("slabs automove 1 x", b"OK\r\n"),
        ("slabs automove 3", b"ERROR\r\n"),
        ("slabs automove", b"ERROR\r\n"),
        ("slabs automove invalid", b"CLIENT_ERROR bad command line format\r\n"),
        ("slabs automove -1", b"CLIENT_ERROR bad command line format\r\n"),
        ("slabs reassign 1 1", b"SAME src and dst class are identical\r\n"),
        ("slabs reassign 1 2", b"NOSPARE source class has no spare pages\r\n"),
        ("slabs reassign 2 1", b"NOSPARE source class has no spare pages\r\n"),
        ("slabs reassign 0 2", b"NOSPARE source class has no spare pages\r\n"),
        ("slabs reassign -1 2", b"BADCLASS invalid src or dst class id\r\n"),
        ("slabs reassign 200 2", b"BADCLASS invalid src or dst class id\r\n"),
        ("slabs reassign 1 200", b"BADCLASS invalid src or dst class id\r\n"),
        ("slabs reassign x 2", b"CLIENT_ERROR bad command line format\r\n"),
        ("slabs reassign 1", b"ERROR\r\n"),
        ("slabs reassign", b"ERROR\r\n"),
        ("slabs reassign 1 2 3", b"ERROR\r\n"),
        ("slabs", b"ERROR\r\n"),
        ("slabs foo", b"ERROR\r\n"),
        ("slabs foo bar", b"ERROR\r\n"),
    ],
)
def test_slabs_replies(conn, line, expected):
    store(conn, "a", "x")
    assert conn.cmd(line) == expected


# --- watch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line,expected",
    [
        ("watch", b"OK\r\n"),
        ("watch fetchers", b"OK\r\n"),
        ("watch mutations", b"OK\r\n"),
        ("watch evictions", b"OK\r\n"),
        ("watch rawcmds", b"OK\r\n"),
        ("watch sysevents", b"OK\r\n"),
        ("watch connevents", b"OK\r\n"),
        ("watch proxyreqs", b"OK\r\n"),
        ("watch proxyevents", b"OK\r\n"),
        ("watch proxyuser", b"OK\r\n"),
        ("watch fetchers fetchers", b"OK\r\n"),
        ("watch fetchers mutations evictions rawcmds connevents sysevents", b"OK\r\n"),
        ("watch foo", b"ERROR\r\n"),
        ("watch gets", b"ERROR\r\n"),
        ("watch deletions", b"ERROR\r\n"),
        ("watch fetchers foo", b"ERROR\r\n"),
    ],
)
def test_watch_flags(server, line, expected):
    c = server.connect()
    assert c.cmd(line) == expected
    c.close()


def watch_lines(w, n, timeout=5.0):
    """n "\\n"-terminated log lines from a watcher connection."""
    deadline = time.monotonic() + timeout
    while w.buf.count(b"\n") < n:
        assert time.monotonic() < deadline, w.buf
        w._fill()
    lines = w.buf.decode().split("\n")
    w.buf = "\n".join(lines[n:]).encode()
    return lines[:n]


PREFIX = r"ts=\d+\.\d+ gid=\d+ "


def test_watch_fetchers_and_mutations(server):
    w = server.connect()
    assert w.cmd("watch fetchers mutations") == b"OK\r\n"
    c = server.connect()
    store(c, "k%x", "z", exptime=100)
    assert c.get_value("k%x") == (0, b"z")
    assert c.get_value("nope") is None
    assert c.cmd("add k%x 0 0 1\r\ny") == b"NOT_STORED\r\n"
    lines = watch_lines(w, 6)
    cfd = r"cfd=\d+"
    # a storage command looks its key up first, as memcached's does
    assert re.fullmatch(PREFIX + r"type=item_get key=k%25x status=not_found clsid=0 "
                        + cfd + r" size=0", lines[0]), lines
    assert re.fullmatch(PREFIX + r"type=item_store key=k%25x status=stored cmd=set "
                        r"ttl=(100|99) clsid=1 " + cfd + r" size=1", lines[1]), lines
    assert re.fullmatch(PREFIX + r"type=item_get key=k%25x status=found clsid=1 "
                        + cfd + r" size=1", lines[2]), lines
    assert re.fullmatch(PREFIX + r"type=item_get key=nope status=not_found clsid=0 "
                        + cfd + r" size=0", lines[3]), lines
    assert re.fullmatch(PREFIX + r"type=item_get key=k%25x status=found clsid=1 "
                        + cfd + r" size=1", lines[4]), lines
    assert re.fullmatch(PREFIX + r"type=item_store key=k%25x status=not_stored cmd=add "
                        r"ttl=0 clsid=1 " + cfd + r" size=1", lines[5]), lines
    gids = [int(re.search(r"gid=(\d+)", l).group(1)) for l in lines]
    assert gids == sorted(gids) and len(set(gids)) == 6


def test_watch_only_its_flags(server):
    w = server.connect()
    assert w.cmd("watch mutations") == b"OK\r\n"
    c = server.connect()
    assert c.get_value("a") is None  # a fetch: not watched
    store(c, "a", "x")
    (line,) = watch_lines(w, 1)
    assert " type=item_store key=a status=stored cmd=set " in line


def test_watch_evictions(make_server):
    s = make_server("-m", "2", "-I", "512k")
    w = s.connect()
    assert w.cmd("watch evictions") == b"OK\r\n"
    c = s.connect()
    v = "x" * 100000
    for i in range(60):
        store(c, f"big{i}", v)
    line = watch_lines(w, 1)[0]
    assert re.fullmatch(PREFIX + r"type=eviction key=big\d+ fetch=no ttl=-1 la=\d+ "
                        r"clsid=\d+ size=100000", line), line


def test_watch_disabled_by_W(make_server):
    c = make_server("-W").connect()
    assert c.cmd("watch") == b"CLIENT_ERROR watch commands not allowed\r\n"


def test_watcher_close_is_harmless(server):
    w = server.connect()
    assert w.cmd("watch") == b"OK\r\n"
    w.close()
    c = server.connect()
    for i in range(50):
        assert c.get_value(f"k{i}") is None
    assert c.cmd("version").startswith(b"VERSION ")


@pytest.mark.no_tls("a raw socket with a small receive window")
def test_slow_watcher_skips_lines(ours):
    """A watcher that does not read loses lines (the server does not wait for it) and is
    told how many once it reads again."""
    w = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    w.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    w.connect(("127.0.0.1", ours.port))
    w.sendall(b"watch\r\n")
    c = ours.connect()
    key = "k" * 200
    batch = "".join(f"get {key}{i}\r\n" for i in range(500))
    start = time.monotonic()
    for _ in range(60):  # 30000 log lines of ~270 bytes: far more than the watcher buffer
        c.send(batch)
        for _ in range(500):
            assert c.readline() == b"END\r\n"
    assert time.monotonic() - start < 60
    w.settimeout(5)
    data = b""
    deadline = time.monotonic() + 20
    while b"skipped=" not in data and time.monotonic() < deadline:
        chunk = w.recv(1 << 20)
        assert chunk
        data += chunk
    m = re.search(rb"\nskipped=(\d+)\n", data)
    assert m and int(m.group(1)) > 0
    w.close()


def test_slabs_reassign_disabled(make_server):
    c = make_server("-o", "no_slab_reassign").connect()
    for line in ("slabs reassign 1 2", "slabs reassign 1 1", "slabs reassign x 1"):
        assert c.cmd(line) == b"CLIENT_ERROR slab reassignment disabled\r\n"
    assert c.cmd("slabs automove 1") == b"OK\r\n"


def test_watch_meta_delete_incr(server):
    """Lookups that memcached logs as item_get: mg, ms, delete, incr (found or not)."""
    w = server.connect()
    assert w.cmd("watch fetchers mutations") == b"OK\r\n"
    c = server.connect()
    assert c.cmd("ms mk 2\r\nhi") == b"HD\r\n"
    c.send("mg mk v\r\n")
    assert c.readline() == b"VA 2\r\n" and c.readline() == b"hi\r\n"
    assert c.cmd("incr mk 1") == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert c.cmd("delete mk") == b"DELETED\r\n"
    assert c.cmd("incr mk 1") == b"NOT_FOUND\r\n"
    got = []
    for l in watch_lines(w, 6):
        f = dict(kv.split("=", 1) for kv in l.split(" "))
        got.append((f["type"], f["key"], f["status"], f.get("cmd")))
    assert got == [
        ("item_get", "mk", "not_found", None),
        ("item_store", "mk", "stored", "set"),
        ("item_get", "mk", "found", None),
        ("item_get", "mk", "found", None),
        ("item_get", "mk", "found", None),
        ("item_get", "mk", "not_found", None),
    ]


def test_watcher_logbuf_size_option(make_server):
    """memcached's -o watcher_logbuf_size (KB) and worker_logbuf_size: accepted, checked as
    memcached checks them, and watch works with a small buffer."""
    for opt, err in (("watcher_logbuf_size", "Missing watcher_logbuf_size argument"),
                     ("worker_logbuf_size=abc", "could not parse argument to worker_logbuf_size")):
        r = subprocess.run([mc.server_binary()] + mc.root_args() + ["-p", "0", "-o", opt],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and err in r.stderr, (opt, r.returncode, r.stderr)
    s = make_server("-o", "watcher_logbuf_size=8")
    w = s.connect()
    assert w.cmd("watch fetchers") == b"OK\r\n"
    c = s.connect()
    assert c.cmd("get wkey") == b"END\r\n"
    (line,) = watch_lines(w, 1)  # log lines end in "\n" alone
    assert "type=item_get key=wkey status=not_found" in line, line
