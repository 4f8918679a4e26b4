"""TLS for clients (-Z, -o ssl_*), as memcached 1.6 offers it: handshakes and commands, the
counters in `stats` and the settings in `stats settings`, refresh_certs, client certificates
(ssl_verify_mode), clean refusals of every kind of bad handshake, and the start-up errors.

Certificates are made per test with the openssl command in the test's temporary directory
(t/lib/certs.py). Runs against memcached-debug and against Debian's /usr/bin/memcached (built
with TLS): the tests that need this server's own behaviour skip there.
"""

import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import certs
import mc


class Tls:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, in directory d."""

    def __init__(self, d):
        self.dir = str(d)
        self.pki = certs.Pki(os.path.join(self.dir, "pki"), name="ca")
        self.cert, self.key = self.pki.issue("server")
        self.client_cert, self.client_key = self.pki.issue("client")
        # What the server is started with: copies that refresh_certs tests may overwrite.
        self.srv_cert = os.path.join(self.dir, "srv.pem")
        self.srv_key = os.path.join(self.dir, "srv.key")
        shutil.copy(self.cert, self.srv_cert)
        shutil.copy(self.key, self.srv_key)

    def args(self, extra=""):
        o = f"ssl_chain_cert={self.srv_cert},ssl_key={self.srv_key}"
        return ["-Z", "-o", o + ("," + extra if extra else "")]

    def context(self, cert=False, cafile=None):
        return mc.client_context(cafile=cafile or self.pki.ca,
                                 cert=self.client_cert if cert else None,
                                 key=self.client_key if cert else None)

    def connect(self, port, cert=False, cafile=None, timeout=5.0):
        c = mc.Conn(("127.0.0.1", port), timeout=timeout, tls=False)
        c.sock = self.context(cert, cafile).wrap_socket(c.sock, server_hostname="127.0.0.1")
        return c


@pytest.fixture
def tls(tmp_path):
    return Tls(tmp_path / "tls")


@pytest.fixture
def tls_server(make_server, tls):
    return make_server(*tls.args(), tls=False)


def plain(port, timeout=5.0):
    return mc.Conn(("127.0.0.1", port), timeout=timeout, tls=False)


def stock(server):
    return not os.path.abspath(server.binary).startswith(mc.TOP + os.sep)


def tcp_ports(server):
    """Every TCP port of the port file, in order."""
    out = []
    with open(server.port_file) as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[0] == "TCP":
                out.append(int(p[2]))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def handshake_errors(tls, server, cert=False):
    c = tls.connect(server.port, cert=cert)
    try:
        return int(c.stats()["ssl_handshake_errors"])
    finally:
        c.close()


def wait_errors(tls, server, n, cert=False):
    # memcached 1.6.18 counts only a handshake that fails at its first SSL_accept, right
    # after accept(), when the bytes happen to be there already; one that fails later (a
    # verifying client's alert, a hang-up) is not counted. This server counts every one.
    if stock(server):
        return True
    return mc.wait_for(lambda: handshake_errors(tls, server, cert) == n, timeout=5,
                       what=f"ssl_handshake_errors == {n}")


def still_serves(tls, server):
    c = tls.connect(server.port)
    assert c.cmd("version").startswith(b"VERSION ")
    c.close()


# ---- handshakes and commands ----

def test_handshake_and_commands(tls, tls_server):
    c = tls.connect(tls_server.port)
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert c.cmd("set a 5 0 3\r\nabc") == b"STORED\r\n"
    assert c.get_value("a") == (5, b"abc")
    big = os.urandom(700 * 1024)  # many TLS records each way, more than the write buffer
    assert c.cmd(b"set big 0 0 %d\r\n" % len(big) + big) == b"STORED\r\n"
    assert c.get_value("big") == (0, big)
    # Pipelined: one write, many replies.
    c.send(b"".join(b"set k%d 0 0 1\r\n%d\r\n" % (i, i % 10) for i in range(200)))
    for _ in range(200):
        assert c.readline() == b"STORED\r\n"
    c.send("get " + " ".join(f"k{i}" for i in range(200)) + "\r\n")
    got = c.read_until()
    assert got.count(b"VALUE ") == 200
    assert c.cmd("delete a") == b"DELETED\r\n"
    st = c.stats()
    assert int(st["bytes_read"]) > len(big) and int(st["bytes_written"]) > len(big)
    c.close()


def test_binary_protocol_over_tls(tls, tls_server):
    c = tls.connect(tls_server.port)
    # A binary noop (opcode 0x0a) answered with its header.
    c.send(bytes([0x80, 0x0a, 0, 0, 0, 0, 0, 0]) + bytes(16))
    hdr = c.readexact(24)
    assert hdr[0] == 0x81 and hdr[1] == 0x0a
    c.close()


def test_stats_counters_only_under_Z(tls, tls_server, make_server):
    c = tls.connect(tls_server.port)
    keys = list(c.stats().keys())
    i = keys.index("log_watchers")
    assert keys[i + 1:i + 4] == ["ssl_handshake_errors", "time_since_server_cert_refresh",
                                 "unexpected_napi_ids"]
    assert c.stats()["ssl_handshake_errors"] == "0"
    p = make_server(tls=False)
    pc = p.connect()
    st = pc.stats()
    assert not [k for k in st if k.startswith("ssl_") or "cert" in k]


def test_session_cache_counts_new_sessions(tls, make_server):
    s = make_server(*tls.args("ssl_session_cache"), tls=False)
    c = tls.connect(s.port)
    c.cmd("version")
    keys = list(c.stats().keys())
    i = keys.index("log_watchers")
    assert keys[i + 1:i + 4] == ["ssl_new_sessions", "ssl_handshake_errors",
                                 "time_since_server_cert_refresh"]
    assert int(c.stats()["ssl_new_sessions"]) >= 1


def test_stats_reset_zeroes_the_tls_counters(tls, make_server):
    s = make_server(*tls.args("ssl_session_cache"), "-t", "1", tls=False)
    bad = plain(s.port)
    bad.send("version\r\n")
    assert bad.expect_closed(timeout=5)
    c = tls.connect(s.port)
    c.cmd("version")
    wait_errors(tls, s, 1)
    assert int(c.stats()["ssl_new_sessions"]) >= 1
    assert c.cmd("stats reset") == b"RESET\r\n"
    st = c.stats()
    assert st["ssl_handshake_errors"] == "0" and st["ssl_new_sessions"] == "0"


def test_stats_settings(tls, make_server):
    s = make_server(*tls.args("ssl_verify_mode=1,ssl_ca_cert=" + tls.pki.ca +
                              ",ssl_ciphers=HIGH,ssl_wbuf_size=32,ssl_min_version=3"),
                    tls=False)
    c = tls.connect(s.port)
    st = c.stats("settings")
    keys = list(st)
    ssl_keys = [k for k in keys if k.startswith("ssl_")]
    assert ssl_keys == ["ssl_enabled", "ssl_chain_cert", "ssl_key", "ssl_verify_mode",
                        "ssl_keyformat", "ssl_ciphers", "ssl_ca_cert", "ssl_wbuf_size",
                        "ssl_session_cache", "ssl_kernel_tls", "ssl_min_version"]
    assert [st[k] for k in ssl_keys] == ["yes", tls.srv_cert, tls.srv_key, "1", "1", "HIGH",
                                         tls.pki.ca, "32768", "no", "no", "tlsv1.3"]
    assert c.sock.version() == "TLSv1.3"


def test_stats_settings_without_Z(make_server):
    s = make_server(tls=False)
    st = s.connect().stats("settings")
    assert [st[k] for k in st if k.startswith("ssl_")] == [
        "no", "(null)", "(null)", "0", "1", "NULL", "NULL", "16384", "no", "no", "tlsv1.2"]


# ---- refresh_certs ----

def test_refresh_certs_swaps_the_certificate(tls, tls_server):
    old = tls.connect(tls_server.port)
    assert old.sock.getpeercert()["subject"] == ((("commonName", "server"),),)
    new_cert, new_key = tls.pki.issue("server-two")
    shutil.copy(new_cert, tls.srv_cert)
    shutil.copy(new_key, tls.srv_key)
    assert old.cmd("refresh_certs") == b"OK\r\n"
    assert int(old.stats()["time_since_server_cert_refresh"]) <= 2
    c = tls.connect(tls_server.port)
    assert c.sock.getpeercert()["subject"] == ((("commonName", "server-two"),),)
    assert c.cmd("version").startswith(b"VERSION ")
    assert old.cmd("version").startswith(b"VERSION ")  # the open session goes on


def test_refresh_certs_error_keeps_the_old_certificate(tls, tls_server):
    c = tls.connect(tls_server.port)
    with open(tls.srv_key, "w") as f:
        f.write("not a key\n")
    line = c.cmd("refresh_certs")
    assert line.startswith(f"Error loading the key: {tls.srv_key} : error:".encode()), line
    assert line.endswith(b"\r\n") and not line.endswith(b"\r\n\r\n")
    os.remove(tls.srv_cert)
    line = c.cmd("refresh_certs")
    assert line == (f"Error loading the certificate chain: {tls.srv_cert} : "
                    "error:80000002:system library::No such file or directory\r\n").encode()
    still_serves(tls, tls_server)
    assert tls.connect(tls_server.port).sock.getpeercert()["subject"] == \
        ((("commonName", "server"),),)


def test_refresh_certs_without_tls(make_server):
    c = make_server(tls=False).connect()
    assert c.cmd("refresh_certs") == b"Error TLS not enabled\r\n"


# ---- client certificates ----

def test_verify_mode_require(tls, make_server):
    s = make_server(*tls.args(f"ssl_verify_mode=2,ssl_ca_cert={tls.pki.ca}"), tls=False)
    good = tls.connect(s.port, cert=True)
    assert good.cmd("version").startswith(b"VERSION ")
    # Without a certificate: TLS 1.3 lets the client finish first; the server's alert comes
    # with the first read.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        bad = tls.connect(s.port, cert=False)
        bad.cmd("version")
    wait_errors(tls, s, 1, cert=True)
    # A certificate from another CA: refused too.
    other = certs.Pki(os.path.join(tls.dir, "other"), name="other")
    ocert, okey = other.issue("client")
    ctx = mc.client_context(cafile=tls.pki.ca, cert=ocert, key=okey)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        w = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        w.sendall(b"version\r\n")
        if not w.recv(100):
            raise ConnectionError("closed")
    wait_errors(tls, s, 2, cert=True)
    assert good.cmd("version").startswith(b"VERSION ")


def test_verify_mode_request_accepts_both(tls, make_server):
    s = make_server(*tls.args(f"ssl_verify_mode=1,ssl_ca_cert={tls.pki.ca}"), tls=False)
    for cert in (True, False):
        c = tls.connect(s.port, cert=cert)
        assert c.cmd("version").startswith(b"VERSION ")
        c.close()


# ---- bad handshakes: each refused cleanly, counted, the server serving on ----

def test_expired_server_certificate(tls, make_server):
    key = tls.key
    csr = os.path.join(tls.dir, "exp.csr")
    subprocess.run(["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", "/CN=server"],
                   check=True, capture_output=True)
    ext = os.path.join(tls.dir, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", tls.pki.ca, "-CAkey",
                    tls.pki.ca_key, "-set_serial", "77", "-days", "-1", "-extfile", ext,
                    "-out", tls.srv_cert], check=True, capture_output=True)
    s = make_server(*tls.args(), tls=False)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        tls.connect(s.port)
    # A client that does not verify still gets in (and sees the count).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = plain(s.port)
    c.sock = ctx.wrap_socket(c.sock)
    assert c.cmd("version").startswith(b"VERSION ")
    if not stock(s):
        mc.wait_for(lambda: c.stats()["ssl_handshake_errors"] == "1", what="error counted")


def test_wrong_ca(tls, tls_server):
    other = certs.Pki(os.path.join(tls.dir, "other"), name="other")
    with pytest.raises(ssl.SSLCertVerificationError):
        tls.connect(tls_server.port, cafile=other.ca)
    wait_errors(tls, tls_server, 1)
    still_serves(tls, tls_server)


def test_plain_client_on_tls_port(tls, tls_server):
    c = plain(tls_server.port)
    c.send("version\r\n")
    assert c.expect_closed(timeout=5)
    assert b"VERSION" not in c.buf
    wait_errors(tls, tls_server, 1)
    still_serves(tls, tls_server)


def test_notls_listener_beside_tls(tls, make_server):
    port = free_port()
    s = make_server(*tls.args(), "-l", f"notls:127.0.0.1:{port}", tls=False)
    assert port in tcp_ports(s)
    p = plain(port)
    assert p.cmd("version").startswith(b"VERSION ")
    assert p.cmd("set x 0 0 1\r\n1") == b"STORED\r\n"
    tlsport = [q for q in tcp_ports(s) if q != port][0]
    c = tls.connect(tlsport)
    assert c.get_value("x") == (0, b"1")
    assert c.stats("settings")["inter"] == f"127.0.0.1,notls:127.0.0.1:{port}"
    # A TLS client on the plain port: its hello is not a command; refused, the port serves on.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls.connect(port, timeout=3)
    assert plain(port).cmd("version").startswith(b"VERSION ")
    assert c.stats()["ssl_handshake_errors"] == "0"  # not a TLS port: nothing counted


def client_hello():
    """The first flight of a real TLS client, as bytes."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_stalled_handshakes_do_not_block_others(tls, make_server):
    s = make_server(*tls.args(), "-t", "1", tls=False)  # one worker: all on one loop
    hello = client_hello()
    silent = plain(s.port)
    half = plain(s.port)
    half.send(hello[:len(hello) // 2])
    for _ in range(3):
        c = tls.connect(s.port, timeout=3)
        assert c.cmd("version").startswith(b"VERSION ")
        c.close()
    # memcached keeps them waiting (no handshake timeout); so does this server.
    assert not silent.expect_closed(timeout=0.3)
    assert not half.expect_closed(timeout=0.3)
    assert handshake_errors(tls, s) == 0


def test_stalled_handshake_dropped_by_idle_timeout(tls, make_server):
    s = make_server(*tls.args(), "-o", "idle_timeout=1", tls=False)
    if stock(s):
        pytest.skip("memcached 1.6.18 never times out a connection stuck in its handshake")
    half = plain(s.port)
    half.send(client_hello()[:20])
    assert half.expect_closed(timeout=8)
    still_serves(tls, s)


def test_port_probe_is_not_a_handshake_error(tls, make_server):
    tls_server = make_server(*tls.args(), "-t", "1", tls=False)  # one loop: events in order
    if stock(tls_server):
        pytest.skip("this server's counting (memcached counts fewer still)")
    plain(tls_server.port).close()  # connects and hangs up without a byte
    still_serves(tls, tls_server)
    c = tls.connect(tls_server.port)
    assert c.cmd("version").startswith(b"VERSION ")  # after the probe's close was seen
    assert c.stats()["ssl_handshake_errors"] == "0"


def test_client_hangs_up_mid_handshake(tls, tls_server):
    half = plain(tls_server.port)
    half.send(client_hello()[:30])
    half.close()
    wait_errors(tls, tls_server, 1)
    still_serves(tls, tls_server)


# ---- watch: the watch thread writes through the connection's TLS session ----

def test_watch_over_tls(tls, tls_server):
    c = tls.connect(tls_server.port)
    assert c.cmd("watch mutations") == b"OK\r\n"
    w = tls.connect(tls_server.port)
    assert w.cmd("set wkey 0 0 1\r\nx") == b"STORED\r\n"
    deadline = time.monotonic() + 5  # log lines end with "\n" alone
    while b"wkey" not in c.buf:
        assert time.monotonic() < deadline, c.buf
        c._fill()
    w.close()
    c.close()
    still_serves(tls, tls_server)


def test_unix_socket_under_Z_is_plain(tls, tmp_path, make_server):
    path = str(tmp_path / "mc.sock")
    s = make_server(*tls.args(), "-s", path, tcp=False)
    c = mc.wait_for(lambda: _try_unix(path), timeout=10, what="unix socket")
    assert c.cmd("version").startswith(b"VERSION ")
    assert c.stats("settings")["ssl_enabled"] == "yes"
    assert s.alive()


def _try_unix(path):
    try:
        return mc.Conn(path, family=socket.AF_UNIX, tls=False)
    except OSError:
        return None


def test_udp_under_Z_is_plain(tls, make_server):
    s = make_server(*tls.args(), "-U", "-1", tls=False)
    if s.udp_port is None:
        pytest.skip("no UDP port in the port file")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n", ("127.0.0.1", s.udp_port))
    data, _ = u.recvfrom(65536)
    assert data[8:].startswith(b"VERSION ")


# ---- start-up errors, in memcached's words ----

def run_refused(tmp_path, *args):
    binary = mc.server_binary()
    r = subprocess.run([binary, *mc.root_args(), "-l", "127.0.0.1", "-p", "-1", *args],
                       cwd=str(tmp_path), capture_output=True, timeout=20, text=True)
    return r.returncode, r.stderr


def test_missing_certificate_file(tls, tmp_path):
    rc, err = run_refused(tmp_path, "-Z", "-o", "ssl_chain_cert=/nonexistent.pem,ssl_key=" +
                          tls.key)
    assert rc == 64
    assert ("Error loading the certificate chain: /nonexistent.pem : "
            "error:80000002:system library::No such file or directory\n") in err


def test_no_certificate_given(tmp_path):
    rc, err = run_refused(tmp_path, "-Z")
    assert rc == 64
    assert ("Error loading the certificate chain: (null) : "
            "error:8000000E:system library::Bad address\n") in err


def test_missing_key_and_mismatched_key(tls, tmp_path):
    rc, err = run_refused(tmp_path, "-Z", "-o", f"ssl_chain_cert={tls.cert},ssl_key=/nokey")
    assert rc == 64
    assert ("Error loading the key: /nokey : "
            "error:80000002:system library::No such file or directory\n") in err
    rc, err = run_refused(tmp_path, "-Z", "-o",
                          f"ssl_chain_cert={tls.cert},ssl_key={tls.client_key}")
    assert rc == 64
    assert (f"Error loading the key: {tls.client_key} : "
            "error:05800074:x509 certificate routines::key values mismatch\n") in err


def test_bad_ca_and_ciphers(tls, tmp_path):
    base = f"ssl_chain_cert={tls.cert},ssl_key={tls.key}"
    rc, err = run_refused(tmp_path, "-Z", "-o", base + ",ssl_ca_cert=/noca")
    assert rc == 64
    assert ("Error loading the CA certificate: /noca : "
            "error:80000002:system library::No such file or directory\n") in err
    rc, err = run_refused(tmp_path, "-Z", "-o", base + ",ssl_ciphers=BOGUS")
    assert rc == 64
    assert err.endswith("Error setting the provided cipher(s): BOGUS\n")


@pytest.mark.parametrize("opt,message", [
    ("ssl_verify_mode=4", "Invalid ssl_verify_mode. Use help to see valid options."),
    ("ssl_min_version=tlsv1.3", "could not parse argument to ssl_min_version"),
    ("ssl_min_version=7", "Invalid ssl_min_version. Use help to see valid options."),
    ("ssl_wbuf_size=big", "could not parse argument to ssl_wbuf_size"),
    ("ssl_chain_cert", "Missing ssl_chain_cert argument"),
])
def test_bad_option_values(tls, tmp_path, opt, message):
    rc, err = run_refused(tmp_path, "-Z", "-o", opt)
    assert rc != 0  # memcached exits 1 here, this server 64 (as for every bad option)
    assert err.splitlines()[0] == message


def test_Z_needs_a_tcp_port(tls, tmp_path):
    binary = mc.server_binary()
    r = subprocess.run([binary, *mc.root_args(), "-p", "0", "-Z", "-o",
                        f"ssl_chain_cert={tls.cert},ssl_key={tls.key}"],
                       cwd=str(tmp_path), capture_output=True, timeout=20, text=True)
    assert r.returncode == 64
    assert r.stderr == "ERROR: You cannot enable SSL without a TCP port.\n"
