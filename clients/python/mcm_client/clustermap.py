"""The bucket function and the cluster map's text form (doc/managed.md, "Writing a map-aware
client"). Standard library only."""

import zlib


def bucket_of(key, nbuckets):
    """The bucket of a key: zlib's CRC-32 of the key bytes exactly as sent (str keys are
    UTF-8 encoded here; with a key_prefix, the prefix is part of the key) mod nbuckets."""
    if isinstance(key, str):
        key = key.encode("utf8")
    return zlib.crc32(key) % nbuckets


def parse_addr(text):
    """"host:port" (or "[v6]:port") -> (host, port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("bad address %r" % text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class MapError(ValueError):
    """The text is not a cluster map."""


class ClusterMap:
    """One map: epoch, bucket count, nodes {name: (host, port)} and, per bucket, the active
    server's name (None: no owner). Immutable once built."""

    __slots__ = ("epoch", "nbuckets", "nodes", "active")

    def __init__(self, epoch, nbuckets, nodes, active):
        self.epoch = epoch
        self.nbuckets = nbuckets
        self.nodes = nodes
        self.active = active

    def owner(self, b):
        """(host, port) of bucket b's active server, or None."""
        name = self.active[b]
        return None if name is None else self.nodes.get(name)

    def owner_of_key(self, key):
        return self.owner(bucket_of(key, self.nbuckets))

    def __repr__(self):
        owned = sum(1 for a in self.active if a is not None)
        return "ClusterMap(epoch=%d, buckets=%d, nodes=%d, owned=%d)" % (
            self.epoch, self.nbuckets, len(self.nodes), owned)


def parse_map(text):
    """Parse `cluster map`'s answer (MAP/NODE/RANGE lines up to END) into a ClusterMap.
    Raises MapError on anything else (a plain memcached answers ERROR)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    lines = [line.split() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0][0] != "MAP" or len(lines[0]) != 3:
        raise MapError("not a map: %r" % text[:80])
    try:
        epoch, n = int(lines[0][1]), int(lines[0][2])
    except ValueError:
        raise MapError("bad MAP line: %r" % lines[0])
    if n < 1:
        raise MapError("bad bucket count %d" % n)
    nodes, active, ended = {}, [None] * n, False
    for w in lines[1:]:
        if ended:
            raise MapError("text after END")
        if w[0] == "NODE" and len(w) == 3:
            try:
                nodes[w[1]] = parse_addr(w[2])
            except ValueError as e:
                raise MapError(str(e))
        elif w[0] == "RANGE" and len(w) >= 4:
            try:
                first, last = int(w[1]), int(w[2])
            except ValueError:
                raise MapError("bad RANGE line: %r" % w)
            if not 0 <= first <= last < n:
                raise MapError("RANGE out of bounds: %r" % w)
            for b in range(first, last + 1):
                active[b] = w[3]
        elif w == ["END"]:
            ended = True
        else:
            raise MapError("unexpected line: %r" % w)
    if not ended:
        raise MapError("no END")
    # An active name without a NODE line cannot be reached: treat the bucket as unowned.
    active = [a if a in nodes else None for a in active]
    return ClusterMap(epoch, n, nodes, active)
