"""``caiman-dask convert INPUT... -o OUT.zarr``: movie files into a caiman-dask zarr store."""

from __future__ import annotations

import argparse
import time
from typing import Any

from caiman_dask.cli.common import add_cluster_arguments, cluster_session, parse_floats, parse_ints
from caiman_dask.movie import to_zarr


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to ``subparsers`` and return its parser."""
    parser = subparsers.add_parser(
        "convert", help="convert movie files into a caiman-dask zarr v3 store",
        description="Stream TIFF, HDF5/NWB, NPY, CaImAn .mmap or zarr movies (several files "
        "are concatenated in time) into a zarr v3 store chunked for CaImAn's patches.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="movie files, globs or URLs (s3://, gs://, https://)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.zarr",
                        help="the store to write (path or URL)")
    parser.add_argument("--rf", type=int, default=25, help="CNMF patch half-size (default 25)")
    parser.add_argument("--stride", type=int, default=None,
                        help="CNMF patch overlap (default int(0.2*rf))")
    parser.add_argument("--border-pix", type=int, default=0, help="CNMF border (default 0)")
    parser.add_argument("--num-frames-split", type=int, default=80,
                        help="frames per motion-correction block (default 80)")
    parser.add_argument("--chunks", type=parse_ints, default=None, metavar="T,Y,X",
                        help="explicit zarr chunks (-1: whole axis); default: planned")
    parser.add_argument("--dataset", default=None,
                        help="HDF5/NWB dataset or zarr array inside the input")
    parser.add_argument("--axes", default=None,
                        help="stored axis order of HDF5/NPY/zarr inputs, e.g. YXT")
    parser.add_argument("--fr", type=float, default=None, help="frame rate in Hz")
    parser.add_argument("--dxy", type=parse_floats, default=None, metavar="DY[,DX]",
                        help="pixel size in micrometres")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT.zarr if it is a caiman-dask store")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Convert, print a one-line summary; returns the exit code 0."""
    start = time.perf_counter()
    with cluster_session(args) as (client, _):
        movie = to_zarr(
            args.inputs, args.output, chunks=args.chunks or "auto", client=client,
            overwrite=args.overwrite, rf=args.rf, stride=args.stride,
            border_pix=args.border_pix, num_frames_split=args.num_frames_split,
            fr=args.fr, dxy=args.dxy, progress=True, dataset=args.dataset, axes=args.axes,
        )
    seconds = time.perf_counter() - start
    mb = movie.data.nbytes / 1e6
    print(f"wrote {args.output}: {movie.shape} {movie.dtype}, {mb:.1f} MB in {seconds:.1f} s "
          f"({mb / seconds:.0f} MB/s)")
    return 0
