"""Options and helpers shared by subcommands: the cluster, storage, parameters, numbers."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import yaml

from caiman_dask.cluster import setup_cluster, stop_server
from caiman_dask.errors import ConfigError
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


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """``--storage-option KEY=VALUE`` (repeatable) and ``--storage-options FILE``."""
    group = parser.add_argument_group(
        "storage", "fsspec options for s3://, gs://... URLs (default: the filesystem's own, "
        "e.g. AWS_* environment variables); prefer the environment or a file for secrets")
    group.add_argument("--storage-option", action="append", type=parse_option, default=[],
                       metavar="KEY=VALUE", help="one option, e.g. endpoint_url=http://host:9000"
                       " or anon=true (VALUE read as JSON when it is JSON; repeatable)")
    group.add_argument("--storage-options", default=None, metavar="FILE.json|yaml",
                       help="a JSON or YAML mapping of options (--storage-option wins)")


def parse_option(text: str) -> tuple[str, Any]:
    """``"anon=true"`` -> ``("anon", True)``; a value that is not JSON stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("give KEY=VALUE, e.g. endpoint_url=http://host:9000")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The storage options of ``args`` (file first, then each ``--storage-option``)."""
    options: dict[str, Any] = {}
    if args.storage_options:
        try:
            with open(args.storage_options, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read storage options {args.storage_options}: "
                              f"{type(exc).__name__}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{args.storage_options}: storage options must be a mapping "
                              "of option names to values")
        options.update(loaded)
    options.update(dict(args.storage_option))
    return options or None


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
