"""NPY files and CaImAn ``.mmap`` files, read block by block through memory maps.

CaImAn's ``.mmap`` is a headerless float32 array ``Yr`` of shape ``(npix, T)``; its name
carries the dims, order and frame count, e.g.
``memmap_d1_512_d2_512_d3_1_order_C_frames_3000.mmap`` or ``Yr_d1_..._order_F_frames_...``.
Pixel ``(x, y, z)`` of a ``(d1, d2, d3)`` frame is row ``x + d1*y + d1*d2*z`` (frames
flattened in Fortran order). ``order_C`` files are pixel-major (each pixel's time series
is contiguous, so a block of frames is a strided read), ``order_F`` files frame-major.
The movie is ``(T, d1, d2)``, or ``(T, d3, d1, d2)`` when ``d3 > 1``.
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from caiman_dask.errors import MovieError
from caiman_dask.movie.lazy import (
    BlockReader,
    Part,
    Region,
    axes_permutation,
    frame_chunks,
    lazy_array,
    stored_chunks,
)
from caiman_dask.movie.model import SourceFile, check_dtype, dims_for
from caiman_dask.movie.paths import is_url, source_size

MMAP_NAME = re.compile(r"d1_(\d+)_d2_(\d+)_d3_(\d+)_order_([CF])_frames_(\d+)")
MMAP_DTYPE = np.dtype(np.float32)


@dataclass(frozen=True, eq=False)
class NpyReader(BlockReader):
    """Reads blocks of a ``.npy`` file (C or Fortran order) in its stored axis order."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def read(self, region: Region) -> np.ndarray:
        """Copy ``region`` out of a fresh read-only memory map."""
        mapped = np.load(self.path, mmap_mode="r")
        try:
            return np.array(mapped[region], dtype=self.dtype)
        finally:
            del mapped


@dataclass(frozen=True, eq=False)
class CaimanMmapReader(BlockReader):
    """Reads blocks of frames of a CaImAn ``.mmap`` file; see the module docstring."""

    path: str
    dims: tuple[int, int, int]
    frames: int
    order: str
    shape: tuple[int, ...]
    dtype: np.dtype = MMAP_DTYPE

    def read(self, region: Region) -> np.ndarray:
        """Read frames ``region[0]`` of every pixel, reshape to frames, then crop."""
        d1, d2, d3 = self.dims
        yr = np.memmap(self.path, dtype=MMAP_DTYPE, mode="r", shape=(d1 * d2 * d3, self.frames),
                       order=self.order)
        try:
            block = np.array(yr[:, region[0]])
        finally:
            del yr
        n = block.shape[1]
        frames = block.T.reshape(n, d3, d2, d1).transpose(0, 1, 3, 2)
        if d3 == 1:
            frames = frames[:, 0]
        return np.ascontiguousarray(frames[(slice(None), *region[1:])])


def open_npy_movie(path: str, *, axes: str | None = None, chunks: Any = None) -> Part:
    """Open a ``.npy`` movie lazily (``np.load(mmap_mode='r')`` reads only its header).

    ``axes`` gives the stored axis letters when not ``TYX`` / ``TZYX``.
    """
    _local_only(path, "NPY")
    try:
        mapped = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise MovieError(f"{path}: not a readable .npy file (truncated or corrupt?): "
                         f"{exc}") from None
    shape, dtype = tuple(int(n) for n in mapped.shape), check_dtype(mapped.dtype, path)
    del mapped
    perm = axes_permutation(axes or "".join(dims_for(len(shape), path)), len(shape), path)
    if shape[perm[0]] == 0:
        raise MovieError(f"{path} has no frames (shape {shape})")
    reader = NpyReader(path, shape, dtype)
    chunks = stored_chunks(chunks, perm) or frame_chunks(shape, dtype.itemsize,
                                                         time_axis=perm[0])
    data = lazy_array(reader, chunks, kind="npy").transpose(perm)
    return Part(data=data, source=SourceFile(path, source_size(path), "npy"))


def parse_mmap_name(path: str) -> tuple[tuple[int, int, int], str, int]:
    """``(d1, d2, d3), order, frames`` from a CaImAn ``.mmap`` file name."""
    match = MMAP_NAME.search(posixpath.basename(path))
    if match is None:
        raise MovieError(f"{path}: cannot read dims from the name; CaImAn .mmap names look like "
                         "memmap_d1_512_d2_512_d3_1_order_C_frames_3000.mmap")
    d1, d2, d3, order, frames = match.groups()
    return (int(d1), int(d2), int(d3)), order, int(frames)


def open_mmap_movie(path: str, *, chunks: Any = None) -> Part:
    """Open a CaImAn ``.mmap`` movie lazily (dims, order and frames from its name)."""
    _local_only(path, "CaImAn .mmap")
    dims, order, frames = parse_mmap_name(path)
    size = source_size(path)
    expected = math.prod(dims) * frames * MMAP_DTYPE.itemsize
    if size != expected:
        raise MovieError(f"{path}: {size} bytes, but its name announces {dims} x {frames} "
                         f"float32 frames = {expected} bytes (truncated, or renamed?)")
    d1, d2, d3 = dims
    shape = (frames, d1, d2) if d3 == 1 else (frames, d3, d1, d2)
    reader = CaimanMmapReader(path, dims, frames, order, shape)
    data = lazy_array(reader, chunks or frame_chunks(shape, MMAP_DTYPE.itemsize),
                      kind="caiman-mmap")
    return Part(data=data, source=SourceFile(path, size, "caiman-mmap"))


def _local_only(path: str, kind: str) -> None:
    if is_url(path):
        raise MovieError(f"{path}: {kind} files are read from local paths only; URLs are "
                         "supported for TIFF, HDF5 and zarr. Copy the file locally first")
