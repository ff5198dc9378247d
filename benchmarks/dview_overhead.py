"""dview overhead: Dask dview vs multiprocessing.Pool, same inputs, same run.

(a) per-task overhead over no-op tasks (Pool-default chunking, as CaImAn calls
    ``map_async``, and chunksize=1);
(b) a task shaped like a motion-correction block: FFT phase correlation plus a cubic
    ``cv2.warpAffine`` of 100 float32 512x512 frames read from a shared ``.npy`` by path,
    through a Pool, our dview, and a dview on a plain dask LocalCluster (dask's default
    ``MALLOC_TRIM_THRESHOLD_``), with minor page faults per task;
(c) our dview on a cluster whose scheduler does not queue tasks
    (``distributed.scheduler.worker-saturation: inf``): how much of (a) is Dask's queuing,
    which sends a worker its next task only when one finishes (a round trip per task), and
    which caiman-dask keeps on because it bounds the memory of the converter's dask graphs.

Run: ``python benchmarks/dview_overhead.py [--quick] [--out FILE]``. Targets: (a) <= 1 ms
per task; (b) Dask/Pool time ratio <= 1.05.
"""

from __future__ import annotations

import argparse

from common import pin_threads

pin_threads(1)  # before NumPy: the Pool and our workers then run one thread each

import multiprocessing  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from common import stats, timed, write  # noqa: E402

WORKERS = 2


def noop(x: int) -> int:
    return x


def mc_block(args: tuple[str, int, int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Register frames [start, stop) of a .npy movie to ``template``; return shifts, mean, faults."""
    path, start, stop, template = args
    faults0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    frames = np.load(path, mmap_mode="r")[start:stop]
    ny, nx = template.shape
    ft = np.conj(np.fft.rfft2(template))
    shifts = np.zeros((len(frames), 2), np.float32)
    total = np.zeros_like(template)
    for i, frame in enumerate(frames):
        xc = np.fft.irfft2(np.fft.rfft2(frame) * ft, s=template.shape)
        dy, dx = np.unravel_index(int(np.argmax(xc)), xc.shape)
        dy, dx = (dy + ny // 2) % ny - ny // 2, (dx + nx // 2) % nx - nx // 2
        shifts[i] = (-dy, -dx)
        warp = np.float32([[1, 0, -dx], [0, 1, -dy]])
        total += cv2.warpAffine(np.asarray(frame), warp, (nx, ny), flags=cv2.INTER_CUBIC,
                                borderMode=cv2.BORDER_REFLECT)
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults0
    return shifts, total / len(frames), faults


def _worker_saturation(dask_scheduler) -> float:
    """The scheduler's ``worker-saturation`` (run on the scheduler)."""
    return float(dask_scheduler.WORKER_SATURATION)


def make_movie(folder: pathlib.Path, n_frames: int, size: int) -> tuple[str, np.ndarray]:
    """A .npy movie of a blob field jittered frame by frame, and its template."""
    rng = np.random.default_rng(0)
    template = cv2.GaussianBlur(rng.random((size, size), np.float32), (0, 0), 3) * 100
    movie = np.lib.format.open_memmap(folder / "movie.npy", "w+", np.float32,
                                      (n_frames, size, size))
    for t in range(n_frames):
        dy, dx = rng.integers(-4, 5, 2)
        movie[t] = np.roll(template, (dy, dx), (0, 1)) + rng.normal(0, 1, template.shape)
    movie.flush()
    return str(folder / "movie.npy"), template


def block_args(path: str, template: np.ndarray, n_frames: int, block: int) -> list[tuple]:
    return [(path, s, min(s + block, n_frames), template) for s in range(0, n_frames, block)]


def run_pool(pool, fn, args, chunksize=None):
    return pool.map_async(fn, args, chunksize).get(3600)


def run_view(view, fn, args, chunksize=None):
    return view.map_async(fn, args, chunksize).get(3600)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer frames and repetitions")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/dview_overhead.json)")
    opts = parser.parse_args(argv)
    reps, n_frames, n_noop = (2, 400, 400) if opts.quick else (5, 800, 1000)

    import dask
    import distributed

    import caiman_dask as cd
    from caiman_dask.view import DaskPool

    # The Pool forks first, before any thread exists (as in a CaImAn script): forking
    # after the Dask client has started its threads can deadlock the children.
    pool = multiprocessing.Pool(WORKERS)
    client, view, _ = cd.setup_cluster(n_processes=WORKERS, threads_per_worker=1)
    plain = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1,
                                     dashboard_address=":0", host="127.0.0.1")
    plain_client = distributed.Client(plain)
    plain_view = DaskPool(plain_client)
    with dask.config.set({"distributed.scheduler.worker-saturation": float("inf")}):
        _, unqueued_view, _ = cd.setup_cluster(n_processes=WORKERS, threads_per_worker=1)
    saturation = unqueued_view.client.run_on_scheduler(_worker_saturation)
    runners = {"pool": lambda f, a, c=None: run_pool(pool, f, a, c),
               "dask": lambda f, a, c=None: run_view(view, f, a, c),
               "dask_default_malloc": lambda f, a, c=None: run_view(plain_view, f, a, c),
               "dask_no_queuing": lambda f, a, c=None: run_view(unqueued_view, f, a, c)}
    result: dict = {"workers": WORKERS, "noop_tasks": n_noop, "mc_frames": n_frames,
                    "mc_block_frames": 100, "frame_shape": [512, 512],
                    "dask_no_queuing_worker_saturation": saturation}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path, template = make_movie(pathlib.Path(tmp), n_frames, 512)
            args = block_args(path, template, n_frames, 100)
            times: dict[str, dict[str, list[float]]] = {k: {} for k in runners}
            faults: dict[str, list[float]] = {k: [] for k in runners}
            for _ in range(reps):  # interleaved, so load changes hit every runner alike
                for name, run in runners.items():
                    for label, fn, a, c in (("noop_default_chunks", noop, range(n_noop), None),
                                            ("noop_chunksize_1", noop, range(n_noop), 1),
                                            ("mc_block", mc_block, args, 1)):
                        seconds, value = timed(lambda: run(fn, list(a), c))
                        times[name].setdefault(label, []).append(seconds)
                        if label == "mc_block":
                            faults[name].append(float(np.mean([v[2] for v in value])))
    finally:
        pool.terminate()
        plain_client.close()
        plain.close()
        cd.stop_server(view)
        cd.stop_server(unqueued_view)
    for name in runners:
        result[name] = {label: stats(v) for label, v in times[name].items()}
        result[name]["minor_faults_per_block"] = stats(faults[name])
        for label in ("noop_default_chunks", "noop_chunksize_1"):
            result[name][label]["ms_per_task"] = 1000 * result[name][label]["median"] / n_noop
    med = {n: result[n]["mc_block"]["median"] for n in runners}
    result["ratios"] = {"mc_block_dask_over_pool": med["dask"] / med["pool"],
                        "mc_block_dask_default_malloc_over_pool":
                            med["dask_default_malloc"] / med["pool"],
                        "mc_block_dask_no_queuing_over_pool":
                            med["dask_no_queuing"] / med["pool"]}
    result["targets"] = {"mc_block_dask_over_pool_max": 1.05, "ms_per_task_max": 1.0}
    out = write("dview_overhead", result, opts.out)
    print(f"wrote {out}")
    for name in runners:
        print(f"{name:22s} mc_block median {result[name]['mc_block']['median']:.2f} s, "
              f"faults/block {result[name]['minor_faults_per_block']['median']:.0f}, "
              f"noop {result[name]['noop_default_chunks']['ms_per_task']:.3f} ms/task "
              f"(chunksize 1: {result[name]['noop_chunksize_1']['ms_per_task']:.3f})")
    print("ratios", result["ratios"])


if __name__ == "__main__":
    main()
