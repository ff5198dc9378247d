"""What a movie is: a lazy dask array plus metadata, and the dtype policy.

A movie is ``(T, Y, X)`` or ``(T, Z, Y, X)``; ``dims`` names the axes. Integer and
floating dtypes are kept as they are; ``bool`` (a mask, not a movie) and complex data are
refused with :class:`~caiman_dask.errors.MovieError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from caiman_dask.errors import MovieError

DIMS_3D: tuple[str, ...] = ("T", "Y", "X")
DIMS_4D: tuple[str, ...] = ("T", "Z", "Y", "X")


@dataclass(frozen=True)
class SourceFile:
    """One input file (or store) of a movie.

    ``checksum`` is ``"sha256:<hex>"`` of the file's bytes (for a directory store,
    ``"sha256-tree:<hex>"`` over its files), or None when not computed (at open time).
    """

    path: str
    size: int
    format: str
    checksum: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceFile:
        """Inverse of :meth:`as_dict`."""
        return cls(path=str(data["path"]), size=int(data["size"]), format=str(data["format"]),
                   checksum=data.get("checksum"))


@dataclass(frozen=True)
class MovieMetadata:
    """What is known about a movie besides its pixels.

    Attributes
    ----------
    fr : float or None
        Frame rate in Hz.
    dxy : tuple of float or None
        Pixel size ``(dy, dx)`` in micrometres.
    dims : tuple of str
        Axis names, ``("T", "Y", "X")`` or ``("T", "Z", "Y", "X")``.
    dtype : str
        NumPy dtype name of the pixels.
    sources : tuple of SourceFile
        The input files, in time order.
    plan : dict or None
        The chunk plan of a caiman-dask store (``ChunkPlan.to_dict()``), else None.
    shape : tuple of int
        Shape of the movie.
    format : str
        Input format: tiff, hdf5, npy, caiman-mmap, zarr or caiman-dask-store.
    """

    fr: float | None
    dxy: tuple[float, float] | None
    dims: tuple[str, ...]
    dtype: str
    sources: tuple[SourceFile, ...]
    plan: dict[str, Any] | None = None
    shape: tuple[int, ...] = ()
    format: str = ""


@dataclass(frozen=True)
class Movie:
    """A lazily read movie: ``data`` is ``(T, Y, X)`` or ``(T, Z, Y, X)``."""

    data: da.Array
    metadata: MovieMetadata

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`data`."""
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """Dtype of :attr:`data`."""
        return np.dtype(self.data.dtype)


def dims_for(ndim: int, where: str) -> tuple[str, ...]:
    """Axis names of a movie with ``ndim`` axes; MovieError unless 3 or 4."""
    if ndim == 3:
        return DIMS_3D
    if ndim == 4:
        return DIMS_4D
    raise MovieError(f"{where}: a movie must have 3 axes (T, Y, X) or 4 (T, Z, Y, X), "
                     f"this one has {ndim}")


def check_dtype(dtype: Any, where: str) -> np.dtype:
    """Return ``dtype`` as a native-order np.dtype, or raise MovieError if unsupported.

    Integers (``uint8`` .. ``int64``) and floats (``float16`` .. ``float64``) are supported;
    ``bool`` and complex are refused.
    """
    dt = np.dtype(dtype)
    if dt.kind in "uif" and dt.itemsize <= 8:
        return dt.newbyteorder("=")
    raise MovieError(
        f"{where}: pixel type {dt} is not supported; a movie must hold integers "
        "(uint8 .. int64) or floats (float16 .. float64). Boolean masks and complex data are "
        "refused: convert them to a numeric type first (e.g. data.astype('float32'))."
    )
