"""The chaos harness (t/chaos/chaos.py, doc/chaos.md): the checker flags each kind of
anomaly in synthetic histories (and accepts what the design allows), and a short seeded run
of a managed cluster under faults finds none."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402

B = 64


def w(key, value, t0, t1, outcome="ok", client=0):
    return {"client": client, "kind": "write", "key": key, "value": value, "invoke": t0,
            "complete": t1, "outcome": outcome, "err": None}


def d(key, t0, t1, outcome="ok", client=0):
    return {"client": client, "kind": "delete", "key": key, "value": None, "invoke": t0,
            "complete": t1, "outcome": outcome, "err": None}


def r(key, value, t0, t1, outcome="ok", client=1):
    return {"client": client, "kind": "read", "key": key, "value": value, "invoke": t0,
            "complete": t1, "outcome": outcome, "err": None}


def kinds(ops, **kw):
    return chaos.check(ops, B, **kw)["counts"]


def bucket(key):
    import zlib
    return zlib.crc32(key.encode()) % B


def test_checker_accepts_a_linearizable_history():
    ops = [w("a", "v1", 0, 1), r("a", "v1", 2, 3), w("a", "v2", 4, 5),
           r("a", "v2", 6, 7), r("a", None, 8, 9),           # a miss is always allowed
           w("a", "v3", 10, 12), r("a", "v2", 11, 13),         # concurrent with v3: old ok
           r("a", "v3", 11.5, 14), w("a", "v4", 15, 16, outcome="unknown"),
           r("a", "v3", 17, 18),                               # v4 may not have landed
           r("a", "v4", 30, 31)]                               # ... or lands late
    assert kinds(ops) == {}


def test_checker_flags_a_never_written_value():
    ops = [w("a", "v1", 0, 1), r("a", "v9", 2, 3), r("b", "v1", 2, 3)]
    assert kinds(ops) == {"never-written": 2}


def test_checker_flags_a_stale_read():
    ops = [w("a", "v1", 0, 1), w("a", "v2", 2, 3), r("a", "v1", 4, 5)]
    res = chaos.check(ops, B)
    assert res["counts"] == {"stale-read": 1}
    assert res["anomalies"][0]["witness"].value == "v2"


def test_checker_flags_stale_after_an_observed_unacknowledged_write():
    # v2 timed out but a read saw it: it was in place by then, so v1 afterwards is stale.
    ops = [w("a", "v1", 0, 1), w("a", "v2", 2, 9, outcome="unknown"),
           r("a", "v2", 3, 4), r("a", "v1", 5, 6)]
    assert kinds(ops) == {"stale-read": 1}


def test_checker_excuses_a_loss_at_a_failover_only():
    ops = [w("a", "v1", 0, 1), w("a", "v2", 2, 3), r("a", "v1", 4, 5)]
    # a failover of the key's bucket between the overwrite and the read excuses it
    assert kinds(ops, failovers={bucket("a"): [(3.5, 3.6)]}) == {}
    # of another bucket, or before the overwrite was invoked, it does not
    assert kinds(ops, failovers={(bucket("a") + 1) % B: [(3.5, 3.6)]}) == {"stale-read": 1}
    assert kinds(ops, failovers={bucket("a"): [(0.5, 1.5)]}) == {"stale-read": 1}
    # a loss is excused, but a newer acknowledged write after the failover is not
    ops += [w("a", "v3", 6, 7), r("a", "v1", 8, 9)]
    assert kinds(ops, failovers={bucket("a"): [(3.5, 3.6)]}) == {"stale-read": 1}


def test_checker_flags_a_resurrected_delete():
    ops = [w("a", "v1", 0, 1), d("a", 2, 2.1), r("a", "v1", 4, 5)]
    assert kinds(ops) == {"resurrected-delete": 1}
    # without repl_ack a failover may lose the delete ...
    fo = {bucket("a"): [(3.5, 3.6)]}
    assert kinds(ops, failovers=fo) == {}
    # ... with repl_ack=delete it may not, unless the ack could not be relied on
    assert kinds(ops, failovers=fo, durable="delete") == {"resurrected-delete": 1}
    assert kinds(ops, failovers=fo, durable="delete", unsafe={bucket("a"): [(0, 10)]}) == {}
    # repl_ack=delete makes no promise for sets
    sets = [w("a", "v1", 0, 1), w("a", "v2", 2, 2.1), r("a", "v1", 4, 5)]
    assert kinds(sets, failovers=fo, durable="delete") == {}
    assert kinds(sets, failovers=fo, durable="all") == {"stale-read": 1}
    slow = [w("a", "v1", 0, 1), d("a", 2, 2.6), r("a", "v1", 4, 5)]  # the wait timed out
    assert kinds(slow, failovers=fo, durable="delete", ack_timeout_ms=500) == {}


def test_checker_flags_reads_of_refused_and_future_writes():
    ops = [w("a", "v1", 0, 1, outcome="fail"), r("a", "v1", 2, 3),
           r("b", "v2", 0, 1), w("b", "v2", 2, 3)]
    assert kinds(ops) == {"refused-write-read": 1, "future-read": 1}


@pytest.mark.slow
def test_short_chaos_run(tmp_path):
    """About 60 s: 4 servers and a spare, mc-coordinator, 4 clients (stock HashClient and the
    map-aware client), every kind of fault from seed 7; the checker finds nothing, the
    cluster settles, no process crashed or outgrew its memory bound."""
    pytest.importorskip("pymemcache")
    if not os.path.abspath(chaos.mc.server_binary()).startswith(chaos.TOP + os.sep):
        pytest.skip("managed mode: this project's server only")
    lines = []
    rep = chaos.run(tmp_path, seconds=float(os.environ.get("MC_CHAOS_SECONDS", 45)),
                    seed=int(os.environ.get("MC_CHAOS_SEED", 7)), settle_timeout=30,
                    log=lines.append, max_gap=1.0)
    summary = {k: rep[k] for k in ("faults", "ops", "reads_checked", "anomalies",
                                   "crashes", "max_rss_mib", "rss_over_bound",
                                   "end_state_problems", "heal_to_settled_s", "wall_s")}
    print(summary)
    assert rep["ops"] > 500, summary
    assert sum(rep["faults"].values()) >= 5, summary
    assert rep["ok"], ("\n".join(lines[-40:]) + "\n" + str(summary) + "\n"
                       + str(rep["anomaly_examples"][:5]))
