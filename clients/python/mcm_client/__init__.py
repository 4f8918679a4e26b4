"""A map-aware memcached client for managed clusters (doc/managed.md): pymemcache's
HashClient, sending every key straight to its bucket's active server.

    import sys; sys.path.insert(0, "clients/python")
    from mcm_client import ClusterClient
    client = ClusterClient([("10.0.0.1", 11211), ("10.0.0.2", 11211)])
"""

from .client import ClusterClient
from .clustermap import ClusterMap, MapError, bucket_of, parse_map

__all__ = ["ClusterClient", "ClusterMap", "MapError", "bucket_of", "parse_map"]
