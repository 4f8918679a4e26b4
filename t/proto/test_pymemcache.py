"""Client-level behaviour through Debian's pymemcache (skipped when it is not installed)."""

import pytest

pymemcache = pytest.importorskip("pymemcache")
from pymemcache.client.base import Client  # noqa: E402
from pymemcache.client.hash import HashClient  # noqa: E402

import mc  # noqa: E402


@pytest.fixture
def client(server):
    c = Client(("127.0.0.1", server.port), connect_timeout=5, timeout=5, default_noreply=False,
               **mc.pymemcache_tls())
    yield c
    c.close()


def test_basic_ops(client):
    assert client.set("a", b"1")
    assert client.get("a") == b"1"
    assert client.add("a", b"2") is False
    assert client.replace("a", b"3")
    assert client.append("a", b"4")
    assert client.prepend("a", b"0")
    assert client.get("a") == b"034"
    assert client.delete("a")
    assert client.get("a") is None


def test_counters(client):
    client.set("n", b"10")
    assert client.incr("n", 5) == 15
    assert client.decr("n", 20) == 0
    assert client.incr("missing", 1) is None


def test_gets_cas(client):
    client.set("k", b"v1")
    value, token = client.gets("k")
    assert value == b"v1"
    assert client.cas("k", b"v2", token)
    assert client.cas("k", b"v3", token) is False
    assert client.get("k") == b"v2"


@pytest.mark.stock_tls_stall
def test_many_and_large(client):
    data = {f"key{i}": str(i).encode() * 10 for i in range(500)}
    assert client.set_many(data) == []
    assert client.get_many(list(data)) == data
    big = b"x" * (1000 * 1000)
    assert client.set("big", big)
    assert client.get("big") == big


def test_touch_and_flush(client):
    client.set("k", b"v")
    assert client.touch("k", 100)
    assert client.touch("nope", 100) is False
    assert client.flush_all()
    assert client.get("k") is None


def test_stats_and_version(client):
    assert client.version().startswith(b"1.6.")
    st = client.stats()
    assert b"curr_items" in st or "curr_items" in st


def test_hash_client_over_two_servers(make_server):
    a, b = make_server(), make_server()
    hc = HashClient([("127.0.0.1", a.port), ("127.0.0.1", b.port)], connect_timeout=5,
                    timeout=5, default_noreply=False,
               **mc.pymemcache_tls())
    for i in range(200):
        assert hc.set(f"k{i}", str(i).encode())
    for i in range(200):
        assert hc.get(f"k{i}") == str(i).encode()
    # both servers got a share
    ca, cb = a.connect(), b.connect()
    na, nb = int(ca.stats()["curr_items"]), int(cb.stats()["curr_items"])
    assert na + nb == 200 and na > 0 and nb > 0
