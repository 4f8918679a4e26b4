"""mcctl (mcctl/mcctl), the operator's command line: argument errors, an unreachable or silent
coordinator, the secret's checks, and the admin API as doc/coordinator.md fixes it, spoken
with t/lib/fake_coordinator.py (a stand-in that checks MC-HMAC proofs exactly as the contract
says). Tests against the real mc-coordinator live with the coordinator's suite."""

import hashlib
import hmac
import json
import os
import socket
import subprocess

import pytest

from lib import mc
from lib.fake_coordinator import FakeCoordinator

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


@pytest.fixture
def fake():
    fc = FakeCoordinator(SECRET).start()
    yield fc
    fc.stop()


# ---------------------------------------------------------------- arguments

def test_help():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    for word in ("status", "map", "watch", "add-node", "remove-node", "failover",
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


# ---------------------------------------------------------------- against the stand-in

def test_status_table(fake):
    r = run("--coordinator", fake.addr, "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "epoch 1  buckets 1024  replicas 1  failovers 0  cold buckets 0"
    assert "\x1b[" not in r.stdout          # no colours when stdout is not a terminal
    header = next(line for line in lines if line.startswith("NAME"))
    for col in ("ADDR", "HEALTH", "ACTIVES", "REPLICAS", "IN SYNC", "MAX LAG", "FENCED",
                "LAST HEARTBEAT"):
        assert col in header
    n1 = next(line for line in lines if line.startswith("n1 "))
    assert "127.0.0.1:11211" in n1 and " up " in n1 and "342/342" in n1 and "40 ms ago" in n1
    assert "CUT OFF" not in r.stdout


def test_status_json_is_the_coordinators_answer(fake):
    r = run("--coordinator", fake.addr, "--json", "status")
    assert r.returncode == 0
    assert json.loads(r.stdout) == fake.status()


def test_cut_off_is_loud(fake):
    fake.cut_off = True
    r = run("--coordinator", fake.addr, "status")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].startswith("!!! CUT OFF")


def test_map_text_summary_and_json(fake):
    r = run("--coordinator", fake.addr, "map")
    assert r.returncode == 0
    assert r.stdout == fake.map_text().replace("\r\n", "\n")
    r = run("--coordinator", fake.addr, "map", "--summary")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "epoch 1  buckets 1024  nodes 3  ranges 3"
    n3 = next(line for line in r.stdout.splitlines() if line.startswith("n3 "))
    assert n3.split() == ["n3", "127.0.0.1:11213", "342", "341", "1"]
    r = run("--coordinator", fake.addr, "map", "--json")
    assert json.loads(r.stdout)["text"] == fake.map_text()


def test_add_remove_failover(fake, secret_file):
    base = ["--coordinator", fake.addr, "--secret-file", secret_file]
    r = run(*base, "add-node", "n4", "127.0.0.1:11214")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "added n4 at 127.0.0.1:11214: map epoch now 2\n"
    assert ("n4", "127.0.0.1:11214") in fake.nodes
    r = run(*base, "failover", "n2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("failed n2 over: map epoch now 3")
    r = run(*base, "--json", "remove-node", "n4")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ok": True, "epoch": 4}
    # The proof covers challenge, method, path and the exact body sent.
    method, path, headers, body = fake.requests[-1]
    assert (method, path, body) == ("DELETE", "/nodes/n4", b"")
    _, challenge, got = headers["Authorization"].split(" ")
    want = hmac.new(SECRET, f"{challenge}\nDELETE\n/nodes/n4\n".encode(), hashlib.sha256)
    assert got == want.hexdigest()
    add = next(x for x in fake.requests if x[0] == "POST" and x[1] == "/nodes")
    assert json.loads(add[3]) == {"name": "n4", "addr": "127.0.0.1:11214"}
    # The environment's secret file serves as well.
    r = run("--coordinator", fake.addr, "failover", "n1", env={"MC_SECRET_FILE": str(secret_file)})
    assert r.returncode == 0, r.stderr


def test_wrong_secret_is_refused(fake, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"not-the-cluster-secret-at-all\n")
    r = run("--coordinator", fake.addr, "--secret-file", wrong, "failover", "n1")
    assert r.returncode == 4
    assert one_line(r) == "mcctl: the coordinator refused the secret: bad proof"
    assert fake.epoch == 1 and fake.failovers == 0


def test_unknown_node_and_refusals(fake, secret_file):
    base = ["--coordinator", fake.addr, "--secret-file", secret_file]
    r = run(*base, "remove-node", "n9")
    assert r.returncode == 1
    assert one_line(r) == "mcctl: the coordinator knows no node 'n9': unknown node n9"
    r = run(*base, "add-node", "n1", "127.0.0.1:1")
    assert r.returncode == 1
    assert one_line(r) == "mcctl: the coordinator refused: node n1 already exists"
    fake.cut_off = True
    r = run(*base, "failover", "n1")
    assert r.returncode == 1
    assert one_line(r).startswith("mcctl: the coordinator refused: ")
    assert fake.epoch == 1


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


def test_watch_count(fake):
    r = run("--coordinator", fake.addr, "watch", "--count", "3", "--interval", "0.05")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n--- ") + r.stdout.startswith("--- ") == 3
    assert r.stdout.count("epoch 1  buckets 1024") == 3
    assert "\x1b[" not in r.stdout
    r = run("--coordinator", fake.addr, "watch", "--count", "2", "--interval", "0.05", "--json")
    assert [json.loads(x)["epoch"] for x in r.stdout.splitlines()] == [1, 1]


def test_watch_ctrl_c_exits_0(fake):
    import signal
    import time
    p = subprocess.Popen([MCCTL, "--coordinator", fake.addr, "watch"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    mc.wait_for(lambda: len(fake.requests) >= 1, what="first refresh")
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert err == ""
