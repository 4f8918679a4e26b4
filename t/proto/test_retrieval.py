"""get gets gat gats: VALUE framing, CAS uniques, multi-gets."""


def test_get_miss(conn):
    assert conn.cmd("get nope") == b"END\r\n"


def test_gets_unique_changes_on_every_write(conn):
    seen = set()
    for i, cmd in enumerate(["set k 0 0 1\r\na", "append k 0 0 1\r\nb", "prepend k 0 0 1\r\nc",
                             "replace k 0 0 1\r\nd"]):
        conn.cmd(cmd)
        conn.send("gets k\r\n")
        parts = conn.readline().split()
        assert parts[:2] == [b"VALUE", b"k"]
        seen.add(int(parts[4]))
        conn.read_until()
    assert len(seen) == 4


def test_multi_get_order_duplicates_and_misses(conn):
    conn.cmd("set a 1 0 1\r\nA")
    conn.cmd("set b 2 0 2\r\nBB")
    conn.send("get b nope a b\r\n")
    assert conn.read_until() == (b"VALUE b 2 2\r\nBB\r\nVALUE a 1 1\r\nA\r\n"
                                 b"VALUE b 2 2\r\nBB\r\nEND\r\n")


def test_get_with_many_spaces(conn):
    conn.cmd("set a 0 0 1\r\nA")
    conn.send("get    a     a  \r\n")
    assert conn.read_until() == b"VALUE a 0 1\r\nA\r\nVALUE a 0 1\r\nA\r\nEND\r\n"


def test_multi_get_10000_keys_one_line(conn):
    for i in range(0, 10000, 100):
        conn.send(f"set key{i} 0 0 {len(str(i))} noreply\r\n{i}\r\n")
    keys = " ".join(f"key{i}" for i in range(10000))
    conn.send(f"get {keys}\r\n")
    out = conn.read_until()
    expected = b"".join(b"VALUE key%d 0 %d\r\n%d\r\n" % (i, len(str(i)), i)
                        for i in range(0, 10000, 100))
    assert out == expected + b"END\r\n"


def test_long_key_anywhere_fails_the_whole_get(conn):
    conn.cmd("set a 0 0 1\r\nA")
    assert conn.cmd("get a " + "k" * 251 + " a") == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.get_value("a") == (0, b"A")


def test_get_without_key(conn):
    assert conn.cmd("get") == b"ERROR\r\n"
    assert conn.cmd("gets") == b"ERROR\r\n"


def test_gat_and_gats(conn):
    conn.cmd("set k 3 0 2\r\nhi")
    conn.send("gat 100 k nope\r\n")
    assert conn.read_until() == b"VALUE k 3 2\r\nhi\r\nEND\r\n"
    conn.send("gats 100 k\r\n")
    parts = conn.readline().split()
    assert parts[:4] == [b"VALUE", b"k", b"3", b"2"] and len(parts) == 5
    assert conn.read_until() == b"hi\r\nEND\r\n"


def test_gat_bad_exptime(conn):
    assert conn.cmd("gat x k") == b"CLIENT_ERROR invalid exptime argument\r\n"


def test_gat_without_key_is_empty(conn):
    assert conn.cmd("gat 0") == b"END\r\n"


def test_gat_counts_as_touch(conn):
    conn.cmd("set k 0 0 1\r\nx")
    before = conn.stats()
    conn.send("gat 0 k nope\r\n")
    conn.read_until()
    after = conn.stats()
    assert int(after["cmd_touch"]) - int(before["cmd_touch"]) == 2
    assert int(after["touch_hits"]) - int(before["touch_hits"]) == 1
    assert int(after["touch_misses"]) - int(before["touch_misses"]) == 1
    assert after["cmd_get"] == before["cmd_get"]
