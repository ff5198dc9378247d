"""What this machine lets us use: CPUs and memory, honouring cgroups and affinity."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import dask.system
import psutil


def usable_cpus() -> int:
    """Return the CPUs this process may use (cgroup quota and affinity honoured).

    ``dask.system.CPU_COUNT`` reads the CPU affinity mask and the cgroup CPU quota;
    ``psutil.cpu_count()``, which CaImAn uses, ignores both.
    """
    return max(1, int(dask.system.CPU_COUNT))


def usable_memory() -> int:
    """Return the bytes of memory this process may use (cgroup limit honoured)."""
    from distributed.system import MEMORY_LIMIT

    return int(MEMORY_LIMIT)


def affinity() -> list[int]:
    """Return the sorted CPU ids this process may run on (all CPUs where unsupported)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(psutil.cpu_count() or 1))


F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is no such function (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give the heap memory freed so far back to the operating system (glibc only).

    glibc keeps freed blocks below its (self-raising) mmap threshold for reuse, so after
    a task that held large arrays a worker's RSS stays high although nothing is live, and
    the next task's arrays land on top: the nanny, which watches RSS, sees the sum.
    """
    trim = _libc_trim()
    if trim is not None:
        trim(0)


def releases_memory(fn: F) -> F:
    """Run a task, then :func:`release_free_memory` (what it freed goes back to the OS).

    For tasks that end a stage's use of large arrays (a rechunk shard, a patch fit):
    released pages are faulted in again when reused, which costs about 0.5 s per GiB, so
    tasks repeated many times on arrays of the same size (refinement bands) do without.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            release_free_memory()

    return wrapper  # type: ignore[return-value]
