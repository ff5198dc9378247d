"""Options and helpers shared by subcommands: the cluster, parameters, number lists."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from caiman_dask.cluster import setup_cluster, stop_server
from caiman_dask.view import BaseView, SerialView


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend --n-workers --memory-limit --threads-per-worker``."""
    group = parser.add_argument_group("cluster")
    group.add_argument("--backend", default=None,
                       help="local (default), single (in this process), a registered backend, "
                       "or a scheduler address tcp://host:port")
    group.add_argument("--n-workers", type=int, default=None, metavar="N",
                       help="worker processes (default: usable CPUs / threads per worker)")
    group.add_argument("--memory-limit", default=None, metavar="SIZE",
                       help="memory per worker, e.g. 4GB (default: usable memory / workers)")
    group.add_argument("--threads-per-worker", type=int, default=None, metavar="N",
                       help="threads per worker (default 1)")


@contextlib.contextmanager
def cluster_session(args: argparse.Namespace) -> Iterator[tuple[Any, BaseView]]:
    """Yield ``(client, view)`` for the command's cluster and close what was started."""
    client, dview, _ = setup_cluster(args.backend, args.n_workers,
                                     memory_limit=args.memory_limit,
                                     threads_per_worker=args.threads_per_worker)
    if dview is None:
        view = SerialView()
        try:
            yield None, view
        finally:
            view.shutdown()
        return
    print(f"caiman-dask: dashboard {client.dashboard_link}", file=sys.stderr)
    try:
        yield client, dview
    finally:
        stop_server(dview)


def parse_ints(text: str) -> tuple[int, ...]:
    """``"80,512,512"`` -> ``(80, 512, 512)``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers separated by commas, "
                                         "e.g. 80,512,512") from None


def parse_pair(text: str) -> tuple[int, int]:
    """``"6"`` -> ``(6, 6)``; ``"6,8"`` -> ``(6, 8)``."""
    values = parse_ints(text)
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or two integers, e.g. 6 or 6,8")
    return (values[0], values[-1])


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0.8,1.1"`` -> ``(0.8, 1.1)``; one value means the same for both axes."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or two numbers, e.g. 1.15 or "
                                         "1.1,1.2") from None
    return values * 2 if len(values) == 1 else values
