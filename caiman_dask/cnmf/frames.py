"""Movie data read a block of frames at a time: CNMF's products with the movie.

Every step of CNMF that touches the movie needs one of a few products with it: the
projections ``Ab.T @ Yr`` (temporal updates), ``Yr @ W.T`` (spatial updates, the
activity-weighted means of the evaluation), a few stretches of frames (pixel noise) and
a time-averaged copy (initialisation). Each is a sum or a concatenation over blocks of
frames, so the functions here read a :class:`FrameSource` block by block: the memory a
patch or pixel-band task needs is set by the block, not by the length of the movie.

A source hands out F-ordered float32 pixel rows (``Yr[:, t0:t1]``, CaImAn's pixel order,
see :mod:`caiman_dask.cnmf.spatial`). In-memory movies are wrapped with
:func:`as_source`; a driver supplies a source that reads a region of a zarr store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from caiman_dask.chunking import cnmf_block_frames
from caiman_dask.cnmf.noise import sample_stretches
from caiman_dask.cnmf.spatial import to_frames, to_pixels
from caiman_dask.errors import MovieError


@runtime_checkable
class FrameSource(Protocol):
    """Pixel rows of a movie region, read a block of frames at a time.

    Attributes
    ----------
    dims : (int, int)
        The region's frame shape ``(d1, d2)``; pixel rows are in F order.
    n_frames : int
        Number of frames ``T``.
    block_frames : int
        Frames per read (reads of ``[k * block_frames, (k + 1) * block_frames)`` are the
        cheap ones, e.g. aligned to the store's chunks).
    """

    dims: tuple[int, int]
    n_frames: int
    block_frames: int

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Frames ``t0 .. t1 - 1`` as (d1 * d2, t1 - t0) F-ordered pixel rows (any real dtype)."""


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """A :class:`FrameSource` over an in-memory movie.

    ``rows`` is either (T, d1, d2) frames or (npix, T) pixel rows (then ``dims`` is
    ``(npix, 1)``).
    """

    rows: np.ndarray
    dims: tuple[int, int]
    n_frames: int
    block_frames: int

    def read(self, t0: int, t1: int) -> np.ndarray:
        if self.rows.ndim == 3:
            return to_pixels(self.rows[t0:t1], dtype=np.float32)
        return self.rows[:, t0:t1]


def as_source(data: np.ndarray | FrameSource, *, block_frames: int | None = None
              ) -> FrameSource:
    """``data`` itself if it is a source, else a source over the array.

    Parameters
    ----------
    data : ndarray or FrameSource
        (T, d1, d2) frames or (npix, T) pixel rows.
    block_frames : int, optional
        Frames per block (default: :func:`~caiman_dask.chunking.cnmf_block_frames`).
    """
    if isinstance(data, FrameSource):
        return data
    data = np.asarray(data)
    if data.ndim == 3:
        dims, T = (int(data.shape[1]), int(data.shape[2])), int(data.shape[0])
    elif data.ndim == 2:
        dims, T = (int(data.shape[0]), 1), int(data.shape[1])
    else:
        raise MovieError(f"a movie must be (T, d1, d2) frames or (npix, T) pixel rows, got "
                         f"shape {data.shape}")
    n = block_frames or cnmf_block_frames(dims[0] * dims[1])
    return ArraySource(rows=data, dims=dims, n_frames=T, block_frames=n)


def blocks(source: FrameSource, *, multiple: int = 1) -> Iterator[tuple[int, int]]:
    """``(t0, t1)`` of each block of frames, in order; with ``multiple``, blocks of about
    ``block_frames`` frames whose starts are multiples of it (e.g. ``tsub``)."""
    n = max(multiple, source.block_frames - source.block_frames % multiple)
    for t0 in range(0, source.n_frames, n):
        yield t0, min(t0 + n, source.n_frames)


def read_rows(source: FrameSource, t0: int, t1: int) -> np.ndarray:
    """Frames ``t0 .. t1 - 1`` as float32 pixel rows, checked to be finite.

    Raises
    ------
    MovieError
        The frames hold NaN or inf (the message names them).
    """
    rows = np.asarray(source.read(t0, t1), dtype=np.float32)
    if not np.isfinite(rows).all():
        bad = t0 + int(np.flatnonzero(~np.isfinite(rows).all(axis=0))[0])
        raise MovieError(f"frame {bad} (of frames {t0}:{t1}) contains NaN or inf values; fill "
                         "them (e.g. motion-correction border_nan='copy') before CNMF")
    return rows


def project(source: FrameSource, Ab: np.ndarray | sp.spmatrix) -> np.ndarray:
    """``Ab.T @ Yr`` (n, T) in float64, the big product in float32 per block."""
    Ab32 = Ab.astype(np.float32) if sp.issparse(Ab) else np.asarray(Ab, dtype=np.float32)
    AbT = Ab32.T
    out = np.empty((Ab32.shape[1], source.n_frames))
    for t0, t1 in blocks(source):
        out[:, t0:t1] = AbT @ read_rows(source, t0, t1)
    return out


def correlate(source: FrameSource, W: np.ndarray | sp.spmatrix) -> np.ndarray:
    """``Yr @ W.T`` (npix, n) in float64 for ``W`` (n, T) dense or sparse.

    Each block's product is taken in float32 (dense ``W``) or float64 (sparse ``W``) and
    summed in float64 in block order.
    """
    npix = source.dims[0] * source.dims[1]
    out = np.zeros((npix, W.shape[0]))
    if sp.issparse(W):
        Wt = sp.csr_matrix(sp.csc_matrix(W).T)  # (T, n): row slices per block
        for t0, t1 in blocks(source):
            out += np.asarray(Wt[t0:t1].T @ read_rows(source, t0, t1).T.astype(np.float64)).T
        return out
    W32 = np.asarray(W, dtype=np.float32)
    for t0, t1 in blocks(source):
        out += read_rows(source, t0, t1) @ W32[:, t0:t1].T
    return out


def sampled_rows(source: FrameSource, max_samples: int) -> np.ndarray:
    """The stretches of frames the noise estimate uses (all frames when few), float32."""
    parts = [read_rows(source, a, b) for a, b in sample_stretches(source.n_frames,
                                                                   max_samples)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def read_frames(source: FrameSource) -> np.ndarray:
    """The whole region as (T, d1, d2) float32 frames (for maths that needs it all)."""
    out = np.empty((source.n_frames, *source.dims), dtype=np.float32)
    for t0, t1 in blocks(source):
        out[t0:t1] = to_frames(read_rows(source, t0, t1), source.dims)
    return out
