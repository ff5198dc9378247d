"""Spectra for registration: fast real FFTs into reusable buffers, matrix-multiply DFTs.

Real FFTs use ``cv2.dft`` (measured fastest single-threaded on float32 images: ~0.35 ms for
512x512 against ~0.6 ms for ``scipy.fft.rfft2(workers=1)`` and ~6 ms for ``numpy.fft``,
which also upcasts to float64 on numpy < 2). OpenCV returns its packed "CCS" layout; it is
unpacked here into numpy's ``rfft2`` layout ``(Y, X // 2 + 1)`` complex64, into buffers that
are reused for every frame (no per-frame allocation above glibc's mmap threshold, which a
Dask worker's ``MALLOC_TRIM_THRESHOLD_`` pins at 128 kB).

The cross-correlation is never transformed back with an inverse FFT: it is evaluated only
where it is needed, by matrix-multiply DFTs of the cross-power spectrum (Guizar-Sicairos et
al. 2008): on the integer displacements of the search window, then on a fine grid around the
best one. With the half (rfft) spectrum of real images the correlation at ``(u, v)`` is
``Re(sum_k sum_l w_l P[k, l] exp(2 pi i (k u / Y + l v / X)))`` with ``w_l = 2`` except for
the zero and Nyquist columns (``w = 1``), which is ``Y * X`` times the spatial
cross-correlation ``sum_x f(x + (u, v)) t(x)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np


class Buffers:
    """Named scratch arrays, reallocated only when a shape or dtype changes."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """Return the buffer ``name`` with ``shape`` and ``dtype`` (contents undefined)."""
        array = self._arrays.get(name)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            array = np.empty(shape, dtype)
            self._arrays[name] = array
        return array


class RealFFT:
    """Batched 2-D real FFTs of float32 images of one shape, in numpy's ``rfft2`` layout.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(Y, X)``.
    batch : int
        Largest number of images transformed in one call.
    """

    def __init__(self, shape: tuple[int, ...], *, batch: int = 1) -> None:
        rows, cols = shape
        self.shape = (int(rows), int(cols))
        self._ccs = np.empty((batch, rows, cols), np.float32)
        self._column = np.empty((batch, 2 * ((rows - 1) // 2)), np.float32)
        self.spectrum = np.empty((batch, rows, cols // 2 + 1), np.complex64)

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Transform ``images`` (B, Y, X) float32 (views allowed); return (B, Y, X//2+1).

        The returned array is a view of an internal buffer, overwritten by the next call.
        """
        count = len(images)
        for index in range(count):
            cv2.dft(images[index], dst=self._ccs[index])
        self._unpack(count)
        return self.spectrum[:count]

    def _unpack(self, count: int) -> None:
        cols = self.shape[1]
        ccs, out = self._ccs[:count], self.spectrum[:count]
        pairs = (cols - 1) // 2
        out[:, :, 1:1 + pairs] = ccs[:, :, 1:1 + 2 * pairs].view(np.complex64)
        self._unpack_column(ccs[:, :, 0], out[:, :, 0], count)
        if cols % 2 == 0:
            self._unpack_column(ccs[:, :, cols - 1], out[:, :, cols // 2], count)

    def _unpack_column(self, packed: np.ndarray, out: np.ndarray, count: int) -> None:
        """Column 0 (and Nyquist) of a CCS array: a real column's spectrum, packed."""
        rows = self.shape[0]
        pairs = (rows - 1) // 2
        out[:, 0] = packed[:, 0]
        scratch = self._column[:count]
        scratch[...] = packed[:, 1:1 + 2 * pairs]
        values = scratch.view(np.complex64)
        out[:, 1:1 + pairs] = values
        if rows % 2 == 0:
            out[:, rows // 2] = packed[:, rows - 1]
        np.conjugate(values[:, ::-1], out=out[:, rows - pairs:])


def fold_weights(n: int) -> np.ndarray:
    """Weights of the rfft columns ``0..n//2`` that fold in the missing conjugate half."""
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return weights


def row_phases(positions: np.ndarray, n: int) -> np.ndarray:
    """``exp(2 pi i k p / n)`` for positions p (rows) and signed frequencies k (columns)."""
    freqs = np.fft.fftfreq(n) * n
    return np.exp(2j * np.pi * np.outer(positions, freqs) / n).astype(np.complex64)


def column_phases(positions: np.ndarray, n: int) -> np.ndarray:
    """Weighted ``w_l exp(2 pi i l p / n)`` for rfft columns l (rows) and positions p."""
    freqs = np.arange(n // 2 + 1)
    phases = np.exp(2j * np.pi * np.outer(freqs, positions) / n)
    return (phases * fold_weights(n)[:, None]).astype(np.complex64)


@dataclasses.dataclass(frozen=True)
class SearchTables:
    """Phase matrices evaluating a cross-correlation near integer displacements.

    ``coarse_rows[r + reach]`` / ``coarse_cols[c + reach]`` give the correlation at integer
    displacement ``(r, c)``; ``fine_rows[r + reach]`` / ``fine_cols[c + reach]`` give it at
    ``(r + offsets[j], c + offsets[k])``.
    """

    shape: tuple[int, int]
    reach: int
    offsets: np.ndarray
    coarse_rows: np.ndarray  # (2R+1, Y)
    coarse_cols: np.ndarray  # (2R+1, X//2+1)
    fine_rows: np.ndarray  # (2R+1, m, Y)
    fine_cols: np.ndarray  # (2R+1, X//2+1, m)


@functools.lru_cache(maxsize=16)
def search_tables(shape: tuple[int, int], *, reach: int, upsample: int) -> SearchTables:
    """Build :class:`SearchTables` for images of ``shape`` (cached; arrays read-only).

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(Y, X)``.
    reach : int
        Largest integer displacement (per axis) the tables cover.
    upsample : int
        Sub-pixel resolution: the fine grid has step ``1 / upsample`` and spans
        ``+- ceil(0.6 * upsample) / upsample`` pixels around the integer peak.
    """
    rows, cols = shape
    centres = np.arange(-reach, reach + 1, dtype=np.float64)
    half = math.ceil(0.6 * upsample)
    offsets = np.arange(-half, half + 1) / float(upsample)
    fine = centres[:, None] + offsets[None, :]
    fine_rows = row_phases(fine.ravel(), rows).reshape(len(centres), len(offsets), rows)
    fine_cols = column_phases(fine.ravel(), cols).reshape(cols // 2 + 1, len(centres), -1)
    tables = SearchTables(
        shape=(rows, cols), reach=reach, offsets=offsets,
        coarse_rows=row_phases(centres, rows),
        coarse_cols=np.ascontiguousarray(column_phases(centres, cols).T),
        fine_rows=fine_rows,
        fine_cols=np.ascontiguousarray(fine_cols.transpose(1, 0, 2)))
    for field in dataclasses.fields(tables)[2:]:
        getattr(tables, field.name).setflags(write=False)
    return tables
