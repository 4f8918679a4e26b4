"""ClusterClient: pymemcache's HashClient, routing every key to its bucket's active server.

See clients/python/README.md for usage and doc/managed.md ("Writing a map-aware client") for
the bucket function and the map this follows."""

import collections
import logging
import socket
import threading
import time
import zlib

from pymemcache.client.base import PooledClient, check_key_helper, normalize_server_spec
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError

from .clustermap import MapError, bucket_of, parse_map

logger = logging.getLogger(__name__)

# Server errors after which the map is read again and the command retried once: the bucket is
# not served where we sent it (NOT_MY_BUCKET <bucket> <epoch>), its server lost its lease
# (FENCED <bucket> <epoch>) or a server we went through could not reach the owner.
_MAP_ERRORS = (b"NOT_MY_BUCKET", b"FENCED", b"forward to ")


def _error_text(e):
    a = e.args[0] if e.args else b""
    return a if isinstance(a, bytes) else str(a).encode("utf8", "replace")


def _classify(e):
    """'conn' for a failed connection to the server asked, 'map' for a refusal that says the
    map moved, None for anything else (raised or ignored as HashClient would)."""
    if isinstance(e, (socket.error, MemcacheUnexpectedCloseError)):
        return "conn"
    if isinstance(e, MemcacheServerError) and _error_text(e).startswith(_MAP_ERRORS):
        return "map"
    return None


def _refusal_epoch(e):
    """The epoch in `NOT_MY_BUCKET <bucket> <epoch>` / `FENCED <bucket> <epoch>`, else None."""
    w = _error_text(e).split()
    if len(w) == 3 and w[0] in (b"NOT_MY_BUCKET", b"FENCED") and w[2].isdigit():
        return int(w[2])
    return None


def _key_of(server):
    if isinstance(server, (list, tuple)) and len(server) == 2:
        return "%s:%s" % tuple(server)
    return server


class ClusterClient(HashClient):
    """A HashClient that sends each key straight to its bucket's active server.

    servers: seed servers (as for HashClient); the map is read from any of them. Against a
    plain memcached (`cluster map` answers ERROR) this is exactly a HashClient over them.

    Extra options:
      map_refresh_interval: seconds between two routine reads of the map (default 5; None or
        0: only when a server refuses a key or a connection fails). Needed to follow planned
        moves: the servers forward requests for buckets that moved, so a client whose map is
        old gets correct answers but pays a second hop.
      map_min_interval: the least time between two reads of the map (default 0.1 s), however
        many requests fail.
      map_timeout: socket timeout of a map read (default: connect_timeout / timeout, else 2 s).

    Every other argument is HashClient's. `hasher` is used only for a plain memcached.
    """

    PLAIN_RECHECK = 60.0  # seconds between two `cluster map` probes of plain memcached

    def __init__(self, servers, *args, map_refresh_interval=5.0, map_min_interval=0.1,
                 map_timeout=None, **kwargs):
        super().__init__(servers, *args, **kwargs)
        self._seeds = [normalize_server_spec(s) for s in servers]
        self._seed_keys = [_key_of(s) for s in self._seeds]
        self.map_refresh_interval = map_refresh_interval or None
        self.map_min_interval = map_min_interval
        t = map_timeout or self.default_kwargs.get("timeout") or \
            self.default_kwargs.get("connect_timeout") or 2.0
        self.map_timeout = t
        self._map = None  # the ClusterMap in force, None: none read yet
        self._managed = None  # True: a map was read; False: plain memcached; None: unknown
        self._lock = threading.Lock()
        self._last_try = float("-inf")  # monotonic time of the last map read tried
        self._last_ok = float("-inf")  # ... of the last one that got an answer
        self._want_epoch = None  # re-read until the epoch reaches this (after a refusal)
        self._want_until = 0.0
        self._avoid = {}  # client key -> monotonic time until which it is not asked
        self.map_reads = 0  # counters, for tests and curious operators
        self.map_changes = 0
        self.retries = 0
        self.refresh_map(force=True)

    # --- the map ---------------------------------------------------------------------------

    @property
    def cluster_map(self):
        """The ClusterMap in force (None before one was read, or for a plain memcached)."""
        return self._map

    @property
    def epoch(self):
        return self._map.epoch if self._map is not None else 0

    @property
    def managed(self):
        """True when the servers are a managed cluster, False for a plain memcached, None
        while neither is known (no server answered yet)."""
        return self._managed

    def _read_map_from(self, server):
        """`cluster map` on one server: the answer's text, b"ERROR" for a plain memcached."""
        s = self.default_kwargs.get("socket_module") or socket
        if isinstance(server, tuple):
            connect = getattr(s, "create_connection", socket.create_connection)
            sock = connect(server, timeout=self.map_timeout)
            tls = self.default_kwargs.get("tls_context")
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=server[0])
        else:
            sock = s.socket(s.AF_UNIX, s.SOCK_STREAM)
            sock.settimeout(self.map_timeout)
            sock.connect(server)
        try:
            sock.settimeout(self.map_timeout)
            sock.sendall(b"cluster map\r\n")
            buf = b""
            while True:
                # ERROR: a plain memcached; CLIENT_ERROR / SERVER_ERROR: no map from this one
                error = buf.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR"))
                if error and b"\r\n" in buf:
                    return buf.split(b"\r\n", 1)[0]
                if buf.endswith(b"END\r\n") and (buf == b"END\r\n" or buf.endswith(b"\nEND\r\n")):
                    return buf
                chunk = sock.recv(65536)
                if not chunk:
                    raise MemcacheUnexpectedCloseError()
                buf += chunk
        finally:
            sock.close()

    def _map_sources(self):
        """Where to read the map: seeds and the map's nodes, those not failing first."""
        out = list(self._seeds)
        if self._map is not None:
            for addr in self._map.nodes.values():
                if addr not in out:
                    out.append(addr)
        now = time.monotonic()
        return sorted(out, key=lambda a: self._avoid.get(_key_of(a), 0) > now)

    def refresh_map(self, force=True):
        """Read the map now (force) or if the rate limit allows. True if it changed."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_try < self.map_min_interval:
                return False
            self._last_try = now
            self.map_reads += 1
            plain = 0
            best = None
            # The first map will do, unless a newer one is wanted (after a refusal or a failed
            # owner) and this server has not got it yet (a coordinator installs a map on one
            # server after another; a server just restarted holds none): then ask the others.
            want = max(self._want_epoch or 0, self.epoch)
            for server in self._map_sources():
                try:
                    text = self._read_map_from(server)
                except (OSError, MemcacheServerError) as e:
                    logger.debug("cluster map from %s: %s", server, e)
                    continue
                if text == b"ERROR":
                    plain += 1
                    continue
                try:
                    m = parse_map(text)
                except MapError as e:
                    logger.debug("cluster map from %s: %s", server, e)
                    continue
                if best is None or m.epoch > best.epoch:
                    best = m
                if best.epoch >= want:
                    break
            if best is not None:
                self._last_ok = now
                return self._install(best)
            if plain:
                # A plain memcached: HashClient over the seeds from now on.
                self._last_ok = now
                if self._managed is not False:
                    logger.info("servers answer `cluster map` with ERROR: plain memcached")
                self._managed = False
                self._map = None
                self._want_epoch = None
            return False

    def _install(self, m):
        old = self._map
        self._managed = True
        if self._want_epoch is not None and m.epoch >= self._want_epoch:
            self._want_epoch = None
        if old is not None and m.epoch <= old.epoch:
            return False  # not newer (a server that has not heard of the latest yet)
        self._map = m
        self.map_changes += 1
        # A new map: its owners are worth asking again, except one that failed lately and is
        # still named (the coordinator has not moved its buckets yet): keep going around it,
        # and keep reading the map for a while.
        now = time.monotonic()
        actives = {_key_of(m.nodes[a]) for a in set(m.active) if a is not None}
        self._avoid = {k: t for k, t in self._avoid.items() if t > now and k in actives}
        self._want_epoch = m.epoch + 1 if self._avoid else None
        logger.debug("cluster map epoch %d installed", m.epoch)
        # A client per server of the map; those of servers gone from it are closed.
        keep = set(self._seed_keys)
        for addr in m.nodes.values():
            k = _key_of(addr)
            keep.add(k)
            if k not in self.clients:
                self._add_client(addr)
        for k in [k for k in self.clients if k not in keep]:
            try:
                self.clients.pop(k).close()
            except Exception:  # noqa: BLE001 - a close of a dead socket does not matter
                pass
        return True

    def _add_client(self, server):
        """A client for a map server, not added to the seed hasher."""
        cls = PooledClient if self.use_pooling else self.client_class
        c = cls(server, **self.default_kwargs)
        if self.use_pooling:
            c.client_class = self.client_class
        self.clients[_key_of(server)] = c
        return c

    def remove_server(self, server, port=None):
        # HashClient marks a failing server dead through its hasher; map servers are not in it.
        if port is not None:
            server = (server, port)
        if _key_of(server) in getattr(self.hasher, "nodes", ()) or \
                not hasattr(self.hasher, "nodes"):
            return super().remove_server(server)
        self._failed_clients.pop(server, None)

    def _maybe_refresh(self):
        now = time.monotonic()
        if self._managed is False:
            # Plain memcached: ask again now and then (a cluster may replace it), not often.
            if self.map_refresh_interval and now - self._last_ok >= max(
                    self.map_refresh_interval, self.PLAIN_RECHECK):
                self.refresh_map(force=False)
            return
        due = self._managed is None or (
            self._want_epoch is not None and now < self._want_until) or (
            self.map_refresh_interval and now - self._last_ok >= self.map_refresh_interval)
        if due and now - self._last_try >= self.map_min_interval:
            self.refresh_map(force=False)

    def _after_error(self, client, e, kind):
        """A request failed in a way that says the map moved: mark, read the map again (rate
        limited)."""
        now = time.monotonic()
        if kind == "conn":
            self._avoid[_key_of(client.server)] = now + max(self.retry_timeout, 0.1)
            want = self.epoch + 1
        else:
            want = _refusal_epoch(e) or self.epoch + 1
            if want <= self.epoch:
                want = self.epoch + 1
        self._want_epoch = want
        self._want_until = now + 2.0
        self.refresh_map(force=False)

    # --- routing -------------------------------------------------------------------------

    def bucket(self, key):
        """The bucket of a key as the servers compute it (key_prefix included); None for a
        plain memcached."""
        if self._map is None:
            return None
        return bucket_of(check_key_helper(key, self.allow_unicode_keys, self.key_prefix),
                         self._map.nbuckets)

    def _fallback(self, wire, exclude=None):
        """A server to go through when the owner is unknown or failing: the servers forward."""
        now = time.monotonic()
        ok = [s for s in self._seed_keys if self._avoid.get(s, 0) <= now and s != exclude]
        if not ok and self._map is not None:
            ok = [k for k in (_key_of(a) for a in self._map.nodes.values())
                  if self._avoid.get(k, 0) <= now and k != exclude]
        if not ok:
            ok = self._seed_keys
        key = ok[zlib.crc32(wire) % len(ok)]
        c = self.clients.get(key)
        if c is None:  # a seed closed by a map that no longer names it
            i = self._seed_keys.index(key) if key in self._seed_keys else None
            c = self._add_client(self._seeds[i]) if i is not None else None
        return c

    def _route(self, wire, not_to=None):
        m = self._map
        addr = m.owner_of_key(wire)
        if addr is None:
            return self._fallback(wire)
        k = _key_of(addr)
        if k == not_to or self._avoid.get(k, 0) > time.monotonic():
            return self._fallback(wire, exclude=k)
        c = self.clients.get(k)
        return c if c is not None else self._add_client(addr)

    def _get_client(self, key):
        if not self._managed:
            return super()._get_client(key)
        return self._route(check_key_helper(key, self.allow_unicode_keys, self.key_prefix))

    # --- commands ------------------------------------------------------------------------

    def _run_cmd(self, cmd, key, default_val, *args, **kwargs):
        self._maybe_refresh()
        if not self._managed:
            return super()._run_cmd(cmd, key, default_val, *args, **kwargs)
        wire = check_key_helper(key, self.allow_unicode_keys, self.key_prefix)
        client = self._route(wire)
        try:
            return getattr(client, cmd)(key, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - sorted below, re-raised as HashClient would
            kind = _classify(e)
            if kind is None:
                if self.ignore_exc:
                    return default_val
                raise
            self._after_error(client, e, kind)
        if not self._managed:  # the servers turned out to be plain memcached
            return super()._run_cmd(cmd, key, default_val, *args, **kwargs)
        self.retries += 1
        retry = self._route(wire, not_to=_key_of(client.server))
        try:
            return getattr(retry, cmd)(key, *args, **kwargs)
        except Exception as e:  # noqa: BLE001
            kind = _classify(e)
            if kind is not None:
                self._after_error(retry, e, kind)
            if self.ignore_exc:
                return default_val
            raise

    def _batches(self, keys):
        """{client key: (client, [keys])} by owner, keys in their order."""
        out = collections.OrderedDict()
        for key in keys:
            wire = check_key_helper(key, self.allow_unicode_keys, self.key_prefix)
            c = self._route(wire)
            k = _key_of(c.server)
            if k not in out:
                out[k] = (c, [])
            out[k][1].append(key)
        return out

    def _per_owner(self, keys, run, merge):
        """Run run(client, keys) per owner; the keys of a batch that failed in a way that says
        the map moved are routed again (after a map read) and retried once. merge(result) is
        called with every batch's result. Errors: raised unless ignore_exc (then skipped)."""
        failed = []
        first = None
        for _, (client, ks) in self._batches(keys).items():
            try:
                merge(run(client, ks))
            except Exception as e:  # noqa: BLE001
                kind = _classify(e)
                if kind is None:
                    if self.ignore_exc:
                        continue
                    raise
                self._after_error(client, e, kind)
                failed.append((_key_of(client.server), ks))
                first = first or e
        if not failed:
            return
        if not self._managed:  # the map read found a plain memcached: no routing by map
            if self.ignore_exc:
                return
            raise first
        self.retries += 1
        for not_to, ks in failed:
            batches = collections.OrderedDict()
            for key in ks:
                wire = check_key_helper(key, self.allow_unicode_keys, self.key_prefix)
                c = self._route(wire, not_to=not_to)
                batches.setdefault(_key_of(c.server), (c, []))[1].append(key)
            for _, (client, bks) in batches.items():
                try:
                    merge(run(client, bks))
                except Exception as e:  # noqa: BLE001
                    kind = _classify(e)
                    if kind is not None:
                        self._after_error(client, e, kind)
                    if not self.ignore_exc:
                        raise

    def get_many(self, keys, gets=False, *args, **kwargs):
        self._maybe_refresh()
        if not self._managed:
            return super().get_many(keys, gets, *args, **kwargs)
        end = {}

        def run(client, ks):
            f = client.gets_many if gets else client.get_many
            return f(ks, *args, **kwargs)
        self._per_owner(keys, run, end.update)
        return end

    get_multi = get_many

    def gets_many(self, keys, *args, **kwargs):
        return self.get_many(keys, True, *args, **kwargs)

    gets_multi = gets_many

    def set_many(self, values, *args, **kwargs):
        self._maybe_refresh()
        if not self._managed:
            return super().set_many(values, *args, **kwargs)
        failed = []
        done = set()

        def run(client, ks):
            return client.set_many({k: values[k] for k in ks}, *args, **kwargs), ks

        def merge(r):
            f, ks = r
            failed.extend(f)
            done.update(ks)
        self._per_owner(list(values), run, merge)
        # As HashClient with ignore_exc: keys whose batch failed count as failed.
        failed += [k for k in values if k not in done]
        return failed

    set_multi = set_many

    def delete_many(self, keys, *args, **kwargs):
        self._maybe_refresh()
        if not self._managed:
            return super().delete_many(keys, *args, **kwargs)
        # One `delete` per key, pipelined per owner (HashClient sends them one by one).
        self._per_owner(list(keys), lambda c, ks: c.delete_many(ks, *args, **kwargs),
                        lambda r: None)
        return True

    delete_multi = delete_many
