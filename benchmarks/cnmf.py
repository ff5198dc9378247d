"""CNMF driver benchmark: neurofinder F1, stage times, peak RSS; serial vs 1 vs 2 workers.

    python benchmarks/cnmf.py                  # neurofinder crop, serial / 1 / 2 workers
    python benchmarks/cnmf.py --modes 2        # one mode only
    python benchmarks/cnmf.py --big            # + generated 512x512x20000 movie, 2 x 3 GB

Writes benchmarks/results/cnmf.json (``--out`` to change). Parameters: the documented
neurofinder file docs/params/neurofinder.json: gSig 5 px (neurons ~10 px across at this
magnification), rf 25 / stride 10 (CaImAn's tuned grid for this movie), data.fr 7 Hz and
decay_time 1 s (GCaMP6s at neurofinder's 7 Hz); merge thresholds chosen on this movie
(docs/cnmf.md lists what was tried).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.common import pin_threads, write  # noqa: E402

pin_threads(1)

import numpy as np  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
NEUROFINDER = SHARED / "neurofinder-00.00-crop"
#: The documented neurofinder parameters (docs/cnmf.md explains each choice).
PARAMS_FILE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "params" / "neurofinder.json"
PARAMS: dict[str, Any] = json.loads(PARAMS_FILE.read_text())


def peak_rss() -> int:
    """Peak resident bytes of this process: Linux ``VmHWM`` (ru_maxrss would carry over
    the parent's peak into spawned workers), else ru_maxrss."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _view(mode: str, memory: str) -> tuple[Any, Any]:
    import caiman_dask
    from caiman_dask.view import SerialView

    if mode == "serial":
        return None, SerialView()
    client, dview, _ = caiman_dask.setup_cluster(n_processes=int(mode), threads_per_worker=1,
                                                 memory_limit=memory)
    return client, dview


def _close(client: Any, view: Any) -> dict[str, int]:
    import caiman_dask

    if client is None:
        view.shutdown()
        return {"client": peak_rss()}
    rss = client.run(peak_rss)
    caiman_dask.stop_server(view)
    return rss


def run_mode(store: str, mode: str, work: pathlib.Path, params: dict[str, Any],
             memory: str = "4GB") -> tuple[dict[str, Any], Any]:
    """Fit CNMF in one mode; stage times, peak RSS per worker, the result."""
    from caiman_dask.cnmf.driver import fit_cnmf

    client, view = _view(mode, memory)
    pids = set(client.run(os.getpid).values()) if client is not None else set()
    start = time.perf_counter()
    try:
        result = fit_cnmf(store, params=params, view=view, work_dir=str(work / f"w-{mode}"))
        # a restarted worker's peak starts again: count them (0 = the peaks are the run's)
        restarts = len(set(client.run(os.getpid).values()) - pids) if client else 0
    finally:
        rss = _close(client, view)
    total = time.perf_counter() - start
    est = result.estimates
    return {"mode": mode, "seconds_total": total, "stages": result.timings,
            "peak_rss_per_worker": rss, "worker_restarts": restarts,
            "n_patches": len(result.patches),
            "n_candidates": result.n_candidates, "n_after_merge": result.n_merged,
            "n_components": int(est.A.shape[1]),
            "n_accepted": int(len(est.idx_components))}, result


def scores(result: Any) -> dict[str, Any]:
    """F1 under both criteria, accepted and all (candidate recall before evaluation)."""
    from caiman_dask.results import load_regions, score_both

    est = result.estimates
    truth = load_regions(NEUROFINDER / "regions.json", dims=est.dims)
    out = {}
    for name, A in (("accepted", est.A[:, est.idx_components]), ("all", est.A)):
        both = score_both(A, truth, dims=est.dims)
        out[name] = {k: v.as_dict() | {"pairs": None, "values": None} for k, v in both.items()}
    return out


def neurofinder(modes: list[str], work: pathlib.Path) -> dict[str, Any]:
    """Convert the crop, fit it in every mode, score against the 124 manual ROIs."""
    from caiman_dask.movie import to_zarr

    store = str(work / "neurofinder.zarr")
    start = time.perf_counter()
    to_zarr(str(NEUROFINDER / "movie.tif"), store, rf=25, stride=10, fr=7.0)
    convert = time.perf_counter() - start
    runs = []
    for mode in modes:
        info, result = run_mode(store, mode, work, PARAMS)
        info["stages"] = {"convert": convert, **info["stages"]}
        info["score"] = scores(result)
        runs.append(info)
        print(mode, {k: round(v, 1) for k, v in info["stages"].items()},
              {k: round(v["f1"], 3) for k, v in info["score"]["accepted"].items()}, flush=True)
    return {"params": PARAMS, "runs": runs}


BIG = {"dims": (512, 512), "T": 20000, "K": 600, "block": 50, "seed": 0}
BIG_PARAMS: dict[str, Any] = {
    "data": {"fr": 30.0, "decay_time": 0.4},
    "patch": {"rf": 25, "stride": 6, "only_init": False},
    "init": {"K": 8, "gSig": [4, 4], "tsub": 2}, "temporal": {"p": 1},
}


def _big_truth(rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    """Sparse footprints (npix, K) and calcium traces (K, T) of the big movie."""
    import scipy.signal
    import scipy.sparse as sp

    from caiman_dask.synthetic import ar2_coefficients, footprints, spike_trains

    dims, T, K = BIG["dims"], BIG["T"], BIG["K"]
    centers = rng.uniform(6, np.asarray(dims) - 7, size=(K, 2))
    A = sp.csc_matrix(footprints(rng, centers, dims, gSig=4.0).astype(np.float32))
    g = ar2_coefficients(fr=30.0, decay_time=0.4, rise_time=0.05)
    S = spike_trains(rng, K=K, T=T, fr=30.0, rate=0.5) * 25.0
    C = scipy.signal.lfilter([1.0], [1.0, -g[0], -g[1]], S, axis=1).astype(np.float32)
    return A, C


def _big_block(block_info: Any = None, *, A: Any, C: np.ndarray) -> np.ndarray:
    """Frames ``[t0, t1)``: neurons + flat background 20 + Gaussian photon/read noise."""
    (t0, t1), _, _ = block_info[None]["array-location"]
    d1, d2 = BIG["dims"]
    rate = np.asarray(A @ C[:, t0:t1]).T + 20.0
    rng = np.random.default_rng((BIG["seed"], t0))
    noisy = rate + np.sqrt(rate + 4.0) * rng.standard_normal(rate.shape, dtype=np.float32)
    frames = noisy.reshape(t1 - t0, d2, d1).transpose(0, 2, 1)
    return np.clip(np.rint(frames), 0, 65535).astype(np.uint16)


def truth_scores(est: Any, truth: Any) -> dict[str, Any]:
    """F1 of the accepted and of all components against the generated footprints."""
    from caiman_dask.results import score_both

    out = {}
    for name, A in (("accepted", est.A[:, est.idx_components]), ("all", est.A)):
        both = score_both(A, truth, dims=est.dims)
        out[name] = {k: {m: v.as_dict()[m] for m in ("f1", "precision", "recall", "n_found",
                                                    "n_true")} for k, v in both.items()}
    return out


def big_movie(work: pathlib.Path) -> dict[str, Any]:
    """Stream-generate 512x512x20000 into a store, then CNMF on 2 workers of 3 GB."""
    import dask.array as da

    from caiman_dask.movie import to_zarr
    from caiman_dask.movie.model import Movie, MovieMetadata

    A, C = _big_truth(np.random.default_rng(BIG["seed"]))
    T, (d1, d2) = BIG["T"], BIG["dims"]
    data = da.zeros((T, d1, d2), dtype=np.uint16, chunks=(BIG["block"], d1, d2)).map_blocks(
        lambda x, block_info=None: _big_block(block_info, A=A, C=C), dtype=np.uint16)
    meta = MovieMetadata(fr=30.0, dxy=None, dims=("T", "Y", "X"), dtype="uint16", sources=())
    store = str(work / "big.zarr")
    start = time.perf_counter()
    to_zarr(Movie(data=data, metadata=meta), store, rf=25, stride=6, fr=30.0)
    convert = time.perf_counter() - start
    info, result = run_mode(store, "2", work, BIG_PARAMS, memory="3GB")
    info["stages"] = {"generate+convert": convert, **info["stages"]}
    info["client_peak_rss"] = peak_rss()
    info["score_vs_truth"] = truth_scores(result.estimates, A)
    print("big", info, flush=True)
    return {"movie": {**BIG, "dims": list(BIG["dims"])}, "params": BIG_PARAMS, **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default="serial,1,2",
                        help="comma-separated: serial, 1, 2 (workers); 'none' skips neurofinder")
    parser.add_argument("--big", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="caiman-dask-bench-cnmf-"))
    try:
        payload: dict[str, Any] = {}
        if args.modes != "none":
            payload["neurofinder"] = neurofinder(args.modes.split(","), work)
        if args.big:
            payload["big"] = big_movie(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(write("cnmf", payload, args.out))


if __name__ == "__main__":
    main()
