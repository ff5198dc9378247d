"""Thread and CPU pinning of worker processes.

Three layers, each needed:

1. Environment variables (``OMP_NUM_THREADS`` ... ``OPENCV_FOR_THREADS_NUM``) set in the
   nanny's *pre-spawn* environment, so they hold before NumPy or OpenCV load in the worker.
   :class:`PinnedNanny` makes our values win over the user's shell, which dask's
   ``pre-spawn-environ`` config alone would not.
2. :class:`ThreadPinning`, a worker plugin that applies the same limits at run time with
   threadpoolctl and ``cv2.setNumThreads`` — the only layer that reaches workers we did
   not start — and optionally binds the worker to disjoint cores.
3. :func:`enforce_thread_limits`, called before every dview task, because importing
   CaImAn calls ``cv2.setNumThreads(0)`` and would undo layer 2.

glibc malloc: dask's default pre-spawn environment sets ``MALLOC_TRIM_THRESHOLD_``,
which also freezes glibc's dynamic mmap threshold at 128 KiB, so every large NumPy
temporary becomes a fresh ``mmap`` + page faults (the 1.4-2x slowdown of a dask dview
against a Pool on motion correction). We remove it, so workers allocate exactly like
a ``multiprocessing.Pool`` process does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from distributed import Nanny, WorkerPlugin

#: dask's pre-spawn variables we deliberately unset (see the module docstring).
MALLOC_VARS_REMOVED: tuple[str, ...] = ("MALLOC_TRIM_THRESHOLD_",)


class PinnedNanny(Nanny):
    """A nanny whose worker process gets ``thread_env`` before anything is imported.

    Parameters
    ----------
    thread_env : dict
        Variables forced into the worker's environment at spawn, overriding the
        nanny process's own environment.
    **kwargs
        Passed to :class:`distributed.Nanny`.
    """

    def __init__(self, *args: Any, thread_env: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name in MALLOC_VARS_REMOVED:
            self.pre_spawn_env.pop(name, None)
            self.env.pop(name, None)
            _unpoison(name)
        self.pre_spawn_env.update(thread_env or {})
        self.env.update(thread_env or {})


def _unpoison(name: str) -> None:
    """Drop ``name`` from our environment if dask's own pre-spawn default put it there.

    Plain dask nannies copy their pre-spawn variables into the parent's ``os.environ``;
    a value equal to dask's default came from there, not from the user.
    """
    import dask.config

    default = dask.config.get("distributed.nanny.pre-spawn-environ", {}).get(name)
    if default is not None and os.environ.get(name) == str(default):
        del os.environ[name]


def enforce_thread_limits(n_threads: int) -> None:
    """Re-apply the OpenCV thread count if OpenCV is loaded (cheap; per task)."""
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and cv2.getNumThreads() != n_threads:
        cv2.setNumThreads(n_threads)


def cores_for(index: int, threads_per_worker: int, available: list[int]) -> list[int] | None:
    """Disjoint cores for worker ``index``, or None when there are too few cores."""
    first = index * threads_per_worker
    if first + threads_per_worker > len(available):
        return None
    return available[first : first + threads_per_worker]


def bind_process(cores: list[int]) -> None:
    """Bind every thread of this process to ``cores`` (Linux sets affinity per thread)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except (ProcessLookupError, PermissionError):  # thread gone, or not ours
            continue


class ThreadPinning(WorkerPlugin):
    """Pin native thread pools (and optionally cores) inside each worker.

    Parameters
    ----------
    n_threads : int
        Threads for BLAS/OpenMP and OpenCV; use the worker's thread count.
    pin_cpus : bool
        Bind the worker process to disjoint cores, by the worker's integer name.
    available : list of int
        Cores to share out, in order (the client's affinity at setup).
    """

    name = "caiman-dask-thread-pinning"

    def __init__(self, n_threads: int, *, pin_cpus: bool = False, available: list[int] | None = None):
        self.n_threads = n_threads
        self.pin_cpus = pin_cpus
        self.available = list(available or [])
        self._limiter: Any = None

    def setup(self, worker: Any) -> None:
        """Apply the limits in the worker process."""
        import cv2
        from threadpoolctl import threadpool_limits

        self._limiter = threadpool_limits(limits=self.n_threads)
        cv2.setNumThreads(self.n_threads)
        worker.caiman_dask_threads = self.n_threads
        if self.pin_cpus and hasattr(os, "sched_setaffinity"):
            index = worker.name if isinstance(worker.name, int) else 0
            cores = cores_for(index, self.n_threads, self.available)
            if cores is not None:
                bind_process(cores)


def threading_report() -> dict[str, Any]:
    """Describe this process's native thread pools and affinity (run it in a worker)."""
    import cv2
    from threadpoolctl import threadpool_info

    pools = {f"{p['internal_api']}:{os.path.basename(p['filepath'])}": p["num_threads"]
             for p in threadpool_info()}
    return {
        "pid": os.getpid(),
        "threadpools": pools,
        "opencv_threads": cv2.getNumThreads(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MKL_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")},
    }
