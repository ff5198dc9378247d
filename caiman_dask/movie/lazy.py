"""Lazy block readers: the common base of every format and their dask arrays.

A reader is a small picklable frozen dataclass (a path plus what the header said)
whose ``reader[region]`` reads one block; :func:`lazy_array` wraps it in a dask
array whose tasks each read one chunk, so workers open the file themselves.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from caiman_dask.errors import ParameterError
from caiman_dask.movie.model import SourceFile, dims_for

TARGET_CHUNK_BYTES = 64 << 20  # default dask chunk of an opened movie: whole frames, ~64 MiB
Region = tuple[slice, ...]
Chunks = Sequence[int | None] | None


@dataclass(frozen=True)
class Part:
    """One opened input: lazy pixels in movie order and what its header said."""

    data: da.Array
    source: SourceFile
    fr: float | None = None
    dxy: tuple[float, float] | None = None
    plan: dict[str, Any] | None = None


class BlockReader:
    """Base of the format readers: ``reader[index]`` calls ``read(region)``.

    Subclasses are frozen dataclasses with ``shape`` and ``dtype`` fields and a
    ``read(region)`` method taking one ``slice(start, stop)`` per axis.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    def read(self, region: Region) -> np.ndarray:  # pragma: no cover - abstract
        """Read the block ``region`` (step-1 slices, one per axis)."""
        raise NotImplementedError

    def __getitem__(self, index: Any) -> np.ndarray:
        region, post = _split_index(index, self.shape)
        block = self.read(region)
        return block[post] if post else block


def _split_index(index: Any, shape: tuple[int, ...]) -> tuple[Region, tuple[Any, ...]]:
    """Return (step-1 covering region, index to apply to the block read)."""
    items = index if isinstance(index, tuple) else (index,)
    items = items + (slice(None),) * (len(shape) - len(items))
    region, post, simple = [], [], True
    for item, n in zip(items, shape, strict=True):
        if isinstance(item, slice):
            start, stop, step = item.indices(n)
            if step < 0:
                raise IndexError("negative steps are not supported by movie readers")
            stop = max(start, stop)
            region.append(slice(start, stop))
            post.append(slice(None, None, step))
            simple = simple and step == 1
        else:
            i = operator.index(item)
            i = i + n if i < 0 else i
            if not 0 <= i < n:
                raise IndexError(f"index {item} out of range for axis of size {n}")
            region.append(slice(i, i + 1))
            post.append(0)
            simple = False
    return tuple(region), (() if simple else tuple(post))


def lazy_array(reader: BlockReader, chunks: Any, *, kind: str) -> da.Array:
    """A dask array over ``reader``; each task reads one chunk (no lock, no copy of data)."""
    chunks = check_chunks(chunks, reader.ndim)
    name = f"read-{kind}-{tokenize(reader, chunks)}"
    meta = np.empty((0,) * reader.ndim, dtype=reader.dtype)
    return da.from_array(reader, chunks=chunks, name=name, lock=False, asarray=False,
                         fancy=False, meta=meta)


def frame_chunks(shape: Sequence[int], itemsize: int, *, time_axis: int = 0,
                 time_unit: int = 1, target: int = TARGET_CHUNK_BYTES) -> tuple[int, ...]:
    """Chunks of whole frames, about ``target`` bytes, a multiple of ``time_unit`` frames."""
    n_time = int(shape[time_axis])
    frame = math.prod(int(n) for a, n in enumerate(shape) if a != time_axis) * itemsize
    frames = max(1, target // max(frame, 1))
    unit = max(1, int(time_unit))
    frames = max(unit, frames // unit * unit)
    out = [int(n) for n in shape]
    out[time_axis] = max(1, min(frames, n_time))
    return tuple(out)


def axes_permutation(axes: str, ndim: int, where: str) -> tuple[int, ...]:
    """Transpose order taking stored ``axes`` (e.g. ``"YXT"``) to (T, [Z,] Y, X)."""
    want = dims_for(ndim, where)
    letters = axes.upper()
    if sorted(letters) != sorted(want):
        raise ParameterError(f"{where}: axes={axes!r} must name each of {''.join(want)} once "
                             f"(this dataset has {ndim} axes), e.g. axes='YXT' for a dataset "
                             "stored (Y, X, T)")
    return tuple(letters.index(d) for d in want)


def stored_chunks(chunks: Chunks, perm: tuple[int, ...]) -> list[int | None] | None:
    """Chunks given in movie order, rearranged to the stored axis order."""
    if chunks is None:
        return None
    if len(chunks) != len(perm):
        raise ParameterError(f"chunks={tuple(chunks)} must have one entry per axis "
                             f"({len(perm)} axes)")
    out: list[int | None] = [None] * len(perm)
    for movie_axis, stored_axis in enumerate(perm):
        out[stored_axis] = chunks[movie_axis]
    return out


def check_chunks(chunks: Chunks, ndim: int) -> tuple[int | None, ...] | None:
    """Validate user chunks: one int (or None/-1 for the whole axis) per axis."""
    if chunks is None:
        return None
    items = tuple(chunks)
    ok = len(items) == ndim and all(
        c is None or (isinstance(c, (int, np.integer)) and not isinstance(c, bool)
                      and (c >= 1 or c == -1)) for c in items)
    if not ok:
        raise ParameterError(f"chunks={chunks!r} must give one int >= 1 (or None/-1 for the "
                             f"whole axis) for each of the movie's {ndim} axes")
    return items
