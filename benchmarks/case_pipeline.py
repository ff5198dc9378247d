"""Case 1: the main job serial in-process vs LocalCluster 1 and 2 workers, side by side.

Movies: the neurofinder crop (scored against its manual ROIs) and a generated 512x512
movie. Modes are interleaved in every repetition so load changes hit them alike. Target:
2 workers >= 1.8x serial (median seconds of ``pipeline.run``; cluster start excluded and
reported apart). The machine's own two-core ceiling (``ceiling.py``: the same kernels
alone and two at once) is measured first, in the same run, to read the speedups against.

Run: ``python benchmarks/case_pipeline.py [--quick] [--reps N] [--out FILE]``.
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


from benchmarks.ceiling import two_core_ceiling  # noqa: E402
from benchmarks.common import stats, write  # noqa: E402
from benchmarks.main_job import (  # noqa: E402
    NEUROFINDER_SETTINGS,
    SYNTHETIC_SETTINGS,
    MovieSpec,
    movie_shape,
    neurofinder_input,
    run_job,
    write_synthetic,
)

MODES = ("serial", "1", "2")
# Quick: the neurofinder crop's first 60 frames of its top-left 128x128 corner.
SIZES = {"quick": {"neurofinder": {"frames": 60, "side": 128},
                   "synthetic": MovieSpec((128, 128), 100)},
         "full": {"neurofinder": {}, "synthetic": MovieSpec((512, 512), 500)}}


def compare_modes(movie: str, work: pathlib.Path, *, settings: list[str], reps: int,
                  regions: str | None) -> dict[str, Any]:
    """Every mode ``reps`` times, interleaved; runs, stats and the speedups."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for _ in range(reps):
        for mode in MODES:
            record = run_job(movie, work, mode=mode, settings=settings, regions=regions)
            print(mode, round(record["seconds"], 1), "s", flush=True)
            runs[mode].append(record)
    seconds = {m: stats([r["seconds"] for r in rs]) for m, rs in runs.items()}
    return {"movie": movie, "shape": list(movie_shape(movie)), "settings": settings,
            "runs": runs, "seconds": seconds,
            "ratios": {f"speedup_{m}w": seconds["serial"]["median"] / seconds[m]["median"]
                       for m in ("1", "2")}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small movies, one repetition")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--out", help="JSON path (default benchmarks/results/suite_pipeline.json)")
    opts = parser.parse_args(argv)
    load_before = os.getloadavg()
    size = SIZES["quick" if opts.quick else "full"]
    spec = size["synthetic"]
    ceiling = (two_core_ceiling({"matmul": 2, "stream": 4}, rounds=1) if opts.quick
               else two_core_ceiling())
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = pathlib.Path(tmp)
        nf = neurofinder_input(work, **size["neurofinder"])
        synth = str(write_synthetic(spec, work / "synthetic.npy"))
        payload = {
            "case": "pipeline", "quick": opts.quick, "reps": opts.reps,
            "load_before": load_before,
            "two_core_ceiling": ceiling,
            "neurofinder": compare_modes(nf.movie, work, settings=NEUROFINDER_SETTINGS,
                                         reps=opts.reps, regions=nf.regions),
            "synthetic": {"spec": {"dims": list(spec.dims), "frames": spec.frames,
                                   "n_neurons": spec.n_neurons},
                          **compare_modes(synth, work, settings=SYNTHETIC_SETTINGS,
                                          reps=opts.reps, regions=None)},
            "targets": {"speedup_2w_min": 1.8},
        }
    print(write("suite_pipeline", payload, opts.out))


if __name__ == "__main__":
    main()
