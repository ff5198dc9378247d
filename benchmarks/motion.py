"""Motion correction end to end: the Dask driver against the bare maths, the floor and Suite2p.

Movies: a generated 512x512 uint16 movie (a static blob field moved by a known sub-pixel
random walk within +-4 px, inside the default ``max_shifts`` (6) with room for the
template's offset, by ``caiman_dask.synthetic.move_frames``; Poisson noise) and
the neurofinder crop (600x256x256 uint16, already registered: its truth is ~0 shift).
Each is converted once with ``to_zarr`` (chunks "auto"); then, interleaved in every
repetition, with default parameters (rigid, then ``pw_rigid=True``):

- ``driver_1w`` / ``driver_2w``: ``motion_correct`` store -> new store on a
  ``setup_cluster(n_processes=N, threads_per_worker=1)`` dview, timed end to end and by
  phase (template sample read, template refinement in the client, each pass);
- ``bare``: ``correct_block`` over the same time blocks in this process, frames in memory,
  against the template the driver computes from the same sample (one pass);
- ``floor``: one FFT cross-correlation + one cubic warp per frame (``motion_maths.floor``);
- ``suite2p``: Suite2p's registration of the same frames in a subprocess
  (``--suite2p-python``), skipped when it is not given or fails to import.

The machine's two-core ceiling for registration's kernels (``ceiling.py``: FFTs and a
memory stream, alone vs two processes at once) is measured first, to read ``speedup_2w``
against.

Ratios: ``driver_overhead`` = the 1-worker driver's last pass / bare (the pass that reads,
registers and writes every frame; the template step and pw-rigid's extra rigid pass are
reported beside it), ``speedup_2w`` = end to end 1 worker / 2 workers,
``rigid_vs_floor_per_worker`` = end-to-end frames/s per worker / floor frames/s.
Shift error: RMS over frames of (found + true displacement), mean removed (the template
defines the origin), in px.

Run: ``python benchmarks/motion.py [--quick] [--reps N] [--frames N]
[--suite2p-python /tmp/s2p/bin/python] [--out FILE]``; writes benchmarks/results/motion.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from common import pin_threads

pin_threads(1)  # before NumPy

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402
import tifffile  # noqa: E402
from ceiling import two_core_ceiling  # noqa: E402
from common import stats, timed, write  # noqa: E402
from motion_maths import NEUROFINDER, floor  # noqa: E402

import caiman_dask as cd  # noqa: E402
from caiman_dask.motion import (  # noqa: E402
    MotionParams,
    correct_block,
    driver,  # noqa: E402
)
from caiman_dask.movie import open_store, to_zarr  # noqa: E402
from caiman_dask.synthetic import move_frames, random_walk  # noqa: E402

# Run by --suite2p-python: argv = frames.npy, nonrigid 0/1, torch threads; prints JSON.
# The register_fake wrapper is the torchvision workaround of real-services.md.
SUITE2P_CODE = '''
import json, sys, time
import numpy as np
import torch
_register_fake = torch.library.register_fake
def _tolerant(op, func=None, /, **kwargs):
    """Skip fake kernels for torchvision ops the CPU torch does not have (real-services.md)."""
    def apply(fn):
        try:
            return _register_fake(op, **kwargs)(fn)
        except RuntimeError:
            return fn
    return apply if func is None else apply(func)
torch.library.register_fake = _tolerant
from suite2p.parameters import default_settings
from suite2p.registration.register import registration_wrapper
path, nonrigid, threads = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
torch.set_num_threads(threads)
frames = np.clip(np.load(path), 0, 32767).astype(np.int16)
settings = default_settings()
reg = settings.get("registration", settings)
reg["nonrigid"] = nonrigid
start = time.perf_counter()
out = registration_wrapper(frames, settings=reg, device=torch.device("cpu"))
seconds = time.perf_counter() - start
import suite2p
print(json.dumps({"seconds": seconds, "threads": threads, "version": suite2p.version,
                  "shifts": np.stack([out["yoff"], out["xoff"]], 1).tolist()}))
'''
MODES = {"rigid": MotionParams(), "pw_rigid": MotionParams(pw_rigid=True)}


def synthetic(n_frames: int, size: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint16 frames of a blob field moved by a known random walk, and the walk (n, 2)."""
    rng = np.random.default_rng(seed)
    points = np.zeros((size, size))
    points[rng.integers(0, size, 900), rng.integers(0, size, 900)] = rng.uniform(500, 2000, 900)
    background = 300 + 150 * ndi.gaussian_filter(rng.standard_normal((size, size)), 25) * 20
    field = (ndi.gaussian_filter(points, 2.5) * 40 + background).astype(np.float32)
    walk = random_walk(rng, n_frames, step=0.8, limit=4.0)
    frames = np.empty((n_frames, size, size), np.uint16)
    for start in range(0, n_frames, 100):
        part = walk[start:start + 100]
        moved = move_frames(np.broadcast_to(field, (len(part), size, size)), part)
        frames[start:start + 100] = np.clip(rng.poisson(np.clip(moved, 1, None)), 0, 65535)
    return frames, walk


def shift_error(found: np.ndarray, truth: np.ndarray | None) -> float | None:
    """RMS (px) of found shift + true displacement over frames, mean offset removed."""
    if truth is None:
        return float(np.sqrt(np.mean(np.sum((found - found.mean(0)) ** 2, axis=1))))
    residual = found + truth
    residual = residual - residual.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(residual ** 2, axis=1))))


class PhaseClock:
    """Seconds spent in the driver's phases during one ``motion_correct`` call."""

    def __init__(self) -> None:
        self.phases: dict[str, Any] = {}

    def _wrap(self, fn: Callable, name: str) -> Callable:
        def timed_phase(*args: Any, **kwargs: Any) -> Any:
            seconds, value = timed(lambda: fn(*args, **kwargs))
            if name == "passes":
                self.phases.setdefault(name, []).append(seconds)
            else:
                self.phases[name] = self.phases.get(name, 0.0) + seconds
            return value
        return timed_phase

    @contextlib.contextmanager
    def watching(self) -> Iterator[PhaseClock]:
        """Time ``read_sample``, ``rigid_template`` and each ``run_pass`` of the driver."""
        names = {"read_sample": "sample_read", "rigid_template": "template", "run_pass": "passes"}
        originals = {attr: getattr(driver, attr) for attr in names}
        for attr, name in names.items():
            setattr(driver, attr, self._wrap(originals[attr], name))
        try:
            yield self
        finally:
            for attr, fn in originals.items():
                setattr(driver, attr, fn)


def run_driver(view: Any, store: str, dest: str, params: MotionParams,
               truth: np.ndarray | None) -> dict[str, Any]:
    """One end-to-end ``motion_correct``; seconds by phase and the shift error."""
    clock = PhaseClock()
    with clock.watching():
        seconds, result = timed(lambda: driver.motion_correct(store, dest, params=params,
                                                               view=view))
    shutil.rmtree(dest)
    phases = clock.phases
    return {"total": seconds, "last_pass": phases["passes"][-1],
            "extra_passes": sum(phases["passes"][:-1]),
            "template_step": phases["sample_read"] + phases["template"],
            "sample_read": phases["sample_read"], "template": phases["template"],
            "rest": seconds - sum(phases["passes"]) - phases["sample_read"]
            - phases["template"],
            "shift_error": shift_error(result.rigid_shifts, truth)}


def run_bare(frames: np.ndarray, blocks: list[tuple[int, int]], template: np.ndarray,
             params: MotionParams) -> dict[str, Any]:
    """``correct_block`` over ``blocks`` of in-memory frames (one pass)."""
    def one_pass() -> np.ndarray:
        return np.concatenate([correct_block(frames[a:b], template, params).rigid_shifts
                               for a, b in blocks])
    seconds, _ = timed(one_pass)
    return {"total": seconds, "last_pass": seconds}


def run_suite2p(python: str | None, frames_path: str, nonrigid: bool,
                truth: np.ndarray | None, threads: int = 1) -> dict[str, Any] | None:
    """Suite2p's registration in a subprocess; None when skipped or failed."""
    if python is None:
        return None
    command = [python, "-c", SUITE2P_CODE, frames_path, str(int(nonrigid)), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PYTHONPATH": ""})
    if done.returncode != 0:
        print("suite2p failed:", done.stderr[-2000:], file=sys.stderr)
        return None
    out = json.loads(done.stdout.strip().splitlines()[-1])
    found = -np.asarray(out.pop("shifts"), float)  # Suite2p's (yoff, xoff): the motion
    return {"total": out["seconds"], "last_pass": out["seconds"], **out,
            "shift_error": shift_error(found, truth)}


def prepare(frames: np.ndarray, folder: pathlib.Path, name: str) -> tuple[str, Any, str]:
    """The movie's store (converted once), its chunk plan and a .npy copy for Suite2p."""
    tif, store, npy = folder / f"{name}.tif", str(folder / f"{name}.zarr"), folder / f"{name}.npy"
    tifffile.imwrite(tif, frames)
    to_zarr(str(tif), store, progress=False)
    np.save(npy, frames)
    tif.unlink()
    plan = driver.plan_for(open_store(store), MotionParams(), None)
    return store, plan, str(npy)


def runners(frames: np.ndarray, truth: np.ndarray | None, store: str, plan: Any, npy: str,
            views: dict[str, Any], folder: pathlib.Path, opts: argparse.Namespace
            ) -> dict[str, Callable[[], dict[str, Any] | None]]:
    """Every measured configuration of one movie, by name."""
    sample = frames[driver.template_indices(len(frames))]
    template = driver.rigid_template(sample, driver.with_min_mov(MotionParams(), sample))
    mean = frames[:: max(1, len(frames) // 50)].astype(np.float32).mean(axis=0)
    out: dict[str, Callable[[], dict[str, Any] | None]] = {
        "floor": lambda: {"total": timed(lambda: floor(frames, mean))[0]}}
    for mode, params in MODES.items():
        params = driver.with_min_mov(params, sample)
        out[f"bare_{mode}"] = (lambda p=params: run_bare(frames, plan.time_blocks, template, p))
        for label, view in views.items():
            dest = str(folder / f"out-{label}-{mode}.zarr")
            out[f"driver_{label}_{mode}"] = (
                lambda v=view, d=dest, p=params: run_driver(v, store, d, p, truth))
        if opts.suite2p_python:
            out[f"suite2p_{mode}"] = (lambda nr=mode == "pw_rigid": run_suite2p(
                opts.suite2p_python, npy, nr, truth, opts.suite2p_threads))
    return out


def summarize(frames: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Frames/s (min/median/max) of every phase of every configuration, and the ratios."""
    result: dict[str, Any] = {}
    for name, reps in runs.items():
        if not reps or any(r is None for r in reps):
            result[name] = "skipped"
            continue
        entry = {key: stats([r[key] for r in reps]) for key in reps[0]
                 if isinstance(reps[0][key], float) and key not in ("shift_error", "seconds")}
        entry["fps"] = stats([frames / r["total"] for r in reps])
        if "last_pass" in reps[0]:
            entry["fps_last_pass"] = stats([frames / r["last_pass"] for r in reps])
        if reps[0].get("shift_error") is not None:
            entry["shift_error_px"] = reps[0]["shift_error"]
        result[name] = entry
    return {"runs": result, "ratios": ratios(result)}


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """The brief's targets, from medians."""
    def med(name: str, key: str = "total") -> float:
        return float(result[name][key]["median"])
    out = {}
    for mode in MODES:
        one, two = f"driver_1w_{mode}", f"driver_2w_{mode}"
        if isinstance(result.get(one), dict) and isinstance(result.get(two), dict):
            out[f"{mode}_driver_overhead_last_pass"] = med(one, "last_pass") / med(
                f"bare_{mode}", "last_pass") - 1
            out[f"{mode}_speedup_2w_end_to_end"] = med(one) / med(two)
            out[f"{mode}_speedup_2w_last_pass"] = med(one, "last_pass") / med(two, "last_pass")
            out[f"{mode}_1w_end_to_end_vs_floor"] = med("floor") / med(one)
            out[f"{mode}_2w_end_to_end_per_worker_vs_floor"] = med("floor") / med(two) / 2
    return out


def measure(frames: np.ndarray, truth: np.ndarray | None, name: str, views: dict[str, Any],
            opts: argparse.Namespace) -> dict[str, Any]:
    """Interleaved repetitions of every configuration on one movie."""
    with tempfile.TemporaryDirectory(dir=opts.tmp) as tmp:
        folder = pathlib.Path(tmp)
        store, plan, npy = prepare(frames, folder, name)
        todo = runners(frames, truth, store, plan, npy, views, folder, opts)
        for key, run in todo.items():  # warm-up: imports, worker caches, first allocations
            if not key.startswith("suite2p"):
                run()
        runs: dict[str, list[Any]] = {key: [] for key in todo}
        load = [os.getloadavg()]
        for rep in range(opts.reps):
            for key, run in todo.items():
                if not key.startswith("suite2p") or rep < opts.suite2p_reps:
                    runs[key].append(run())
            load.append(os.getloadavg())
    out = {"frames": len(frames), "shape": list(frames.shape[1:]), "dtype": str(frames.dtype),
           "time_blocks": len(plan.time_blocks), "block_frames": MotionParams().num_frames_split,
           "load_average_per_rep": load}
    return {**out, **summarize(len(frames), runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=1200, help="synthetic movie frames")
    parser.add_argument("--quick", action="store_true", help="400 synthetic frames, 2 reps")
    parser.add_argument("--suite2p-python", default=None, help="python of a Suite2p venv")
    parser.add_argument("--suite2p-threads", type=int, default=1)
    parser.add_argument("--suite2p-reps", type=int, default=1,
                        help="repetitions that include Suite2p (it is slow)")
    parser.add_argument("--tmp", default=None, help="folder for the temporary stores")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    if opts.quick:
        opts.reps, opts.frames = 2, 400
    cv2.setNumThreads(1)
    ceiling = two_core_ceiling({"fft": 2, "stream": 20}, rounds=1 if opts.quick else 3)
    movies = {"synthetic_512": synthetic(opts.frames)}
    if NEUROFINDER.exists():
        movies["neurofinder_256"] = (tifffile.imread(NEUROFINDER), None)
    views: dict[str, Any] = {}
    try:
        for n in (1, 2):
            views[f"{n}w"] = cd.setup_cluster(n_processes=n, threads_per_worker=1)[1]
        results = {name: measure(frames, truth, name, views, opts)
                   for name, (frames, truth) in movies.items()}
    finally:
        for view in views.values():
            cd.stop_server(view)
    path = write("motion", {"threads_per_worker": 1, "suite2p_threads": opts.suite2p_threads,
                            "corrected_codec": cd.config.get("store.corrected-codec"),
                            "two_core_ceiling": ceiling, "results": results}, opts.out)
    print("two-core ceiling", {k: round(v["two_core_speedup"], 2) for k, v in ceiling.items()})
    for name, result in results.items():
        print(name, json.dumps({k: round(v, 3) for k, v in result["ratios"].items()}))
        for key, run in result["runs"].items():
            print(f"  {key:22s}", run if isinstance(run, str) else
                  f"{run['fps']['median']:8.1f} fps  err {run.get('shift_error_px')}")
    print("wrote", path)


if __name__ == "__main__":
    main()
