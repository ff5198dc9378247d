"""``caiman-dask info``: versions, usable CPUs and memory, resolved configuration."""

from __future__ import annotations

import argparse
import json
import platform
from importlib import metadata
from typing import Any

from dask.utils import format_bytes

from caiman_dask import config
from caiman_dask.system import affinity, usable_cpus, usable_memory

PACKAGES = ("caiman-dask", "dask", "distributed", "zarr", "numpy", "scipy", "tifffile", "h5py",
            "opencv-python-headless", "threadpoolctl", "psutil", "dask-jobqueue",
            "dask-kubernetes", "s3fs")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _caiman_version() -> str | None:
    """CaImAn's version if the real CaImAn (not PyPI's unrelated 'caiman') is importable."""
    try:
        import caiman  # noqa: F401
        from caiman.source_extraction import cnmf  # noqa: F401
    except Exception:
        return None
    return getattr(caiman, "__version__", "unknown")


def collect() -> dict[str, Any]:
    """Everything ``info`` reports, as a JSON-safe dict."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": {"usable": usable_cpus(), "affinity": affinity()},
        "memory": {"usable_bytes": usable_memory(), "usable": format_bytes(usable_memory())},
        "versions": {name: _version(name) for name in PACKAGES} | {"caiman": _caiman_version()},
        "config": config.resolved(),
    }


def run(args: argparse.Namespace) -> int:
    """Print the report as text or JSON."""
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"caiman-dask {info['versions']['caiman-dask']} on Python {info['python']}")
    print(f"  CPUs usable: {info['cpus']['usable']} (affinity {info['cpus']['affinity']})")
    print(f"  memory usable: {info['memory']['usable']}")
    for name, version in info["versions"].items():
        print(f"  {name:24s} {version or '-'}")
    print("  configuration (caiman-dask):")
    for line in json.dumps(info["config"], indent=2, default=str).splitlines():
        print(f"    {line}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser("info", help="versions, usable CPUs and memory, configuration")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)
