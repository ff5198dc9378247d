"""dviews: CaImAn's Pool-like calls on a Dask client, or serially in this process."""

from caiman_dask.view.base import AsyncResult, BaseView
from caiman_dask.view.dask_multiprocessing import DaskPool
from caiman_dask.view.serial import SerialView

__all__ = ["AsyncResult", "BaseView", "DaskPool", "SerialView"]
