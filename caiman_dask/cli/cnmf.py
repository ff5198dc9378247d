"""``caiman-dask cnmf STORE.zarr -o RESULTS.h5``: CNMF source extraction over zarr patches."""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

from caiman_dask.cli.common import add_cluster_arguments, cluster_session
from caiman_dask.cnmf.driver import fit_cnmf
from caiman_dask.errors import ConfigError, StoreExistsError
from caiman_dask.results.hdf5 import save_estimates


def load_params(path: str | None) -> dict[str, Any]:
    """CaImAn's parameter groups from a JSON file (empty: defaults)."""
    if path is None:
        return {}
    try:
        loaded = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CNMF parameters from {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a JSON object of parameter groups "
                          "({\"init\": {...}, \"patch\": {...}, ...})")
    return loaded


def run(args: argparse.Namespace) -> int:
    """Fit CNMF on the chosen cluster, save the estimates and print a summary."""
    params = load_params(args.params)
    out = pathlib.Path(args.output)
    if out.exists() and not args.overwrite:  # refuse before any work is done
        raise StoreExistsError(f"{out} already exists: choose another -o or pass --overwrite")
    with cluster_session(args) as (_, view):
        result = fit_cnmf(args.input, params=params, view=view, work_dir=args.work_dir)
    est = result.estimates
    save_estimates(out, est, result.params.to_dict(), overwrite=args.overwrite,
                   extra={"timings": result.timings, "n_candidates": result.n_candidates,
                          "n_merged": result.n_merged, "source": args.input})
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"{len(result.patches)} patches -> {result.n_candidates} candidates -> "
          f"{result.n_merged} after merging -> {est.A.shape[1]} components, "
          f"{len(est.idx_components)} accepted; saved {out}")
    print(f"stages: {stages}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``cnmf`` subcommand."""
    parser = subparsers.add_parser(
        "cnmf", help="CNMF source extraction on a caiman-dask store (patches on the cluster)",
        description="Run CaImAn's CNMF (patches, merging, refinement, evaluation) on a store "
        "written by 'caiman-dask convert' or 'caiman-dask motion' and save CaImAn-compatible "
        "HDF5 estimates.")
    parser.add_argument("input", metavar="STORE.zarr", help="raw or motion-corrected store")
    parser.add_argument("-o", "--output", required=True, metavar="RESULTS.h5")
    parser.add_argument("--params", default=None, metavar="PARAMS.json",
                        help="CaImAn parameter JSON (groups data, patch, init, spatial, "
                        "temporal, merging, quality); data.fr defaults to the store's")
    parser.add_argument("--work-dir", default=None, metavar="DIR",
                        help="where to keep the rechunked copy CNMF reads (default: a "
                        "temporary directory, removed at the end)")
    parser.add_argument("--overwrite", action="store_true", help="replace RESULTS.h5")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)
    return parser
