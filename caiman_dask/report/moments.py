"""Summary images of a movie from per-block moments (pure maths, no Dask).

A block of frames is reduced to its :class:`Moments`: per-pixel frame counts, sums,
means, sums of squared deviations and, for each of the four neighbour offsets that
cover the 8-neighbourhood once per pair, the sums of products of deviations. Moments of
consecutive blocks combine exactly (Chan, Golub and LeVeque's pairwise update), so the
images of a whole movie come from streaming over time blocks in bounded memory, and a
fixed combination order gives bit-identical images wherever the blocks ran.

The local-correlation image is CaImAn's ``local_correlations`` (8 neighbours): the mean
over a pixel's neighbours of the Pearson correlation over time of the two pixels.
Differences from CaImAn, for pictures: a pixel without variance correlates 0 (CaImAn
divides by 0), and a pixel that is not finite in every frame (NaN border strips) is NaN
and left out of its neighbours' averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caiman_dask.errors import ParameterError

#: Offsets ``(rows, cols)`` that visit each unordered pair of 8-neighbours once.
OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))
#: Frames turned into float64 at a time inside a block (bounds a task's memory).
FRAME_CHUNK = 32


@dataclass(frozen=True, eq=False)
class Moments:
    """Sufficient statistics of a run of frames.

    Attributes
    ----------
    n : int
        Frames.
    sums : ndarray
        (Y, X) sum of the finite values of each pixel.
    counts : ndarray
        (Y, X) number of frames in which each pixel is finite.
    mean : ndarray
        (Y, X) mean of each pixel (non-finite values counted as 0; used where finite).
    m2 : ndarray
        (Y, X) sum of squared deviations from ``mean``.
    cross : ndarray
        (4, Y, X) sums of products of deviations of pixel ``p`` and ``p + OFFSETS[k]``,
        stored at ``p`` (0 where the neighbour lies outside the frame).
    """

    n: int
    sums: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    cross: np.ndarray


def pair_slices(offset: tuple[int, int], shape: tuple[int, int]
                ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``(at_p, at_q)`` of the pixels ``p`` whose neighbour ``q = p + offset`` exists."""
    (dy, dx), (rows, cols) = offset, shape
    p_rows, q_rows = slice(0, rows - dy), slice(dy, rows)
    if dx >= 0:
        p_cols, q_cols = slice(0, cols - dx), slice(dx, cols)
    else:
        p_cols, q_cols = slice(-dx, cols), slice(0, cols + dx)
    return (p_rows, p_cols), (q_rows, q_cols)


def _chunk_moments(frames: np.ndarray) -> Moments:
    values = np.asarray(frames, dtype=np.float64)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    mean = values.mean(axis=0)
    dev = values - mean
    shape = mean.shape
    cross = np.zeros((len(OFFSETS),) + shape)
    for k, offset in enumerate(OFFSETS):
        at_p, at_q = pair_slices(offset, shape)
        cross[k][at_p] = np.einsum("tij,tij->ij", dev[(slice(None),) + at_p],
                                   dev[(slice(None),) + at_q])
    return Moments(n=len(values), sums=values.sum(axis=0), counts=finite.sum(axis=0),
                   mean=mean, m2=np.einsum("tij,tij->ij", dev, dev), cross=cross)


def combine(a: Moments, b: Moments) -> Moments:
    """Moments of the frames of ``a`` followed by those of ``b`` (exact pairwise update)."""
    n = a.n + b.n
    delta = b.mean - a.mean
    weight = a.n * b.n / n
    cross = a.cross + b.cross
    for k, offset in enumerate(OFFSETS):
        at_p, at_q = pair_slices(offset, delta.shape)
        cross[k][at_p] += delta[at_p] * delta[at_q] * weight
    return Moments(n=n, sums=a.sums + b.sums, counts=a.counts + b.counts,
                   mean=a.mean + delta * (b.n / n), m2=a.m2 + b.m2 + delta ** 2 * weight,
                   cross=cross)


def block_moments(frames: np.ndarray, *, chunk: int = FRAME_CHUNK) -> Moments:
    """Moments of a (n, Y, X) stack (n >= 1), ``chunk`` frames converted at a time.

    Parameters
    ----------
    frames : ndarray
        (n, Y, X) frames of any real dtype.
    chunk : int
        Frames converted to float64 at once.

    Returns
    -------
    Moments
    """
    if len(frames) == 0:
        raise ParameterError("block_moments needs at least one frame, got an empty stack")
    out: Moments | None = None
    for start in range(0, len(frames), chunk):
        part = _chunk_moments(frames[start:start + chunk])
        out = part if out is None else combine(out, part)
    return out  # type: ignore[return-value]


def mean_image(moments: Moments) -> np.ndarray:
    """(Y, X) float32 mean over the finite values; NaN where a pixel is never finite."""
    mean = np.full(moments.sums.shape, np.nan, dtype=np.float32)
    seen = moments.counts > 0
    mean[seen] = moments.sums[seen] / moments.counts[seen]
    return mean


def local_correlation(moments: Moments) -> np.ndarray:
    """(Y, X) float32 mean correlation of each pixel with its 8 neighbours over time.

    Pixels not finite in every frame are NaN and do not count as neighbours; a pixel
    without variance correlates 0 with everything; a lone pixel (1x1 frame) gets 0.
    """
    finite = moments.counts == moments.n
    scale = np.sqrt(np.where(finite, moments.m2, 0.0))
    shape = scale.shape
    total, neighbours = np.zeros(shape), np.zeros(shape)
    for k, offset in enumerate(OFFSETS):
        at_p, at_q = pair_slices(offset, shape)
        norm = scale[at_p] * scale[at_q]
        valid = finite[at_p] & finite[at_q]
        rho = np.divide(moments.cross[k][at_p], norm, out=np.zeros_like(norm),
                        where=valid & (norm > 0))
        for at in (at_p, at_q):
            total[at] += rho
            neighbours[at] += valid
    out = np.divide(total, neighbours, out=np.zeros(shape), where=neighbours > 0)
    out[~finite] = np.nan
    return out.astype(np.float32)
