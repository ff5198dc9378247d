"""NaN-aware image statistics over frame stacks (fast when there is no NaN, never warning)."""

from __future__ import annotations

import numpy as np


def mean_image(frames: np.ndarray, *, total: np.ndarray | None = None) -> np.ndarray:
    """Mean over frames ignoring NaN; pixels NaN in every frame stay NaN.

    Parameters
    ----------
    frames : ndarray
        (n, Y, X) stack, n >= 1.
    total : ndarray, optional
        ``frames.sum(axis=0)`` when the caller accumulated it already (float32).

    Returns
    -------
    ndarray
        (Y, X) float32. One fast pass over the stack; only pixels that hold a NaN in some
        frame (typically the border strips) are recomputed NaN-aware.
    """
    if total is None:
        mean = frames.mean(axis=0, dtype=np.float32)
    else:
        mean = np.asarray(total, dtype=np.float32) / np.float32(len(frames))
    bad = np.flatnonzero(~np.isfinite(mean))
    if bad.size:
        values = frames.reshape(len(frames), -1)[:, bad].astype(np.float64)
        finite = np.isfinite(values)
        counts = finite.sum(axis=0)
        sums = np.where(finite, values, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean.reshape(-1)[bad] = np.where(counts > 0, sums / counts, np.nan)
    return mean


def median_image(images: np.ndarray) -> np.ndarray:
    """Median over the first axis ignoring NaN; all-NaN pixels stay NaN (no warning)."""
    images = np.asarray(images, dtype=np.float32)
    all_nan = np.isnan(images).all(axis=0)
    if not all_nan.any():
        return np.nanmedian(images, axis=0).astype(np.float32)
    filled = np.where(all_nan[None], 0.0, images)
    median = np.nanmedian(filled, axis=0).astype(np.float32)
    median[all_nan] = np.nan
    return median


def fill_nonfinite(image: np.ndarray, value: float | None = None) -> np.ndarray:
    """Return a float32 copy of ``image`` with NaN/inf replaced by ``value``.

    ``value=None`` uses the mean of the finite pixels (0 when there is none).
    """
    out = np.array(image, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        if value is None:
            good = out[~bad]
            value = float(good.mean(dtype=np.float64)) if good.size else 0.0
        out[bad] = value
    return out


def binned_median(frames: np.ndarray, *, bin_size: int = 10) -> np.ndarray:
    """Median of the means of consecutive bins of ``bin_size`` frames (NaN-aware).

    With fewer than ``bin_size`` frames there is one bin (the mean); leftover frames after
    the last full bin are dropped, as in CaImAn's ``bin_median``.
    """
    count = len(frames)
    size = max(1, min(bin_size, count))
    bins = count // size
    means = np.stack([mean_image(frames[b * size:(b + 1) * size]) for b in range(bins)])
    return median_image(means)
