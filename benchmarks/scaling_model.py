"""A scaling model of the main job: measured task costs -> predicted wall time on W workers.

Pure functions (no Dask): costs are calibrated from one measured 1-worker run of the main
job (``suite_pipeline.json``) and the scheduler's per-task overhead
(``dview_overhead.json``); patch and block counts come from :mod:`caiman_dask.geometry`.

Model, per stage (assumptions in :class:`Assumptions`, written out in docs/scaling.md):

- motion: ``ceil(n_blocks / W)`` rounds of one block task; a block's cost is the measured
  seconds per frame-pixel times its frames x pixels;
- CNMF patches: ``ceil(n_patches / W)`` rounds of one (mean) patch task, seconds per
  patch-pixel-frame measured;
- parallel rest (convert, rechunk, refinement in pixel blocks): measured seconds / W;
- client rest (merging, evaluation): measured seconds, not divided;
- each parallel stage takes max(compute, I/O), I/O = bytes / min(aggregate, W x per-worker
  bandwidth); the scheduler adds ``overhead x tasks`` (it is one thread);
- costs scale as ``(frames / measured frames) ** frames_exponent`` x pixels ratio, the
  exponent measured by the growth case but never below 1 (:func:`extrapolation_exponent`).

Run: ``python benchmarks/scaling_model.py [--results DIR] [--write docs/scaling.md]``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from caiman_dask.errors import ParameterError
from caiman_dask.geometry import patch_grid, time_blocks

CLIENT_STAGES = ("cnmf.merge", "cnmf.evaluate")
PARALLEL_STAGES = ("convert", "cnmf.rechunk", "cnmf.refine")


@dataclass(frozen=True)
class MovieShape:
    """Frames, frame shape, bytes per pixel (4: float32, CaImAn's working type)."""

    frames: int
    dims: tuple[int, int]
    bytes_per_pixel: int = 4

    @property
    def pixels(self) -> int:
        """Pixels per frame."""
        return self.dims[0] * self.dims[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole movie."""
        return self.frames * self.pixels * self.bytes_per_pixel


@dataclass(frozen=True)
class Geometry:
    """CaImAn's CNMF patch grid and motion time blocks."""

    rf: int = 32
    stride: int = 10
    num_frames_split: int = 80


@dataclass(frozen=True)
class Assumptions:
    """What the model takes as given (bandwidths in bytes/s, overhead in s/task)."""

    io_bandwidth: float = 2e9
    worker_io_bandwidth: float = 2e8
    task_overhead: float = 1e-3
    frames_exponent: float = 1.0
    io_passes: float = 4.0


@dataclass(frozen=True)
class Costs:
    """Seconds measured on one worker, and the movie they were measured on."""

    movie: MovieShape
    motion: float
    patches: float
    parallel_rest: float
    client_rest: float


@dataclass(frozen=True)
class Prediction:
    """Predicted seconds, by part, for one worker count."""

    workers: int
    motion: float
    patches: float
    parallel_rest: float
    client_rest: float
    io: float
    scheduler: float
    total: float


def fit_exponent(x: Any, y: Any) -> float:
    """Least-squares slope of log(y) on log(x): ``y ~ x ** slope``.

    Raises
    ------
    ParameterError
        With fewer than two distinct positive ``x`` or any non-positive value.
    """
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if xs.size < 2 or xs.shape != ys.shape or np.ptp(xs) == 0 or not (
            np.all(xs > 0) and np.all(ys > 0)):
        raise ParameterError(f"need >= 2 distinct positive x and positive y, got x={x}, y={y}")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def fit_offset_exponent(x: Any, y: Any, *, steps: int = 400) -> tuple[float, float]:
    """Fixed cost and exponent of ``y ~ a + b * x ** k``: ``(a, k)``, least squares in logs.

    A run's fixed costs (cluster start, template, imports) bend the plain log-log slope of
    :func:`fit_exponent` below 1 on small movies; this separates them from the per-frame
    cost whose growth the exponent should describe. ``a`` is searched on a grid over
    ``[0, min(y))``.

    Raises
    ------
    ParameterError
        With fewer than three points, or as :func:`fit_exponent`.
    """
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if xs.size < 3:
        raise ParameterError(f"need >= 3 points to fit a fixed cost and an exponent, got {x}")
    fit_exponent(xs, ys)  # the same checks
    logx = np.log(xs)

    def misfit(a: float) -> float:
        logy = np.log(ys - a)
        slope, icept = np.polyfit(logx, logy, 1)
        return float(np.sum((logy - (slope * logx + icept)) ** 2))

    grid = np.linspace(0.0, ys.min(), steps, endpoint=False)
    best = int(np.argmin([misfit(a) for a in grid]))
    step = grid[1] - grid[0]
    a = minimize_scalar(misfit, bounds=(max(0.0, grid[best] - step),
                                        min(grid[best] + step, ys.min() * (1 - 1e-9))),
                        method="bounded", options={"xatol": 1e-6}).x
    return float(a), float(np.polyfit(logx, np.log(ys - a), 1)[0])


def task_counts(movie: MovieShape, geometry: Geometry) -> dict[str, float]:
    """Motion blocks, CNMF patches and mean patch pixels (from caiman_dask.geometry)."""
    patches = patch_grid(movie.dims, rf=geometry.rf, stride=geometry.stride)
    sizes = [(p.y.stop - p.y.start) * (p.x.stop - p.x.start) for p in patches]
    blocks = time_blocks(movie.frames, num_frames_split=geometry.num_frames_split)
    return {"blocks": len(blocks), "patches": len(patches),
            "patch_pixels": float(np.mean(sizes))}


def costs_from_run(stages: dict[str, float], movie: MovieShape, *,
                   total: float | None = None) -> Costs:
    """Costs from a 1-worker run's ``{stage: seconds}`` (as main_job.stage_seconds gives).

    Time outside the named stages (CNMF's saving, the summary; the run's ``total`` beyond
    its stages) counts as client time.
    """
    cnmf_parts = sum(v for k, v in stages.items() if k.startswith("cnmf."))
    unnamed = max(0.0, stages.get("cnmf", cnmf_parts) - cnmf_parts)
    if total is not None:
        top = sum(v for k, v in stages.items() if "." not in k)
        unnamed += max(0.0, total - top)
    return Costs(movie=movie, motion=stages.get("motion", 0.0),
                 patches=stages.get("cnmf.patches", 0.0),
                 parallel_rest=sum(stages.get(s, 0.0) for s in PARALLEL_STAGES),
                 client_rest=sum(stages.get(s, 0.0) for s in CLIENT_STAGES) + unnamed)


def _scale(costs: Costs, movie: MovieShape, assumptions: Assumptions) -> float:
    ratio_t = movie.frames / costs.movie.frames
    return ratio_t ** assumptions.frames_exponent * movie.pixels / costs.movie.pixels


def _rounds(n_tasks: float, workers: int) -> float:
    return math.ceil(n_tasks / workers) / n_tasks


def predict(costs: Costs, movie: MovieShape, workers: int, *, geometry: Geometry = Geometry(),
            assumptions: Assumptions = Assumptions()) -> Prediction:
    """Predicted wall time of the main job on ``movie`` with ``workers`` one-thread workers."""
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}: ask for at least one")
    scale = _scale(costs, movie, assumptions)
    counts = task_counts(movie, geometry)
    motion = costs.motion * scale * _rounds(counts["blocks"], workers)
    patches = costs.patches * scale * _rounds(counts["patches"], workers)
    parallel = costs.parallel_rest * scale / workers
    io = assumptions.io_passes * movie.nbytes / min(assumptions.io_bandwidth,
                                                    workers * assumptions.worker_io_bandwidth)
    compute = motion + patches + parallel
    n_tasks = 2 * counts["blocks"] + counts["patches"] + workers
    scheduler = n_tasks * assumptions.task_overhead
    client = costs.client_rest * scale
    return Prediction(workers=workers, motion=motion, patches=patches, parallel_rest=parallel,
                      client_rest=client, io=io, scheduler=scheduler,
                      total=max(compute, io) + client + scheduler)


def calibrate(pipeline: dict[str, Any], dview: dict[str, Any] | None = None
              ) -> tuple[Costs, Geometry, Assumptions, dict[str, float]]:
    """Costs from ``suite_pipeline.json``'s synthetic 1-worker run; measured wall times."""
    case = pipeline["synthetic"]
    frames, d1, d2 = case["shape"]
    movie = MovieShape(frames, (d1, d2))
    run = min(case["runs"]["1"], key=lambda r: r["seconds"])
    settings = dict(s.split("=", 1) for s in case["settings"])
    geometry = Geometry(rf=int(settings["patch.rf"]), stride=int(settings["patch.stride"]))
    assumptions = Assumptions()
    if dview is not None:
        ms = dview["dask"]["noop_chunksize_1"]["ms_per_task"]
        assumptions = replace(assumptions, task_overhead=ms / 1000)
    measured = {m: case["seconds"][m]["median"] for m in ("1", "2")}
    costs = costs_from_run(run["stages"], movie, total=run["seconds"])
    return costs, geometry, assumptions, measured


def check(costs: Costs, geometry: Geometry, assumptions: Assumptions,
          measured: dict[str, float]) -> dict[str, float]:
    """Predicted / measured wall time at the measured worker counts (local disk: no I/O)."""
    local = replace(assumptions, io_passes=0.0)
    return {w: predict(costs, costs.movie, int(w), geometry=geometry, assumptions=local).total
            / seconds for w, seconds in measured.items()}


TARGET = MovieShape(100_000, (512, 512))
WORKERS = (8, 64, 512)


def render(pipeline: dict[str, Any], dview: dict[str, Any] | None = None, *,
           target: MovieShape = TARGET, workers: tuple[int, ...] = WORKERS,
           frames_exponent: float = 1.0) -> str:
    """Markdown: calibration, the check at 1 and 2 workers, predictions for ``target``."""
    costs, geometry, assumptions, measured = calibrate(pipeline, dview)
    assumptions = replace(assumptions, frames_exponent=frames_exponent)
    counts = task_counts(target, geometry)
    lines = [
        f"Calibrated on a {costs.movie.frames}x{costs.movie.dims[0]}x{costs.movie.dims[1]} "
        f"movie, 1 worker: motion {costs.motion:.2f} s, CNMF patches {costs.patches:.2f} s, "
        f"parallel rest {costs.parallel_rest:.2f} s, client rest {costs.client_rest:.2f} s; "
        f"scheduler overhead {1000 * assumptions.task_overhead:.2f} ms/task; "
        f"frames exponent {assumptions.frames_exponent:.2f}.", "",
        "| measured workers | measured s | predicted s | predicted / measured |",
        "|---|---|---|---|"]
    ratios = check(costs, geometry, assumptions, measured)
    for w, seconds in measured.items():
        lines.append(f"| {w} | {seconds:.1f} | {ratios[w] * seconds:.1f} | {ratios[w]:.2f} |")
    lines += ["", f"Target: {target.frames} frames of {target.dims[0]}x{target.dims[1]} "
              f"({target.nbytes / 1e9:.0f} GB float32), {counts['blocks']} motion blocks, "
              f"{counts['patches']} patches of {counts['patch_pixels']:.0f} px.", "",
              "| workers | motion s | patches s | parallel rest s | client s | I/O s | "
              "scheduler s | total h |", "|---|---|---|---|---|---|---|---|"]
    for w in workers:
        p = predict(costs, target, w, geometry=geometry, assumptions=assumptions)
        lines.append(f"| {w} | {p.motion:.0f} | {p.patches:.0f} | {p.parallel_rest:.0f} | "
                     f"{p.client_rest:.0f} | {p.io:.0f} | {p.scheduler:.1f} | "
                     f"{p.total / 3600:.2f} |")
    return "\n".join(lines) + "\n"


def extrapolation_exponent(measured: float | None) -> float:
    """The frames exponent used to extrapolate: the measured one, but never below 1.

    On short movies time grows sub-linearly with frames because per-run and per-patch
    costs do not grow at all; extrapolating that 200x would promise time the per-frame
    work (registration, HALS, deconvolution: linear in frames) cannot deliver.
    """
    return 1.0 if measured is None else max(1.0, float(measured))


def _load(path: pathlib.Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--write", help="update the generated section of this markdown file")
    opts = parser.parse_args(argv)
    results = pathlib.Path(opts.results)
    pipeline = _load(results / "suite_pipeline.json")
    if pipeline is None:
        raise SystemExit(f"{results / 'suite_pipeline.json'} is missing: run "
                         "python benchmarks/run_all.py first")
    growth = _load(results / "suite_growth.json")
    exponent = extrapolation_exponent(growth["exponent_vs_frames"]["total"] if growth else None)
    dview = _load(results / "suite_dview.json") or _load(results / "dview_overhead.json")
    text = render(pipeline, dview, frames_exponent=exponent)
    if opts.write:
        replace_section(pathlib.Path(opts.write), text)
    print(text)


BEGIN, END = "<!-- model:begin -->", "<!-- model:end -->"


def replace_section(path: pathlib.Path, text: str) -> None:
    """Replace the text between the model markers of ``path`` with ``text``."""
    doc = path.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


if __name__ == "__main__":
    main()
