"""``caiman-dask demo``: generate a movie with ground truth and run the job on it."""

from __future__ import annotations

import argparse
import pathlib
import time
from typing import Any

from caiman_dask.cli.common import add_cluster_arguments, cluster_session
from caiman_dask.demo import DEMO_PARAMS, make_demo_movie, shift_error
from caiman_dask.motion.driver import motion_correct
from caiman_dask.movie import to_zarr


def run(args: argparse.Namespace) -> int:
    """Generate, convert, motion-correct; print the accuracy against the truth."""
    outdir = pathlib.Path(args.output)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    movie = make_demo_movie(outdir / "input", n_frames=args.frames, seed=args.seed)
    seconds["generate"] = time.perf_counter() - start
    patch, motion = DEMO_PARAMS["patch"], DEMO_PARAMS["motion"]
    with cluster_session(args) as (client, view):
        start = time.perf_counter()
        to_zarr(str(movie.path), str(outdir / "raw.zarr"), client=client, overwrite=True,
                rf=patch["rf"], stride=patch["stride"],
                num_frames_split=motion["num_frames_split"], fr=DEMO_PARAMS["data"]["fr"])
        seconds["convert"] = time.perf_counter() - start
        start = time.perf_counter()
        result = motion_correct(str(outdir / "raw.zarr"), str(outdir / "corrected.zarr"),
                                params=motion, view=view, overwrite=True)
        seconds["motion"] = time.perf_counter() - start
    error = shift_error(result.rigid_shifts, movie.displacements)
    print(f"demo: {args.frames} frames of {movie.truth.Y.shape[1]}x{movie.truth.Y.shape[2]} px, "
          f"{movie.truth.A.shape[1]} neurons; motion shifts recovered to {error:.3f} px RMS")
    print("demo: seconds " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"demo: outputs in {outdir}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser("demo", help="run the job on a generated movie with ground "
                                   "truth and report the accuracy")
    parser.add_argument("-o", "--output", default="caiman-dask-demo", metavar="OUTDIR",
                        help="output folder (default ./caiman-dask-demo)")
    parser.add_argument("--frames", type=int, default=1000, help="movie length (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the movie")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)
