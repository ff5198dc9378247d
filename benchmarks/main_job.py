"""The main job (``caiman_dask.pipeline.run``) timed in one mode, for the suite's cases.

A mode is ``"serial"`` (backend ``"single"``, in this process) or a worker count: a
LocalCluster of that many one-thread workers started here (its start is timed apart) and
passed to ``run`` as an existing Client. RSS of the client and of every worker process is
sampled with psutil in a thread while the job runs (:class:`RssSampler`).

Movies: the neurofinder crop (``NEUROFINDER``) and generated ones written in time blocks
to a uint16 ``.npy`` by :func:`write_synthetic` (``caiman_dask.synthetic``'s footprints,
spike trains, AR(2) calcium and neuropil; Poisson + read noise).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

SHARED = pathlib.Path(os.environ.get("CAIMAN_DASK_SHARED_DATA", "/work/shared/data"))
NEUROFINDER = SHARED / "neurofinder-00.00-crop"
# Derived from the data, as in benchmarks/cnmf.py (not tuned on the manual ROIs).
NEUROFINDER_SETTINGS = ["data.fr=7.0", "data.decay_time=1.0", "patch.rf=25", "patch.stride=10",
                        "patch.only_init=False", "init.K=8", "init.gSig=[5, 5]", "temporal.p=1",
                        "merging.merge_thr=0.8", "quality.min_SNR=2.5", "quality.rval_thr=0.8"]
SYNTHETIC_SETTINGS = ["data.fr=30.0", "data.decay_time=0.4", "patch.rf=32", "patch.stride=10",
                      "patch.only_init=False", "init.K=10", "init.gSig=[4, 4]", "temporal.p=1"]


@dataclass(frozen=True)
class MovieSpec:
    """A generated movie: frame shape, frames, neurons per 10,000 pixels, seed."""

    dims: tuple[int, int]
    frames: int
    density: float = 4.0
    seed: int = 0

    @property
    def n_neurons(self) -> int:
        """Neurons in the field of view."""
        return max(1, int(round(self.density * self.dims[0] * self.dims[1] / 1e4)))


@dataclass(frozen=True)
class NeurofinderInput:
    """The neurofinder movie to run on and its manual ROIs (both paths)."""

    movie: str
    regions: str


def neurofinder_input(work: pathlib.Path, *, frames: int | None = None,
                      side: int | None = None) -> NeurofinderInput:
    """The crop's tif and regions.json, or its first ``frames`` frames and top-left
    ``side`` x ``side`` pixels as a .npy with the ROIs wholly inside that corner."""
    tif, regions = NEUROFINDER / "movie.tif", NEUROFINDER / "regions.json"
    if frames is None and side is None:
        return NeurofinderInput(str(tif), str(regions))
    import tifffile

    movie = tifffile.imread(tif)[:frames, :side, :side]
    np.save(work / "neurofinder.npy", movie)
    rois = [r for r in json.loads(regions.read_text())
            if np.all(np.asarray(r["coordinates"]) < movie.shape[1])]
    (work / "regions.json").write_text(json.dumps(rois))
    return NeurofinderInput(str(work / "neurofinder.npy"), str(work / "regions.json"))


class RssSampler:
    """Peak RSS (bytes) of a set of processes, sampled every ``interval`` s in a thread."""

    def __init__(self, pids: dict[str, int], *, interval: float = 0.2):
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peaks = {name: 0 for name in pids}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def _sample(self) -> None:
        import psutil

        for name, proc in self.procs.items():
            try:
                self.peaks[name] = max(self.peaks[name], proc.memory_info().rss)
            except psutil.Error:  # a worker that died or restarted
                continue

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()


def write_synthetic(spec: MovieSpec, path: pathlib.Path, *, block: int = 200) -> pathlib.Path:
    """Write ``spec`` as a uint16 ``(T, Y, X)`` .npy, ``block`` frames at a time."""
    import scipy.signal
    import scipy.sparse as sp

    from caiman_dask.synthetic import ar2_coefficients, footprints, neuropil, spike_trains

    rng = np.random.default_rng(spec.seed)
    (d1, d2), T, K = spec.dims, spec.frames, spec.n_neurons
    centers = rng.uniform(6, np.asarray(spec.dims) - 7, size=(K, 2))
    A = sp.csc_matrix(footprints(rng, centers, spec.dims, gSig=4.0).astype(np.float32))
    g = ar2_coefficients(fr=30.0, decay_time=0.4, rise_time=0.05)
    S = spike_trains(rng, K=K, T=T, fr=30.0, rate=0.5) * 25.0
    C = scipy.signal.lfilter([1.0], [1.0, -g[0], -g[1]], S, axis=1).astype(np.float32)
    b, f = neuropil(spec.dims, T, level=20.0, fr=30.0)
    out = np.lib.format.open_memmap(path, "w+", np.uint16, (T, d1, d2))
    for t0 in range(0, T, block):
        t1 = min(t0 + block, T)
        rate = np.asarray(A @ (C[:, t0:t1] + 5.0)) + (b @ f[:, t0:t1]).astype(np.float32)
        noisy = rng.poisson(np.clip(rate, 0, None)) + rng.normal(0, 2.0, rate.shape)
        out[t0:t1] = np.clip(np.rint(noisy.T.reshape(t1 - t0, d2, d1).transpose(0, 2, 1)),
                             0, 65535).astype(np.uint16)
    out.flush()
    del out
    return path


def _start_cluster(workers: int, memory_limit: str) -> tuple[Any, Any, dict[str, int], float]:
    import caiman_dask

    start = time.perf_counter()
    client, view, _ = caiman_dask.setup_cluster(n_processes=workers, threads_per_worker=1,
                                                memory_limit=memory_limit)
    pids = {f"worker {i}": pid for i, pid in enumerate(client.run(os.getpid).values())}
    return client, view, pids, time.perf_counter() - start


def run_job(movie: str, work: pathlib.Path, *, mode: str, settings: list[str],
            regions: str | None = None, memory_limit: str = "2GB") -> dict[str, Any]:
    """Run the main job once in ``mode``; its time, stages, counts, scores and peak RSS."""
    import caiman_dask
    from caiman_dask.pipeline import run

    outdir = work / f"run-{mode}-{time.monotonic_ns()}"
    client, view, pids, startup = None, None, {}, 0.0
    if mode != "serial":
        client, view, pids, startup = _start_cluster(int(mode), memory_limit)
    pids["client"] = os.getpid()
    try:
        with RssSampler(pids) as sampler:
            start = time.perf_counter()
            run(movie, str(outdir), overrides=settings, backend=client or "single",
                report=False, regions=regions)
            seconds = time.perf_counter() - start
    finally:
        if view is not None:
            caiman_dask.stop_server(view)
    summary = json.loads((outdir / "summary.json").read_text())
    shutil.rmtree(outdir, ignore_errors=True)
    return {"mode": mode, "seconds": seconds, "cluster_start_seconds": startup,
            "stages": stage_seconds(summary["stages"]),
            "n_components": summary["n_components"], "n_accepted": summary["n_accepted"],
            "scores": {k: {m: v[m] for m in ("f1", "precision", "recall", "n_found", "n_true")}
                       for k, v in summary.get("scores", {}).items()},
            "peak_rss": sampler.peaks, "memory_limit": memory_limit if client else None,
            "n_patches": summary["stages"]["cnmf"].get("patches_computed")}


def stage_seconds(stages: dict[str, Any]) -> dict[str, float]:
    """Flatten the summary's stages into ``{name: seconds}`` (CNMF's sub-stages inlined)."""
    out: dict[str, float] = {}
    for name, info in stages.items():
        out[name] = float(info["seconds"])
        for sub, seconds in (info.get("timings") or {}).items():
            out[f"{name}.{sub}"] = float(seconds)
    return out


def movie_shape(path: str) -> tuple[int, int, int]:
    """(T, Y, X) of a .npy or .tif movie."""
    if path.endswith(".npy"):
        return tuple(np.load(path, mmap_mode="r").shape)  # type: ignore[return-value]
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tuple(tif.series[0].shape)  # type: ignore[return-value]
