"""mcctl (mcctl/mcctl), the operator's command line: argument errors, an unreachable or silent
coordinator and the secret's checks (none needs a coordinator), then every command against a
real mc-coordinator in front of real managed servers (3 servers, 64 buckets, one cluster per
test): status, map, watch, metrics, failover, add-node, remove-node, a wrong secret, an
unknown node, a coordinator cut off from the majority."""

import http.client
import http.server
import importlib.machinery
import importlib.util
import json
import os
import pty
import select
import signal
import socket
import subprocess
import threading

import pytest

from lib import mc
from lib.coord import Coordinator, parse_map, server_map, wait_settled

MCCTL = os.path.join(mc.TOP, "mcctl", "mcctl")
SECRET = b"mcctl-test-secret-0123456789abcdef"


def run(*args, env=None, timeout=30):
    """mcctl through its shebang, without the caller's MCCTL_* / MC_SECRET_FILE."""
    e = {k: v for k, v in os.environ.items() if k not in ("MCCTL_COORDINATOR", "MC_SECRET_FILE")}
    e.update(env or {})
    return subprocess.run([MCCTL] + [str(a) for a in args], capture_output=True, text=True,
                          env=e, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line(r):
    """The error is exactly one line on stderr; nothing on stdout."""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == ""
    return lines[0]


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound, never listening (so no other
    test can take it while this one runs)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "secret"
    p.write_bytes(SECRET + b"\n")
    return p


# ---------------------------------------------------------------- arguments

def test_help():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    for word in ("status", "map", "watch", "add-node", "remove-node", "drain", "rebalance",
                 "failover",
                 "--coordinator", "--secret-file", "--json", "--timeout"):
        assert word in r.stdout
    r = run("add-node", "--help")
    assert r.returncode == 0 and "NAME" in r.stdout and "HOST:PORT" in r.stdout


@pytest.mark.parametrize("args", [
    [],                                           # no command
    ["frobnicate"],                               # unknown command
    ["add-node"],                                 # missing NAME and HOST:PORT
    ["add-node", "n4"],                           # missing HOST:PORT
    ["add-node", "n4", "127.0.0.1"],              # no port
    ["add-node", "n4", "127.0.0.1:0"],            # port out of range
    ["add-node", "n4", "127.0.0.1:99999"],
    ["add-node", "n 4", "127.0.0.1:11211"],       # not a node name
    ["add-node", "n4", "127.0.0.1:11211", "extra"],
    ["remove-node"],
    ["remove-node", "n/1"],
    ["failover"],
    ["failover", "a", "b"],
    ["--coordinator", "nocolon", "status"],
    ["--coordinator", "127.0.0.1:port", "status"],
    ["--timeout", "0", "status"],
    ["--timeout", "soon", "status"],
    ["watch", "--count", "0"],
    ["watch", "--count", "x"],
    ["map", "--bogus"],
])
def test_bad_arguments_exit_2(args):
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("usage: mcctl")
    assert r.stdout == ""


def test_bad_coordinator_from_env_is_a_usage_error():
    r = run("status", env={"MCCTL_COORDINATOR": "not-an-address"})
    assert r.returncode == 2 and "HOST:PORT" in r.stderr


# ---------------------------------------------------------------- unreachable

@pytest.mark.parametrize("cmd", [["status"], ["map"], ["map", "--summary"], ["metrics"],
                                 ["watch", "--count", "1"], ["status", "--json"]])
def test_unreachable_coordinator(closed_port, cmd):
    r = run("--coordinator", f"127.0.0.1:{closed_port}", *cmd)
    assert r.returncode == 3
    line = one_line(r)
    assert line.startswith(f"mcctl: cannot reach the coordinator at 127.0.0.1:{closed_port}: ")
    assert "refused" in line


def test_unreachable_address_from_env_and_options_after_the_command(closed_port):
    r = run("status", env={"MCCTL_COORDINATOR": f"127.0.0.1:{closed_port}"})
    assert r.returncode == 3
    assert one_line(r).startswith(f"mcctl: cannot reach the coordinator at 127.0.0.1:{closed_port}")
    # Global options are taken after the command too, and the option beats the environment.
    r = run("status", "--coordinator", f"127.0.0.1:{closed_port}",
            env={"MCCTL_COORDINATOR": "127.0.0.1:1"})
    assert one_line(r).startswith(f"mcctl: cannot reach the coordinator at 127.0.0.1:{closed_port}")


def test_default_address_is_used():
    r = run("status")
    # Whatever listens on 11300 on this machine, the message names the default address.
    if r.returncode == 3:
        assert "at 127.0.0.1:11300" in one_line(r)


def test_silent_coordinator_times_out(silent_port):
    r = run("--coordinator", f"127.0.0.1:{silent_port}", "--timeout", "0.5", "status")
    assert r.returncode == 3
    assert one_line(r) == (f"mcctl: cannot reach the coordinator at 127.0.0.1:{silent_port}: "
                           "no answer within 0.5 s")


def test_mutating_commands_unreachable(closed_port, secret_file):
    for cmd in (["add-node", "n4", "127.0.0.1:11214"], ["remove-node", "n1"], ["failover", "n1"]):
        r = run("--coordinator", f"127.0.0.1:{closed_port}", "--secret-file", secret_file, *cmd)
        assert r.returncode == 3
        assert one_line(r).startswith("mcctl: cannot reach the coordinator at ")


# ---------------------------------------------------------------- the secret

def test_mutating_commands_need_the_secret(closed_port, tmp_path):
    for cmd in (["add-node", "n4", "127.0.0.1:11214"], ["remove-node", "n1"], ["failover", "n1"]):
        r = run("--coordinator", f"127.0.0.1:{closed_port}", *cmd)
        assert r.returncode == 4
        assert "--secret-file" in one_line(r) and "MC_SECRET_FILE" in r.stderr
    r = run("--coordinator", f"127.0.0.1:{closed_port}", "--secret-file", tmp_path / "nope",
            "failover", "n1")
    assert r.returncode == 4
    assert one_line(r).startswith(f"mcctl: cannot read the secret file {tmp_path / 'nope'}: ")
    short = tmp_path / "short"
    short.write_bytes(b"tooshort\n")
    r = run("--coordinator", f"127.0.0.1:{closed_port}", "--secret-file", short, "failover", "n1")
    assert r.returncode == 4 and "too short" in one_line(r)


# ---------------------------------------------------------------- rebalance progress
# The display of a rebalance, from synthetic "rebalance" objects of GET /status: first the
# pure functions, then the wait loop's output against a fake admin API that replays a script
# of statuses. The fake checks mcctl's output and requests only; the commands against the
# real coordinator's rebalance are in the cluster tests below.

def load_mcctl():
    loader = importlib.machinery.SourceFileLoader("mcctl_under_test", MCCTL)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


mcctl = load_mcctl()


def rebalance(state="running", done=0, total=0, **kw):
    rb = {"state": state, "reason": "", "buckets_total": total, "buckets_done": done,
          "bytes_moved": 0, "started_unix_ms": 1000, "elapsed_s": 0.0,
          "rate_buckets_per_s": 0.0, "eta_s": None, "parallel": 1, "draining": [],
          "moves": [], "failed": 0}
    rb.update(kw)
    return rb


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (5 * 2**20, "5.0 MiB"), (int(3.3 * 2**30), "3.3 GiB"), (2**40, "1.0 TiB"),
    (2**50, "1024.0 TiB")])
def test_bytes_in_binary_units(n, text):
    assert mcctl.fmt_bytes(n) == text


@pytest.mark.parametrize("s, text", [
    (None, "?"), (-1, "?"), (float("nan"), "?"), (True, "?"), (0, "0s"), (59.4, "59s"),
    (59.6, "1m00s"), (185, "3m05s"), (3599, "59m59s"), (3600, "1h00m"), (7620, "2h07m")])
def test_eta_format(s, text):
    assert mcctl.fmt_duration(s) == text


def test_progress_bar():
    assert mcctl.progress_bar(0, 100) == "[" + "-" * mcctl.BAR_WIDTH + "]"
    assert mcctl.progress_bar(50, 100, 10) == "[#####-----]"
    assert mcctl.progress_bar(99, 100, 10) == "[#########-]"   # full only when done
    assert mcctl.progress_bar(100, 100, 10) == "[##########]"
    assert mcctl.progress_bar(7, 0, 4) == "[####]"             # nothing to move is done
    assert mcctl.progress_bar(9, 5, 4) == "[####]"
    for done in range(0, 1025, 7):
        assert len(mcctl.progress_bar(done, 1024)) == mcctl.BAR_WIDTH + 2


def test_progress_and_final_lines():
    rb = rebalance(done=256, total=1024, bytes_moved=3 * 2**30, rate_buckets_per_s=12.34,
                   eta_s=62.2, moves=[{"bucket": 5, "from": "n0", "to": "n3", "phase": "copy",
                                       "since_ms": 1500}] * 2)
    assert mcctl.progress_line(rb, 8) == ("running [##------] 256/1024 buckets  3.0 GiB moved  "
                                          "12.3 buckets/s  ETA 1m02s  2 in flight")
    rb.update(state="done", buckets_done=1024, eta_s=None, moves=[], elapsed_s=81.0, failed=2)
    assert mcctl.progress_line(rb, 8) == ("done [########] 1024/1024 buckets  3.0 GiB moved  "
                                          "12.3 buckets/s  ETA -  2 failed")
    assert mcctl.final_line(rb) == ("rebalance done: 1024/1024 buckets, 3.0 GiB moved in 1m21s, "
                                    "2 moves failed")
    rb.update(state="cancelled", buckets_done=10, failed=0, reason="cancelled by the operator")
    assert mcctl.final_line(rb) == ("rebalance cancelled: 10/1024 buckets, 3.0 GiB moved in "
                                    "1m21s (cancelled by the operator)")
    # Fields missing or of the wrong type do not break the line.
    assert mcctl.progress_line({"state": "running", "buckets_done": "x"}, 4) == (
        "running [####] 0/0 buckets  0 B moved  0.0 buckets/s  ETA ?")


def test_status_shows_the_rebalance():
    st = {"epoch": 9, "buckets": 64, "servers": [],
          "rebalance": rebalance(done=3, total=10, bytes_moved=2048, eta_s=4, parallel=2,
                                 rate_buckets_per_s=1.5, draining=["n2"], failed=1,
                                 moves=[{"bucket": 17, "from": "n2", "to": "n0",
                                         "phase": "handoff", "since_ms": 2500}])}
    lines = mcctl.render_status(st).splitlines()
    assert lines[1] == ("rebalance running: 3/10 buckets, 2.0 KiB moved, 1.5 buckets/s, "
                        "ETA 4s, parallel 2; draining n2")
    assert lines[2] == "  1 moves failed"
    assert lines[3].split() == ["BUCKET", "FROM", "TO", "PHASE", "FOR"]
    assert lines[4].split() == ["17", "n2", "n0", "handoff", "2s"]
    st["rebalance"] = rebalance("done", 10, 10, elapsed_s=7.0)
    assert mcctl.render_status(st).splitlines()[1] == (
        "rebalance done: 10/10 buckets, 0 B moved in 7s")
    for idle in (rebalance("idle"), None):
        st["rebalance"] = idle
        assert "rebalance" not in mcctl.render_status(st)


class FakeAdmin:
    """An HTTP server answering as the admin API would: /auth, a scripted sequence of
    /status answers (the last one repeats), and `answers` for the mutating calls. `requests`
    records (method, path, JSON body, signed) of the mutating ones. An answer may be a list
    of (HTTP status, JSON, headers), answered in turn (the last one repeats)."""

    def __init__(self, statuses, answers=None):
        self.statuses = list(statuses)
        self.answers = answers or {}
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, obj, code=200, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/auth":
                    return self.reply({"challenge": "ab" * 32})
                st = fake.statuses[0] if len(fake.statuses) == 1 else fake.statuses.pop(0)
                self.reply(st)

            def mutate(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"null")
                signed = self.headers.get("Authorization", "").startswith("MC-HMAC ")
                fake.requests.append((self.command, self.path, body, signed))
                a = fake.answers.get((self.command, self.path), {"ok": True})
                if isinstance(a, list):      # a script: (code, JSON, headers), the last repeats
                    code, obj, headers = a[0] if len(a) == 1 else a.pop(0)
                    return self.reply(obj, code, headers)
                self.reply(a)

            do_POST = do_DELETE = mutate

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_admin():
    made = []

    def make(statuses, answers=None):
        made.append(FakeAdmin(statuses, answers))
        return made[-1]
    yield make
    for f in made:
        f.close()


def status_with(rb, servers=()):
    return {"epoch": 3, "buckets": 8, "servers": list(servers), "rebalance": rb}


RUN_4 = [status_with(rebalance("idle", started_unix_ms=None)),   # read before the request
         status_with(rebalance(done=0, total=4)),
         status_with(rebalance(done=2, total=4, eta_s=1.0)),
         status_with(rebalance("done", 4, 4, elapsed_s=0.6))]


def test_rebalance_json_lines(fake_admin, secret_file):
    f = fake_admin(RUN_4, {("POST", "/rebalance"): {"planned": 4}})
    r = run("--coordinator", f.addr, "--secret-file", secret_file, "--json", "rebalance",
            "--parallel", "2")
    assert r.returncode == 0, r.stderr
    assert f.requests == [("POST", "/rebalance", {"parallel": 2}, True)]
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    # One object per poll while it runs, then the final one; nothing but JSON on stdout.
    assert [o["state"] for o in objs] == ["running", "running", "done"]
    assert [o["buckets_done"] for o in objs] == [0, 2, 4]
    assert r.stderr == ""


def test_rebalance_plain_lines_without_a_terminal(fake_admin, secret_file):
    # 14 polls of a running rebalance at 0.2 s: about 2.8 s, a progress line every 2 s.
    statuses = RUN_4[:1] + [status_with(rebalance(done=i // 4, total=4))
                            for i in range(14)] + RUN_4[-1:]
    f = fake_admin(statuses, {("POST", "/rebalance"): {"planned": 4}})
    r = run("--coordinator", f.addr, "--secret-file", secret_file, "rebalance")
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    assert err[0] == "rebalance started: 4 buckets to move"
    assert 2 <= len(err[1:]) <= 3 and all(line.startswith("running [") for line in err[1:])
    assert "\r" not in r.stderr and "\x1b" not in r.stderr
    assert r.stdout == "rebalance done: 4/4 buckets, 0 B moved in 1s\n"


def test_rebalance_on_a_terminal_redraws_one_line(fake_admin, secret_file):
    f = fake_admin(RUN_4, {("POST", "/rebalance"): {"planned": 4}})
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([MCCTL, "--coordinator", f.addr, "--secret-file", secret_file,
                              "rebalance"], stdout=subprocess.PIPE, stderr=slave,
                             stdin=subprocess.DEVNULL, text=True)
        os.close(slave)
        out, _ = p.communicate(timeout=30)
        tty = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:                # the pty's other side is closed: all read
                break
            if not chunk:
                break
            tty += chunk
    finally:
        os.close(master)
    assert p.returncode == 0
    assert out == "rebalance done: 4/4 buckets, 0 B moved in 1s\n"
    text = tty.decode().replace("\r\n", "\n")
    # Each poll redraws the line in place; the last one, as it ended, stays.
    assert text.count("\r") == 3 and text.count("\x1b[K") == 3
    assert text.endswith("\rdone [" + "#" * mcctl.BAR_WIDTH + "] 4/4 buckets  0 B moved  "
                         "0.0 buckets/s  ETA -\x1b[K\n")


def test_cancelled_rebalance_exits_1(fake_admin, secret_file):
    f = fake_admin(RUN_4[:2] + [status_with(rebalance("cancelled", 1, 4, reason="by mcctl"))],
                   {("POST", "/rebalance"): {"planned": 4}})
    r = run("--coordinator", f.addr, "--secret-file", secret_file, "rebalance")
    assert r.returncode == 1
    assert r.stdout == "rebalance cancelled: 1/4 buckets, 0 B moved in 0s (by mcctl)\n"
    assert r.stderr.splitlines()[-1] == "mcctl: the rebalance ended cancelled: by mcctl"


def test_rebalance_cancel_no_wait_and_nothing_to_move(fake_admin, secret_file):
    f = fake_admin(RUN_4, {("POST", "/rebalance"): {"planned": 0}})
    base = ["--coordinator", f.addr, "--secret-file", secret_file]
    r = run(*base, "rebalance", "--cancel")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "rebalance cancelled: the moves in flight finish, no new ones start\n"
    r = run(*base, "rebalance")
    assert r.returncode == 0 and r.stdout == "rebalance started: 0 buckets to move\n"
    f.answers[("POST", "/rebalance")] = {"planned": 9}
    r = run(*base, "rebalance", "--no-wait")
    assert r.returncode == 0
    assert r.stdout == ("rebalance started: 9 buckets to move; `mcctl status` shows the "
                        "progress\n")
    assert run(*base, "rebalance", "--cancel", "--parallel", "2").returncode == 2
    assert [q[:3] for q in f.requests] == [("POST", "/rebalance/cancel", {}),
                                           ("POST", "/rebalance", {}), ("POST", "/rebalance", {})]


def test_drain_remove_and_add_send_what_the_api_wants(fake_admin, secret_file):
    f = fake_admin([status_with(rebalance("done", 4, 4))],
                   {("POST", "/nodes/n1/drain"): {"planned": 0}})
    base = ["--coordinator", f.addr, "--secret-file", secret_file]
    assert run(*base, "drain", "n1").stdout == "draining n1: 0 buckets to move\n"
    assert run(*base, "remove-node", "n1").stdout == "removing n1: 0 buckets to move\n"
    assert run(*base, "remove-node", "--now", "n1").returncode == 0
    assert run(*base, "add-node", "--no-rebalance", "n4", "127.0.0.1:5").returncode == 0
    assert run(*base, "add-node", "--no-wait", "n4", "127.0.0.1:5").returncode == 0
    assert [q[:3] for q in f.requests] == [
        ("POST", "/nodes/n1/drain", {"remove": False}),
        ("POST", "/nodes/n1/drain", {"remove": True}),
        ("DELETE", "/nodes/n1", None),
        ("POST", "/nodes", {"name": "n4", "addr": "127.0.0.1:5", "rebalance": False}),
        ("POST", "/nodes", {"name": "n4", "addr": "127.0.0.1:5", "rebalance": True})]


def test_add_node_waits_for_the_catch_up_then_its_rebalance(fake_admin, secret_file):
    old = rebalance("done", 8, 8, started_unix_ms=500)
    new = dict(started_unix_ms=2000)
    n4 = {"name": "n4", "health": "catching_up", "replicas": 6, "replicas_in_sync": 2}
    f = fake_admin([status_with(old),                               # before the request
                    status_with(old, [n4]), status_with(old, [n4]),
                    status_with(rebalance(done=1, total=2, **new), [dict(n4, health="up")]),
                    status_with(rebalance("done", 2, 2, **new))])
    r = run("--coordinator", f.addr, "--secret-file", secret_file, "add-node", "n4",
            "127.0.0.1:5")
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    assert err[0].startswith("added n4 at 127.0.0.1:5: map epoch now ")
    assert err[1] == "waiting for n4 to catch up (health catching_up, 2/6 replicas in sync)"
    assert r.stdout == "rebalance done: 2/2 buckets, 0 B moved in 0s\n"
    # With --json: the objects of its own rebalance only, not the one before.
    f.statuses = [status_with(old), status_with(old, [n4]),
                  status_with(rebalance("done", 2, 2, **new))]
    r = run("--coordinator", f.addr, "--secret-file", secret_file, "--json", "add-node", "n4",
            "127.0.0.1:5")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["started_unix_ms"] for line in r.stdout.splitlines()] == [2000]


def default_sigint():
    """Ctrl-C as a terminal delivers it: a shell without job control starts background
    commands with SIGINT ignored, and an ignored signal stays ignored across exec, so a test
    run from such a job would send its SIGINT to a process that cannot hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_waiting_not_the_rebalance(fake_admin, secret_file):
    f = fake_admin(RUN_4[:2], {("POST", "/rebalance"): {"planned": 4}})
    p = subprocess.Popen([MCCTL, "--coordinator", f.addr, "--secret-file", secret_file,
                          "rebalance"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True, preexec_fn=default_sigint)
    assert p.stderr.readline() == "rebalance started: 4 buckets to move\n"
    assert p.stderr.readline().startswith("running [")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 130
    assert out == ""
    assert err == ("mcctl: stopped waiting; the rebalance goes on (`mcctl rebalance --cancel` "
                   "stops it)\n")
    assert [q[1] for q in f.requests] == ["/rebalance"]            # nothing cancelled


# ---------------------------------------------------------------- a real cluster

BUCKETS = 64  # as the `cluster` fixture (conftest.py) starts them
NAMES = ["n0", "n1", "n2"]


class Cluster:
    """Three managed servers n0..n2 and one mc-coordinator in front of them (the `cluster`
    fixture of conftest.py), settled. mcctl(*args) runs mcctl against it with the cluster
    secret."""

    def __init__(self, start, **coord_kw):
        self.servers, self.coord = start(n=len(NAMES), replicas=1, **coord_kw)
        self.node = start.node
        self.secret_file = start.secret
        self.addr = f"127.0.0.1:{self.coord.port}"

    def mcctl(self, *args, **kw):
        return run("--coordinator", self.addr, "--secret-file", self.secret_file, *args, **kw)

    def status(self):
        return self.coord.status()

    def epoch(self):
        return self.coord.status()["epoch"]

    def map(self):
        return parse_map(self.coord.map_text())


@pytest.fixture
def cluster(cluster):
    """conftest.py's cluster, wrapped for mcctl: cluster(**coordinator options) -> Cluster."""
    if not os.path.abspath(mc.server_binary()).startswith(mc.TOP + os.sep):
        pytest.skip("managed mode is this server's own")
    return lambda **coord_kw: Cluster(cluster, **coord_kw)


def cluster_lines(stdout):
    """`mcctl status` lines without the control plane's block (on etcd: "control plane:",
    "etcd:", "this coordinator:" and a blank line), so the same checks hold on both
    backends."""
    lines = stdout.splitlines()
    if lines and lines[0].startswith("control plane:"):
        lines = lines[lines.index("") + 1:]
    return lines


def rows(stdout):
    """`mcctl status` -> {name: row split on blanks}: NAME ADDR HEALTH ACTIVES REPLICAS
    IN-SYNC MAX-LAG FENCED, then the LAST HEARTBEAT words."""
    lines = stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
    return {line.split()[0]: line.split() for line in lines[i + 1:] if line.strip()}


def counts(m):
    """{name: (actives, replicas)} of a parsed map."""
    out = {n: [0, 0] for n in m["nodes"]}
    for active, reps in zip(m["active"], m["replicas"]):
        out[active][0] += 1
        for r in reps:
            out[r][1] += 1
    return {n: tuple(v) for n, v in out.items()}


def test_status_table(cluster):
    c = cluster()
    st = c.status()
    r = c.mcctl("status")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = cluster_lines(r.stdout)
    assert lines[0] == (f"epoch {st['epoch']}  buckets {BUCKETS}  replicas 1  failovers 0  "
                        "cold buckets 0")
    assert st["epoch"] >= 1
    assert "\x1b[" not in r.stdout          # no colours when stdout is not a terminal
    assert "CUT OFF" not in r.stdout and "last failover" not in r.stdout
    header = next(line for line in lines if line.startswith("NAME"))
    for col in ("ADDR", "HEALTH", "ACTIVES", "REPLICAS", "IN SYNC", "MAX LAG", "FENCED",
                "LAST HEARTBEAT"):
        assert col in header
    got = rows(r.stdout)
    assert sorted(got) == NAMES
    m = c.map()
    for name, (actives, replicas) in counts(m).items():
        w = got[name]
        assert w[1] == f"127.0.0.1:{c.servers[name].port}"
        assert w[2] == "up"
        assert (int(w[3]), int(w[4])) == (actives, replicas)
        assert w[5] == f"{replicas}/{replicas}"          # every replica bucket in sync
        assert w[7] == "no"                              # not fenced
        assert w[-1] == "ago" and w[-2] in ("ms", "s")
    assert sum(int(w[3]) for w in got.values()) == BUCKETS


def test_status_json_is_the_coordinators_answer(cluster):
    c = cluster()
    for args in (["--json", "status"], ["status", "--json"]):
        r = c.mcctl(*args)
        assert r.returncode == 0, r.stderr
        got, want = json.loads(r.stdout), c.status()
        # Everything but the clocks (the time since the last heartbeat, the lease left; on
        # etcd, the time since etcd last answered and its members' changing figures).
        for j in (got, want):
            for s in j["servers"]:
                del s["last_heartbeat_ms"], s["lease_left_ms"]
            cp = j["control_plane"]
            cp.pop("etcd_ok_ms_ago", None)
            for e in cp.get("etcd", []):
                e.pop("db_size", None)
                e.pop("raft_term", None)
        assert got == want
        assert [s["name"] for s in got["servers"]] == NAMES
        assert got["cut_off"] is False and got["last_failover"] is None


def test_map_text_summary_and_json(cluster):
    c = cluster()
    text = c.coord.map_text()
    m = parse_map(text)
    r = c.mcctl("map")
    assert r.returncode == 0, r.stderr
    want = text.replace("\r\n", "\n")
    assert r.stdout == (want if want.endswith("\n") else want + "\n")
    assert r.stdout.startswith(f"MAP {m['epoch']} {BUCKETS}\n") and r.stdout.endswith("END\n")

    r = c.mcctl("map", "--summary")
    assert r.returncode == 0, r.stderr
    ranges = [line for line in text.splitlines() if line.startswith("RANGE ")]
    lines = r.stdout.splitlines()
    assert lines[0] == f"epoch {m['epoch']}  buckets {BUCKETS}  nodes 3  ranges {len(ranges)}"
    got = {line.split()[0]: line.split() for line in lines[lines.index("") + 2:]}
    assert sorted(got) == NAMES
    for name, (actives, replicas) in counts(m).items():
        nranges = sum(1 for line in ranges if line.split()[3] == name)
        assert got[name] == [name, f"127.0.0.1:{c.servers[name].port}", str(actives),
                             str(replicas), str(nranges)]

    r = c.mcctl("map", "--json")
    assert r.returncode == 0, r.stderr
    st, j = c.coord.request("GET", "/map")
    assert st == 200 and json.loads(r.stdout) == j
    assert j["epoch"] == m["epoch"] and j["buckets"] == BUCKETS


def test_failover_moves_the_nodes_actives(cluster):
    c = cluster()
    before = c.status()
    assert before["failovers"] == 0
    had = c.map()["active"].count("n1")
    assert had > 0
    r = c.mcctl("failover", "n1")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    words = r.stdout.split()
    assert r.stdout.startswith("failed n1 over: map epoch now ") and r.stdout.endswith("\n")
    epoch = int(words[-1])
    assert epoch > before["epoch"]
    # The coordinator's map: n1 holds no active bucket, every bucket still has an active.
    m = c.map()
    assert m["epoch"] >= epoch
    assert "n1" not in m["active"] and None not in m["active"]
    # n1 was sent the map too: it no longer claims its old actives itself.
    mc.wait_for(lambda: "n1" not in server_map(c.servers["n1"])["active"], timeout=5,
                what="n1's own map without its actives")
    # It rejoins as a replica and the cluster settles; status tells the story.
    wait_settled(c.coord, 1, NAMES)
    r = c.mcctl("status")
    assert r.returncode == 0, r.stderr
    lines = cluster_lines(r.stdout)
    assert lines[0].startswith(f"epoch {c.epoch()}  buckets {BUCKETS}  replicas 1  failovers 1  ")
    assert lines[1].startswith("last failover: n1 at ")
    assert f", {had} buckets moved" in lines[1]
    n1 = rows(r.stdout)["n1"]
    assert n1[2] == "up" and n1[3] == "0" and int(n1[4]) > 0
    # The environment names the coordinator and the secret as well.
    r = run("--json", "failover", "n2",
            env={"MCCTL_COORDINATOR": c.addr, "MC_SECRET_FILE": str(c.secret_file)})
    assert r.returncode == 0, r.stderr
    ans = json.loads(r.stdout)
    assert ans["ok"] is True and ans["epoch"] > epoch
    assert "n2" not in c.map()["active"]


def test_killed_server_is_dead_then_removed(cluster):
    c = cluster()
    c.servers["n2"].kill9()
    mc.wait_for(lambda: any(s["name"] == "n2" and s["health"] == "dead"
                            for s in c.status()["servers"]), timeout=10, what="n2 dead")
    r = c.mcctl("status")
    assert r.returncode == 0, r.stderr
    n2 = rows(r.stdout)["n2"]
    assert n2[2] == "dead" and n2[3] == "0"
    assert " failovers 1 " in cluster_lines(r.stdout)[0]
    assert cluster_lines(r.stdout)[1].startswith("last failover: n2 at ")
    # It is failed over already: the coordinator refuses (409), mcctl says so and exits 1.
    epoch = c.epoch()
    r = c.mcctl("failover", "n2")
    assert r.returncode == 1
    assert one_line(r) == "mcctl: the coordinator refused: n2 is already failed over"
    assert c.epoch() == epoch
    # Removing it at once takes it out of the membership and the map.
    r = c.mcctl("remove-node", "--now", "n2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("removed n2: map epoch now ")
    assert int(r.stdout.split()[-1]) > epoch
    assert [s["name"] for s in c.status()["servers"]] == ["n0", "n1"]
    m = c.map()
    assert sorted(m["nodes"]) == ["n0", "n1"] and set(m["active"]) == {"n0", "n1"}
    r = c.mcctl("map", "--summary")
    assert r.stdout.splitlines()[0].startswith(f"epoch {m['epoch']}  buckets {BUCKETS}  nodes 2  ")


def test_add_node(cluster):
    c = cluster()
    epoch = c.epoch()
    n3 = c.node("n3")
    r = c.mcctl("add-node", "--no-rebalance", "n3", f"127.0.0.1:{n3.port}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"added n3 at 127.0.0.1:{n3.port}: map epoch now ")
    assert int(r.stdout.split()[-1]) > epoch
    # It is reset, given the map and extra replicas, and settles as a replica holder.
    st = wait_settled(c.coord, 1, NAMES + ["n3"])
    assert [s["name"] for s in st["servers"]] == NAMES + ["n3"]
    m = c.map()
    assert m["nodes"]["n3"] == f"127.0.0.1:{n3.port}"
    assert "n3" not in m["active"]                 # no actives back: that is the rebalance
    mc.wait_for(lambda: server_map(n3) == c.map(), timeout=5, what="n3 holds the map")
    r = c.mcctl("map", "--summary")
    assert r.returncode == 0, r.stderr
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("n3 "))
    assert row[:3] == ["n3", f"127.0.0.1:{n3.port}", "0"] and int(row[3]) > 0
    r = c.mcctl("status")
    n3row = rows(r.stdout)["n3"]
    assert n3row[2] == "up" and n3row[3] == "0" and n3row[5] == f"{n3row[4]}/{n3row[4]}"
    # A name that exists is refused (409), and nothing changes.
    epoch = c.epoch()
    r = c.mcctl("add-node", "n1", "127.0.0.1:1")
    assert r.returncode == 1
    assert one_line(r) == "mcctl: the coordinator refused: node n1 exists"
    assert c.epoch() == epoch


def test_remove_live_node_then_add_it_back(cluster):
    c = cluster()
    epoch = c.epoch()
    r = c.mcctl("--json", "remove-node", "--now", "n2")
    assert r.returncode == 0, r.stderr
    ans = json.loads(r.stdout)
    assert ans["ok"] is True and ans["epoch"] > epoch
    st = c.status()
    assert [s["name"] for s in st["servers"]] == ["n0", "n1"]
    assert st["failovers"] == 1 and st["last_failover"]["node"] == "n2"
    m = c.map()
    assert sorted(m["nodes"]) == ["n0", "n1"] and set(m["active"]) == {"n0", "n1"}
    assert all(reps and "n2" not in reps for reps in m["replicas"])
    wait_settled(c.coord, 1, ["n0", "n1"])
    r = c.mcctl("remove-node", "--now", "n2")      # it is gone now
    assert r.returncode == 1
    assert one_line(r) == "mcctl: the coordinator knows no node 'n2': unknown node n2"
    # The same server comes back under its name: reset, then a replica holder.
    port = c.servers["n2"].port
    r = c.mcctl("add-node", "--no-rebalance", "n2", f"127.0.0.1:{port}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"added n2 at 127.0.0.1:{port}: map epoch now ")
    wait_settled(c.coord, 1, NAMES)
    m = c.map()
    assert m["nodes"]["n2"] == f"127.0.0.1:{port}" and "n2" not in m["active"]
    assert any("n2" in reps for reps in m["replicas"])


def test_wrong_secret_is_refused(cluster, tmp_path):
    c = cluster()
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"not-the-cluster-secret-at-all\n")
    st = c.status()
    for cmd in (["failover", "n1"], ["remove-node", "--now", "n2"],
                ["add-node", "n3", "127.0.0.1:11214"]):
        r = run("--coordinator", c.addr, "--secret-file", wrong, *cmd)
        assert r.returncode == 4, (cmd, r.stdout, r.stderr)
        assert one_line(r) == "mcctl: the coordinator refused the secret: authentication failed"
    after = c.status()
    assert after["epoch"] == st["epoch"] and after["failovers"] == 0
    assert [s["name"] for s in after["servers"]] == NAMES
    assert c.map()["active"].count("n1") > 0


def test_unknown_node(cluster):
    c = cluster()
    epoch = c.epoch()
    for cmd in (["remove-node", "--now", "n9"], ["failover", "n9"]):
        r = c.mcctl(*cmd)
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        assert one_line(r) == "mcctl: the coordinator knows no node 'n9': unknown node n9"
    assert c.epoch() == epoch


def test_cut_off_is_loud_and_refuses(cluster):
    """Two of three servers paused: the coordinator is the one cut off; status says so
    first, and a failover is refused (409) with nothing changed."""
    c = cluster()
    epoch = c.epoch()
    for n in ("n1", "n2"):
        os.kill(c.servers[n].proc.pid, signal.SIGSTOP)
    try:
        mc.wait_for(lambda: c.status()["cut_off"], timeout=5, what="cut_off reported")
        r = c.mcctl("status")
        assert r.returncode == 0, r.stderr
        assert cluster_lines(r.stdout)[0].startswith("!!! CUT OFF")
        assert cluster_lines(r.stdout)[1].startswith(f"epoch {epoch}  ")
        r = c.mcctl("failover", "n0")
        assert r.returncode == 1
        assert one_line(r) == ("mcctl: the coordinator refused: the coordinator is cut off "
                               "from a majority of servers")
        r = c.mcctl("metrics")
        assert "mc_coordinator_cut_off 1\n" in r.stdout
        assert c.epoch() == epoch
    finally:
        for n in ("n1", "n2"):
            os.kill(c.servers[n].proc.pid, signal.SIGCONT)
    wait_settled(c.coord, 1, NAMES)
    r = c.mcctl("status")
    assert "CUT OFF" not in r.stdout and c.epoch() == epoch


def test_watch_count(cluster):
    c = cluster()
    epoch = c.epoch()
    r = c.mcctl("watch", "--count", "2", "--interval", "0.1")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    frames = r.stdout.split("--- ")
    assert frames[0] == "" and len(frames) == 3
    for f in frames[1:]:
        lines = f.splitlines()[:1] + cluster_lines("\n".join(f.splitlines()[1:]))
        assert lines[1] == (f"epoch {epoch}  buckets {BUCKETS}  replicas 1  failovers 0  "
                            "cold buckets 0")
        assert sorted(rows(f)) == NAMES
    assert "\x1b[" not in r.stdout
    r = c.mcctl("watch", "--count", "2", "--interval", "0.1", "--json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert [j["epoch"] for j in got] == [epoch, epoch]
    assert all([s["name"] for s in j["servers"]] == NAMES for j in got)


def test_watch_ctrl_c_exits_0(cluster):
    c = cluster()
    p = subprocess.Popen([MCCTL, "--coordinator", c.addr, "watch", "--interval", "0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 10)
        assert ready, "no first frame within 10 s"
        assert p.stdout.readline().startswith("--- ")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert err == ""


def test_metrics(cluster):
    c = cluster()
    epoch = c.epoch()
    r = c.mcctl("metrics")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n")
    lines = r.stdout.splitlines()
    for line in (f"mc_coordinator_epoch {epoch}", 'mc_coordinator_servers{state="up"} 3',
                 'mc_coordinator_servers{state="dead"} 0', "mc_coordinator_failovers_total 0",
                 "mc_coordinator_cut_off 0", "mc_coordinator_cold_buckets_total 0",
                 "# TYPE mc_coordinator_epoch gauge",
                 "# TYPE mc_coordinator_failovers_total counter"):
        assert line in lines
    # Every sample is a metric the text declares, with a number.
    declared = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    for line in lines:
        if line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        base = name.split("{")[0]
        assert base in declared or base.rsplit("_", 1)[0] in declared, line
        float(value)


def test_failover_of_a_hung_server_records_the_push(cluster):
    """An operator fails over a server that hangs (SIGSTOP) and stays hung until the
    coordinator gives up on its link. The live servers took the map at once; `status` should
    then say how long that push took."""
    c = cluster(dead_ms=2000)           # the manual failover, not the detector, acts first
    os.kill(c.servers["n2"].proc.pid, signal.SIGSTOP)
    try:
        r = c.mcctl("failover", "n2")
        assert r.returncode == 0, r.stderr
        epoch = int(r.stdout.split()[-1])
        mc.wait_for(lambda: all(server_map(c.servers[n])["epoch"] >= epoch for n in ("n0", "n1")),
                    timeout=5, what="the live servers hold the new map")
        mc.wait_for(lambda: "link to n2 lost" in c.coord.read_log(), timeout=10,
                    what="the coordinator giving up on n2's link")
    finally:
        os.kill(c.servers["n2"].proc.pid, signal.SIGCONT)
    lf = c.status()["last_failover"]
    assert lf["node"] == "n2"
    assert lf["push_ms"] >= 0, lf
    r = c.mcctl("status")
    assert "map pushed in " in r.stdout


# ---------------------------------------------------------------- not a coordinator

def test_not_a_coordinator():
    """An HTTP server that is not the coordinator: a clear line, not a traceback."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = run("--coordinator", f"127.0.0.1:{srv.server_address[1]}", "status")
        assert r.returncode == 3
        assert "is not the coordinator's JSON" in one_line(r)
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_memcached_server_is_not_a_coordinator(make_server):
    """A real memcached port named as the coordinator: one line, exit 3, no traceback."""
    s = make_server()
    r = run("--coordinator", f"127.0.0.1:{s.port}", "--timeout", "5", "status")
    assert r.returncode == 3
    assert one_line(r).startswith(f"mcctl: cannot reach the coordinator at 127.0.0.1:{s.port}: ")


# ---- rebalance, drain, remove-node and add-node against a real coordinator -----------------

def test_add_node_then_its_rebalance_json(cluster):
    c = cluster()
    n3 = c.node("n3")
    r = c.mcctl("--json", "add-node", "n3", f"127.0.0.1:{n3.port}", timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert lines and lines[-1]["state"] == "done", lines[-1:]
    assert lines[-1]["buckets_done"] == lines[-1]["buckets_total"] > 0
    st = wait_settled(c.coord, 1, NAMES + ["n3"])
    by = {s["name"]: s for s in st["servers"]}
    assert 15 <= by["n3"]["actives"] <= 17 and by["n3"]["replicas"] >= 15, by["n3"]


def test_drain_then_remove_node_with_progress(cluster):
    c = cluster()
    r = c.mcctl("drain", "n2", timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    st = c.status()
    assert st["rebalance"]["state"] == "done" and st["rebalance"]["draining"] == ["n2"]
    assert counts(c.map())["n2"] == (0, 0)
    r = c.mcctl("status")
    assert r.returncode == 0 and "draining" in r.stdout.lower(), r.stdout
    r = c.mcctl("remove-node", "n2", timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    mc.wait_for(lambda: [s["name"] for s in c.status()["servers"]] == ["n0", "n1"], timeout=10,
                what="n2 gone")
    assert sorted(c.map()["nodes"]) == ["n0", "n1"]
    assert c.status()["failovers"] == 0  # drained, not failed over


def test_rebalance_with_nothing_to_do_and_cancel(cluster):
    c = cluster()
    r = c.mcctl("--json", "rebalance", "--parallel", "2", timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = c.mcctl("rebalance", "--cancel")
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = c.mcctl("drain", "n9")
    assert r.returncode == 1
    assert "n9" in one_line(r)


# ---------------------------------------------------------------- an etcd control plane
# Two coordinators c0 (leads: started first, the cluster settles under it) and c1 (follows) on
# one etcd prefix, in front of the same three servers. mcctl against the follower: reads are
# answered there (status shows the control plane and the leader's view), mutating calls are
# redirected (307) to the leader and signed again there.

@pytest.fixture
def etcd_url(etcd):
    """The session's single-member etcd (t/conftest.py): '127.0.0.1:PORT'. Each test keeps to
    a prefix of its own."""
    return etcd.endpoints[0]


def role_of(coord):
    return coord.status()["control_plane"]


class EtcdCluster:
    """A Cluster (above) with its state in etcd: c0 (self.coord, leads) and the followers
    added by follower(); mcctl(*args, at=coordinator) runs mcctl against one of them."""

    def __init__(self, cluster, etcd, tmp_path, followers):
        self.prefix = "/mcctl-test/" + tmp_path.name
        self.url = f"etcd://{etcd}{self.prefix}"
        # Settled only once it leads (it follows until it has won the election).
        base = cluster(settle=False, state_url=self.url,
                       extra=["--id", "c0", "--etcd-lease-ttl", "2"])
        self.servers, self.coord, self.secret_file = base.servers, base.coord, base.secret_file
        self.map = base.map
        # (The top-level role: control_plane.role says leader as soon as the election is
        # won, while the state is still being loaded and calls are answered as a follower.)
        mc.wait_for(lambda: self.coord.status()["role"] == "leader", timeout=10,
                    what="c0 leading")
        wait_settled(self.coord, 1, NAMES)
        self.tmp_path = tmp_path
        self.followers = followers          # stopped by the fixture, by PID

    def follower(self, name):
        c = Coordinator(self.tmp_path / name, self.secret_file, sorted(self.servers.items()),
                        buckets=BUCKETS, state_url=self.url,
                        extra=["--id", name, "--etcd-lease-ttl", "2"])
        self.followers.append(c)
        mc.wait_for(lambda: role_of(c)["role"] == "follower"
                    and (role_of(c)["leader"] or {}).get("id") == "c0", timeout=10,
                    what=f"{name} following c0")
        # ... and the leader knows it (its coordinators list).
        mc.wait_for(lambda: name in [x["id"] for x in role_of(self.coord)["coordinators"]],
                    timeout=10, what=f"c0 listing {name}")
        return c

    def mcctl(self, *args, at=None, **kw):
        addr = f"127.0.0.1:{(at or self.coord).port}"
        return run("--coordinator", addr, "--secret-file", self.secret_file, *args, **kw)


@pytest.fixture
def etcd_cluster(etcd_url, cluster, tmp_path):
    """etcd_cluster() -> EtcdCluster: three servers, c0 leading on etcd. (etcd first: it is
    stopped last, after every coordinator.)"""
    followers = []
    yield lambda: EtcdCluster(cluster, etcd_url, tmp_path, followers)
    for c in followers:
        rc = c.stop()
        assert rc == 0 or c.killed, c.own_log()[-3000:]


def test_etcd_status_leader_and_follower(etcd_cluster):
    c = etcd_cluster()
    c1 = c.follower("c1")
    leader = f"127.0.0.1:{c.coord.port}"
    follower = f"127.0.0.1:{c1.port}"
    etcd = c.url.split("/")[2]
    # Against the leader: the control plane on top, then the cluster as before.
    r = c.mcctl("status")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    print(r.stdout)
    assert lines[0] == (f"control plane: etcd {c.prefix}, leader c0 ({leader}), "
                        f"followers c1 ({follower})")
    assert lines[1].startswith(f"etcd: {etcd} ok v3.") and "raft leader" in lines[1]
    assert lines[2] == "this coordinator: c0 (leader)"
    assert lines[3] == ""
    assert lines[4].startswith(f"epoch {c.coord.status()['epoch']}  buckets {BUCKETS}  ")
    got = rows(r.stdout)
    assert sorted(got) == NAMES and all(w[2] == "up" for w in got.values())
    # Against the follower: the same control plane, the cluster as the leader sees it.
    r = c.mcctl("status", at=c1)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    print(r.stdout)
    lines = r.stdout.splitlines()
    assert lines[0] == (f"control plane: etcd {c.prefix}, leader c0 ({leader}), "
                        f"followers c1 ({follower})")
    assert lines[1].startswith(f"etcd: {etcd} ok v3.")
    assert lines[2] == "this coordinator: c1 (follower)"
    assert lines[4] == f"the cluster as the leader c0 at {leader} sees it:"
    assert "failovers 0" in lines[5]
    got = rows(r.stdout)
    assert sorted(got) == NAMES and all(w[2] == "up" for w in got.values())
    # --json: the follower's own answer, as it is.
    r = c.mcctl("status", "--json", at=c1)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["role"] == "follower" and j["control_plane"]["id"] == "c1"
    assert [s["health"] for s in j["servers"]] == ["unknown"] * 3


def test_etcd_follower_status_when_the_leader_cannot_be_asked(etcd_cluster):
    c = etcd_cluster()
    c1 = c.follower("c1")
    leader = f"127.0.0.1:{c.coord.port}"
    # SIGSTOP, not a kill: c0's lease holds for up to its TTL (2 s), so c1 still names c0
    # the leader, and mcctl (--timeout 0.5) cannot get an answer from it.
    os.kill(c.coord.proc.pid, signal.SIGSTOP)
    try:
        r = c.mcctl("status", "--timeout", "0.5", at=c1)
    finally:
        os.kill(c.coord.proc.pid, signal.SIGCONT)
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    lines = r.stdout.splitlines()
    assert lines[2] == "this coordinator: c1 (follower)"
    want = [line for line in lines if "the servers as stored in etcd, health unknown" in line]
    assert len(want) == 1, r.stdout
    assert want[0].startswith(f"the leader c0 at {leader} cannot be asked") or \
        want[0].startswith("no coordinator leads")
    got = rows(r.stdout)
    assert sorted(got) == NAMES and all(w[2] == "unknown" for w in got.values())


def test_etcd_failover_against_a_follower_goes_to_the_leader(etcd_cluster):
    c = etcd_cluster()
    c1 = c.follower("c1")
    leader = f"127.0.0.1:{c.coord.port}"
    before = c.coord.status()
    assert "n1" in c.map()["active"]
    r = c.mcctl("failover", "n1", at=c1)
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"mcctl: 127.0.0.1:{c1.port} follows; the call went to the leader c0 "
                        f"at {leader}\n")
    assert r.stdout.startswith("failed n1 over: map epoch now ")
    epoch = int(r.stdout.split()[-1])
    assert epoch > before["epoch"]
    # The leader did it: its map and its failover count.
    st = c.coord.status()
    assert st["failovers"] == 1 and st["last_failover"]["node"] == "n1"
    assert "n1" not in c.map()["active"]
    # The follower sees the new epoch in etcd.
    mc.wait_for(lambda: c1.status()["epoch"] >= epoch, timeout=5, what="c1 seeing the epoch")


def test_etcd_rebalance_against_a_follower_waits_at_the_leader(etcd_cluster):
    c = etcd_cluster()
    c1 = c.follower("c1")
    leader = f"127.0.0.1:{c.coord.port}"
    # Unbalance it first (n2's actives fail over), let n2 rejoin, then rebalance via c1.
    r = c.mcctl("failover", "n2")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    wait_settled(c.coord, 1, NAMES)
    r = c.mcctl("rebalance", at=c1)
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    assert err[0] == (f"mcctl: 127.0.0.1:{c1.port} follows; the call went to the leader c0 "
                      f"at {leader}")
    assert err[1].startswith("rebalance started: ")
    assert r.stdout.startswith("rebalance done: ")
    assert c.coord.status()["rebalance"]["state"] == "done"
    assert "n2" in c.map()["active"]


def test_etcd_mutating_call_waits_for_a_leader(etcd_cluster):
    """c0 is killed: until its lease expires c1 still redirects to it (unreachable), then
    answers 503 until it wins the election; mcctl keeps trying and c1, now the leader, does
    the call. (Giving up: test_no_leader_for_too_long_exits_3, against a fake.)"""
    c = etcd_cluster()
    c1 = c.follower("c1")
    c.coord.kill()
    r = c.mcctl("--json", "failover", "n1", at=c1, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    assert role_of(c1)["role"] == "leader"
    assert "n1" not in parse_map(c1.map_text())["active"]


def test_control_plane_lines():
    cp = {"backend": "etcd", "prefix": "/p", "id": "c1", "admin": "h1:2", "role": "follower",
          "leader": None, "last_error": "etcd: timed out", "etcd_ok_ms_ago": 4000,
          "coordinators": [{"id": "c1", "admin": "h1:2", "role": "follower"}],
          "etcd": [{"endpoint": "e0:2379", "ok": True, "version": "3.4.23",
                    "raft_leader": True, "raft_term": 5},
                   {"endpoint": "e1:2379", "ok": False, "error": "connection refused"}]}
    assert mcctl.render_control_plane({"control_plane": cp}) == [
        "control plane: etcd /p, no leader (an election is under way, or etcd is "
        "unreachable), followers c1 (h1:2)",
        "etcd: e0:2379 ok v3.4.23 raft leader (term 5), e1:2379 DOWN (connection refused)",
        "this coordinator: c1 (follower); last etcd error: etcd: timed out (etcd last answered "
        "4000 ms ago)"]
    # The file backend: nothing, status as it always was.
    file_cp = {"backend": "file", "state": "/x", "role": "leader"}
    assert mcctl.render_control_plane({"control_plane": file_cp}) == []
    assert mcctl.render_control_plane({}) == []


NO_LEADER = (503, {"error": "no coordinator leads right now (an election is under way, or "
                           "etcd is unreachable); try again"}, None)


def redirect_to(fake, leader_id="c0"):
    return (307, {"error": f"this coordinator follows; {leader_id} at {fake.addr} leads",
                  "leader": {"id": leader_id, "admin": fake.addr}},
            {"Location": f"http://{fake.addr}/failover/n1"})


def test_redirect_is_signed_again_at_the_leader(fake_admin, secret_file):
    lead = fake_admin([{}], {("POST", "/failover/n1"): {"ok": True, "epoch": 9}})
    fol = fake_admin([{}], {("POST", "/failover/n1"): [redirect_to(lead)]})
    r = run("--coordinator", fol.addr, "--secret-file", secret_file, "failover", "n1")
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"mcctl: {fol.addr} follows; the call went to the leader c0 at {lead.addr}\n"
    assert r.stdout == "failed n1 over: map epoch now 9\n"
    assert fol.requests == [("POST", "/failover/n1", None, True)]
    assert lead.requests == [("POST", "/failover/n1", None, True)]


def test_redirects_stop_after_three_hops(fake_admin, secret_file):
    a = fake_admin([{}])
    b = fake_admin([{}], {("POST", "/failover/n1"): [redirect_to(a, "ca")]})
    a.answers[("POST", "/failover/n1")] = [redirect_to(b, "cb")]
    r = run("--coordinator", a.addr, "--secret-file", secret_file, "failover", "n1")
    assert r.returncode == 3
    assert "redirected more than 3 times" in one_line(r)
    assert len(a.requests) + len(b.requests) == 4


def test_no_leader_is_waited_for(fake_admin, secret_file):
    f = fake_admin([{}], {("POST", "/failover/n1"): [NO_LEADER, NO_LEADER,
                                                     (200, {"ok": True, "epoch": 4}, None)]})
    r = run("--coordinator", f.addr, "--secret-file", secret_file, "failover", "n1")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == "failed n1 over: map epoch now 4\n"
    assert len(f.requests) == 3 and all(q[3] for q in f.requests)


def test_no_leader_for_too_long_exits_3(fake_admin, secret_file):
    f = fake_admin([{}], {("POST", "/failover/n1"): [NO_LEADER]})
    r = run("--coordinator", f.addr, "--secret-file", secret_file, "failover", "n1")
    assert r.returncode == 3
    line = one_line(r)
    assert line.startswith(f"mcctl: no coordinator leads (the one at {f.addr} says: ")
    assert line.endswith("; gave up after 10 s, try again")
    assert len(f.requests) > 10                 # every 0.2 s for 10 s
