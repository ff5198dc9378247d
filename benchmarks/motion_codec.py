"""Codec of the motion-corrected store: write and read time per block against size.

Corrected float32 blocks (``correct_block`` on the generated 512x512 movie of
``benchmarks/motion.py`` and on the neurofinder crop, the time blocks of their chunk plans)
are written into a store laid out by ``plan.corrected`` with each codec of
``caiman_dask.movie.zarrio.CORRECTED_CODECS``, interleaved, ``--reps`` times. Reported per
codec: write and read seconds per block (min / median), compression ratio (float32 bytes /
bytes on disk; below 1 where shards are padded), and write time relative to the block's
registration time (``correct_block`` in the same run). The machine's load average is recorded.

Run: ``python benchmarks/motion_codec.py [--reps N] [--out FILE]``; writes
benchmarks/results/motion_codec.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import tempfile
from typing import Any

from common import pin_threads

pin_threads(1)  # before NumPy

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tifffile  # noqa: E402
import zarr  # noqa: E402
from common import stats, timed, write  # noqa: E402
from motion import synthetic  # noqa: E402
from motion_maths import NEUROFINDER  # noqa: E402

from caiman_dask.motion import MotionParams, correct_block, driver  # noqa: E402
from caiman_dask.movie.store import PlanOptions  # noqa: E402
from caiman_dask.movie.zarrio import CORRECTED_CODECS, corrected_codecs  # noqa: E402
from caiman_dask.plan import plan_chunks  # noqa: E402


def folder_bytes(path: pathlib.Path) -> int:
    """Bytes of every file below ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(frames: np.ndarray, folder: pathlib.Path, reps: int) -> dict[str, Any]:
    """Write/read seconds per block and size ratio for every codec, interleaved."""
    plan = plan_chunks(frames.shape, str(frames.dtype), **dataclasses.asdict(PlanOptions()))
    start, stop = plan.time_blocks[0]
    params = MotionParams()
    sample = frames[driver.template_indices(len(frames))]
    params = driver.with_min_mov(params, sample)
    template = driver.rigid_template(sample, params)
    register, result = timed(lambda: correct_block(frames[start:stop], template, params))
    block, layout = result.corrected, plan.corrected
    arrays = {}
    for name in CORRECTED_CODECS:
        group = zarr.create_group(zarr.storage.LocalStore(folder / name), zarr_format=3)
        arrays[name] = group.create_array(
            "movie", shape=layout.shape, dtype=layout.dtype, chunks=layout.chunks,
            shards=layout.shards, compressors=corrected_codecs(name), fill_value=0,
            config={"write_empty_chunks": True})
    times: dict[str, dict[str, list[float]]] = {n: {"write": [], "read": []} for n in arrays}
    for _ in range(reps):
        for name, array in arrays.items():
            times[name]["write"].append(timed(lambda a=array: a.__setitem__(
                slice(start, stop), block))[0])
            times[name]["read"].append(timed(lambda a=array: a[start:stop])[0])
    out = {"block_frames": stop - start, "block_bytes": int(block.nbytes),
           "register_seconds": register, "codecs": {}}
    for name, seconds in times.items():
        write_s = stats(seconds["write"])
        out["codecs"][name] = {
            "write": write_s, "read": stats(seconds["read"]),
            "ratio": block.nbytes / folder_bytes(folder / name),
            "write_vs_register": write_s["median"] / register}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    cv2.setNumThreads(1)
    movies = {"synthetic_512": synthetic(160)[0]}
    if NEUROFINDER.exists():
        movies["neurofinder_256"] = tifffile.imread(NEUROFINDER)[:160]
    load_before = os.getloadavg()
    results = {}
    for name, frames in movies.items():
        folder = pathlib.Path(tempfile.mkdtemp(prefix="motion-codec-"))
        try:
            results[name] = measure(frames, folder, opts.reps)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    path = write("motion_codec", {"load_average_before": load_before,
                                  "load_average_after": os.getloadavg(),
                                  "results": results}, opts.out)
    for name, result in results.items():
        print(name, f"register {result['register_seconds']:.3f} s/block")
        for codec, entry in result["codecs"].items():
            print(f"  {codec:15s} write {entry['write']['median']:.3f} read "
                  f"{entry['read']['median']:.3f} ratio {entry['ratio']:.2f} "
                  f"write/register {entry['write_vs_register']:.2f}")
    print("wrote", path)


if __name__ == "__main__":
    main()
