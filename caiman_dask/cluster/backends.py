"""Cluster backends: each one only builds a :class:`ClusterSpec`.

A cluster is a spec — a class, its options and the dask config to hold while it
starts (the idea of ``distributed.deploy.spec``). ``setup_cluster`` starts any spec the
same way, so a backend differs from another only in the spec it builds. Register a new
backend with :func:`register_backend`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask.config

from caiman_dask import config
from caiman_dask.cluster.pinning import PinnedNanny
from caiman_dask.cluster.settings import WorkerSettings
from caiman_dask.errors import BackendError


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster to start.

    Attributes
    ----------
    cls : callable
        The cluster class (``LocalCluster``, ``SLURMCluster``, ``KubeCluster`` ...).
    options : dict
        Keyword arguments for ``cls``.
    settings : WorkerSettings
        The per-worker settings the options carry.
    config : dict
        Dask configuration held while the cluster starts (scheduler and worker policy).
    scale : int or None
        Workers to request after start (batch-system clusters start with none).
    """

    cls: Callable[..., Any]
    options: dict[str, Any]
    settings: WorkerSettings
    config: dict[str, Any] = field(default_factory=dict)
    scale: int | None = None

    def start(self) -> Any:
        """Create the cluster under the spec's dask configuration."""
        with dask.config.set(self.config):
            cluster = self.cls(**self.options)
        if self.scale:
            cluster.scale(self.scale)
        return cluster


def cluster_policy(settings: WorkerSettings) -> dict[str, Any]:
    """Dask config every cluster we start gets: failure and memory policy, quiet workers."""
    memory = {f"distributed.worker.memory.{k}": v for k, v in settings.memory_fractions.items()}
    return {
        "distributed.scheduler.allowed-failures": int(config.get("cluster.allowed-failures")),
        "distributed.scheduler.no-workers-timeout": f"{config.get('cluster.no-workers-timeout')}s",
        "distributed.worker.profile.enabled": bool(config.get("cluster.worker-profiler")),
        "distributed.admin.tick.interval": f"{float(config.get('cluster.event-loop-tick'))}s",
        **memory,
    }


def local_spec(settings: WorkerSettings, **options: Any) -> ClusterSpec:
    """Spec of a ``LocalCluster`` of worker processes on this machine."""
    from distributed import LocalCluster

    opts: dict[str, Any] = {
        "n_workers": settings.n_workers,
        "threads_per_worker": settings.threads_per_worker,
        "memory_limit": settings.memory_limit,
        "processes": True,
        "host": "127.0.0.1",
        "scheduler_port": 0,
        "dashboard_address": config.get("cluster.dashboard-address"),
        "silence_logs": logging.ERROR,
        "worker_class": PinnedNanny,
        "thread_env": settings.thread_env(),  # to PinnedNanny
    }
    if "caiman" in sys.modules:  # a CaImAn script: workers import it at start, as a
        opts["preload"] = ["caiman"]  # forked Pool's workers have it (not at first task)
    opts.update(options)
    return ClusterSpec(LocalCluster, opts, settings, cluster_policy(settings))


SpecBuilder = Callable[..., ClusterSpec]

BACKENDS: dict[str, SpecBuilder] = {"local": local_spec}

#: Backends that exist but need an optional dependency: name -> install hint.
OPTIONAL_BACKENDS: dict[str, str] = {}


def register_backend(name: str, builder: SpecBuilder) -> None:
    """Make ``setup_cluster(backend=name)`` build its cluster with ``builder``."""
    BACKENDS[name] = builder


def get_backend(name: str) -> SpecBuilder:
    """Return the spec builder of ``name``, or fail listing what is available."""
    if name in BACKENDS:
        return BACKENDS[name]
    if name in OPTIONAL_BACKENDS:
        raise BackendError(f"backend {name!r} needs an optional dependency: {OPTIONAL_BACKENDS[name]}")
    names = ", ".join(sorted([*BACKENDS, "single"]))
    raise BackendError(
        f"unknown backend {name!r}; available: {names}, a scheduler address "
        f"('tcp://host:port' or 'tls://...'), or a distributed Client or cluster object"
    )
