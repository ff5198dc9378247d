"""``caiman-dask plan``: show the chunk plan and its costs for a movie.

Examples
--------
caiman-dask plan --shape 3000 512 512 --dtype uint16 --rf 25 --stride 6 --num-frames-split 100
caiman-dask plan movie.tif --rf 25 --json
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

from caiman_dask.errors import ParameterError
from caiman_dask.plan import plan_chunks, report


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plan`` subcommand to ``subparsers``; returns its parser."""
    parser = subparsers.add_parser(
        "plan",
        help="show the zarr chunk plan for a movie: patch grid, chunks, amplification",
        description="Plan zarr chunks and shards from CaImAn's patch and motion grids and "
        "report read amplification, files and memory per task.",
    )
    parser.add_argument("input", nargs="?", help="a movie to plan for (instead of --shape)")
    parser.add_argument("--shape", nargs=3, type=int, metavar=("T", "Y", "X"))
    parser.add_argument("--dtype", default=None, help="movie dtype with --shape (uint16)")
    parser.add_argument("--rf", nargs="+", type=int, required=True, metavar="RF",
                        help="patch half-size: one value or Y X (CaImAn's patch.rf)")
    parser.add_argument("--stride", nargs="+", type=int, default=None, metavar="S",
                        help="patch overlap (default int(0.2*rf))")
    parser.add_argument("--border-pix", type=int, default=0)
    parser.add_argument("--num-frames-split", type=int, default=80)
    parser.add_argument("--strides", nargs=2, type=int, default=[96, 96], metavar=("Y", "X"))
    parser.add_argument("--overlaps", nargs=2, type=int, default=[32, 32], metavar=("Y", "X"))
    parser.add_argument("--rechunk", action=argparse.BooleanOptionalAction, default=None,
                        help="force or forbid the rechunked CNMF store (default: decide)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)
    return parser


def _one_or_pair(values: list[int] | None, name: str) -> int | tuple[int, int] | None:
    if values is None:
        return None
    if len(values) not in (1, 2):
        raise ParameterError(f"--{name} takes one value or two (Y X), got {values}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def movie_shape(args: argparse.Namespace) -> tuple[tuple[int, int, int], str]:
    """Return ``(shape, dtype)`` from ``--shape``/``--dtype`` or the INPUT movie."""
    if (args.input is None) == (args.shape is None):
        raise ParameterError("give either an INPUT movie or --shape T Y X (not both)")
    if args.shape is not None:
        t, y, x = args.shape
        return (t, y, x), args.dtype or "uint16"
    try:
        movie_module = importlib.import_module("caiman_dask.movie")
    except ModuleNotFoundError as exc:
        if exc.name not in ("caiman_dask.movie", "caiman_dask"):
            raise
        raise ParameterError(
            f"reading {args.input} needs caiman_dask.movie, which this installation lacks: "
            "give --shape T Y X and --dtype instead"
        ) from None
    movie = movie_module.open_movie(args.input)
    array = movie if hasattr(movie, "shape") else movie.data  # Movie keeps a dask array
    shape = tuple(int(n) for n in array.shape)
    if len(shape) != 3:
        raise ParameterError(f"{args.input} has shape {shape}; the plan needs a (T, Y, X) movie")
    return (shape[0], shape[1], shape[2]), str(args.dtype or array.dtype)


def run(args: argparse.Namespace) -> int:
    """Print the plan's report (text, or JSON with ``--json``); returns 0."""
    shape, dtype = movie_shape(args)
    plan = plan_chunks(
        shape, dtype,
        rf=_one_or_pair(args.rf, "rf"), stride=_one_or_pair(args.stride, "stride"),
        border_pix=args.border_pix, num_frames_split=args.num_frames_split,
        strides=tuple(args.strides), overlaps=tuple(args.overlaps), rechunk=args.rechunk,
    )
    rep = report(plan)
    print(json.dumps(rep.to_dict(), indent=2) if args.json else rep.format())
    return 0
