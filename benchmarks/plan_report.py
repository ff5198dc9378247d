"""Chunk-plan reports for reference movies, and a real-zarr check of the rechunk choice.

Writes ``benchmarks/results/plan_report.json``:

- ``cases``: :func:`caiman_dask.plan.report` for the issue's target movie
  (512x512x3000 uint16, rf 25, stride 6, 100-frame blocks), the neurofinder-like
  movie (600x256x256, rf 25, stride 10) and CaImAn's demo-sized movie.
- ``measured`` (with ``--measure``): a generated float32 ``T x 512 x 512`` movie
  written block by block, then every CNMF patch read, for the plan that CNMF reads
  ``corrected`` directly (``rechunk=False``), for the plan with a rechunk pass, and for a
  store with dask's default ("auto") chunks; seconds per stage, in one process (zarr's own
  thread pool), on ``--dir``.

Usage: ``python benchmarks/plan_report.py [--measure] [--frames 600] [--dir /tmp]``
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import zarr

from caiman_dask.plan import ChunkPlan, plan_chunks, report

RESULTS = pathlib.Path(__file__).with_name("results") / "plan_report.json"
CASES = {
    "target-512x512x3000": dict(shape=(3000, 512, 512), rf=25, stride=6, num_frames_split=100),
    "neurofinder-600x256x256": dict(shape=(600, 256, 256), rf=25, stride=10,
                                    num_frames_split=100),
    "caiman-demo-1000x128x128": dict(shape=(1000, 128, 128), rf=16, stride=None,
                                     num_frames_split=80),
}


def plan_cases() -> dict[str, Any]:
    """Report every case in ``CASES`` (uint16 raw movies)."""
    out = {}
    for name, case in CASES.items():
        kwargs = {k: v for k, v in case.items() if k != "shape"}
        rep = report(plan_chunks(case["shape"], "uint16", **kwargs))
        out[name] = rep.to_dict()
        print(f"== {name}\n{rep.format()}\n", flush=True)
    return out


def synthetic_block(start: int, stop: int, frame: tuple[int, int]) -> np.ndarray:
    """Frames of a smooth image plus noise (compresses like a real movie, roughly)."""
    yy, xx = np.mgrid[0:frame[0], 0:frame[1]]
    base = (100 + 30 * np.sin(yy / 17.0) * np.cos(xx / 23.0)).astype(np.float32)
    rng = np.random.default_rng(start)
    return base + rng.normal(0, 5, (stop - start, *frame)).astype(np.float32)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_plan(plan: ChunkPlan, movie: np.ndarray, root: pathlib.Path) -> dict[str, float]:
    """Seconds to write the MC blocks, rechunk (if planned) and read every patch."""
    corrected = zarr.create_array(root / "corrected.zarr", **plan.corrected.zarr_kwargs())

    def write_blocks() -> None:
        for a, b in plan.time_blocks:
            corrected[a:b] = movie[a:b]

    stages = {"mc_write_s": timed(write_blocks)}
    source = corrected
    if plan.rechunked is not None:
        source = zarr.create_array(root / "rechunked.zarr", **plan.rechunked.zarr_kwargs())

        def rechunk() -> None:
            for region in plan.rechunk_regions():
                source[region] = corrected[region]

        stages["rechunk_s"] = timed(rechunk)
    T = plan.raw.shape[0]
    stages["patch_reads_s"] = timed(
        lambda: [source[0:T, p.y, p.x] for p in plan.patches()])
    stages["total_s"] = sum(stages.values())
    return stages


def measure_dask_default(movie: np.ndarray, root: pathlib.Path) -> dict[str, Any]:
    """The same writes and patch reads on a store with dask's default chunks."""
    from dask.array.core import normalize_chunks

    chunks = tuple(c[0] for c in normalize_chunks("auto", movie.shape, dtype=movie.dtype))
    store = zarr.create_array(root / "default.zarr", shape=movie.shape, dtype=movie.dtype,
                              chunks=chunks)
    stages = {"write_s": timed(lambda: store.__setitem__(slice(None), movie))}
    plan = plan_chunks(movie.shape, "uint16", rf=25, stride=6, num_frames_split=100)
    stages["patch_reads_s"] = timed(
        lambda: [store[0:movie.shape[0], p.y, p.x] for p in plan.patches()])
    return {"chunks": list(chunks), **stages}


def measure(frames: int, directory: str | None) -> dict[str, Any]:
    """Direct vs rechunk on a generated ``frames x 512 x 512`` float32 movie."""
    out: dict[str, Any] = {"shape": [frames, 512, 512], "zarr": zarr.__version__}
    movie = np.concatenate([synthetic_block(a, min(a + 100, frames), (512, 512))
                            for a in range(0, frames, 100)])
    for label, rechunk in (("direct", False), ("rechunk", True)):
        plan = plan_chunks((frames, 512, 512), "uint16", rf=25, stride=6,
                           num_frames_split=100, rechunk=rechunk)
        root = pathlib.Path(tempfile.mkdtemp(prefix="plan-bench-", dir=directory))
        try:
            out[label] = {"corrected_chunks": list(plan.corrected.chunks),
                          "cnmf_chunks": list(plan.cnmf_layout.chunks),
                          **measure_plan(plan, movie, root)}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(label, out[label], flush=True)
    root = pathlib.Path(tempfile.mkdtemp(prefix="plan-bench-", dir=directory))
    try:
        out["dask_default"] = measure_dask_default(movie, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("dask_default", out["dask_default"], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="time real zarr stores")
    parser.add_argument("--frames", type=int, default=600, help="frames of the measured movie")
    parser.add_argument("--dir", default=None, help="scratch directory for --measure")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"cases": plan_cases()}
    if args.measure:
        result["measured"] = measure(args.frames, args.dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
