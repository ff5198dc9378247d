"""Zarr storage layouts: chunk/shard shapes and read amplification.

Pure arithmetic (no dask, no zarr). A :class:`StoreLayout` is what a zarr v3
array is created with: ``shape``, ``dtype``, ``chunks`` (inner chunks: the unit
of reading and decoding) and ``shards`` (the unit of files and of writing;
``None`` when every chunk is its own file).

Byte counts of a chunk are its data clipped to the array: an edge chunk holds
fewer array elements than ``chunks`` says, and zarr pads it with the fill value,
which compresses to almost nothing. Decoding still allocates the full chunk.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from caiman_dask.alignment import Region, Shape, full_region, validate_aligned_writes
from caiman_dask.errors import ParameterError

__all__ = [
    "ReadCost", "Region", "StoreLayout", "human_bytes", "layout_from_chunks",
    "read_amplification", "validate_aligned_writes",
]


@dataclass(frozen=True)
class StoreLayout:
    """How one zarr v3 array is laid out.

    Attributes
    ----------
    shape : tuple of int
        Array shape, ``(T, Y, X)`` for a movie.
    dtype : str
        NumPy dtype name, e.g. ``"uint16"`` or ``"float32"``.
    chunks : tuple of int
        Inner chunk shape: what one read decodes.
    shards : tuple of int or None
        Shard shape (one file each), a multiple of ``chunks`` per axis; ``None``
        means no sharding (one file per chunk).
    """

    shape: Shape
    dtype: str
    chunks: Shape
    shards: Shape | None = None

    def __post_init__(self) -> None:
        _check_shape(self.shape, "shape", minimum=1)
        _check_shape(self.chunks, "chunks", minimum=1, ndim=len(self.shape))
        if self.shards is not None:
            _check_shape(self.shards, "shards", minimum=1, ndim=len(self.shape))
            bad = [s % c for s, c in zip(self.shards, self.chunks, strict=True)]
            if any(bad):
                fixed = tuple(math.ceil(s / c) * c for s, c in zip(self.shards, self.chunks))
                raise ParameterError(
                    f"shards {self.shards} must be a multiple of chunks {self.chunks} on "
                    f"every axis: use shards={fixed} or shards=None"
                )
        try:
            object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        except TypeError:
            raise ParameterError(f"dtype {self.dtype!r} is not a NumPy dtype") from None
        for name in ("shape", "chunks", "shards"):  # NumPy ints -> int, for JSON
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return np.dtype(self.dtype).itemsize

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one full inner chunk (decoded)."""
        return math.prod(self.chunks) * self.itemsize

    @property
    def write_unit(self) -> Shape:
        """The shape parallel writers must not share: ``shards``, else ``chunks``."""
        return self.shards if self.shards is not None else self.chunks

    @property
    def shard_bytes(self) -> int:
        """Bytes of one full file (shard, or chunk when unsharded), decoded; a shard that
        passes the end of the array holds only the array's extent."""
        return math.prod(min(u, n) for u, n in zip(self.write_unit, self.shape,
                                                    strict=True)) * self.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the whole array, decoded."""
        return math.prod(self.shape) * self.itemsize

    @property
    def n_files(self) -> int:
        """Data files once the array is fully written (shards or chunks)."""
        return math.prod(math.ceil(n / u) for n, u in zip(self.shape, self.write_unit))

    @property
    def n_chunks(self) -> int:
        """Inner chunks covering the array."""
        return math.prod(math.ceil(n / c) for n, c in zip(self.shape, self.chunks))

    def shard_regions(self) -> list[Region]:
        """The region of every shard (chunk when unsharded), clipped to the array."""
        axes = [
            [slice(a, min(a + u, n)) for a in range(0, n, u)]
            for n, u in zip(self.shape, self.write_unit, strict=True)
        ]
        return list(itertools.product(*axes))

    def zarr_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``zarr.create_array``: shape, dtype, chunks, shards."""
        return {
            "shape": self.shape,
            "dtype": self.dtype,
            "chunks": self.chunks,
            "shards": self.shards,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (lists for tuples)."""
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "chunks": list(self.chunks),
            "shards": None if self.shards is None else list(self.shards),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreLayout:
        """Inverse of :meth:`to_dict`; raises ParameterError on a malformed dict."""
        try:
            shards = data.get("shards")
            return cls(
                shape=tuple(data["shape"]),
                dtype=str(data["dtype"]),
                chunks=tuple(data["chunks"]),
                shards=None if shards is None else tuple(shards),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ParameterError(f"malformed store layout {data!r}: {exc!r}") from None


def _check_shape(value: Any, name: str, *, minimum: int, ndim: int | None = None) -> None:
    ok = isinstance(value, tuple) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
        for v in value
    )
    if not ok or (ndim is not None and len(value) != ndim) or len(value) == 0:
        want = f"{ndim} ints" if ndim is not None else "ints"
        raise ParameterError(f"{name} must be a tuple of {want} >= {minimum}, got {value!r}")


def layout_from_chunks(
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int | None],
    *,
    shards: Sequence[int] | None = None,
    write_regions: Iterable[slice | Sequence[slice]] | None = None,
) -> StoreLayout:
    """Build a :class:`StoreLayout` from a user's chunk tuple, validating it.

    Parameters
    ----------
    shape : sequence of int
        Array shape.
    dtype : dtype-like
        Array dtype.
    chunks : sequence of int or None
        One entry per axis; ``None`` or ``-1`` means the whole axis. Entries larger
        than the axis are clipped to it.
    shards : sequence of int, optional
        Shard shape, a multiple of the (clipped) chunks.
    write_regions : iterable of regions, optional
        Regions that parallel tasks will write (e.g. time blocks); checked with
        :func:`validate_aligned_writes`.

    Raises
    ------
    ParameterError
        Wrong number of entries, non-integers, zero or negative sizes, or
        shards that are not multiples of chunks.
    ChunkAlignmentError
        If ``write_regions`` would share a shard (or chunk).
    """
    shape_t = tuple(int(n) for n in shape)
    if len(chunks) != len(shape_t):
        raise ParameterError(
            f"chunks {tuple(chunks)} has {len(chunks)} entries but the array has "
            f"{len(shape_t)} axes {shape_t}: give one size per axis (None = whole axis)"
        )
    sizes = tuple(_chunk_size(c, n, axis) for axis, (c, n) in enumerate(zip(chunks, shape_t)))
    shards_t = None if shards is None else tuple(int(s) for s in shards)
    layout = StoreLayout(shape_t, np.dtype(dtype).name, sizes, shards_t)
    if write_regions is not None:
        validate_aligned_writes(layout, write_regions, name="the store with chunks "
                                f"{sizes} and shards {shards_t}")
    return layout


def _chunk_size(value: int | None, extent: int, axis: int) -> int:
    if value is None or (isinstance(value, (int, np.integer)) and value == -1):
        return extent
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(
            f"chunk size {value!r} on axis {axis} must be an int >= 1 (or None/-1 for the "
            f"whole axis of {extent})"
        )
    return min(int(value), extent)


def human_bytes(n: int) -> str:
    """Return ``n`` bytes as text with a binary unit: ``"1.45 MiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ReadCost:
    """What reading one region costs: chunks decoded and bytes read vs needed."""

    chunks: int
    bytes_read: int
    bytes_needed: int

    @property
    def amplification(self) -> float:
        """``bytes_read / bytes_needed`` (1.0 is perfect)."""
        return self.bytes_read / self.bytes_needed if self.bytes_needed else 1.0


def _axis_span(sl: slice, unit: int, extent: int) -> tuple[int, int, int]:
    """Return (first unit index, unit count, covered elements clipped to extent)."""
    if sl.stop <= sl.start:
        return (sl.start // unit, 0, 0)
    first, last = sl.start // unit, (sl.stop - 1) // unit
    covered = min((last + 1) * unit, extent) - first * unit
    return (first, last - first + 1, covered)


def read_amplification(layout: StoreLayout, region_slices: slice | Sequence[slice]) -> ReadCost:
    """Count the inner chunks a region touches and the bytes they hold.

    Parameters
    ----------
    layout : StoreLayout
        The array read from.
    region_slices : slice or sequence of slice
        The region read (missing trailing axes are whole).

    Returns
    -------
    ReadCost
        Chunks touched, their bytes (clipped to the array) and the region's bytes.
    """
    region = full_region(layout.shape, region_slices)
    spans = [
        _axis_span(sl, c, n) for sl, c, n in zip(region, layout.chunks, layout.shape, strict=True)
    ]
    needed = math.prod(sl.stop - sl.start for sl in region)
    return ReadCost(
        chunks=math.prod(s[1] for s in spans),
        bytes_read=math.prod(s[2] for s in spans) * layout.itemsize,
        bytes_needed=needed * layout.itemsize,
    )
