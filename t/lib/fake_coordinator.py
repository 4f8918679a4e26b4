#!/usr/bin/python3
"""A stand-in for mc-coordinator's admin API (doc/coordinator.md, Admin API), for mcctl's
tests: the same endpoints, JSON and MC-HMAC check (a challenge is good once, for 60 s), over
an in-memory cluster that never talks to a server. Its map deals the buckets out in equal
ranges, each replicated on the next node. It is not the coordinator: no heartbeats, no
failover logic beyond the epoch and the counters.

In a test: `fc = FakeCoordinator(secret); fc.start(); ... fc.addr ...; fc.stop()`.
As a program it takes mc-coordinator's options (--secret-file, --node NAME=HOST:PORT,
--listen, --port-file, --state ignored) so scripts/cluster.sh can be tried without it.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class FakeCoordinator:
    def __init__(self, secret, nodes=(("n1", "127.0.0.1:11211"), ("n2", "127.0.0.1:11212"),
                                      ("n3", "127.0.0.1:11213")), buckets=1024, listen=("127.0.0.1", 0)):
        self.secret = secret
        self.nodes = list(nodes)
        self.buckets = buckets
        self.epoch = 1
        self.failovers = 0
        self.last_failover = None
        self.cut_off = False
        self.dead = set()
        self.challenges = {}          # challenge -> expiry (monotonic)
        self.requests = []            # (method, path, headers dict, body) as received
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(listen, self._handler())
        self.httpd.daemon_threads = True
        self.thread = None

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------ the cluster's views

    def ranges(self):
        """[(first, last, active, [replica])] over the live nodes, in equal shares."""
        live = [n for n, _ in self.nodes if n not in self.dead]
        out = []
        if not live:
            return out
        share = self.buckets // len(live)
        first = 0
        for i, name in enumerate(live):
            last = self.buckets - 1 if i == len(live) - 1 else first + share - 1
            reps = [live[(i + 1) % len(live)]] if len(live) > 1 else []
            out.append((first, last, name, reps))
            first = last + 1
        return out

    def map_text(self):
        lines = [f"MAP {self.epoch} {self.buckets}"]
        lines += [f"NODE {n} {a}" for n, a in self.nodes]
        lines += [" ".join(["RANGE", str(f), str(la), a] + r) for f, la, a, r in self.ranges()]
        lines.append("END")
        return "\r\n".join(lines) + "\r\n"

    def status(self):
        act, rep = {}, {}
        for f, la, a, r in self.ranges():
            act[a] = act.get(a, 0) + la - f + 1
            for x in r:
                rep[x] = rep.get(x, 0) + la - f + 1
        servers = []
        for n, a in self.nodes:
            dead = n in self.dead
            servers.append({"name": n, "addr": a, "health": "dead" if dead else "up",
                            "last_heartbeat_ms": 2500 if dead else 40, "epoch": self.epoch,
                            "boot_id": "0123456789abcdef", "fenced": False,
                            "actives": act.get(n, 0), "replicas": rep.get(n, 0),
                            "replicas_in_sync": rep.get(n, 0), "max_lag": 0})
        return {"epoch": self.epoch, "buckets": self.buckets, "replicas": 1,
                "cut_off": self.cut_off, "failovers": self.failovers, "cold_buckets": 0,
                "last_failover": self.last_failover, "servers": servers}

    # ------------------------------------------------------------ HTTP

    def _authorized(self, method, path, headers, body):
        h = headers.get("Authorization", "")
        w = h.split(" ")
        if len(w) != 3 or w[0] != "MC-HMAC":
            return "missing or malformed Authorization: MC-HMAC <challenge> <proof>"
        challenge, got = w[1], w[2]
        expiry = self.challenges.pop(challenge, None)
        if expiry is None or expiry < time.monotonic():
            return "unknown, expired or reused challenge"
        msg = (challenge + "\n" + method + "\n" + path + "\n").encode() + body
        want = hmac.new(self.secret, msg, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, got):
            return "bad proof"
        return None

    def handle(self, method, path, headers, body):
        """-> (status, content type, bytes)."""
        def js(code, obj):
            return code, "application/json", json.dumps(obj).encode()

        with self.lock:
            self.requests.append((method, path, dict(headers), body))
            if method == "GET" and path == "/status":
                return js(200, self.status())
            if method == "GET" and path == "/map":
                return js(200, {"epoch": self.epoch, "buckets": self.buckets,
                                "text": self.map_text()})
            if method == "GET" and path == "/metrics":
                return (200, "text/plain; version=0.0.4",
                        f"mc_coordinator_epoch {self.epoch}\n".encode())
            if method == "GET" and path == "/auth":
                c = secrets.token_hex(32)
                self.challenges[c] = time.monotonic() + 60
                return js(200, {"challenge": c})
            mutating = ((method == "POST" and path in ("/nodes",)) or
                        (method == "DELETE" and path.startswith("/nodes/")) or
                        (method == "POST" and path.startswith("/failover/")))
            if not mutating:
                return js(404, {"error": f"no such endpoint: {method} {path}"})
            why = self._authorized(method, path, headers, body)
            if why:
                return js(401, {"error": why})
            if self.cut_off:
                return js(409, {"error": "the coordinator is cut off from most servers"})
            names = [n for n, _ in self.nodes]
            if path == "/nodes":
                try:
                    req = json.loads(body.decode())
                    name, addr = req["name"], req["addr"]
                    assert NAME_RE.match(name) and re.match(r"^[^:]+:\d+$", addr)
                except Exception:
                    return js(400, {"error": "body must be {\"name\": ..., \"addr\": \"host:port\"}"})
                if name in names:
                    return js(409, {"error": f"node {name} already exists"})
                self.nodes.append((name, addr))
                self.epoch += 1
                return js(200, {"ok": True, "epoch": self.epoch})
            name = path.rsplit("/", 1)[1]
            if name not in names:
                return js(404, {"error": f"unknown node {name}"})
            if method == "DELETE":
                self.nodes = [(n, a) for n, a in self.nodes if n != name]
                self.dead.discard(name)
                self.epoch += 1
                return js(200, {"ok": True, "epoch": self.epoch})
            before = {a: la - f + 1 for f, la, a, _ in self.ranges()}.get(name, 0)
            self.dead.add(name)
            self.epoch += 1
            self.failovers += 1
            self.last_failover = {"node": name, "at_unix_ms": int(time.time() * 1000),
                                  "detect_ms": 0, "push_ms": 1, "buckets": before}
            return js(200, {"ok": True, "epoch": self.epoch, "buckets": before})

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                code, ctype, data = fake.handle(self.command, self.path, self.headers, body)
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _any

        return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--secret-file", required=True)
    p.add_argument("--state")
    p.add_argument("--node", action="append", default=[], metavar="NAME=HOST:PORT")
    p.add_argument("--listen", default="127.0.0.1:11300")
    p.add_argument("--port-file")
    a = p.parse_args()
    with open(a.secret_file, "rb") as f:
        secret = f.read(4096).rstrip(b"\r\n")
    host, port = a.listen.rsplit(":", 1)
    nodes = [tuple(n.split("=", 1)) for n in a.node]
    fc = FakeCoordinator(secret, nodes=nodes, listen=(host, int(port)))
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{fc.port}\n")
        os.rename(tmp, a.port_file)
    try:
        fc.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
