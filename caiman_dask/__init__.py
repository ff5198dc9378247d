"""caiman-dask: CaImAn's calcium-imaging pipeline on a Dask cluster over zarr movies."""

from __future__ import annotations

from caiman_dask import config as _config  # noqa: F401  (loads package defaults)
from caiman_dask.cluster import setup_cluster, stop_server
from caiman_dask.movie import open_movie, open_store, to_zarr
from caiman_dask.view import DaskPool, SerialView

__version__ = "0.1.0"
__all__ = ["DaskPool", "SerialView", "open_movie", "open_store", "setup_cluster", "stop_server",
           "to_zarr"]
