"""scripts/cluster.sh, as a newcomer runs it: `scripts/cluster.sh --etcd 2` starts a
three-member etcd cluster, two servers and three coordinators, prints them and the commands
to try, and on SIGTERM stops every process it printed and removes its directory."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(TOP, "scripts", "cluster.sh")
MCCTL = os.path.join(TOP, "mcctl", "mcctl")

if not os.access("/usr/bin/etcd", os.X_OK):
    pytest.skip("/usr/bin/etcd is not installed (scripts/deps.sh installs etcd-server)",
                allow_module_level=True)

READY = "it stops the rest."  # the last line of the printed block (after "Try:")


def _gone(pid):
    """True once pid is no process, or a zombie (not our child: its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cluster_script_etcd(tmp_path):
    out_path = tmp_path / "cluster.out"
    # etcd reads ETCD_* variables as flags (this one would stop it): the script must keep
    # the caller's from it.
    env = dict(os.environ, TMPDIR=str(tmp_path), ETCD_ELECTION_TIMEOUT="bogus")
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["/bin/sh", SCRIPT, "--etcd", "2"], cwd=TOP, stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
    pids = []
    d = None
    try:
        # Bounded: deps.sh returns at once when all is installed, build.sh's make is quick
        # when built (a first build takes minutes).
        deadline = time.monotonic() + 540
        text = ""
        while READY not in text:
            text = out_path.read_text(errors="replace")
            assert p.poll() is None, f"cluster.sh exited ({p.returncode}):\n{text}"
            assert time.monotonic() < deadline, f"no ready block from cluster.sh:\n{text}"
            time.sleep(0.2)
        assert "Try:" in text
        pids = [int(x) for x in re.findall(r"\bpid (\d+)", text)]
        etcd_lines = re.findall(r"^  e\d  http://127\.0\.0\.1:\d+ ", text, re.M)
        coords = re.findall(r"^  c(\d)  admin API on http://(127\.0\.0\.1:\d+)/ "
                            r".*\((leader|follower)\)$", text, re.M)
        servers = re.findall(r"^  n\d  memcached on ", text, re.M)
        assert len(etcd_lines) == 3 and len(coords) == 3 and len(servers) == 2, text
        assert len(pids) == 3 + 3 + 2, text
        assert [c[2] for c in coords].count("leader") == 1, text
        assert "etcdctl --endpoints=" in text and "kill -9 " in text, text

        # A follower's status names the leader the script printed; the leader's has a map.
        follower = next(c for c in coords if c[2] == "follower")
        leader = next(c for c in coords if c[2] == "leader")
        for addr in (follower[1], leader[1]):
            r = subprocess.run([MCCTL, "--coordinator", addr, "--json", "status"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            st = json.loads(r.stdout)
            assert st["epoch"] >= 1, st
            cp = st["control_plane"]
            assert cp["backend"] == "etcd" and cp["leader"]["id"] == f"c{leader[0]}", cp
            assert st["role"] == ("leader" if addr == leader[1] else "follower"), st
            assert all(e["ok"] for e in cp["etcd"]), cp["etcd"]
        d = re.search(r"removes (\S+?)\)?:", text).group(1)
        assert os.path.isdir(d), d
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        left = [x for x in pids if not _gone(x)]
        for x in left:  # by the PIDs it printed, should the script have failed to
            try:
                os.kill(x, signal.SIGKILL)
            except OSError:
                pass
    text = out_path.read_text(errors="replace")
    assert "stopping the cluster" in text, text
    deadline = time.monotonic() + 10
    while any(not _gone(x) for x in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"left running after SIGTERM: {left}\n{text}"
    assert d is not None and not os.path.exists(d), f"{d} not removed"
