"""Cases 5 and 6: memory and time as the movie grows.

- ``memory`` (case 5): the main job on 2 workers at a fixed worker memory limit on movies
  1x, 4x and 16x as long; peak RSS per worker process and of the client, sampled with
  psutil. Target: peak worker RSS at 16x / 1x <= 1.10. The 1x movie (2,000 frames of
  128 x 128) already reaches every per-task cap (the initialisation's
  ``init.max_init_frames``, a patch task's block of frames, a rechunk shard), so what the
  ratio shows is what still grows with the length.
- ``growth`` (case 6): seconds of the main job on 1 worker vs frames (fixed field of
  view) and vs pixels (fixed frames), with the log-log least-squares exponent of the total
  and of each stage. Target: exponent vs frames 1.0 +- 0.1. The lengths (1,000-8,000
  frames of 128 x 128) start where the job's fixed costs (cluster tasks, the greedy
  initialisation capped by ``init.max_init_frames``) no longer make up most of the time;
  on 200-1,600 frames they made the exponent mostly a measure of those fixed costs.

Run: ``python benchmarks/case_growth.py memory|growth [--quick] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.common import pin_threads  # noqa: E402

pin_threads(1)

from benchmarks.common import write  # noqa: E402
from benchmarks.main_job import SYNTHETIC_SETTINGS, MovieSpec, run_job, write_synthetic  # noqa: E402
from benchmarks.scaling_model import fit_exponent  # noqa: E402

SIZES = {
    "quick": {"memory": ((96, 96), 30), "frames": ((96, 96), (100, 200, 400)),
              "fov": (60, (96, 160))},
    "full": {"memory": ((128, 128), 2000), "frames": ((128, 128), (1000, 2000, 4000, 8000)),
             "fov": (300, (128, 256, 512))},
}
MEMORY_LIMIT = "2GB"


def _run(spec: MovieSpec, work: pathlib.Path, mode: str) -> dict[str, Any]:
    path = write_synthetic(spec, work / f"m-{spec.dims[0]}x{spec.dims[1]}x{spec.frames}.npy")
    record = run_job(str(path), work, mode=mode, settings=SYNTHETIC_SETTINGS,
                     memory_limit=MEMORY_LIMIT)
    path.unlink()
    record["movie"] = {"dims": list(spec.dims), "frames": spec.frames,
                       "pixels": spec.dims[0] * spec.dims[1], "n_neurons": spec.n_neurons}
    print(record["movie"], round(record["seconds"], 1), "s", flush=True)
    return record


def memory(work: pathlib.Path, quick: bool) -> dict[str, Any]:
    """Case 5: peak RSS per worker and client at 1x, 4x, 16x frames, 2 workers."""
    dims, base = SIZES["quick" if quick else "full"]["memory"]
    runs = [_run(MovieSpec(dims, base * k), work, "2") for k in (1, 4, 16)]
    worker_peak = [max(v for k, v in r["peak_rss"].items() if k != "client") for r in runs]
    client_peak = [r["peak_rss"]["client"] for r in runs]
    return {"memory_limit": MEMORY_LIMIT, "workers": 2, "lengths": [1, 4, 16], "runs": runs,
            "peak_worker_rss": worker_peak, "peak_client_rss": client_peak,
            "ratios": {"worker_peak_16x_over_1x": worker_peak[-1] / worker_peak[0],
                       "client_peak_16x_over_1x": client_peak[-1] / client_peak[0]},
            "targets": {"worker_peak_16x_over_1x_max": 1.10}}


def exponents(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Log-log slopes of total and per-stage seconds vs ``movie[key]``."""
    x = [r["movie"][key] for r in runs]
    out = {"total": fit_exponent(x, [r["seconds"] for r in runs])}
    for stage in runs[0]["stages"]:
        y = [r["stages"].get(stage, 0.0) for r in runs]
        if min(y) > 0.05:
            out[stage] = fit_exponent(x, y)
    return out


def growth(work: pathlib.Path, quick: bool) -> dict[str, Any]:
    """Case 6: time vs frames and vs field of view on 1 worker, fitted exponents."""
    size = SIZES["quick" if quick else "full"]
    dims, lengths = size["frames"]
    frames_runs = [_run(MovieSpec(dims, t), work, "1") for t in lengths]
    frames, sides = size["fov"]
    fov_runs = [_run(MovieSpec((s, s), frames), work, "1") for s in sides]
    return {"workers": 1, "frames_runs": frames_runs, "fov_runs": fov_runs,
            "exponent_vs_frames": exponents(frames_runs, "frames"),
            "exponent_vs_pixels": exponents(fov_runs, "pixels"),
            "targets": {"exponent_vs_frames": [0.9, 1.1]}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", choices=("memory", "growth"))
    parser.add_argument("--quick", action="store_true", help="small movies")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/suite_WHICH.json)")
    opts = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix=f"bench-{opts.which}-") as tmp:
        body = (memory if opts.which == "memory" else growth)(pathlib.Path(tmp), opts.quick)
    payload = {"case": opts.which, "quick": opts.quick, "load_before": load_before, **body}
    print(write(f"suite_{opts.which}", payload, opts.out))


if __name__ == "__main__":
    main()
