#!/usr/bin/python3
"""Print doc/managed.md's table of bucket-function test vectors (B = 1024), computed with
zlib.crc32, so the table cannot drift from the function: doc/managed.md holds this script's
output verbatim, and t/client/test_bucket_vectors.py checks it does.

    /usr/bin/python3 scripts/bucket_vectors.py            # the Markdown table
    /usr/bin/python3 scripts/bucket_vectors.py --check    # exit 1 if doc/managed.md differs
"""

import os
import sys
import zlib

BUCKETS = 1024
# Keys as bytes; the empty key is shown as "(empty)", the others in backquotes.
KEYS = [b"", b"a", b"foo", b"hello world", b"user:1000", b"key0", b"123456789"]
DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "doc", "managed.md")


def vectors(buckets=BUCKETS):
    """[(key bytes, crc32, bucket)]"""
    return [(k, zlib.crc32(k), zlib.crc32(k) % buckets) for k in KEYS]


def table(buckets=BUCKETS):
    rows = ["| key | crc32 | bucket |", "| --- | --- | --- |"]
    for k, crc, b in vectors(buckets):
        shown = "`%s`" % k.decode() if k else "(empty)"
        rows.append("| %s | 0x%08x | %d |" % (shown, crc, b))
    return "\n".join(rows) + "\n"


def main():
    if sys.argv[1:] == ["--check"]:
        with open(DOC) as f:
            ok = table() in f.read()
        if not ok:
            sys.stderr.write("doc/managed.md: the test vector table differs from "
                             "scripts/bucket_vectors.py's output\n")
        return 0 if ok else 1
    sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
