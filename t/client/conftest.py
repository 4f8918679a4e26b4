"""The map-aware client's suite (clients/python/): the cluster suites' fixtures (`node`,
`cluster`, from t/cluster/conftest.py) and the client package on sys.path."""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "clients", "python"))

# One definition of the fixtures: load t/cluster/conftest.py under a name of its own and
# re-export them (pytest collects fixtures from a conftest's attributes).
_spec = importlib.util.spec_from_file_location(
    "cluster_suite_conftest", os.path.join(HERE, "..", "cluster", "conftest.py"))
_cluster_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cluster_conftest)
node = _cluster_conftest.node
cluster = _cluster_conftest.cluster
