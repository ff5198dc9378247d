"""Shared by every benchmark: machine description, statistics, JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PACKAGES = ("numpy", "scipy", "dask", "distributed", "zarr", "opencv-python-headless",
            "tifffile", "h5py", "caiman-dask")


def pin_threads(n: int = 1) -> None:
    """Set native thread pools to ``n`` threads; call before NumPy is imported."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        os.environ[name] = str(n)


def machine() -> dict[str, Any]:
    """CPUs, memory, platform and package versions of this run."""
    import psutil

    from caiman_dask.system import usable_cpus, usable_memory

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "host": platform.node(), "platform": platform.platform(),
        "python": platform.python_version(), "cpus_usable": usable_cpus(),
        "cpus_logical": psutil.cpu_count(), "memory_usable": usable_memory(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "first_touch_s_per_gib": first_touch_seconds_per_gib(),
        "versions": versions, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def first_touch_seconds_per_gib(mib: int = 256) -> float:
    """Seconds per GiB to write a fresh array: the machine's first-touch cost.

    Some virtual machines (Firecracker, as the one these results come from) back guest
    memory lazily and take freed memory back within seconds: every new page-cache page and
    every large array allocated after a pause then costs a host fault, ~3-5 s per GiB
    there against ~0.2 s per GiB for memory the process just reused. Recorded with each
    run because it moves every I/O-heavy number.
    """
    import numpy as np

    start = time.perf_counter()
    block = np.empty(mib << 20, np.uint8)
    block[::4096] = 1
    return (time.perf_counter() - start) * 1024 / mib


def stats(values: list[float]) -> dict[str, float]:
    """min / median / max / n of repeated measurements."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "n": len(values), "values": values}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` and its value."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def write(name: str, payload: dict[str, Any], out: str | os.PathLike | None = None) -> pathlib.Path:
    """Write ``payload`` plus the machine description as JSON; return the path."""
    path = pathlib.Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2,
                               default=float))
    return path
