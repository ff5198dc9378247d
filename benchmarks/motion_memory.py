"""Peak memory of motion correction on a long movie: 2 workers at a 2 GB limit each.

A 512x512 uint16 movie (default 20,000 frames, ~10 GB) is stream-generated straight into a
caiman-dask store in a temporary folder (a blob field moved by a sub-pixel random walk,
Gaussian noise; one block at a time, never whole in memory), then corrected rigidly with
``motion_correct`` on ``setup_cluster(n_processes=2, threads_per_worker=1,
memory_limit="2GB")``. psutil samples the RSS of each worker process (a thread started
there with ``client.run``) and of this client process every 0.1 s during the correction.
The folder is deleted afterwards; free disk is checked first (raw + float32 output).

Run: ``python benchmarks/motion_memory.py [--frames N] [--quick] [--pw-rigid] [--tmp DIR]
[--out FILE]``; writes ``benchmarks/results/motion_memory.json``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import tempfile
import threading
import time
from typing import Any

from common import pin_threads

pin_threads(1)  # before NumPy

import cv2  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402
from common import timed, write  # noqa: E402

import caiman_dask as cd  # noqa: E402
from caiman_dask.motion import MotionParams  # noqa: E402
from caiman_dask.motion.driver import MAX_TEMPLATE_BLOCKS, motion_correct  # noqa: E402
from caiman_dask.movie import Movie, MovieMetadata, to_zarr  # noqa: E402
from caiman_dask.synthetic import random_walk  # noqa: E402

SIZE, BLOCK, SEED = 512, 80, 0


def field_image(size: int = SIZE, seed: int = SEED) -> np.ndarray:
    """A float32 field of Gaussian blobs on a smooth background."""
    rng = np.random.default_rng(seed)
    points = np.zeros((size, size))
    points[rng.integers(0, size, 900), rng.integers(0, size, 900)] = rng.uniform(500, 2000, 900)
    background = 300 + 3000 * ndi.gaussian_filter(rng.standard_normal((size, size)), 25)
    return (ndi.gaussian_filter(points, 2.5) * 40 + background).astype(np.float32)


def generated_movie(n_frames: int) -> Movie:
    """A lazy movie whose blocks are generated on demand (shifted field + noise)."""
    field = field_image()
    walk = random_walk(np.random.default_rng(SEED + 1), n_frames, step=0.5, limit=4.0)

    def block(block_info: dict | None = None) -> np.ndarray:
        (start, stop), _, _ = block_info[None]["array-location"]
        rng = np.random.default_rng([SEED, start])
        out = np.empty((stop - start, SIZE, SIZE), np.uint16)
        matrix = np.eye(2, 3, dtype=np.float32)
        for index, (dy, dx) in enumerate(walk[start:stop]):
            matrix[:, 2] = (dx, dy)
            moved = cv2.warpAffine(field, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
            moved += rng.standard_normal(moved.shape, np.float32) * 30
            out[index] = np.clip(moved, 0, 65535)
        return out

    data = da.map_blocks(block, dtype=np.uint16,
                         chunks=(_chunks(n_frames), (SIZE,), (SIZE,)))
    meta = MovieMetadata(fr=30.0, dxy=None, dims=("T", "Y", "X"), dtype="uint16", sources=(),
                         shape=(n_frames, SIZE, SIZE), format="generated")
    return Movie(data=data, metadata=meta)


def _chunks(n_frames: int) -> tuple[int, ...]:
    full, rest = divmod(n_frames, BLOCK)
    return (BLOCK,) * full + ((rest,) if rest else ())


def start_sampler(dask_worker: Any, interval: float = 0.1) -> int:
    """In a worker (``client.run`` passes it): sample this process's RSS; return the pid."""
    worker = dask_worker
    worker.rss_peak = 0
    worker.rss_sampling = True
    process = psutil.Process()

    def sample() -> None:
        while worker.rss_sampling:
            worker.rss_peak = max(worker.rss_peak, process.memory_info().rss)
            time.sleep(interval)

    threading.Thread(target=sample, daemon=True, name="rss-sampler").start()
    return os.getpid()


def stop_sampler(dask_worker: Any) -> int:
    """In a worker: stop sampling; return the peak RSS in bytes."""
    worker = dask_worker
    worker.rss_sampling = False
    return int(worker.rss_peak)


class LocalSampler:
    """Peak RSS of this process, sampled in a thread while in the ``with`` block."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.peak, self._run = interval, 0, False
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process()
        while self._run:
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> LocalSampler:
        self._run = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._run = False
        self._thread.join()


def check_disk(folder: pathlib.Path, n_frames: int) -> int:
    """Free bytes in ``folder``; SystemExit if the raw + float32 stores might not fit."""
    need = int(n_frames * SIZE * SIZE * (2 + 4) * 1.1)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise SystemExit(f"{folder}: {free / 1e9:.1f} GB free, need ~{need / 1e9:.1f} GB for "
                         f"{n_frames} frames: use --tmp on a larger disk or fewer --frames")
    return free


def correct(store: str, dest: str, params: MotionParams, memory_limit: str) -> dict[str, Any]:
    """Correct on 2 workers at ``memory_limit``; time and peak RSS of workers and client."""
    client, view, _ = cd.setup_cluster(n_processes=2, threads_per_worker=1,
                                       memory_limit=memory_limit)
    try:
        pids = client.run(start_sampler)
        start_rss = psutil.Process().memory_info().rss
        with LocalSampler() as local:
            seconds, result = timed(lambda: motion_correct(store, dest, params=params,
                                                           view=view))
        peaks = client.run(stop_sampler)
    finally:
        cd.stop_server(view)
    return {"seconds": seconds, "client_peak_rss": local.peak, "client_rss_at_start": start_rss,
            "worker_peak_rss": {str(pids[w]): peaks[w] for w in peaks},
            "frames_flagged": int(np.count_nonzero(result.flags))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 frames")
    parser.add_argument("--pw-rigid", action="store_true")
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--tmp", default=None, help="folder for the temporary stores")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    n_frames = 2_000 if opts.quick else opts.frames
    cv2.setNumThreads(1)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="motion-memory-", dir=opts.tmp))
    try:
        free = check_disk(folder, n_frames)
        store, dest = str(folder / "movie.zarr"), str(folder / "corrected.zarr")
        load_before = os.getloadavg()
        with LocalSampler() as gen:
            convert_s, _ = timed(lambda: to_zarr(generated_movie(n_frames), store,
                                                 progress=False))
        result = correct(store, dest, MotionParams(pw_rigid=opts.pw_rigid), opts.memory_limit)
        sizes = {name: sum(f.stat().st_size for f in (folder / name).rglob("*") if f.is_file())
                 for name in ("movie.zarr", "corrected.zarr")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    payload = {"frames": n_frames, "shape": [SIZE, SIZE], "dtype": "uint16",
               "raw_bytes": n_frames * SIZE * SIZE * 2, "store_bytes_on_disk": sizes,
               "disk_free_before": free, "workers": 2, "threads_per_worker": 1,
               "memory_limit": opts.memory_limit, "pw_rigid": opts.pw_rigid,
               "corrected_codec": cd.config.get("store.corrected-codec"),
               "max_template_blocks": MAX_TEMPLATE_BLOCKS,
               "generate_convert_seconds": convert_s, "generate_client_peak_rss": gen.peak,
               "load_average_before": load_before, "load_average_after": os.getloadavg(),
               **result, "fps": n_frames / result["seconds"]}
    path = write("motion_memory", payload, opts.out)
    print(f"{n_frames} frames in {result['seconds']:.1f} s ({payload['fps']:.0f} fps); "
          f"peak RSS workers {[f'{v / 1e9:.2f} GB' for v in result['worker_peak_rss'].values()]}"
          f", client {result['client_peak_rss'] / 1e9:.2f} GB; wrote {path}")


if __name__ == "__main__":
    main()
