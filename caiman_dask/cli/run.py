"""``caiman-dask run INPUT... -o OUTDIR``: the whole pipeline, resumable."""

from __future__ import annotations

import argparse
from typing import Any

from caiman_dask.cli.common import add_cluster_arguments, add_storage_arguments, storage_options


def run(args: argparse.Namespace) -> int:
    """Run the main job and print where its results are."""
    from caiman_dask.pipeline import run as run_pipeline

    estimates = run_pipeline(args.inputs, args.output, params=args.params,
                             overrides=args.set or (), motion=args.motion,
                             backend=args.backend, n_workers=args.n_workers,
                             memory_limit=args.memory_limit,
                             threads_per_worker=args.threads_per_worker,
                             regions=args.regions, report=args.report, engine=args.engine,
                             storage_options=storage_options(args))
    accepted = len(estimates.idx_components) if estimates.idx_components is not None else None
    print(f"{estimates.n_components} components ({accepted} accepted); results in "
          f"{args.output}/results.hdf5, summary in {args.output}/summary.json"
          + (f", report in {args.output}/report.html" if args.report else ""))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", help="the whole pipeline: convert, motion correction, CNMF, evaluation",
        description="Run CaImAn's batch pipeline on a Dask cluster. Rerunning with the same "
        "OUTDIR resumes: finished stages (and CNMF patches) are not recomputed.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="movie files, globs, URLs, or a caiman-dask store")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                        help="output folder or URL (s3://bucket/run, any fsspec URL)")
    parser.add_argument("--params", default=None, metavar="PARAMS.json|yaml",
                        help="CaImAn parameter JSON (as its demos write it) or our YAML")
    parser.add_argument("--set", action="append", metavar="GROUP.KEY=VALUE",
                        help="override one parameter, e.g. --set init.K=5 (repeatable)")
    parser.add_argument("--no-motion", dest="motion", action="store_false",
                        help="skip motion correction (movie registered already)")
    parser.add_argument("--regions", default=None, metavar="REGIONS.json",
                        help="manual ROIs (neurofinder format) to score against")
    parser.add_argument("--engine", choices=("builtin", "caiman"), default=None,
                        help="whose maths runs each motion block and CNMF patch (default: "
                        "config caiman-dask.engine, builtin; caiman needs CaImAn)")
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="skip report.html and its PNGs")
    add_cluster_arguments(parser)
    add_storage_arguments(parser)
    parser.set_defaults(run=run)
