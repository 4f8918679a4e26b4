"""Behaviour memcached 1.6.18's own Perl tests check (stats-detail.t, idle-timeout.t, stats.t,
stats-conns.t, issue_67.t, issue_183.t, flush-all.t, and the startup options of
conn-limits.t, dyn-maxbytes.t, lru-maintainer.t): each passes against memcached itself."""

import os
import time

import pytest

import mc

# `stats` of memcached 1.6.18 with -o no_lru_crawler,no_lru_maintainer, in its order (stats.t
# counts them: 83).
STATS_NO_CRAWLER_NO_MAINTAINER = """pid uptime time version libevent pointer_size rusage_user
rusage_system max_connections curr_connections total_connections rejected_connections
connection_structures response_obj_oom response_obj_count response_obj_bytes read_buf_count
read_buf_bytes read_buf_bytes_free read_buf_oom reserved_fds cmd_get cmd_set cmd_flush
cmd_touch cmd_meta get_hits get_misses get_expired get_flushed delete_misses delete_hits
incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits cas_badval touch_hits
touch_misses store_too_large store_no_memory auth_cmds auth_errors bytes_read bytes_written
limit_maxbytes accepting_conns listen_disabled_num time_in_listen_disabled_us threads
conn_yields hash_power_level hash_bytes hash_is_expanding slab_reassign_rescues
slab_reassign_chunk_rescues slab_reassign_evictions_nomem slab_reassign_inline_reclaim
slab_reassign_busy_items slab_reassign_busy_deletes slab_reassign_running slabs_moved
malloc_fails log_worker_dropped log_worker_written log_watcher_skipped log_watcher_sent
log_watchers unexpected_napi_ids round_robin_fallback bytes curr_items total_items
slab_global_page_pool expired_unfetched evicted_unfetched evictions reclaimed
crawler_reclaimed crawler_items_checked lrutail_reflocked""".split()


def keys(conn, arg=""):
    conn.send(("stats " + arg).strip() + "\r\n")
    out = []
    while True:
        line = conn.readline()
        if line == b"END\r\n":
            return out
        out.append(line.split(b" ")[1].decode())


@pytest.mark.no_tls("the plain key list; -Z adds ssl_* (test_tls.py checks them)")
def test_stats_keys_exactly_as_memcached(make_server):
    s = make_server("-o", "no_lru_crawler,no_lru_maintainer")
    c = s.connect()
    assert keys(c) == STATS_NO_CRAWLER_NO_MAINTAINER
    st = c.stats()
    assert st["lrutail_reflocked"] == "0"
    assert c.cmd("stats reset") == b"RESET\r\n"
    assert c.stats()["lrutail_reflocked"] == "0"


def test_stats_reset_clears_detail(conn):
    assert conn.cmd("stats detail on") == b"OK\r\n"
    conn.cmd("set foo:1 0 0 1\r\nx")
    conn.get_value("foo:1")
    conn.send("stats detail dump\r\n")
    assert conn.read_until() == b"PREFIX foo get 1 hit 1 set 1 del 0\r\nEND\r\n"
    assert conn.cmd("stats reset") == b"RESET\r\n"
    conn.send("stats detail dump\r\n")
    assert conn.read_until() == b"END\r\n"
    conn.get_value("foo:2")  # still on: counting starts again
    conn.send("stats detail dump\r\n")
    assert conn.read_until() == b"PREFIX foo get 1 hit 0 set 0 del 0\r\nEND\r\n"


def test_idle_kicks_shown_with_idle_timeout(make_server):
    plain = make_server()
    assert "idle_kicks" not in plain.connect().stats()
    s = make_server("-o", "idle_timeout=2")
    c = s.connect()
    assert c.stats()["idle_kicks"] == "0"
    idle = s.connect()
    idle.cmd("version")
    assert idle.expect_closed(timeout=10)
    # `c` was idle too: a fresh connection reads the count.
    assert int(s.connect().stats()["idle_kicks"]) >= 1


@pytest.mark.parametrize("opt,key,value", [
    ("read_buf_mem_limit=1", "read_buf_mem_limit", "1048576"),
    ("slab_automove_window=3", "slab_automove_window", "3"),
    ("temporary_ttl=30", "temporary_ttl", "30"),
    ("slab_reassign", "slab_reassign", "yes"),
])
def test_options_accepted_and_shown(make_server, opt, key, value):
    s = make_server("-o", opt)
    st = s.connect().stats("settings")
    assert st[key] == value
    if opt.startswith("temporary_ttl"):
        assert st["temp_lru"] == "yes"


@pytest.mark.parametrize("opt,message", [
    ("slab_automove_window=2", "slab_automove_window must be > 2"),
    ("slab_automove_window", "Missing slab_automove_window argument"),
    ("temporary_ttl", "Missing temporary_ttl argument"),
    ("read_buf_mem_limit=x", "could not parse argument to read_buf_mem_limit"),
])
def test_option_errors(opt, message):
    import subprocess
    r = subprocess.run([mc.server_binary()] + mc.root_args() + ["-p", "0", "-o", opt],
                       capture_output=True, timeout=10)
    assert r.returncode != 0
    assert message in (r.stdout + r.stderr).decode()


def test_relaxed_privileges_accepted_by_ours(make_server):
    # Only memcached's debug build knows it (its test harness always passes it); ours is
    # named memcached-debug, so it takes it as a no-op.
    if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
        pytest.skip("memcached's release build refuses it")
    s = make_server("-o", "relaxed_privileges")
    assert s.connect().cmd("version").startswith(b"VERSION ")


def test_conns_shows_nread_and_udp(make_server):
    s = make_server("-U", "-1")
    c = s.connect()
    writer = s.connect()
    writer.send("set foo 0 0 6\r\n")
    deadline = time.monotonic() + 5
    while True:
        st = c.stats("conns")
        if "conn_nread" in st.values() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "conn_nread" in st.values()
    udp = [k.split(":")[0] for k, v in st.items() if k.endswith(":UDP") and v == "UDP"]
    assert udp
    for fd in udp:
        assert st[f"{fd}:addr"] == f"udp:127.0.0.1:{s.udp_port}"
        assert st[f"{fd}:state"] == "conn_read"
        assert f"{fd}:listen_addr" not in st
    writer.send("abcdef\r\n")
    assert writer.readline() == b"STORED\r\n"


def read_port_file(path, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, "server exited"
        assert time.monotonic() < deadline, "no port file"
        time.sleep(0.02)
    ports = {}
    with open(path) as f:
        for line in f:
            kind, port = line.split(": ")
            ports[kind] = int(port)
    return ports


@pytest.mark.parametrize("args,tcp_same_as_udp,tcp,udp", [
    (["-U", "-1"], True, True, True),      # no -p: the UDP port (here: any) is TCP's too
    (["-p", "0"], False, False, False),    # nothing listens, the file is still written
    (["-p", "0", "-U", "-1"], False, False, True),
])
def test_port_rules(make_server, args, tcp_same_as_udp, tcp, udp):
    s = make_server("-l", "127.0.0.1", *args, tcp=False)
    ports = read_port_file(s.port_file, s.proc)
    assert ("TCP INET" in ports) == tcp
    assert ("UDP INET" in ports) == udp
    if tcp_same_as_udp:  # -1 picks a port for each, as memcached's issue_67.t expects
        c = mc.Conn(("127.0.0.1", ports["TCP INET"]), tls=False)
        assert c.cmd("version").startswith(b"VERSION ")
        c.close()


def test_reused_flushed_memory_counts_reclaimed(make_server):
    s = make_server("-o", "no_modern")
    c = s.connect()
    assert c.cmd("set key 0 0 1\r\n1") == b"STORED\r\n"
    assert c.stats()["reclaimed"] == "0"
    time.sleep(2)
    assert c.cmd("flush_all") == b"OK\r\n"
    assert c.cmd("set key 0 0 1\r\n1") == b"STORED\r\n"
    assert c.stats()["reclaimed"] == "1"


def test_expired_items_reclaimed_in_background(make_server):
    # lru-maintainer.t: with the (default) LRU maintainer, expired items are taken back by
    # the server on its own and counted in `reclaimed`.
    s = make_server("-m", "6", "-o", "lru_maintainer,lru_crawler")
    c = s.connect()
    for i in range(10):
        assert c.cmd(f"set ifoo{i} 0 1 2\r\nok") == b"STORED\r\n"
    deadline = time.monotonic() + 15
    while int(c.stats()["reclaimed"]) < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert c.stats()["reclaimed"] == "10"


def test_flush_without_cas_takes_the_whole_second(make_server):
    # flush-all.t: with -C a value set in the same second as flush_all is flushed too (there
    # is no cas to tell it from older ones). At least one of a few tries lands in one second.
    s = make_server("-C")
    c = s.connect()
    missed = False
    for i in range(10):
        c.send("flush_all 0\r\nset foo 0 0 3\r\nnew\r\n")
        assert c.readline() == b"OK\r\n"
        assert c.readline() == b"STORED\r\n"
        if c.get_value("foo") is None:
            missed = True
            break
    assert missed
