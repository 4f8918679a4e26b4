"""Test harness: start a memcached-compatible server, talk to it over raw sockets.

Standard library only. Every server binds 127.0.0.1 on a port the OS picks (-p -1, as stock memcached allows), learns the
port through MEMCACHED_PORT_FILENAME (the same mechanism stock memcached offers), runs in a
temporary directory, and is stopped by its PID.
"""

import atexit
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_BIN = os.path.join(TOP, "memcached-debug")


# MC_TEST_TLS=1: every server the harness starts with TCP listens with TLS (-Z, a certificate
# for 127.0.0.1 from a CA made for the session), and every connection the harness and the
# suites make to it (Conn, tcp_connect, pymemcache_tls) is TLS. The replies must be the same.
TLS = os.environ.get("MC_TEST_TLS", "") not in ("", "0")
_pki = None


def test_pki():
    """The session's CA and server certificate (made on first use with the openssl command in
    a temporary directory, removed at exit): (CA path, cert path, key path). Shared through
    the environment, as this module is imported under two names (mc and lib.mc)."""
    global _pki
    if _pki is None:
        known = os.environ.get("MC_TEST_TLS_PKI")
        if known:
            _pki = tuple(known.split("|"))
        else:
            try:
                import certs  # t/lib/certs.py
            except ImportError:
                from lib import certs
            d = tempfile.mkdtemp(prefix="mc-tls-")
            atexit.register(shutil.rmtree, d, True)
            pki = certs.Pki(d, name="suite-ca")
            cert, key = pki.issue("server")
            _pki = (pki.ca, cert, key)
            os.environ["MC_TEST_TLS_PKI"] = "|".join(_pki)
    return _pki


def tls_server_args():
    """The flags that turn TLS on with the session's certificate."""
    _, cert, key = test_pki()
    return ["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"]


def client_context(cafile=None, cert=None, key=None):
    """A client TLS context that trusts the session's CA (or cafile) and checks the server's
    name (127.0.0.1); cert/key: a client certificate to present."""
    ctx = ssl.create_default_context(cafile=cafile or test_pki()[0])
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def tcp_connect(port, timeout=5.0, host="127.0.0.1"):
    """A connected socket to the server's port: TLS-wrapped (handshake done) under
    MC_TEST_TLS, plain otherwise."""
    s = socket.create_connection((host, port), timeout=timeout)
    if TLS:
        s = client_context().wrap_socket(s, server_hostname=host)
    return s


def pymemcache_tls():
    """Keyword arguments for pymemcache's clients: tls_context under MC_TEST_TLS."""
    return {"tls_context": client_context()} if TLS else {}


def server_binary():
    """The binary under test: $MC_TEST_BIN, else ./memcached-debug at the top of the tree."""
    return os.environ.get("MC_TEST_BIN", DEFAULT_BIN)


def wait_for(cond, timeout=5.0, interval=0.01, what="condition"):
    """Poll cond() until it returns a truthy value or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def root_args():
    """memcached refuses to run as root without -u."""
    return ["-u", "root"] if os.geteuid() == 0 else []


def io_engine_args(binary):
    """$MC_TEST_IO_ENGINE (epoll or uring) runs our servers on that network loop (-o
    io_engine=...; t/run-pytest runs the suites once more on the other one). Stock memcached
    does not have the option."""
    engine = os.environ.get("MC_TEST_IO_ENGINE", "")
    if not engine or not os.path.abspath(binary).startswith(TOP + os.sep):
        return []
    return ["-o", f"io_engine={engine}"]


class Server:
    """One server process. args are extra command-line flags (e.g. ["-m", "1"])."""

    def __init__(self, tmpdir, args=(), binary=None, tcp=True, env=None,
                 start_timeout=10.0, tls=None):
        self.binary = binary or server_binary()
        self.tmpdir = str(tmpdir)
        self.args = list(args)
        self.port = None
        self.udp_port = None
        self.log_path = os.path.join(self.tmpdir, "server.log")
        self.port_file = os.path.join(self.tmpdir, "ports")
        cmd = [self.binary] + root_args() + io_engine_args(self.binary)
        if tcp:
            cmd += ["-l", "127.0.0.1", "-p", "-1"]
            # tls: None follows MC_TEST_TLS; False never adds -Z; True always does.
            self.tls = TLS if tls is None else tls
            if self.tls:
                cmd += tls_server_args()
        else:
            self.tls = False
        cmd += self.args
        self.cmd = cmd
        e = dict(os.environ)
        e["MEMCACHED_PORT_FILENAME"] = self.port_file
        if env:
            e.update(env)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.tmpdir, env=e, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if tcp:
            try:
                wait_for(self._read_ports, timeout=start_timeout, what=f"port file of {cmd}")
            except Exception:
                self.stop()
                raise

    def _read_ports(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}: {self.read_log()}")
        try:
            with open(self.port_file) as f:
                for line in f:
                    parts = line.split()
                    # "TCP INET: 12345" / "UDP INET: 12345"
                    if len(parts) == 3 and parts[1] == "INET:":
                        if parts[0] == "TCP":
                            self.port = int(parts[2])
                        elif parts[0] == "UDP":
                            self.udp_port = int(parts[2])
        except FileNotFoundError:
            return False
        return self.port is not None

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def connect(self, timeout=5.0):
        return Conn(("127.0.0.1", self.port), timeout=timeout, tls=self.tls)

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        """The process's resident memory (VmRSS), in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def pause(self, timeout=5.0):
        """SIGSTOP, returning once every thread has stopped: kill() returns before then, and
        a worker thread may still answer a request meanwhile (one thread starts the group
        stop; the others stop when they next enter the kernel)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

        def stopped():
            task = f"/proc/{self.proc.pid}/task"
            for t in os.listdir(task):
                try:
                    with open(f"{task}/{t}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue  # a thread that ended meanwhile
                if state not in ("T", "t"):
                    return False
            return True
        wait_for(stopped, timeout=timeout, interval=0.001, what=f"{self.cmd[0]} stopped")

    def kill9(self):
        """SIGKILL, as a test of failure does: the fixture then expects no clean exit."""
        self.killed = True
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            # Stock memcached lingers a second on SIGTERM; it is not under test, so kill it.
            ours = os.path.abspath(self.binary).startswith(TOP + os.sep)
            self.proc.send_signal(signal.SIGTERM if ours else signal.SIGKILL)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # A server that does not exit is a bug: keep its threads' stacks in the log.
                if shutil.which("gdb"):
                    r = subprocess.run(["gdb", "-batch", "-p", str(self.proc.pid), "-ex",
                                        "thread apply all bt 20"], capture_output=True,
                                       text=True, timeout=60)
                    self.log.write(b"\n--- hung on SIGTERM; stacks ---\n" + r.stdout.encode())
                    self.log.flush()
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.log.close()
        return self.proc.returncode


class Conn:
    """A raw protocol connection with exact-byte helpers."""

    def __init__(self, addr, timeout=5.0, family=socket.AF_INET, tls=None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        if tls is None:
            tls = TLS and family != socket.AF_UNIX
        if tls:
            self.sock = client_context().wrap_socket(self.sock, server_hostname=addr[0])
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ssl.SSLError as e:  # e.g. the session ended without its close_notify
            raise ConnectionError(f"TLS: {e}") from e
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def readline(self):
        """One line including its \\r\\n."""
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def readexact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_until(self, terminator=b"END\r\n"):
        """Everything up to and including a line equal to terminator."""
        out = b""
        while True:
            line = self.readline()
            out += line
            if line == terminator:
                return out

    def cmd(self, line):
        """Send one command line (\\r\\n appended) and return one reply line."""
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.readline()

    def get_value(self, key):
        """get key -> (flags, value) or None, parsing the VALUE framing."""
        self.send(b"get " + (key.encode() if isinstance(key, str) else key) + b"\r\n")
        line = self.readline()
        if line == b"END\r\n":
            return None
        parts = line.split()
        assert parts[0] == b"VALUE", line
        n = int(parts[3])
        data = self.readexact(n + 2)
        assert data[-2:] == b"\r\n"
        assert self.readline() == b"END\r\n"
        return int(parts[2]), data[:-2]

    def stats(self, arg=""):
        """stats [arg] -> dict of str -> str."""
        self.send(("stats " + arg).strip() + "\r\n")
        out = {}
        while True:
            line = self.readline()
            if line == b"END\r\n":
                return out
            parts = line.decode().rstrip("\r\n").split(" ", 2)
            assert parts[0] == "STAT", line
            out[parts[1]] = parts[2] if len(parts) > 2 else ""

    def expect_closed(self, timeout=5.0):
        """True if the server closes the connection (EOF or reset) before the timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        except ssl.SSLError:  # the TLS session ended without its close_notify
            return True


def is_ours(server):
    """True when the binary under test is this project's debug build (has the debug command)."""
    c = server.connect()
    try:
        return c.cmd("debug time +0") == b"OK\r\n"
    finally:
        c.close()
