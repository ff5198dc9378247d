"""``setup_cluster`` and ``stop_server``: CaImAn's two cluster calls, on Dask."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from distributed import Client

from caiman_dask import config
from caiman_dask.cluster.backends import get_backend
from caiman_dask.cluster.pinning import ThreadPinning
from caiman_dask.cluster.settings import resolve_settings
from caiman_dask.errors import ClusterError
from caiman_dask.system import affinity
from caiman_dask.view.dask_multiprocessing import DaskPool

logger = logging.getLogger(__name__)


@dataclass
class _Started:
    """What ``setup_cluster`` created and so may close: never what the user passed."""

    view: DaskPool
    client: Client | None
    cluster: Any | None

    def close(self, timeout: float) -> None:
        self.view.terminate()
        if self.client is not None:
            self.client.close(timeout=timeout)
        if self.cluster is not None:
            self.cluster.close(timeout=timeout)


_STARTED: list[_Started] = []


def setup_cluster(
    backend: str | Client | Any | None = None,
    n_processes: int | None = None,
    *,
    memory_limit: int | str | None = None,
    threads_per_worker: int | None = None,
    pin_cpus: bool | None = None,
    timeout: float | None = None,
    **backend_options: Any,
) -> tuple[Client | None, DaskPool | None, int]:
    """Start or attach to a Dask cluster; return ``(client, dview, n_processes)``.

    Parameters
    ----------
    backend : str, Client or cluster, optional
        ``"local"`` (default), ``"single"`` (no cluster: dview None, like CaImAn), another
        registered backend name, a scheduler address (``"tcp://host:port"``), or an
        existing ``distributed.Client`` or cluster object, which is never closed by us.
    n_processes : int, optional
        Worker processes to start (default: usable CPUs // threads_per_worker).
    memory_limit : int or str, optional
        Memory per worker (default: usable memory / workers).
    threads_per_worker : int, optional
        Task threads per worker; BLAS, OpenMP and OpenCV threads are pinned to it.
    pin_cpus : bool, optional
        Bind each worker to disjoint cores (Linux).
    timeout : float, optional
        Seconds to wait for workers or a scheduler (config ``cluster.start-timeout``).
    **backend_options
        Passed to the backend's cluster class.

    Returns
    -------
    client : distributed.Client or None
    dview : DaskPool or None
        The dview to pass to CaImAn and to caiman-dask's drivers.
    n_processes : int
        Total worker threads, which CaImAn splits its pixel blocks by.
    """
    backend = config.get("cluster.backend", backend)
    if isinstance(backend, str) and backend == "single":
        return None, None, 1
    if isinstance(backend, Client):
        return _attach(backend)
    if (isinstance(backend, str) and "://" in backend) or hasattr(backend, "scheduler_address"):
        return _attach(_connect(backend, timeout), owns_client=True)
    if not isinstance(backend, str):
        get_backend(repr(backend))  # raises, listing the available backends
    return _start(backend, n_processes, memory_limit, threads_per_worker, pin_cpus,
                  timeout, backend_options)


def _start(name: str, n_processes: int | None, memory_limit: Any, threads_per_worker: Any,
           pin_cpus: Any, timeout: float | None, options: dict[str, Any]) -> tuple:
    builder = get_backend(name)
    settings = resolve_settings(n_processes, threads_per_worker=threads_per_worker,
                                memory_limit=memory_limit, pin_cpus=pin_cpus)
    wait = float(config.get("cluster.start-timeout", timeout))
    spec = builder(settings, **options)
    settings = spec.settings  # a backend may size workers itself (pod resources, job cores)
    cluster = spec.start()
    try:
        client = Client(cluster, timeout=wait)
        client.wait_for_workers(settings.n_workers, timeout=wait)
        client.register_plugin(ThreadPinning(settings.threads_per_worker,
                                             pin_cpus=settings.pin_cpus, available=affinity()))
    except Exception as exc:
        cluster.close()
        raise ClusterError(
            f"backend {name!r}: {settings.describe()} did not start within {wait:g} s ({exc}); "
            f"raise cluster.start-timeout or check the scheduler's logs"
        ) from exc
    logger.info("caiman-dask: %s; dashboard %s", settings.describe(), client.dashboard_link)
    view = DaskPool(client, threads_per_worker=settings.threads_per_worker,
                    memory_limit=settings.memory_limit)
    _STARTED.append(_Started(view, client, cluster))
    return client, view, _total_threads(client)


def _connect(target: Any, timeout: float | None) -> Client:
    wait = float(config.get("cluster.connect-timeout", timeout))
    try:
        return Client(target, timeout=wait)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the scheduler at {getattr(target, 'scheduler_address', target)} "
            f"within {wait:g} s ({exc}); check the address and that the scheduler is running"
        ) from exc


def _attach(client: Client, *, owns_client: bool = False) -> tuple:
    view = DaskPool(client)
    if owns_client:
        _STARTED.append(_Started(view, client, None))
    return client, view, _total_threads(client)


def _total_threads(client: Client) -> int:
    return max(1, sum(client.nthreads().values()))


def stop_server(dview: Any = None, *, client: Client | None = None, timeout: float = 30) -> None:
    """Close what :func:`setup_cluster` started for ``dview`` (or ``client``).

    With neither, close everything it started in this process. A client or cluster the
    user passed to ``setup_cluster`` is never closed, and neither is any other object.
    """
    matches = [s for s in _STARTED
               if (dview is None and client is None) or s.view is dview or
               (client is not None and s.client is client)]
    for started in matches:
        _STARTED.remove(started)
        started.close(timeout)
