"""Pipelined commands are answered in order; commands and values may arrive in any pieces."""

import mc


def test_pipeline_in_order(conn):
    batch = "".join(f"set k{i} 0 0 {len(str(i))}\r\n{i}\r\n" for i in range(100))
    batch += "".join(f"get k{i}\r\n" for i in range(100))
    conn.send(batch)
    for i in range(100):
        assert conn.readline() == b"STORED\r\n"
    for i in range(100):
        assert conn.read_until() == b"VALUE k%d 0 %d\r\n%d\r\nEND\r\n" % (i, len(str(i)), i)


def test_byte_by_byte(conn):
    data = b"set kk 3 0 5\r\nhello\r\nget kk\r\ndelete kk\r\n"
    for b in data:
        conn.send(bytes([b]))
    assert conn.readline() == b"STORED\r\n"
    assert conn.read_until() == b"VALUE kk 3 5\r\nhello\r\nEND\r\n"
    assert conn.readline() == b"DELETED\r\n"


def test_value_split_at_every_byte(server):
    value = b"0123456789\r\nabc"
    req = b"set v 0 0 %d\r\n" % len(value) + value + b"\r\n"
    for cut in range(1, len(req)):
        c = server.connect()
        c.send(req[:cut])
        c.send(req[cut:])
        assert c.readline() == b"STORED\r\n", cut
        assert c.get_value("v") == (0, value)
        c.close()


def test_large_value_in_pieces(conn):
    value = bytes(range(256)) * 2000
    conn.send(b"set big 0 0 %d\r\n" % len(value))
    for i in range(0, len(value), 7919):
        conn.send(value[i:i + 7919])
    conn.send(b"\r\n")
    assert conn.readline() == b"STORED\r\n"
    assert conn.get_value("big") == (0, value)


def test_pipelined_gets_of_large_values(conn):
    # replies far larger than a socket buffer: written as the client reads
    value = b"x" * 500000
    conn.send(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n")
    assert conn.readline() == b"STORED\r\n"
    conn.send("get big\r\n" * 40)
    for _ in range(40):
        assert conn.readline() == b"VALUE big 0 500000\r\n"
        assert conn.readexact(500002) == value + b"\r\n"
        assert conn.readline() == b"END\r\n"


def test_other_connections_progress(server):
    # a client flooding one connection does not starve another (-R fairness)
    busy = server.connect()
    busy.send("get nope\r\n" * 5000)
    other = server.connect()
    assert other.cmd("version").startswith(b"VERSION ")
    for _ in range(5000):
        assert busy.readline() == b"END\r\n"
    assert int(other.stats()["conn_yields"]) > 0
