"""``caiman-dask demo``: generate a movie with ground truth and run the whole job on it."""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any

from caiman_dask.cli.common import add_cluster_arguments
from caiman_dask.demo import DEMO_PARAMS, make_demo_movie, shift_error
from caiman_dask.motion.apply import load_motion
from caiman_dask.pipeline import run as run_pipeline


def run(args: argparse.Namespace) -> int:
    """Generate the movie, run the main job, print accuracy against the truth."""
    outdir = pathlib.Path(args.output)
    start = time.perf_counter()
    movie = make_demo_movie(outdir / "input", n_frames=args.frames, seed=args.seed)
    generated = time.perf_counter() - start
    folder = outdir / "run"
    estimates = run_pipeline(str(movie.path), str(folder), params=DEMO_PARAMS,
                             regions=movie.truth_masks(), backend=args.backend,
                             n_workers=args.n_workers, memory_limit=args.memory_limit,
                             threads_per_worker=args.threads_per_worker)
    motion, _ = load_motion(str(folder / "corrected.zarr"))
    summary = (folder / "summary.json").read_text()
    print(f"demo: {args.frames} frames of {movie.truth.Y.shape[1]}x{movie.truth.Y.shape[2]} px, "
          f"{movie.truth.A.shape[1]} true neurons (movie generated in {generated:.1f} s)")
    print(f"demo: motion shifts recovered to "
          f"{shift_error(motion.rigid_shifts, movie.displacements):.3f} px RMS")
    print(f"demo: {estimates.n_components} components, {len(estimates.idx_components)} accepted")
    for name, score in json.loads(summary).get("scores", {}).items():
        print(f"demo: F1 against the truth ({name}): {score['f1']:.3f} "
              f"(precision {score['precision']:.3f}, recall {score['recall']:.3f})")
    print(f"demo: results {folder / 'results.hdf5'}, summary {folder / 'summary.json'}, "
          f"report {folder / 'report.html'}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser("demo", help="run the whole job on a generated movie with "
                                   "ground truth and report the accuracy")
    parser.add_argument("-o", "--output", default="caiman-dask-demo", metavar="OUTDIR",
                        help="output folder (default ./caiman-dask-demo)")
    parser.add_argument("--frames", type=int, default=1000, help="movie length (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the movie")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)
