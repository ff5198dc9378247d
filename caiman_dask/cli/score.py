"""``caiman-dask score RESULTS.h5 REGIONS.json``: precision, recall and F1 against manual ROIs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from caiman_dask.results.hdf5 import load_estimates
from caiman_dask.results.score import ScoreResult, score_both


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``score`` subcommand to ``subparsers`` and return its parser."""
    parser = subparsers.add_parser(
        "score",
        help="score a results file against neurofinder regions.json",
        description="Match found components to manual ROIs one-to-one (Hungarian) and print "
        "precision, recall and F1 under the centroid and the IoU criterion.",
    )
    parser.add_argument("results", metavar="RESULTS.h5", help="results file (ours or CaImAn's)")
    parser.add_argument("regions", metavar="REGIONS.json", help="neurofinder regions.json")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--accepted-only", dest="accepted_only", action="store_true", default=True,
        help="score only accepted components (idx_components; all if never evaluated) [default]",
    )
    which.add_argument(
        "--all", dest="accepted_only", action="store_false", help="score every component"
    )
    parser.add_argument("--max-distance", type=float, default=5.0, metavar="PX",
                        help="centroid criterion: largest centroid distance (default 5)")
    parser.add_argument("--min-iou", type=float, default=0.5, metavar="X",
                        help="IoU criterion: smallest intersection over union (default 0.5)")
    parser.add_argument("--binarize", type=float, default=0.2, metavar="X",
                        help="footprint mask threshold, fraction of its maximum (default 0.2)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load, score and print; returns the exit code 0."""
    estimates, _ = load_estimates(args.results)
    if args.accepted_only:
        estimates = estimates.accepted()
    results = score_both(
        estimates, args.regions, dims=estimates.dims, max_distance=args.max_distance,
        min_iou=args.min_iou, binarize=args.binarize,
    )
    if args.json:
        summary = {name: _summary(r) for name, r in results.items()}
        print(json.dumps({"results": args.results, "regions": args.regions,
                          "accepted_only": args.accepted_only, "scores": summary}, indent=2))
    else:
        print(format_table(list(results.values())))
    return 0


def _summary(result: ScoreResult) -> dict[str, Any]:
    out = result.as_dict()
    del out["pairs"], out["values"]
    return out


def format_table(results: list[ScoreResult]) -> str:
    """Return a plain-text table, one row per criterion."""
    lines = [f"{'criterion':<10}{'true':>6}{'found':>7}{'matched':>9}"
             f"{'precision':>11}{'recall':>8}{'F1':>7}"]
    for r in results:
        lines.append(f"{r.criterion:<10}{r.n_true:>6}{r.n_found:>7}{r.n_matched:>9}"
                     f"{r.precision:>11.3f}{r.recall:>8.3f}{r.f1:>7.3f}")
    return "\n".join(lines)
