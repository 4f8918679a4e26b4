#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets beyond the client protocols
(fuzz/corpus/<name>/seed-NN): a handful of small valid inputs each, built from the formats in
replication/stream.h, replication/record.h, replication/bucket_map.h,
server/managed/cluster_cmd.cc, coordinator/state.cc, coordinator/admin.cc and
coordinator/hb_reply.h. Run from anywhere: python3 fuzz/make_seeds.py. Crash reproducers
(crash-*) in the same directories are left alone."""
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, s in enumerate(seeds):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(s if isinstance(s, bytes) else s.encode())


# --- replication stream (stream.h, record.h) ---
def frame(t, payload=b""):
    return struct.pack("<IB", len(payload) + 1, t) + payload


def record(kind, bucket, seqno, key, value=b"", cas=0, flags=0, exptime=0, marks=0, delay=0):
    h = struct.pack("<BIQQIqBHIq", kind, bucket, seqno, cas, flags, exptime, marks,
                    len(key), len(value), delay)
    assert len(h) == 48
    return h + key + value


HELLO, SUB, UNSUB, RECORD, STREAM, BFEND, ACK, PING, PONG, NOTACT, COORD, HINTS = range(1, 13)


def rec_frame(*a, **k):
    return frame(RECORD, record(*a, **k))


def bucket(key, n):
    return zlib.crc32(key) % n


def repl_frame_seeds():
    n = 8  # first byte 7: 8 buckets
    b = bucket(b"foo", n)
    return [
        b"\x07" + frame(HELLO, struct.pack("<H", 2) + b"n2" + b"ab" * 32),
        b"\x07" + frame(SUB, struct.pack("<IQQ", 3, 0x1234, 17)) + frame(UNSUB, struct.pack("<I", 3)),
        b"\x07" + frame(STREAM, struct.pack("<IQQB", b, 9, 0, 1)) +
        rec_frame(1, b, 0, b"foo", b"bar", cas=5) +
        frame(BFEND, struct.pack("<IQQ", b, 0, 1)),
        b"\x07" + b"".join(rec_frame(1, b, s, b"foo", b"v%d" % s, cas=s) for s in range(1, 6)),
        b"\x07" + rec_frame(2, 1, 1, b"k", exptime=1_700_000_500) +
        rec_frame(3, 1, 2, b"k") + rec_frame(4, 1, 3, b"", delay=1_700_000_900),
        b"\x07" + frame(ACK, struct.pack("<IQ", 1, 7) + struct.pack("<IQ", 2, 9)),
        b"\x07" + frame(PING, struct.pack("<Q", 123456)) + frame(PONG, struct.pack("<Q", 123456)),
        b"\x07" + frame(NOTACT, struct.pack("<I", 5)) + frame(COORD, struct.pack("<QI", 4, 250)),
        b"\x07" + frame(HINTS, struct.pack("<QQ", 0xdeadbeef, 42)) + frame(99, b"future"),
        b"\x00" + rec_frame(1, 0, 1, b"\x00\x01bin", b"x" * 100, marks=3),
    ]


def repl_apply_seeds():
    # 16 buckets; first byte bit 7: records keep their own bucket numbers
    keys = [b"foo", b"bar", b"baz", b"k1", b"k2"]
    s = b"".join(rec_frame(1, 0, i + 1, k, b"value-" + k, cas=100 + i, flags=i)
                 for i, k in enumerate(keys))
    return [
        b"\x07" + s,
        b"\x07" + s + rec_frame(3, 0, 6, b"foo") + rec_frame(2, 0, 7, b"bar", exptime=1_700_009_000),
        b"\x07" + s + rec_frame(4, bucket(b"baz", 16), 50, b""),
        b"\x07" + s + frame(STREAM, struct.pack("<IQQB", bucket(b"foo", 16), 1, 40, 1)) +
        rec_frame(1, 0, 0, b"foo", b"backfilled", cas=7),
        b"\x07" + s + s,  # duplicates
        b"\x83" + rec_frame(1, 2, 1, b"foo", b"filed elsewhere", cas=9) + rec_frame(3, 2, 2, b"foo"),
        b"\x0f" + rec_frame(1, 0, 1, b"big", b"z" * 3000, cas=1) +
        rec_frame(4, bucket(b"big", 16), 2, b"", delay=1_700_000_100),
    ]


# --- bucket map (bucket_map.h) ---
def bucket_map_seeds():
    return [
        "MAP 1 4\r\nNODE a 127.0.0.1:11211\r\nRANGE 0 3 a\r\nEND\r\n",
        "MAP 7 16\r\nNODE a 10.0.0.1:11211\r\nNODE b 10.0.0.2:11211\r\nNODE c 10.0.0.3:11211\r\n"
        "RANGE 0 7 a b c\r\nRANGE 8 15 b c\r\nEND\r\n",
        "MAP 2 8\nNODE n-1 [::1]:7000\nNODE n_2 host.example:7001\nRANGE 0 0 n-1 n_2\n"
        "RANGE 5 6 n_2\nEND\n",
        "MAP 0 1\r\nEND\r\n",
        "MAP 3 65536\r\nNODE x 1.2.3.4:1\r\nRANGE 0 65535 x\r\nEND\r\n",
        "MAP 1 4\r\nNODE a h:1\r\nRANGE 0 3 a a\r\nEND\r\n",  # refused: replica = active
    ]


# --- cluster commands (cluster_cmd.cc); first byte: buckets 1 + 2*(b & 0x7f), bit 7: name n1
def cluster_cmd_seeds():
    cmds = ["map", "auth", "auth 0123abcd", "setmap 120", "state 0-3 active", "state all replica",
            "state 2 bogus", "drop 5", "reset", "peer", "peer binary", "repl n2 abcd",
            "repl n2 abcd n1", "repl n2 abcd n9", "dump 3", "hb 3000 17 250", "lease 3000 0 0",
            "hb 99999 1 1", "listen 127.0.0.1:11300", "unlisten 127.0.0.1:11300", "steer",
            "handoff 4 12", "handoff 0-7 cancel", "applied 7", "state 9-2 dead"]
    return [bytes([0x80 | 7]) + c.encode() for c in cmds]


# --- coordinator state file (state.cc) ---
def coord_state_seeds():
    base = {
        "format": 1, "cluster_id": "c0ffee", "secret_check": "ab" * 32, "buckets": 4,
        "replicas": 1, "epoch": 3,
        "members": [
            {"name": "a", "addr": "127.0.0.1:11211", "status": "member", "boot_id": "0123456789abcdef"},
            {"name": "b", "addr": "127.0.0.1:11212", "status": "joining", "boot_id": ""},
        ],
        "map": "MAP 3 4\r\nNODE a 127.0.0.1:11211\r\nNODE b 127.0.0.1:11212\r\nRANGE 0 3 a b\r\nEND\r\n",
        "takeovers": [],
    }
    s2 = json.loads(json.dumps(base))
    s2["members"][1]["status"] = "draining"
    s2["takeovers"] = [{"node": "a", "addr": "127.0.0.1:11211", "holder": "b", "mode": "listen"}]
    s2["rebalance"] = True
    s3 = json.loads(json.dumps(base))
    del s3["takeovers"]  # an older file
    s3["members"][0]["status"] = "leaving"
    s4 = json.loads(json.dumps(base))
    s4["format"] = 2
    return [json.dumps(base, indent=1), json.dumps(s2), json.dumps(s3), json.dumps(s4)]


# --- admin API (admin.cc): method byte (0 GET, 1 POST, 2 DELETE), URI, "\n", body
def coord_admin_seeds():
    reqs = [
        (0, "/status", ""), (0, "/map?x=1", ""), (0, "/metrics", ""), (0, "/auth", ""),
        (1, "/nodes", '{"name": "n4", "addr": "127.0.0.1:11214"}'),
        (1, "/nodes", '{"name": "n4", "addr": "127.0.0.1:11214", "rebalance": false}'),
        (1, "/nodes", '{"name": 4}'),
        (2, "/nodes/n3", ""), (1, "/failover/n2", ""),
        (1, "/nodes/n2/drain", '{"remove": true}'), (1, "/nodes/n2/drain", ""),
        (1, "/rebalance", '{"parallel": 4}'), (1, "/rebalance", '{"parallel": 0}'),
        (1, "/rebalance", ""), (1, "/rebalance/cancel", ""),
    ]
    out = [bytes([m]) + ("%s\n%s" % (u, b)).encode() for m, u, b in reqs]
    out.append(b"\x01MC-HMAC 0123abcd 9f8e7d")
    return out


# --- heartbeat and one-line replies (hb_reply.h)
def coord_hb_seeds():
    return [
        "HB n1 7 0123456789abcdef 42 2500 0\r\nA 0 17 1\r\nR 1 9 1\r\nH 2 5 0\r\nEND\r\n",
        "HB n2 0 fedcba9876543210 1 0 1\r\nEND\r\n",
        "HB n3 3 00ff00ff00ff00ff 9 100 0\r\nR 0 0 0\r\nR 3 18446744073709551615 1\r\nEND\r\n",
        # a replica whose active's stream ended 350 ms ago (synced_ago_ms)
        "HB n4 5 0a0b0c0d0e0f0102 3 400 0\r\nR 0 12 0 350\r\nR 1 3 1\r\nEND\r\n",
        "HANDOFF 3 1200\r\nEND\r\n",
        "APPLIED 3 replica 1200 1 10 4096\r\nEND\r\n",
        "LEASE 77 2900\r\nEND\r\n",
        "CLIENT_ERROR bad heartbeat\r\nEND\r\n",
    ]


if __name__ == "__main__":
    write("repl_frame", repl_frame_seeds())
    write("repl_apply", repl_apply_seeds())
    write("bucket_map", bucket_map_seeds())
    write("cluster_cmd", cluster_cmd_seeds())
    write("coord_state", coord_state_seeds())
    write("coord_admin", coord_admin_seeds())
    write("coord_hb", coord_hb_seeds())
