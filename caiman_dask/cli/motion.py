"""``caiman-dask motion STORE.zarr -o OUT.zarr``: rigid or piecewise-rigid registration."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from caiman_dask.cli.common import add_cluster_arguments, cluster_session, parse_pair
from caiman_dask.errors import ConfigError
from caiman_dask.motion.driver import motion_correct
from caiman_dask.motion.quality import store_metrics

#: CLI flag -> CaImAn ``motion`` key.
FLAGS = {"max_shifts": parse_pair, "strides": parse_pair, "overlaps": parse_pair,
         "max_deviation_rigid": int, "niter_rig": int, "num_frames_split": int,
         "upsample_factor_grid": int}


def motion_params(args: argparse.Namespace) -> dict[str, Any]:
    """The ``motion`` group: a params file's group, then the flags given."""
    params: dict[str, Any] = {}
    if args.params:
        try:
            with open(args.params) as fh:
                loaded = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read parameters from {args.params}: {exc}") from None
        params.update(loaded.get("motion", {}) if isinstance(loaded, dict) else {})
    for key in FLAGS:
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    if args.pw_rigid is not None:
        params["pw_rigid"] = args.pw_rigid
    return params


def run(args: argparse.Namespace) -> int:
    """Correct the store on the chosen cluster and print a summary."""
    params = motion_params(args)
    with cluster_session(args) as (_, view):
        result = motion_correct(args.input, args.output, params=params, view=view,
                                overwrite=args.overwrite)
    shifts = abs(result.rigid_shifts).max(axis=0)
    print(f"corrected {len(result.rigid_shifts)} frames into {result.path}; "
          f"largest rigid shift {shifts[0]:.2f} x {shifts[1]:.2f} px")
    crop = tuple(int(np.ceil(s)) + 1 for s in shifts)
    metrics = store_metrics(args.input, args.output, crop=crop)
    print(f"first {len(metrics.before.correlations)} frames: crispness "
          f"{metrics.before.crispness:.4g}"
          f" -> {metrics.after.crispness:.4g}, mean correlation with the mean image "
          f"{metrics.before.mean_correlation:.3f} -> {metrics.after.mean_correlation:.3f}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``motion`` subcommand."""
    parser = subparsers.add_parser(
        "motion", help="motion-correct a caiman-dask store (NoRMCorre, rigid or pw-rigid)",
        description="Register every frame of a store written by 'caiman-dask convert' and "
        "write the corrected float32 movie, its shifts and template to a new store.")
    parser.add_argument("input", metavar="STORE.zarr", help="store from caiman-dask convert")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.zarr")
    parser.add_argument("--params", default=None, metavar="PARAMS.json",
                        help="CaImAn parameter JSON; its 'motion' group is used")
    rigid = parser.add_mutually_exclusive_group()
    rigid.add_argument("--pw-rigid", dest="pw_rigid", action="store_true", default=None,
                       help="piecewise-rigid (NoRMCorre tiles)")
    rigid.add_argument("--rigid", dest="pw_rigid", action="store_false", help="rigid only")
    for key, kind in FLAGS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind, default=None,
                            help=f"motion.{key}")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT.zarr if it is a caiman-dask store")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)
