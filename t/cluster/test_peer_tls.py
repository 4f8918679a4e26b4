"""Peer TLS (doc/managed.md, Peer TLS): with -o peer_tls_cert/_key/_ca on the servers and
--peer-tls-* on the coordinator, every peer link (forwarding, replication, the coordinator's
connections and probes) runs over TLS verified both ways, and the HMAC challenge still runs on
top. A connection without a certificate from the cluster's CA cannot even ask for the
challenge. Certificates are made by the test (lib/certs.py) with the openssl command."""

import os
import socket
import ssl
import subprocess

import pytest

from lib import mc
from lib.certs import Pki
from lib.cluster import auth, bucket
from lib.coord import COORD_BIN, parse_map, wait_settled

BUCKETS = 64  # the `cluster` fixture's

if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
    pytest.skip("managed mode is this server's own", allow_module_level=True)
if not os.path.exists(COORD_BIN):
    pytest.skip("mc-coordinator is not built", allow_module_level=True)

NEEDS_PEER_TLS = b"CLIENT_ERROR cluster auth needs a peer TLS connection\r\n"


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki", "cluster-ca")


def server_tls_args(pki, cn):
    cert, key = pki.issue(cn)
    return ("-o", f"peer_tls_cert={cert},peer_tls_key={key},peer_tls_ca={pki.ca}")


def coord_tls_args(pki, cn="coordinator"):
    cert, key = pki.issue(cn)
    return ("--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", pki.ca)


def peer_conn(port, pki, cert_key=None, alpn=True, timeout=5.0):
    """A connection as a peer makes it: TLS, ALPN mcm-peer, a certificate (cert_key, default a
    fresh one from pki), the server's verified against pki's CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki.ca)
    if cert_key is None:
        cert_key = pki.issue("tester")
    if cert_key:
        ctx.load_cert_chain(*cert_key)
    if alpn:
        ctx.set_alpn_protocols(["mcm-peer"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c = mc.Conn.__new__(mc.Conn)
    c.sock = ctx.wrap_socket(raw)
    c.buf = b""
    return c


def cluster_stats(s):
    c = s.connect()
    st = c.stats("cluster")
    c.close()
    return st


def test_cluster_runs_over_peer_tls_and_fails_over_warm(cluster, pki):
    servers, coord = cluster(n=3, replicas=1, server_args=server_tls_args(pki, "server"),
                             extra=coord_tls_args(pki))
    for s in servers.values():
        assert cluster_stats(s)["peer_tls"] == "yes"
    m = parse_map(coord.map_text())
    # every key written through n2: the others' keys are forwarded over TLS
    keys = [f"k{i}" for i in range(300)]
    c = servers["n2"].connect()
    for k in keys:
        assert c.cmd(f"set {k} 0 0 {len(k)}\r\n{k}") == b"STORED\r\n"
    c.close()
    for name in ("n0", "n1"):
        mc.wait_for(lambda: all(
            cluster_repl_up(servers[name], peer) for peer in servers if peer != name),
            timeout=10, what=f"{name}'s replication links up")
    assert int(cluster_stats(servers["n2"])["forwarded"]) > 100
    # kill n0: its buckets come back warm from replicas fed over TLS
    victim_keys = [k for k in keys if m["active"][bucket(k, BUCKETS)] == "n0"]
    assert len(victim_keys) > 50
    mc.wait_for(lambda: replicas_caught_up(servers, m, "n0"), timeout=10,
                what="n0's replicas in sync")
    servers["n0"].kill9()
    st = wait_settled(coord, 1, ["n1", "n2"])
    assert st["failovers"] >= 1 and st["cold_buckets"] == 0
    c = servers["n1"].connect()
    for k in victim_keys:
        c.send(f"get {k}\r\n")
        assert c.read_until(b"END\r\n") == f"VALUE {k} 0 {len(k)}\r\n{k}\r\nEND\r\n".encode(), k
    c.close()


def cluster_repl_up(server, peer):
    c = server.connect()
    st = c.stats("replication")
    c.close()
    return st.get(f"link:{peer}:state") == "up"


def replicas_caught_up(servers, m, owner):
    c = servers[owner].connect()
    st = c.stats("buckets")
    c.close()
    for b, a in enumerate(m["active"]):
        p = f"bucket:{b}:"
        if a == owner and st.get(p + "seqno") != st.get(p + "repl_acked"):
            return False
    return True


def test_control_commands_need_a_peer_certificate(node, pki):
    n0 = node("n0", *server_tls_args(pki, "n0"))
    # plain TCP: a client as ever, but the challenge is not even given
    c = n0.connect()
    assert c.cmd("cluster auth") == NEEDS_PEER_TLS
    assert c.cmd("cluster auth 00") == NEEDS_PEER_TLS
    assert c.cmd("cluster drop all") == b"CLIENT_ERROR cluster command needs authentication\r\n"
    assert c.cmd("version").startswith(b"VERSION")  # clients are served as before
    c.close()
    st = cluster_stats(n0)
    assert st["peer_tls_refused"] == "2"
    # a peer with a certificate of the cluster's CA: the challenge, then the secret
    p = peer_conn(n0.port, pki)
    assert auth(p) == b"OK\r\n"
    assert p.cmd("cluster drop all").startswith(b"OK")
    assert p.cmd("version").startswith(b"VERSION")  # and a full connection otherwise
    p.close()
    assert cluster_stats(n0)["peer_tls_refused"] == "2"


def test_certificates_from_another_ca_are_refused(node, pki, tmp_path):
    n0 = node("n0", *server_tls_args(pki, "n0"))
    rogue = Pki(tmp_path / "rogue", "rogue-ca")
    # a client certificate the cluster's CA never signed: the handshake fails
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        p = peer_conn(n0.port, pki, cert_key=rogue.issue("intruder"))
        p.cmd("cluster auth")
    # no certificate at all
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        p = peer_conn(n0.port, pki, cert_key=False)
        p.cmd("cluster auth")
    # the server still serves, and a good peer still gets in
    c = n0.connect()
    assert c.cmd("version").startswith(b"VERSION")
    c.close()
    p = peer_conn(n0.port, pki)
    assert auth(p) == b"OK\r\n"
    p.close()


def test_a_peer_with_a_foreign_certificate_gets_no_link(node, pki, tmp_path):
    """n1's certificate comes from another CA: n0 will not replicate to it or take its
    forwards, and says why in stats replication; the secret alone is not enough."""
    rogue = Pki(tmp_path / "rogue", "rogue-ca")
    n0 = node("n0", *server_tls_args(pki, "n0"))
    cert, key = rogue.issue("n1")
    n1 = node("n1", "-o", f"peer_tls_cert={cert},peer_tls_key={key},peer_tls_ca={rogue.ca}")
    text = (f"MAP 1 16\r\nNODE n0 127.0.0.1:{n0.port}\r\nNODE n1 127.0.0.1:{n1.port}\r\n"
            f"RANGE 0 7 n0 n1\r\nRANGE 8 15 n1 n0\r\nEND\r\n")
    for s, ca in ((n0, pki), (n1, rogue)):
        p = peer_conn(s.port, ca)
        assert auth(p) == b"OK\r\n"
        p.send(f"cluster setmap {len(text)}\r\n{text}\r\n")
        assert p.readline() == b"OK\r\n"
        p.close()

    def refused():
        c = n0.connect()
        st = c.stats("replication")
        c.close()
        return "TLS" in st.get("link:n1:last_error", "") and st.get("link:n1:state") != "up"
    mc.wait_for(refused, timeout=10, what="n0's link to n1 refused for its certificate")
    # a key n1 owns, written on n0: the forward fails, the client gets an error, not a hang
    c = n0.connect(timeout=10)
    k = next(f"x{i}" for i in range(1000) if bucket(f"x{i}", 16) >= 8)
    r = c.cmd(f"set {k} 0 0 1\r\nv")
    assert r.startswith(b"SERVER_ERROR"), r
    assert c.cmd("version").startswith(b"VERSION")
    c.close()


def test_a_coordinator_without_tls_cannot_steer_peer_tls_servers(cluster, pki):
    servers, coord = cluster(n=2, replicas=1, server_args=server_tls_args(pki, "server"),
                             settle=False)
    mc.wait_for(lambda: "not set up: auth: unexpected reply: CLIENT_ERROR cluster auth needs a "
                        "peer TLS connection" in coord.own_log(), timeout=10,
                what="the coordinator's links refused")
    for s in servers.values():
        assert cluster_stats(s)["map_epoch"] == "0"
        assert int(cluster_stats(s)["peer_tls_refused"]) > 0


def test_bad_peer_tls_options_refused_at_start(make_server, tmp_path, pki):
    secret = tmp_path / "secret"
    secret.write_bytes(b"test-cluster-secret-0123456789\n")
    cert, key = pki.issue("n0")
    base = f"node_id=n0,cluster_secret_file={secret}"
    exe = mc.server_binary()
    for opts, msg in (
        (f"{base},peer_tls_cert={cert}", b"peer TLS needs all of"),
        (f"{base},peer_tls_cert={cert},peer_tls_key={key},peer_tls_ca=/nonexistent",
         b"peer_tls_ca /nonexistent"),
        (f"{base},peer_tls_cert={cert},peer_tls_key={pki.ca_key},peer_tls_ca={pki.ca}",
         b"peer_tls_key " + pki.ca_key.encode()),
        (f"peer_tls_cert={cert},peer_tls_key={key},peer_tls_ca={pki.ca}", b"need node_id"),
    ):
        r = subprocess.run([exe, "-p", "0", "-U", "0", "-u", "nobody", "-o", opts],
                           capture_output=True, timeout=10)
        assert r.returncode != 0, opts
        assert msg in r.stderr, (opts, r.stderr)
    for args, msg in (
        (["--peer-tls-cert", cert], b"all of --peer-tls-cert"),
        (["--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", "/nonexistent"],
         b"peer_tls_ca /nonexistent"),
        (["--state", "etcd://127.0.0.1:2379/x", "--etcd-cert", cert], b"go together"),
        (["--state", "etcd://127.0.0.1:2379/x", "--etcd-cert", cert, "--etcd-key", key],
         b"--etcd-cert needs --etcd-cacert"),
        (["--etcd-cacert", pki.ca], b"--etcd-cacert needs --state etcd://"),
        (["--state", "etcd://127.0.0.1:2379/x", "--etcd-cacert", "/nonexistent"],
         b"cannot read /nonexistent"),
    ):
        r = subprocess.run([COORD_BIN, "--secret-file", str(secret), *args],
                           capture_output=True, timeout=10)
        assert r.returncode == 64 and msg in r.stderr, (args, r.stderr)


def test_peers_and_tls_clients_share_a_Z_port(node, pki):
    """-Z and peer TLS on one port: a client's TLS (the session's server certificate, no ALPN)
    is served as a client and cannot ask for the challenge; a peer's hello (ALPN mcm-peer) is
    moved to the cluster's context and gets in."""
    n0 = node("n0", *mc.tls_server_args(), *server_tls_args(pki, "n0"))
    c = mc.Conn(("127.0.0.1", n0.port), tls=True)
    assert c.cmd("version").startswith(b"VERSION")
    assert c.cmd("cluster auth") == NEEDS_PEER_TLS
    c.close()
    p = peer_conn(n0.port, pki)  # verifies the server's certificate against the cluster CA
    assert auth(p) == b"OK\r\n"
    p.close()
    # a peer whose certificate the cluster's CA did not sign: refused in the handshake, counted
    # with the port's other handshake errors
    rogue = Pki(pki.dir + "-rogue", "rogue-ca")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        p = peer_conn(n0.port, pki, cert_key=rogue.issue("intruder"))
        p.cmd("cluster auth")
    c = mc.Conn(("127.0.0.1", n0.port), tls=True)
    mc.wait_for(lambda: int(c.stats()["ssl_handshake_errors"]) >= 1, timeout=5,
                what="the refused handshake counted")
    c.close()


def test_cluster_with_tls_clients_and_peer_tls(cluster, pki):
    servers, coord = cluster(n=2, replicas=1,
                             server_args=(*mc.tls_server_args(), *server_tls_args(pki, "server")),
                             extra=coord_tls_args(pki))
    m = parse_map(coord.map_text())
    c = mc.Conn(("127.0.0.1", servers["n0"].port), tls=True)
    keys = [f"z{i}" for i in range(100)]
    for k in keys:
        assert c.cmd(f"set {k} 0 0 {len(k)}\r\n{k}") == b"STORED\r\n"
    for k in keys:
        c.send(f"get {k}\r\n")
        assert c.read_until(b"END\r\n") == f"VALUE {k} 0 {len(k)}\r\n{k}\r\nEND\r\n".encode()
    st = c.stats("cluster")
    c.close()
    assert int(st["forwarded"]) > 0 and st["forward_errors"] == "0"
    assert sum(1 for k in keys if m["active"][bucket(k, BUCKETS)] == "n1") > 20
    mc.wait_for(lambda: all(repl_up_tls(servers[a], b) for a, b in (("n0", "n1"), ("n1", "n0"))),
                timeout=10, what="replication links up over TLS")


def repl_up_tls(server, peer):
    c = mc.Conn(("127.0.0.1", server.port), tls=True)
    st = c.stats("replication")
    c.close()
    return st.get(f"link:{peer}:state") == "up"
