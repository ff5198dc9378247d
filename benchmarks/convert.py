"""Conversion throughput and peak memory: ``to_zarr`` vs ``tifffile.imread`` + ``np.save``.

Movies: the neurofinder crop (600x256x256 uint16, zlib TIFF) and a generated uint16
512x512 TIFF of >= 4 GB (8192 frames; ``--quick``: 1024 frames, 0.5 GB), written
streamed into a temporary directory and deleted afterwards. Each movie is converted
in-process (threads), on 2 worker processes (the project's ``setup_cluster``, and a plain
``LocalCluster`` for comparison) and by the baseline, repeatedly and interleaved; the
medians are compared (the machine may be shared). CPU seconds per GB (this process plus
the workers) are recorded as a load-independent cost. Peak RSS is sampled by a thread
with psutil every 20 ms: this process, and each worker process when a client is used.

Run: ``python benchmarks/convert.py [--quick] [--out FILE]``. Targets: throughput >= 80%
of the baseline's, peak RSS < 1 GB (process, and each worker).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psutil
import tifffile
from common import write

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
NEUROFINDER = SHARED / "neurofinder-00.00-crop" / "movie.tif"
FRAME = (512, 512)
TARGETS = {"throughput_ratio_min": 0.8, "peak_rss_max_bytes": 1 << 30}


class RssSampler(threading.Thread):
    """Record the peak RSS of some processes until stopped."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peaks = dict.fromkeys(pids, 0)
        self.interval = interval
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for pid, proc in self.procs.items():
                try:
                    self.peaks[pid] = max(self.peaks[pid], proc.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(self.interval)

    def stop(self) -> dict[int, int]:
        self._done.set()
        self.join()
        return self.peaks


def measured(fn: Callable[[], Any], nbytes: int, worker_pids: list[int]) -> dict[str, Any]:
    """Run ``fn`` while sampling RSS; return seconds, MB/s and peaks (bytes)."""
    me = os.getpid()
    before = psutil.Process(me).memory_info().rss
    cpu_before = _cpu_seconds([me, *worker_pids])
    sampler = RssSampler([me, *worker_pids])
    sampler.start()
    start = time.perf_counter()
    try:
        fn()
    finally:
        seconds = time.perf_counter() - start
        peaks = sampler.stop()
    cpu = _cpu_seconds([me, *worker_pids]) - cpu_before
    return {"seconds": seconds, "mb_per_s": nbytes / 1e6 / seconds,
            "cpu_seconds_per_gb": cpu / (nbytes / 1e9), "load_average": os.getloadavg()[0],
            "peak_rss_process": peaks[me], "rss_before_process": before,
            "peak_rss_workers": [peaks[p] for p in worker_pids]}


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (load-independent cost)."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def make_tiff(path: pathlib.Path, n_frames: int) -> None:
    """Write an uncompressed BigTIFF movie frame by frame (never all in memory)."""
    rng = np.random.default_rng(0)
    base = rng.integers(100, 2000, FRAME, dtype=np.uint16)

    def frames() -> Iterator[np.ndarray]:
        for _ in range(n_frames):
            yield base + rng.integers(0, 256, FRAME, dtype=np.uint16)

    tifffile.imwrite(path, frames(), shape=(n_frames, *FRAME), dtype=np.uint16, bigtiff=True,
                     photometric="minisblack")


def warm_up() -> None:
    """Import what the tasks use, so the first timed run does not pay for it."""
    import caiman_dask.movie  # noqa: F401


def baseline(src: pathlib.Path, out: pathlib.Path) -> None:
    """What a user does without us: read the whole movie, save it as .npy."""
    np.save(out, tifffile.imread(src))


def _remove(path: pathlib.Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.unlink(missing_ok=True)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median throughput, largest peaks, and every run."""
    return {"mb_per_s": statistics.median(r["mb_per_s"] for r in runs),
            "seconds": statistics.median(r["seconds"] for r in runs),
            "cpu_seconds_per_gb": statistics.median(r["cpu_seconds_per_gb"] for r in runs),
            "peak_rss_process": max(r["peak_rss_process"] for r in runs),
            "peak_rss_workers": [max(w) for w in zip(*(r["peak_rss_workers"] for r in runs))],
            "runs": runs}


def bench_movie(src: pathlib.Path, work: pathlib.Path, clients: dict[str, Any],
                repeats: int) -> dict[str, Any]:
    """Convert ``src`` in-process, on each client, and by the baseline, ``repeats`` times
    interleaved (load changes hit all alike); outputs are deleted after each run."""
    from caiman_dask.movie import open_movie

    movie = open_movie(src)
    nbytes = int(movie.data.nbytes)
    runs = _methods(src, clients)
    pids = {name: list(c.run(os.getpid).values()) for name, c in clients.items()}
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    result: dict[str, Any] = {"source": str(src), "shape": list(movie.shape),
                              "dtype": str(movie.dtype), "bytes": nbytes,
                              "file_bytes": src.stat().st_size, "repeats": repeats}
    out = work / "out.zarr"
    for _ in range(repeats):
        for name, fn in runs.items():
            found[name].append(measured(lambda: fn(out), nbytes, pids.get(name, [])))
            if name == "in_process" and "store_bytes" not in result:
                result.update(_store_facts(out))
            _remove(out)
            _remove(out.with_suffix(".npy"))
    for name in runs:
        result[name] = _summary(found[name])
    base = result["baseline_imread_np_save"]["mb_per_s"]
    for name in runs:
        result[name]["throughput_ratio"] = result[name]["mb_per_s"] / base
    return result


def _methods(src: pathlib.Path, clients: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    from caiman_dask.movie import to_zarr

    runs: dict[str, Callable[..., Any]] = {"in_process": lambda out: to_zarr(src, out)}
    for name, client in clients.items():
        runs[name] = lambda out, c=client: to_zarr(src, out, client=c)
    runs["baseline_imread_np_save"] = lambda out: baseline(src, out.with_suffix(".npy"))
    return runs


def _store_facts(store: pathlib.Path) -> dict[str, Any]:
    from caiman_dask.movie import open_movie

    plan = open_movie(store).metadata.plan
    return {"plan_raw": plan["raw"] if plan else None,
            "store_bytes": sum(p.stat().st_size for p in store.rglob("*") if p.is_file())}


@contextlib.contextmanager
def clusters() -> Iterator[dict[str, Any]]:
    """Two 2-worker clusters: the project's ``setup_cluster`` and a plain LocalCluster."""
    import distributed

    import caiman_dask as cd

    client, view, _ = cd.setup_cluster(n_processes=2, threads_per_worker=1)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as plain, \
                distributed.Client(plain) as plain_client:
            both = {"client_setup_cluster": client, "client_plain_localcluster": plain_client}
            for c in both.values():
                c.run(warm_up)
            yield both
    finally:
        cd.stop_server(view)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 0.5 GB movie instead of 4 GB")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/convert.json)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each method on the generated movie (default 2)")
    opts = parser.parse_args(argv)
    n_frames = 1024 if opts.quick else 8192
    payload: dict[str, Any] = {"targets": TARGETS, "generated_frames": n_frames}
    with tempfile.TemporaryDirectory(prefix="caiman-dask-bench-") as tmp, clusters() as both:
        work = pathlib.Path(tmp)
        if NEUROFINDER.exists():
            payload["neurofinder"] = bench_movie(NEUROFINDER, work, both, repeats=3)
        big = work / "generated.tif"
        start = time.perf_counter()
        make_tiff(big, n_frames)
        payload["generate_seconds"] = time.perf_counter() - start
        payload["generated"] = bench_movie(big, work, both, repeats=opts.repeats)
    out = write("convert", payload, opts.out)
    print(f"wrote {out}")
    for key in ("neurofinder", "generated"):
        if key in payload:
            _print(key, payload[key])


def _print(key: str, result: dict[str, Any]) -> None:
    base = result["baseline_imread_np_save"]
    print(f"{key}: {result['bytes'] / 1e9:.2f} GB; baseline {base['mb_per_s']:.0f} MB/s, "
          f"{base['cpu_seconds_per_gb']:.2f} CPU s/GB, peak RSS "
          f"{base['peak_rss_process'] / 2**20:.0f} MiB")
    for name, run in result.items():
        if not isinstance(run, dict) or "runs" not in run or name.startswith("baseline"):
            continue
        workers = ", ".join(f"{w / 2**20:.0f}" for w in run["peak_rss_workers"]) or "-"
        print(f"  {name:26s} {run['mb_per_s']:5.0f} MB/s ({run['throughput_ratio']:.2f}x "
              f"baseline), {run['cpu_seconds_per_gb']:.2f} CPU s/GB, peak RSS process "
              f"{run['peak_rss_process'] / 2**20:.0f} MiB, workers {workers} MiB")


if __name__ == "__main__":
    main()
