"""Rechunking a caiman-dask store into another layout: one task per destination shard.

Each task reads exactly its shard's region of the source and writes the whole shard,
so no two tasks share a file. The destination is a caiman-dask store (attributes
copied from the source, ``layout`` replaced, ``complete`` written last), so
:func:`~caiman_dask.movie.zarrio.open_store` and the CNMF driver read it like any other.
A region whose reads from the source would be far larger than itself (e.g. a column
of all frames from a store of whole-frame chunks) is better reached in two passes:
:func:`read_cost` tells a caller so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from caiman_dask.errors import ParameterError
from caiman_dask.layout import Region, StoreLayout, read_amplification
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.movie.store import create_store, finish_store, prepare_destination
from caiman_dask.movie.writer import BlockWritten
from caiman_dask.movie.zarrio import ATTRS_KEY, open_store
from caiman_dask.progress import Progress
from caiman_dask.system import releases_memory
from caiman_dask.view.base import BaseView

__all__ = ["RechunkTask", "read_cost", "rechunk_store", "source_layout"]


@dataclass(frozen=True)
class RechunkTask:
    """Copy ``region`` of ``source`` into the same region of ``dest`` (one shard)."""

    region: Region
    source: ArrayRef
    dest: ArrayRef
    dtype: str


@releases_memory
def copy_region(task: RechunkTask) -> BlockWritten:
    """Task: read the region, cast it to the destination dtype, write it."""
    block = np.asarray(task.source.open()[task.region], dtype=task.dtype)
    task.dest.open(write=True)[task.region] = block
    return BlockWritten(tuple(s.start for s in task.region), tuple(s.stop for s in task.region),
                        int(block.nbytes))


def source_layout(path: str, storage_options: dict[str, Any] | None = None) -> StoreLayout:
    """The layout (shape, dtype, chunks, shards) of a store's movie array, as stored."""
    array = ArrayRef(path, storage_options).open()
    return StoreLayout(shape=tuple(int(n) for n in array.shape), dtype=str(array.dtype),
                       chunks=tuple(int(n) for n in array.chunks),
                       shards=None if array.shards is None else tuple(array.shards))


def read_cost(source: StoreLayout, dest: StoreLayout) -> float:
    """Worst read amplification of one rechunk task (bytes read / bytes needed)."""
    return max(read_amplification(source, region).amplification
               for region in dest.shard_regions())


def _check(source: StoreLayout, layout: StoreLayout, path: str) -> None:
    if tuple(source.shape) != tuple(layout.shape):
        raise ParameterError(f"cannot rechunk {path}: the layout is for shape {layout.shape} "
                             f"but the movie is {source.shape}; plan the layout for this movie")


def rechunk_store(source: str, dest: str, layout: StoreLayout, *, view: BaseView,
                  storage_options: dict[str, Any] | None = None, overwrite: bool = False,
                  label: str = "rechunk") -> str:
    """Copy a caiman-dask store into a new store laid out by ``layout``.

    Parameters
    ----------
    source : str
        Path or URL of a complete caiman-dask store.
    dest : str
        Path or URL of the store to create.
    layout : StoreLayout
        The destination's shape (must equal the source's), dtype, chunks and shards.
    view : BaseView
        Where the copy tasks run (one per destination shard).
    storage_options : dict, optional
        fsspec options for both URLs.
    overwrite : bool
        Replace ``dest`` if it is a caiman-dask store.
    label : str
        Progress label.

    Returns
    -------
    str
        ``dest``, complete.

    Raises
    ------
    ParameterError
        The layout's shape is not the movie's.
    StoreExistsError
        ``dest`` exists and ``overwrite`` is False (or it is not a caiman-dask store).
    """
    movie = open_store(source, storage_options=storage_options)  # refuses incomplete stores
    _check(source_layout(source, storage_options), layout, source)
    prepare_destination(dest, storage_options, overwrite=overwrite)
    attrs = _attributes(source, storage_options, layout)
    group, _ = create_store(dest, storage_options, layout, attrs)
    src, dst = ArrayRef(source, storage_options), ArrayRef(dest, storage_options)
    tasks = [RechunkTask(region, src, dst, layout.dtype) for region in layout.shard_regions()]
    written = []
    with Progress(label, total=len(tasks)) as progress:
        for result in view.imap_unordered(copy_region, tasks):
            written.append(result)
            progress.advance()
    expected = int(np.prod(movie.shape)) * np.dtype(layout.dtype).itemsize
    finish_store(group, attrs, written, expected=expected)
    return dest


def _attributes(source: str, storage_options: dict[str, Any] | None,
                layout: StoreLayout) -> dict[str, Any]:
    group = zarr.open_group(ArrayRef(source, storage_options).open().store, mode="r")
    attrs = dict(group.attrs[ATTRS_KEY])
    attrs.update({"dtype": layout.dtype, "layout": layout.to_dict(), "complete": False,
                  "rechunk": {"source": source}})
    return attrs
