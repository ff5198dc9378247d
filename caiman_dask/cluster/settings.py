"""Worker settings resolved once from arguments, dask config and package defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dask.utils import format_bytes, parse_bytes

from caiman_dask import config
from caiman_dask.errors import ParameterError
from caiman_dask.system import usable_cpus, usable_memory

#: Environment variables that size native thread pools; all are pinned per worker.
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)


@dataclass(frozen=True)
class WorkerSettings:
    """How many workers, how many threads each, how much memory each.

    Attributes
    ----------
    n_workers : int
        Worker processes.
    threads_per_worker : int
        Task threads per worker; native thread pools are pinned to the same number.
    memory_limit : int
        Bytes per worker; the nanny restarts a worker that passes
        ``memory_fractions["terminate"]`` of it.
    pin_cpus : bool
        Bind each worker process to its own disjoint set of cores.
    memory_fractions : dict
        Dask's worker memory thresholds (target, spill, pause, terminate).
    """

    n_workers: int
    threads_per_worker: int
    memory_limit: int
    pin_cpus: bool
    memory_fractions: dict[str, float | bool]

    @property
    def total_threads(self) -> int:
        """Worker threads in the whole cluster (CaImAn's ``n_processes``)."""
        return self.n_workers * self.threads_per_worker

    def thread_env(self) -> dict[str, str]:
        """Environment that pins every native thread pool to ``threads_per_worker``."""
        return {name: str(self.threads_per_worker) for name in THREAD_ENV_VARS}

    def describe(self) -> str:
        """One line for logs: workers x threads, memory each."""
        return (
            f"{self.n_workers} worker(s) x {self.threads_per_worker} thread(s), "
            f"{format_bytes(self.memory_limit)} each"
        )


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _memory_bytes(value: Any, n_workers: int) -> int:
    if value in (None, "auto"):
        return max(1, usable_memory() // n_workers)
    try:
        limit = parse_bytes(value) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"memory_limit={value!r} is not a size: give bytes or a string like '4GB'"
        ) from exc
    if limit <= 0:
        raise ParameterError(f"memory_limit must be positive, got {value!r}")
    return limit


def resolve_settings(
    n_workers: int | None = None,
    *,
    threads_per_worker: int | None = None,
    memory_limit: int | str | None = None,
    pin_cpus: bool | None = None,
) -> WorkerSettings:
    """Resolve worker settings: argument > dask config > package default.

    Raises
    ------
    ParameterError
        For a non-positive worker count, thread count or memory limit.
    """
    threads = _positive_int("threads_per_worker", config.get("cluster.threads-per-worker", threads_per_worker))
    workers = config.get("cluster.n-workers", n_workers)
    if workers is None:
        workers = max(1, usable_cpus() // threads)
    workers = _positive_int("n_processes (workers)", workers)
    return WorkerSettings(
        n_workers=workers,
        threads_per_worker=threads,
        memory_limit=_memory_bytes(config.get("cluster.memory-limit", memory_limit), workers),
        pin_cpus=bool(config.get("cluster.pin-cpus", pin_cpus)),
        memory_fractions=dict(config.get("cluster.memory")),
    )
