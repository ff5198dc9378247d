"""The machine's two-core ceiling: the same kernel alone, then in two processes at once.

A 2-worker speedup can be no better than what the machine gives two copies of the same
work. Compute-bound kernels get close to 2x on two cores; kernels that stream memory
share its bandwidth and get less, so stages made of them (refinement products, FFT
registration) have a lower ceiling than the patch fits. Each kernel runs with one
BLAS/OpenMP thread per process, ``reps`` times alone and then in 2 spawned processes that
start together after their set-up (the slower of the two), three times interleaved;
``two_core_speedup = 2 * median(alone) / median(both)``. On a VM the share of the host's
cores changes from minute to minute, so the ceiling is measured in the same run as the
speedups it bounds.

Kernels:

- ``matmul``: 400 x 400 float64 products (compute-bound);
- ``stream``: a 160 MB array scaled into another (memory bandwidth);
- ``fft``: real FFTs of 64 float32 frames of 512 x 512 (motion correction's kernel);
- ``cnmf_patch``: ``fit_patch`` on a generated 48 x 48 x 600 patch (CNMF's patch task).

Run: ``python benchmarks/ceiling.py [--out FILE]`` (default
``benchmarks/results/ceiling.json``); ``case_pipeline.py`` records it in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.common import pin_threads, write  # noqa: E402

pin_threads(1)

import numpy as np  # noqa: E402

KERNELS: dict[str, int] = {"matmul": 20, "stream": 40, "fft": 4, "cnmf_patch": 6}


def _matmul(reps: int) -> Callable[[], None]:
    a = np.random.default_rng(0).random((400, 400))

    def work() -> None:
        for _ in range(20 * reps):
            a @ a
    return work


def _stream(reps: int) -> Callable[[], None]:
    a = np.random.default_rng(0).random(20_000_000)
    b = np.empty_like(a)

    def work() -> None:
        for _ in range(reps):
            np.multiply(a, 1.0001, out=b)
    return work


def _fft(reps: int) -> Callable[[], None]:
    a = np.random.default_rng(0).random((64, 512, 512)).astype(np.float32)

    def work() -> None:
        for _ in range(reps):
            np.fft.rfft2(a)
    return work


def _cnmf_patch(reps: int) -> Callable[[], None]:
    from caiman_dask.cnmf import CNMFParams, fit_patch
    from caiman_dask.synthetic import make_movie

    movie = make_movie(dims=(48, 48), T=600, K=8, seed=1)
    params = CNMFParams().replace(init={"K": 8, "gSig": (4, 4)}, data={"fr": 30.0})
    fit_patch(movie.Y, params)  # warm: imports and first-call costs are not measured

    def work() -> None:
        for _ in range(reps):
            fit_patch(movie.Y, params)
    return work


SETUP = {"matmul": _matmul, "stream": _stream, "fft": _fft, "cnmf_patch": _cnmf_patch}


def run_kernel(kind: str, reps: int, start: Any = None, results: Any = None) -> float:
    """Seconds for ``reps`` repetitions of ``kind`` (set-up not timed). With a barrier
    ``start``, wait there first (so that copies run at once) and put the time in
    ``results``."""
    work = SETUP[kind](reps)
    if start is not None:
        start.wait(timeout=600)
    t0 = time.perf_counter()
    work()
    seconds = time.perf_counter() - t0
    if results is not None:
        results.put(seconds)
    return seconds


def at_once(kind: str, reps: int, copies: int = 2) -> float:
    """Seconds of the slowest of ``copies`` processes started together after set-up."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(copies), ctx.Queue()
    procs = [ctx.Process(target=run_kernel, args=(kind, reps, start, results))
             for _ in range(copies)]
    for proc in procs:
        proc.start()
    times = [results.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return max(times)


def two_core_ceiling(kernels: dict[str, int] | None = None, *,
                     rounds: int = 3) -> dict[str, dict[str, Any]]:
    """Per kernel: seconds alone and with two copies at once (``rounds`` interleaved
    pairs: a VM's share of its host's cores changes from minute to minute), and the
    speedup of the medians."""
    out = {}
    for kind, reps in (kernels or KERNELS).items():
        alone, both = [], []
        for _ in range(rounds):
            alone.append(run_kernel(kind, reps))
            both.append(at_once(kind, reps))
        out[kind] = {"reps": reps, "alone_s": alone, "two_at_once_s": both,
                     "two_core_speedup": 2 * float(np.median(alone)) / float(np.median(both))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    print(write("ceiling", {"kernels": two_core_ceiling()}, opts.out))


if __name__ == "__main__":
    main()
