"""caiman-dask: CaImAn's calcium-imaging pipeline on a Dask cluster over zarr movies."""

from __future__ import annotations

from caiman_dask import config as _config  # noqa: F401  (loads package defaults)
from caiman_dask.cluster import setup_cluster, stop_server
from caiman_dask.interop import install, uninstall
from caiman_dask.movie import open_movie, open_store, to_zarr
from caiman_dask.view import DaskPool, SerialView

__version__ = "0.1.0"
__all__ = ["DaskPool", "SerialView", "install", "open_movie", "open_store", "run",
           "setup_cluster", "stop_server", "to_zarr", "uninstall"]


def __getattr__(name: str):
    """``caiman_dask.run``, imported on first use (it brings in the report's matplotlib)."""
    if name == "run":
        from caiman_dask.pipeline import run

        return run
    raise AttributeError(f"module 'caiman_dask' has no attribute {name!r}")
