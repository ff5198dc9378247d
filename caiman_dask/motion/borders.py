"""Border handling after a shift: pixels whose source lies outside the frame.

A corrected pixel ``x`` takes its value from ``x - shift(x)`` in the raw frame. Where that
source lies outside ``[0, dim - 1]`` on either axis the pixel has no data and
``border_nan`` decides its value:

- ``True``: NaN (default; the corrected movie carries NaN strips at its edges),
- ``False``: 0 (before the ``nonneg_movie`` offset is added),
- ``'copy'``: the nearest edge pixel of the frame (edge replicated),
- ``'min'``: the minimum of the raw frame.

With a rigid shift ``s > 0`` these are the first ``ceil(s)`` rows (columns), with ``s < 0``
the last ``ceil(-s)``: the same strips CaImAn blanks. (CaImAn's rigid OpenCV path leaves
them reflected when ``border_nan=False``; here ``False`` always means 0.) Pixels next to
the strips are interpolated with the frame's edge replicated.
"""

from __future__ import annotations

import math

import numpy as np


def fill_value(mode: bool | str, source: np.ndarray) -> float | None:
    """Value written into border pixels for ``mode``; None for ``'copy'`` (replicate)."""
    if mode is True:
        return float("nan")
    if mode is False:
        return 0.0
    if mode == "min":
        finite = source[np.isfinite(source)]
        return float(finite.min()) if finite.size else float("nan")
    return None


def strips(shift: float, dim: int) -> tuple[int, int]:
    """Return ``(head, tail)``: rows ``[0, head)`` and ``[dim - tail, dim)`` have no source."""
    head = max(0, math.ceil(shift))
    tail = max(0, math.ceil(-shift))
    return min(head, dim), min(tail, dim)


def fill_rigid_border(image: np.ndarray, shift: np.ndarray, mode: bool | str,
                      source: np.ndarray) -> None:
    """Fill, in place, the border strips of ``image`` shifted rigidly by ``shift`` (dy, dx).

    Parameters
    ----------
    image : ndarray
        Corrected frame (Y, X), modified in place.
    shift : ndarray
        The applied shift (rows, columns).
    mode : {True, False, 'copy', 'min'}
        ``border_nan``.
    source : ndarray
        The raw frame (for ``'min'``).
    """
    value = fill_value(mode, source)
    rows, cols = image.shape
    top, bottom = strips(float(shift[0]), rows)
    left, right = strips(float(shift[1]), cols)
    if value is None:
        _replicate(image, top, bottom, left, right)
        return
    if top:
        image[:top] = value
    if bottom:
        image[rows - bottom:] = value
    if left:
        image[:, :left] = value
    if right:
        image[:, cols - right:] = value


def _replicate(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> None:
    rows, cols = image.shape
    if top and top < rows:
        image[:top] = image[top]
    if bottom and bottom < rows:
        image[rows - bottom:] = image[rows - bottom - 1]
    if left and left < cols:
        image[:, :left] = image[:, left:left + 1]
    if right and right < cols:
        image[:, cols - right:] = image[:, cols - right - 1:cols - right]


def fill_mapped_border(image: np.ndarray, map_y: np.ndarray, map_x: np.ndarray,
                       mode: bool | str, source: np.ndarray, *, band: int,
                       replicated: bool = False) -> None:
    """Fill, in place, pixels whose source ``(map_y, map_x)`` lies outside the frame.

    Only the outer ``band`` pixels are examined (no shift exceeds it).

    Parameters
    ----------
    image, map_y, map_x : ndarray
        Corrected frame and its source coordinates (Y, X).
    mode : {True, False, 'copy', 'min'}
        ``border_nan``.
    source : ndarray
        The raw frame: the values replicated for ``'copy'`` and searched for ``'min'``.
    band : int
        Width of the edge bands that can hold such pixels.
    replicated : bool
        True when ``image`` was interpolated with edge replication already (``'copy'`` is
        then a no-op).
    """
    if mode == "copy" and replicated:
        return
    value = fill_value(mode, source)
    rows, cols = image.shape
    band = max(0, min(band, rows // 2, cols // 2))
    if band == 0:
        return
    for region in ((slice(0, band), slice(None)), (slice(rows - band, rows), slice(None)),
                   (slice(band, rows - band), slice(0, band)),
                   (slice(band, rows - band), slice(cols - band, cols))):
        my, mx = map_y[region], map_x[region]
        outside = (my < 0) | (my > rows - 1) | (mx < 0) | (mx > cols - 1)
        if not outside.any():
            continue
        if value is None:
            near_y = np.clip(np.rint(my[outside]), 0, rows - 1).astype(np.intp)
            near_x = np.clip(np.rint(mx[outside]), 0, cols - 1).astype(np.intp)
            image[region][outside] = source[near_y, near_x]
        else:
            image[region][outside] = value
