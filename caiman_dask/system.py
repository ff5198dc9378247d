"""What this machine lets us use: CPUs and memory, honouring cgroups and affinity."""

from __future__ import annotations

import os

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
