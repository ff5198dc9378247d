"""Clusters: start or attach, pin threads, limit memory; CaImAn's setup_cluster/stop_server."""

from caiman_dask.cluster import jobqueue as _jobqueue  # noqa: F401  registers batch systems
from caiman_dask.cluster import kubernetes as _kubernetes  # noqa: F401  registers "kubernetes"
from caiman_dask.cluster.backends import BACKENDS, ClusterSpec, register_backend
from caiman_dask.cluster.settings import WorkerSettings, resolve_settings
from caiman_dask.cluster.setup import setup_cluster, stop_server

__all__ = ["BACKENDS", "ClusterSpec", "WorkerSettings", "register_backend", "resolve_settings",
           "setup_cluster", "stop_server"]
