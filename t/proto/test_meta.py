"""Meta commands (mg ms md ma mn me): exact replies, flag by flag, checked against memcached
1.6.18 as well. Where 1.6.18 lacks a documented feature (E, me's base64 key) the test is
marked `documented` and asserts the documentation."""

import base64
import threading

import pytest


def va(conn, line):
    """Send a meta command; return (status line, data block or None)."""
    conn.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
    status = conn.readline()
    if status.startswith(b"VA "):
        n = int(status.split()[1])
        data = conn.readexact(n + 2)
        assert data.endswith(b"\r\n")
        return status, data[:-2]
    return status, None


# ---- mg ----

def test_mg_hit_flags_in_request_order(conn):
    assert conn.cmd("ms foo 3 T0 F5\r\nbar") == b"HD\r\n"
    status, data = va(conn, "mg foo s v f t c k O9 h")
    assert data == b"bar"
    cas = status.split()[5]
    assert status == b"VA 3 s3 f5 t-1 " + cas + b" kfoo O9 h0\r\n"
    # h reports the state before this request: now it has been hit
    assert conn.cmd("mg foo h") == b"HD h1\r\n"


def test_mg_without_v_is_hd(conn):
    conn.cmd("ms foo 1\r\nx")
    assert conn.cmd("mg foo") == b"HD\r\n"
    assert conn.cmd("mg foo k") == b"HD kfoo\r\n"


def test_mg_miss_echoes_opaque_and_key(conn):
    assert conn.cmd("mg miss v") == b"EN\r\n"
    assert conn.cmd("mg miss v O7 k") == b"EN O7 kmiss\r\n"


def test_mg_quiet_hides_only_the_miss(conn):
    conn.cmd("ms foo 1\r\nx")
    conn.send("mg miss v q k O1\r\nmg foo q\r\nmg foo q k v\r\nmn\r\n")
    assert conn.readline() == b"HD\r\n"
    assert conn.readline() == b"VA 1 kfoo\r\n"
    assert conn.readline() == b"x\r\n"
    assert conn.readline() == b"MN\r\n"


def test_mg_touch_and_ttl(conn):
    conn.cmd("ms k 2 T100\r\nab")
    assert conn.cmd("mg k T30 t") == b"HD t30\r\n"
    assert conn.cmd("mg nokey T30 t") == b"EN\r\n"
    st = conn.stats()
    # a miss with T counts as a get miss, as in memcached
    assert st["cmd_touch"] == "1" and st["touch_hits"] == "1" and st["touch_misses"] == "0"
    assert st["get_misses"] == "1"


def test_mg_ttl_reported_as_of_its_position(conn):
    # t before T shows the TTL the item had; after T the new one.
    conn.cmd("ms k 2 T100\r\nab")
    assert conn.cmd("mg k t T30 t") == b"CLIENT_ERROR duplicate flag\r\n"
    assert conn.cmd("mg k T40 t") == b"HD t40\r\n"


def test_mg_u_does_not_mark_fetched(conn):
    conn.cmd("ms k 2\r\nab")
    assert conn.cmd("mg k u h") == b"HD h0\r\n"
    assert conn.cmd("mg k h") == b"HD h0\r\n"
    assert conn.cmd("mg k h") == b"HD h1\r\n"


def test_mg_counts_as_get(conn):
    conn.cmd("ms k 1\r\nx")
    va(conn, "mg k v")
    va(conn, "mg k")
    va(conn, "mg nope v")
    st = conn.stats()
    assert (st["cmd_get"], st["get_hits"], st["get_misses"]) == ("3", "2", "1")


# ---- stampede protection ----

def test_vivify_on_miss_one_winner(conn):
    status, data = va(conn, "mg k1 N30 v c t")
    assert data == b""
    cas = status.split()[2]
    assert status == b"VA 0 " + cas + b" t30 W\r\n"
    status, _ = va(conn, "mg k1 N30 v t")
    assert status == b"VA 0 t30 Z\r\n"
    assert va(conn, "mg k1 v")[0] == b"VA 0 Z\r\n"
    # the winner stores the real value; later readers see it plainly
    assert conn.cmd("ms k1 3 T100\r\nnew") == b"HD\r\n"
    assert va(conn, "mg k1 N30 v") == (b"VA 3\r\n", b"new")


def test_recache_win_below_remaining_ttl(conn):
    conn.cmd("ms k 3 T100\r\nnew")
    assert va(conn, "mg k R200 v")[0] == b"VA 3 W\r\n"
    assert va(conn, "mg k R200 v")[0] == b"VA 3 Z\r\n"
    conn.cmd("ms j 3 T100\r\nnew")
    assert va(conn, "mg j R50 v")[0] == b"VA 3\r\n"  # plenty of TTL left: no win


def test_invalidate_serves_stale_with_one_winner(conn):
    conn.cmd("ms k 3 T100\r\nold")
    assert conn.cmd("md k I T30") == b"HD\r\n"
    status, data = va(conn, "mg k v t")
    assert (status, data) == (b"VA 3 t30 X W\r\n", b"old")
    assert va(conn, "mg k v")[0] == b"VA 3 Z X\r\n"
    # md I again (quietly): the next reader wins again
    conn.send("md k q I\r\nmn\r\n")
    assert conn.readline() == b"MN\r\n"
    assert va(conn, "mg k v")[0] == b"VA 3 X W\r\n"


def test_ms_invalidate_with_older_cas_marks_stale(conn):
    for i in range(3):
        conn.cmd(f"ms other{i} 1\r\nx")
    conn.cmd("ms k 3 T100\r\nabc")
    cas = int(conn.cmd("mg k c").split()[1][1:])
    # a higher cas than the item's is refused even with I
    assert conn.cmd(f"ms k 2 C{cas + 100} I\r\nzz") == b"EX\r\n"
    # a lower one stores, keeps the TTL, and the item reads as stale
    # C0 never counts as older
    assert conn.cmd("ms k 2 C0 I\r\nzz") == b"EX\r\n"
    line = conn.cmd(f"ms k 2 C{cas - 1} I T5 c\r\nzz")
    assert line.startswith(b"HD c")
    status, data = va(conn, "mg k v t")
    assert data == b"zz" and status.endswith(b" X W\r\n")
    assert int(status.split()[2][1:]) > 90


def test_stampede_race_exactly_one_winner(server):
    """Many clients miss the same key at once: exactly one is told to recompute (W), every
    other one learns that somebody else does (Z)."""
    n = 24
    conns = [server.connect() for _ in range(n)]
    barrier = threading.Barrier(n)
    replies = [None] * n

    def worker(i):
        barrier.wait(timeout=10)
        conns[i].send("mg hotkey N30 v\r\n")
        replies[i] = conns[i].readline()
        conns[i].readexact(2)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    for c in conns:
        c.close()
    assert all(r is not None for r in replies)
    assert sorted(replies) == [b"VA 0 W\r\n"] + [b"VA 0 Z\r\n"] * (n - 1)


# ---- ms ----

def test_ms_basic_and_return_flags(conn):
    assert conn.cmd("ms foo 3\r\nbar") == b"HD\r\n"
    line = conn.cmd("ms foo 3 c k O123 T0 F5\r\nbar")
    parts = line.split()
    assert parts[0] == b"HD" and parts[1].startswith(b"c") and parts[2:] == [b"kfoo", b"O123"]
    assert conn.get_value("foo") == (5, b"bar")


def test_ms_only_o_k_c_come_back(conn):
    line = conn.cmd("ms t1 2 c f h k l O1 s t\r\nab")
    assert line.startswith(b"HD c") and line.endswith(b" kt1 O1\r\n")


def test_ms_modes(conn):
    assert conn.cmd("ms k 1 ME\r\na") == b"HD\r\n"
    assert conn.cmd("ms k 1 ME\r\nb") == b"NS\r\n"
    assert conn.cmd("ms k 1 MA\r\nz") == b"HD\r\n"
    assert conn.cmd("ms k 1 MP\r\ny") == b"HD\r\n"
    assert conn.get_value("k") == (0, b"yaz")
    assert conn.cmd("ms nope 1 MR\r\nx") == b"NS\r\n"
    assert conn.cmd("ms nope 1 MA\r\nx") == b"NS\r\n"
    assert conn.cmd("ms nope 1 MP\r\nx") == b"NS\r\n"
    assert conn.cmd("ms k 1 MR F7\r\nr") == b"HD\r\n"
    assert conn.cmd("ms k 1 MS\r\ns") == b"HD\r\n"
    assert conn.get_value("k") == (0, b"s")


def test_ms_cas(conn):
    conn.cmd("ms k 1\r\na")
    cas = int(conn.cmd("mg k c").split()[1][1:])
    assert conn.cmd(f"ms k 1 C{cas + 1}\r\nb") == b"EX\r\n"
    assert conn.cmd("ms nf 1 C1\r\nb") == b"NF\r\n"
    assert conn.cmd(f"ms k 1 C{cas} MA\r\nb").startswith(b"HD")
    assert conn.cmd(f"ms k 1 C{cas} MA\r\nc") == b"EX\r\n"  # append checks the cas too
    st = conn.stats()
    assert (st["cas_hits"], st["cas_badval"], st["cas_misses"]) == ("0", "1", "1")


def test_ms_quiet_hides_only_hd(conn):
    conn.send("ms k 1 q\r\nx\r\nms k 1 q MZ\r\nx\r\nms k 1 q ME\r\nx\r\nmn\r\n")
    assert conn.readline() == b"CLIENT_ERROR invalid mode for ms M token\r\n"
    assert conn.readline() == b"NS\r\n"
    assert conn.readline() == b"MN\r\n"


def test_ms_negative_ttl_expires_at_once(conn):
    assert conn.cmd("ms k 3 T-1\r\nbar") == b"HD\r\n"
    assert conn.cmd("mg k v") == b"EN\r\n"


def test_ms_errors(conn):
    # no length, bad length: the rest of the line is all there is
    assert conn.cmd("ms foo") == b"CLIENT_ERROR bad command line format\r\n"
    conn.send("ms foo bar\r\nbar\r\n")
    assert conn.readline() == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.readline() == b"ERROR\r\n"
    assert conn.cmd("ms k5 -1") == b"CLIENT_ERROR bad command line format\r\n"
    # flag errors swallow the value
    assert conn.cmd("ms k 2 Fabc\r\nab") == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.cmd("ms k 2 Tabc\r\nab") == b"CLIENT_ERROR bad token in command line format\r\n"
    assert conn.cmd("ms k 2 Cabc\r\nab") == b"CLIENT_ERROR bad token in command line format\r\n"
    assert conn.cmd("ms k 2 Tx F1x\r\nab") == b"CLIENT_ERROR bad token in command line format\r\n"
    assert conn.cmd("ms k 2 MX\r\nab") == b"CLIENT_ERROR invalid mode for ms M token\r\n"
    assert conn.cmd("ms k 2 MSS\r\nab") == b"CLIENT_ERROR incorrect length for M token\r\n"
    assert conn.cmd("ms k 2 Z\r\nab") == b"CLIENT_ERROR invalid flag\r\n"
    assert conn.cmd(b"ms k 2 \x80\r\nab") == b"CLIENT_ERROR duplicate flag\r\n"
    assert conn.cmd("ms k 2 q q\r\nab") == b"CLIENT_ERROR duplicate flag\r\n"
    assert conn.cmd("ms k 2 O" + "x" * 32 + "\r\nab") == b"CLIENT_ERROR opaque token too long\r\n"
    # the value that does not end in \r\n
    conn.send("ms foo 2\r\nbarx\r\n")
    assert conn.readline() == b"CLIENT_ERROR bad data chunk\r\n"
    assert conn.readline() == b"ERROR\r\n"
    # nothing above stored anything
    assert conn.cmd("mg k v") == b"EN\r\n"
    assert conn.cmd("mn") == b"MN\r\n"


def test_ms_flags_wrap_at_32_bits(conn):
    assert conn.cmd("ms k 2 F4294967296\r\nab") == b"HD\r\n"
    assert conn.cmd("mg k f") == b"HD f0\r\n"
    assert conn.cmd("ms k 2 F-1\r\nab") == b"CLIENT_ERROR bad command line format\r\n"


def test_ms_too_large(make_server):
    c = make_server().connect()
    assert c.cmd("ms big 1\r\nx") == b"HD\r\n"
    value = b"v" * (1024 * 1024 + 1)
    c.send(b"ms big %d T0\r\n" % len(value) + value + b"\r\n")
    assert c.readline() == b"SERVER_ERROR object too large for cache\r\n"
    assert c.cmd("mg big v") == b"EN\r\n"  # the old value is gone too
    assert c.cmd("mn") == b"MN\r\n"


# ---- md ----

def test_md(conn):
    conn.cmd("ms k 1\r\nx")
    cas = int(conn.cmd("mg k c").split()[1][1:])
    assert conn.cmd(f"md k C{cas + 1}") == b"EX\r\n"
    assert conn.cmd("md k k O5") == b"HD kk O5\r\n"
    assert conn.cmd("md k k O5") == b"NF kk O5\r\n"
    conn.send("ms k 1\r\nx\r\nmd k q\r\nmd k q\r\nmn\r\n")
    assert conn.readline() == b"HD\r\n"
    assert conn.readline() == b"NF\r\n"  # q hides only HD
    assert conn.readline() == b"MN\r\n"


def test_md_errors(conn):
    assert conn.cmd("md") == b"ERROR\r\n"
    assert conn.cmd("md k zz") == b"CLIENT_ERROR invalid or duplicate flag\r\n"
    assert conn.cmd("md k q q") == b"CLIENT_ERROR invalid or duplicate flag\r\n"
    assert conn.cmd("md k O" + "x" * 32) == b"CLIENT_ERROR opaque token too long\r\n"
    assert conn.cmd("md " + "a" * 251) == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.cmd("md k " + " ".join("q" * 18)) == b"CLIENT_ERROR options flags too long\r\n"


# ---- ma ----

def test_ma(conn):
    assert conn.cmd("ma cnt") == b"NF\r\n"
    assert va(conn, "ma cnt N0 J10 v") == (b"VA 2\r\n", b"10")
    assert va(conn, "ma cnt v") == (b"VA 2\r\n", b"11")
    status, data = va(conn, "ma cnt MD D100 v t")
    assert (status, data) == (b"VA 1 t-1\r\n", b"0")
    assert va(conn, "ma cnt M+ D5 v k O7") == (b"VA 1 kcnt O7\r\n", b"5")
    assert va(conn, "ma cnt M- D2 v") == (b"VA 1\r\n", b"3")
    assert conn.cmd("ma cnt") == b"HD\r\n"
    # the shrunk number is padded in place, as incr/decr do
    assert va(conn, "mg cnt s v") == (b"VA 2 s2\r\n", b"4 ")


def test_ma_wraps_and_pads(conn):
    assert va(conn, "ma k4 N0 J18446744073709551615 v") == (b"VA 20\r\n", b"18446744073709551615")
    assert va(conn, "ma k4 v") == (b"VA 1\r\n", b"0")
    assert va(conn, "mg k4 s v") == (b"VA 20 s20\r\n", b"0" + b" " * 19)


def test_ma_cas_and_ttl(conn):
    conn.cmd("ms n 1\r\n5")
    cas = int(conn.cmd("mg n c").split()[1][1:])
    assert conn.cmd(f"ma n C{cas + 1} v") == b"EX\r\n"
    line = conn.cmd(f"ma n C{cas} c")
    assert line.startswith(b"HD c") and int(line.split()[1][1:]) != cas
    assert conn.cmd("ma n T100 t") == b"HD t100\r\n"
    assert conn.cmd("ma n t") == b"HD t100\r\n"
    assert conn.cmd("ma vv N50 J5 t") == b"HD t50\r\n"


def test_ma_quiet(conn):
    conn.cmd("ms n 1\r\n5")
    conn.send("ma n q\r\nma nope q\r\nma x N0 q\r\nmn\r\n")
    assert conn.readline() == b"NF\r\n"
    assert conn.readline() == b"HD\r\n"  # created, not a plain hit: memcached answers
    assert conn.readline() == b"MN\r\n"
    assert conn.get_value("n") == (0, b"6")


def test_ma_errors(conn):
    conn.cmd("ms t 2\r\nab")
    assert conn.cmd("ma t") == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert conn.cmd("ma t q") == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert conn.cmd("ma t Dabc") == b"CLIENT_ERROR invalid or duplicate flag\r\n"
    assert conn.cmd("ma t D-1") == b"CLIENT_ERROR invalid or duplicate flag\r\n"
    assert conn.cmd("ma t MX") == b"CLIENT_ERROR invalid mode for ma M token\r\n"
    assert conn.cmd("ma t MII") == b"CLIENT_ERROR invalid or duplicate flag\r\n"
    st = conn.stats()
    assert st["incr_hits"] == "0"


def test_ma_counts(conn):
    conn.cmd("ms n 1\r\n5")
    conn.cmd("ma n")
    conn.cmd("ma n MD")
    conn.cmd("ma nope")
    st = conn.stats()
    assert (st["incr_hits"], st["decr_hits"], st["incr_misses"]) == ("1", "1", "1")


# ---- base64 keys ----

def test_base64_keys(conn):
    key = b"\x00bin\r\nkey"
    b64 = base64.b64encode(key).decode()
    assert conn.cmd(f"ms {b64} 2 b k\r\nab") == f"HD k{b64} b\r\n".encode()
    assert va(conn, f"mg {b64} b k v") == (f"VA 2 k{b64} b\r\n".encode(), b"ab")
    conn.send(f"md {b64} b k q\r\nmn\r\n")
    assert conn.readline() == b"MN\r\n"
    assert conn.cmd(f"md {b64} b k") == f"NF k{b64} b\r\n".encode()


def test_base64_key_is_the_decoded_key(conn):
    conn.cmd("set foo 0 0 3\r\nbar")
    assert va(conn, "mg Zm9v b v") == (b"VA 3\r\n", b"bar")


def test_base64_errors(conn):
    assert conn.cmd("mg Zm9v= b v") == b"CLIENT_ERROR error decoding key\r\n"
    assert conn.cmd("mg !!!! b v") == b"CLIENT_ERROR error decoding key\r\n"
    assert conn.cmd("mg YQ b v") == b"CLIENT_ERROR error decoding key\r\n"
    assert conn.cmd("ms k5 2 b\r\nab") == b"CLIENT_ERROR error decoding key\r\n"
    assert conn.cmd("mg YQ=") == b"EN\r\n"  # no b: just a key


# ---- mn, me, errors ----

def test_mn(conn):
    assert conn.cmd("mn") == b"MN\r\n"
    assert conn.cmd("mn foo") == b"MN\r\n"


def test_me(conn):
    assert conn.cmd("me miss") == b"EN\r\n"
    conn.cmd("ms t1 2 T100\r\nab")
    line = conn.cmd("me t1")
    parts = line.split()
    assert parts[:3] == [b"ME", b"t1", b"exp=-100"]
    assert parts[3].startswith(b"la=") and parts[4].startswith(b"cas=")
    assert parts[5] == b"fetch=no" and parts[6].startswith(b"cls=")
    assert parts[7].startswith(b"size=") and line.endswith(b"\r\n")
    va(conn, "mg t1 v")
    assert conn.cmd("me t1 x y").split()[5] == b"fetch=yes"
    assert conn.cmd("me") == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.cmd("me t1 b") == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.stats()["cmd_meta"] == "3"


def test_me_binary_key_comes_back_in_base64(conn):
    conn.cmd("ms YQ== 2 b\r\nab")
    assert conn.cmd("me YQ== b").split()[1] == b"YQ=="


@pytest.mark.documented
def test_vivified_binary_key_comes_back_in_base64(conn):
    """protocol.txt: a key returned for a b request is base64 with a b flag ("the response key
    will also be base64 encoded"); 1.6.18 forgets the mark on items ma N and mg N create and
    then prints their raw bytes."""
    assert conn.cmd("ma YQ== b N0") == b"HD\r\n"
    assert conn.cmd("me YQ== b").split()[1] == b"YQ=="
    assert conn.cmd("mg YQ== b k") == b"HD kYQ== b\r\n"


def test_flag_errors(conn):
    conn.cmd("ms k 1\r\nx")
    assert conn.cmd("mg") == b"ERROR\r\n"
    assert conn.cmd("mx k") == b"ERROR\r\n"
    assert conn.cmd("mgg k") == b"ERROR\r\n"
    assert conn.cmd("mg k zz") == b"CLIENT_ERROR invalid flag\r\n"
    assert conn.cmd("mg k v +") == b"CLIENT_ERROR invalid flag\r\n"
    assert conn.cmd("mg k v v") == b"CLIENT_ERROR duplicate flag\r\n"
    assert conn.cmd("mg k Tabc") == b"CLIENT_ERROR bad token in command line format\r\n"
    assert conn.cmd("mg k Nabc") == b"CLIENT_ERROR bad token in command line format\r\n"
    assert conn.cmd("mg " + "a" * 251 + " v") == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.cmd("mg k " + " ".join("abcdefghijklmnopqr")) == \
        b"CLIENT_ERROR options flags are too long\r\n"
    assert conn.cmd("mg k v O" + "x" * 32) == b"CLIENT_ERROR opaque token too long\r\n"
    assert conn.cmd("mg miss O" + "x" * 32) == b"CLIENT_ERROR opaque token too long\r\n"
    # errors ignore q
    assert conn.cmd("mg k q zz") == b"CLIENT_ERROR invalid flag\r\n"
    # flags with a junk token are still the flag; P and L are ignored
    assert va(conn, "mg k v! P/path Lx") == (b"VA 1\r\n", b"x")


def test_meta_and_text_mix(conn):
    conn.send("set a 0 0 1\r\n1\r\nmg a v\r\nincr a 5\r\nma a v\r\nget a\r\n")
    assert conn.readline() == b"STORED\r\n"
    assert conn.readline() == b"VA 1\r\n"
    assert conn.readline() == b"1\r\n"
    assert conn.readline() == b"6\r\n"
    assert conn.readline() == b"VA 1\r\n"
    assert conn.readline() == b"7\r\n"
    assert conn.read_until() == b"VALUE a 0 1\r\n7\r\nEND\r\n"


# ---- E: newer than 1.6.18 ----

@pytest.mark.documented
def test_explicit_cas(conn):
    """E(token): the client chooses the new CAS value (ms, md I, ma, mg N)."""
    assert conn.cmd("ms k 2 E50\r\nzz") == b"HD\r\n"
    assert conn.cmd("mg k c") == b"HD c50\r\n"
    assert conn.cmd("md k I E60") == b"HD\r\n"
    assert conn.cmd("mg k c") == b"HD c60 X W\r\n"
    conn.cmd("ms n 1\r\n1")
    assert conn.cmd("ma n E70 c") == b"HD c70\r\n"
    assert va(conn, "mg viv N30 E80 c v") == (b"VA 0 c80 W\r\n", b"")


@pytest.mark.documented
def test_md_x_keeps_the_item_without_its_value(conn):
    """md x: "removes the item value, but leaves the item" (newer than 1.6.18)."""
    conn.cmd("ms k 5 F3 T100\r\nhello")
    assert conn.cmd("md k x") == b"HD\r\n"
    assert va(conn, "mg k v f t") == (b"VA 0 f0 t-1\r\n", b"")
    conn.send("md k x F9 T50 q\r\nmn\r\n")
    assert conn.readline() == b"MN\r\n"
    assert va(conn, "mg k v f t") == (b"VA 0 f9 t50\r\n", b"")
    assert conn.cmd("md nope x") == b"NF\r\n"
