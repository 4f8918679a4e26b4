"""Helpers for managed-mode tests: the bucket function, authentication with the cluster
secret, installing maps, and a TCP fault proxy. The tests play the coordinator's part."""

import hashlib
import hmac
import random
import select
import socket
import threading
import time
from collections import deque
import zlib

SECRET = b"test-cluster-secret-0123456789"


def bucket(key, n):
    return zlib.crc32(key.encode() if isinstance(key, str) else key) % n


def auth(c, secret=SECRET):
    line = c.cmd("cluster auth")
    assert line.startswith(b"CHALLENGE ")
    nonce = line.split()[1]
    proof = hmac.new(secret, nonce, hashlib.sha256).hexdigest()
    return c.cmd("cluster auth " + proof)


def setmap(c, text):
    c.send(b"cluster setmap %d\r\n" % len(text) + text.encode() + b"\r\n")
    return c.readline()


def install(servers, text):
    for s in servers:
        c = s.connect()
        assert auth(c) == b"OK\r\n"
        assert setmap(c, text) == b"OK\r\n"
        c.close()


def dump(server, b):
    """Every live item of bucket b: {key: (flags, exptime, cas, marks, value)}."""
    c = server.connect()
    assert auth(c) == b"OK\r\n"
    c.send(f"cluster dump {b}\r\n")
    items = {}
    while True:
        line = c.readline()
        if line == b"END\r\n":
            break
        w = line.split()
        assert w[0] == b"ITEM", line
        n = int(w[5])
        data = c.readexact(n + 2)[:-2]
        items[w[1]] = (int(w[2]), int(w[3]), int(w[4]), w[6], data)
    c.close()
    return items


def dump_keys(server, buckets, secret=SECRET, timeout=60):
    """The keys (bytes) a managed server holds in the given buckets, values skipped: one
    authenticated connection, one `cluster dump` per bucket."""
    c = server.connect(timeout=timeout)
    assert auth(c, secret) == b"OK\r\n"
    keys = set()
    for b in buckets:
        c.send(f"cluster dump {b}\r\n")
        while True:
            line = c.readline()
            if line == b"END\r\n":
                break
            w = line.split()
            keys.add(w[1])
            c.readexact(int(w[5]) + 2)
    c.close()
    return keys


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of target_port. cut() closes every connection it
    carries (the peers see a dead link); block() stops accepting and carrying bytes until
    unblock(); delay(ms, jitter_ms) holds every chunk it carries that long before passing it
    on (each direction keeps its order; delay(0) ends it). Runs in a thread; stop() ends it."""

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        self.blocked = False
        self.cuts = 0
        self.delay_s = 0.0
        self.jitter_s = 0.0
        self.rnd = random.Random(target_port)
        # Delayed chunks: {destination socket: deque of (due, data)}, only while delaying.
        self.held = {}
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            with self.lock:
                # While blocked only new connections are taken (the bytes stay in the
                # kernel's buffers), so select does not spin on readable sockets.
                socks = [self.lsock]
                if not self.blocked:
                    socks += [s for p in self.pairs for s in p]
            wait = 0.05
            if self.held:
                wait = max(0.0, min(wait, self._flush_held()))
            try:
                r, _, _ = select.select(socks, [], [], wait)
            except (OSError, ValueError):
                continue
            for s in r:
                if s is self.lsock:
                    try:
                        a, _ = self.lsock.accept()
                        b = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                    except OSError:
                        continue
                    with self.lock:
                        self.pairs.append((a, b))
                    continue
                if self.blocked:
                    continue
                with self.lock:
                    pair = next((p for p in self.pairs if s in p), None)
                if pair is None:
                    continue
                other = pair[1] if s is pair[0] else pair[0]
                try:
                    data = s.recv(65536)
                    if data:
                        if self.delay_s > 0 or other in self.held:
                            self._hold(other, data)
                        else:
                            other.sendall(data)
                        continue
                except OSError:
                    pass
                self._close(pair)

    def _hold(self, dest, data):
        q = self.held.setdefault(dest, deque())
        due = time.monotonic() + self.delay_s + self.rnd.uniform(0, self.jitter_s)
        if q and q[-1][0] > due:
            due = q[-1][0]  # jitter never reorders a direction's bytes
        q.append((due, data))

    def _flush_held(self):
        """Pass on the held chunks that are due; returns the seconds until the next one."""
        now = time.monotonic()
        nxt = 0.05
        for dest, q in list(self.held.items()):
            while q and q[0][0] <= now:
                try:
                    dest.sendall(q.popleft()[1])
                except OSError:
                    q.clear()
            if q:
                nxt = min(nxt, q[0][0] - now)
            else:
                self.held.pop(dest, None)
        return nxt

    def _close(self, pair):
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)
        for s in pair:
            self.held.pop(s, None)
        for s in pair:
            try:
                s.close()
            except OSError:
                pass

    def block(self):
        self.blocked = True

    def unblock(self):
        self.blocked = False

    def delay(self, ms, jitter_ms=0):
        """Hold each chunk ms (plus up to jitter_ms) before passing it on; 0 ends it (what
        is already held still goes out when due)."""
        self.delay_s = ms / 1000.0
        self.jitter_s = jitter_ms / 1000.0

    def cut(self):
        with self.lock:
            pairs = list(self.pairs)
        for p in pairs:
            self._close(p)
        self.cuts += 1

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        self.cut()
        self.lsock.close()


class Heartbeat:
    """Plays the coordinator's heartbeat on one authenticated connection (doc/coordinator.md):
    beat() sends `cluster hb` with the token of the previous reply and returns the parsed
    reply {"node", "epoch", "boot", "token", "lease_left", "fenced", "A": {b: (seqno,
    in_sync)}, "R": {b: (applied, in_sync)}}."""

    def __init__(self, server, lease_ms=300, quiet_ms=150):
        self.c = server.connect()
        assert auth(self.c) == b"OK\r\n"
        self.token = 0
        self.lease_ms = lease_ms
        self.quiet_ms = quiet_ms

    def beat(self, lease_ms=None):
        lease = self.lease_ms if lease_ms is None else lease_ms
        self.c.send(f"cluster hb {lease} {self.token} {self.quiet_ms}\r\n")
        w = self.c.readline().split()
        assert w[0] == b"HB", w
        r = {"node": w[1].decode(), "epoch": int(w[2]), "boot": w[3].decode(),
             "token": int(w[4]), "lease_left": int(w[5]), "fenced": w[6] == b"1",
             "A": {}, "R": {}}
        self.token = r["token"]
        while True:
            line = self.c.readline()
            if line == b"END\r\n":
                return r
            kind, b, n, s = line.split()
            r[kind.decode()][int(b)] = (int(n), int(s))

    def close(self):
        self.c.close()
