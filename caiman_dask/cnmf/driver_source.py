"""Which store CNMF tasks read, and the rechunk passes that make it (driver, no maths).

CNMF patch tasks read all frames of one spatial patch, so they need small spatial
chunks (``plan.cnmf_layout``). When the input store is not laid out that way it is
copied into ``work_dir`` with :func:`~caiman_dask.movie.rechunk.rechunk_store`. A
copy whose tasks would each read far more than their own region (a column of all
frames out of whole-frame chunks, as in a raw store) goes through ``plan.corrected``
first: one pass per time block, then one pass per rechunked shard, each byte read once.
A complete copy already in ``work_dir`` with the wanted layout is reused (resume).
Integer movies of at most 16 bits keep their dtype in the copy: float32 holds every such
value exactly and CNMF tasks convert what they read, so the copy of a raw uint16 movie
takes half the disk and I/O of a float32 one and gives the same results.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

import numpy as np

from caiman_dask.chunking import cnmf_block_frames
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.spatial import to_pixels
from caiman_dask.errors import MovieError
from caiman_dask.layout import StoreLayout
from caiman_dask.movie.model import Movie
from caiman_dask.movie.rechunk import read_cost, rechunk_store, source_layout
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.movie.store import check_disk_full
from caiman_dask.movie.zarrio import store_attrs
from caiman_dask.plan import ChunkPlan, plan_chunks
from caiman_dask.view.base import BaseView

#: Above this read amplification a one-pass copy goes through ``plan.corrected`` first.
MAX_COPY_AMPLIFICATION = 4.0


def cnmf_plan(movie: Movie, params: CNMFParams) -> ChunkPlan:
    """The store's chunk plan, re-planned when the CNMF patch grid differs from it."""
    rf, stride = params.patch.rf, params.patch.stride
    stored = movie.metadata.plan
    plan = ChunkPlan.from_dict(stored) if stored is not None else None
    if rf is None:
        rf = max(movie.shape[1:]) // 2  # no patches: any plan; the layout is not critical
    if plan is not None and plan.rf == (rf, rf) and (
            stride is None or plan.stride == (stride, stride)) and (
            plan.border_pix == params.patch.border_pix):
        return plan
    dtype = str(movie.dtype)
    return plan_chunks(movie.shape, dtype, rf=rf, stride=stride,
                       border_pix=params.patch.border_pix)


def copy_layout(have: StoreLayout, want: StoreLayout) -> StoreLayout:
    """``want`` in the source's dtype when that is an integer type of <= 16 bits."""
    dtype = np.dtype(have.dtype)
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        return dataclasses.replace(want, dtype=dtype.name)
    return want


def _same_chunks(have: StoreLayout, want: StoreLayout) -> bool:
    return tuple(have.shape) == tuple(want.shape) and tuple(have.chunks) == tuple(want.chunks)


def _reusable(path: str, want: StoreLayout, storage_options: dict[str, Any] | None) -> bool:
    attrs = store_attrs(path, storage_options)
    if attrs is None or attrs.get("complete") is not True:
        return False
    return StoreLayout.from_dict(attrs["layout"]) == want


def _copy(source: str, dest: str, layout: StoreLayout, *, view: BaseView,
          storage_options: dict[str, Any] | None, label: str) -> str:
    if _reusable(dest, layout, storage_options):
        return dest
    try:
        return rechunk_store(source, dest, layout, view=view, storage_options=storage_options,
                             overwrite=True, label=label)
    except OSError as exc:
        check_disk_full(exc, dest, "run CNMF again (the copy is redone)")
        raise


def prepare_source(store: str, plan: ChunkPlan, *, view: BaseView, work_dir: str | None,
                   storage_options: dict[str, Any] | None = None) -> str:
    """Path of the store CNMF reads: ``store`` itself, or its rechunked copy.

    Raises
    ------
    MovieError
        A rechunk is needed but there is no ``work_dir`` to write it into.
    """
    have = source_layout(store, storage_options)
    want = copy_layout(have, plan.cnmf_layout)
    if _same_chunks(have, want) or _same_chunks(have, plan.corrected) and not plan.needs_rechunk:
        return store
    if work_dir is None:
        raise MovieError(f"{store} must be rechunked for CNMF patch reads (chunks "
                         f"{have.chunks} -> {want.chunks}): give a work_dir to write it into")
    base = work_dir.rstrip("/")
    source = store
    if read_cost(have, want) > MAX_COPY_AMPLIFICATION and not _same_chunks(have,
                                                                         plan.corrected):
        corrected = StoreLayout(want.shape, want.dtype, plan.corrected.chunks,
                                plan.corrected.shards)
        source = _copy(store, posixpath.join(base, "cnmf-blocks.zarr"), corrected, view=view,
                       storage_options=storage_options, label="rechunk (time blocks)")
    return _copy(source, posixpath.join(base, "cnmf-rechunked.zarr"), want, view=view,
                 storage_options=storage_options, label="rechunk")


class RegionFrames:
    """A :class:`~caiman_dask.cnmf.frames.FrameSource` over rows ``y`` and columns ``x`` of
    a store (all frames), opened in the task that reads it.

    Blocks are whole time chunks of the store (about ``CNMF_BLOCK_BYTES`` of float32
    pixels, at least one chunk), so no chunk is decoded for two blocks. The last block
    read is kept: a region of a single block is read once however many passes the
    maths makes over it.
    """

    def __init__(self, ref: ArrayRef, y: slice, x: slice) -> None:
        self._array = ref.open()
        T, d1, d2 = (int(n) for n in self._array.shape)
        self._y, self._x = slice(*y.indices(d1)), slice(*x.indices(d2))
        self.dims = (self._y.stop - self._y.start, self._x.stop - self._x.start)
        self.n_frames = T
        self.block_frames = cnmf_block_frames(self.dims[0] * self.dims[1],
                                              multiple=int(self._array.chunks[0]))
        self._last: tuple[tuple[int, int], np.ndarray] | None = None

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Frames ``t0 .. t1 - 1`` of the region as float32 F-ordered pixel rows."""
        if self._last is None or self._last[0] != (t0, t1):
            self._last = None  # free the previous block before reading the next
            rows = to_pixels(self._array[t0:t1, self._y, self._x], dtype=np.float32)
            self._last = ((t0, t1), rows)
        return self._last[1]
