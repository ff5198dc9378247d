"""The ``caiman-dask`` command line: one module per subcommand.

Each subcommand module defines ``register(subparsers)``, which adds its parser and
sets ``run`` (a function ``run(args) -> int``) as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from caiman_dask.errors import CaimanDaskError

COMMANDS: tuple[str, ...] = ("info", "demo", "run", "plan", "convert", "motion", "cnmf", "score")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="caiman-dask", description="CaImAn's pipeline on a Dask cluster over zarr movies."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"caiman_dask.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors of ours print one clear line, exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CaimanDaskError as exc:
        print(f"caiman-dask {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"caiman-dask {args.command}: interrupted", file=sys.stderr)
        return 130
