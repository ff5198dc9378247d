"""Motion-correction quality metrics, as CaImAn's ``compute_metrics_motion_correction``.

- correlation of each frame with the movie's mean image (Pearson, over pixels finite in
  both; 0 for a frame or image without variance). Higher and steadier after correction.
- crispness of the mean image: the Frobenius norm of its gradient,
  ``sqrt(sum(gy**2 + gx**2))`` with ``numpy.gradient`` (NaN gradients ignored). A sharper
  mean image -- less motion blur -- is crisper.

Both accept ``crop``: pixels removed at every edge (e.g. ``max_shifts``) so the border
strips of a corrected movie do not count, as CaImAn crops them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from caiman_dask.motion.images import mean_image

_CHUNK = 32


def _crop(array: np.ndarray, crop: int | tuple[int, int]) -> np.ndarray:
    cy, cx = (crop, crop) if isinstance(crop, int) else crop
    rows, cols = array.shape[-2:]
    return array[..., cy:rows - cy, cx:cols - cx]


def crispness(image: np.ndarray, *, crop: int | tuple[int, int] = 0) -> float:
    """Frobenius norm of the gradient of ``image`` (CaImAn's "smoothness" of the mean)."""
    image = _crop(np.asarray(image, dtype=np.float64), crop)
    gy, gx = np.gradient(image)
    return float(np.sqrt(np.nansum(gy ** 2) + np.nansum(gx ** 2)))


def _pearson(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (k, P) float64 rows with a (P,) reference."""
    frames = frames - frames.mean(axis=1, keepdims=True)
    reference = reference - reference.mean()
    norms = np.linalg.norm(frames, axis=1) * np.linalg.norm(reference)
    dots = frames @ reference
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def frame_correlations(frames: np.ndarray, reference: np.ndarray, *,
                       crop: int | tuple[int, int] = 0) -> np.ndarray:
    """Pearson correlation of each frame with ``reference``, over pixels finite in both.

    Parameters
    ----------
    frames : ndarray
        (n, Y, X) movie (any real dtype; processed in chunks, float64).
    reference : ndarray
        (Y, X) image, typically the movie's mean.
    crop : int or (int, int)
        Pixels dropped at every edge.

    Returns
    -------
    ndarray
        (n,) float64 correlations.
    """
    ref = _crop(np.asarray(reference, dtype=np.float64), crop).ravel()
    out = np.empty(len(frames))
    for start in range(0, len(frames), _CHUNK):
        block = _crop(np.asarray(frames[start:start + _CHUNK]), crop)
        block = block.reshape(len(block), -1).astype(np.float64)
        finite = np.isfinite(block) & np.isfinite(ref)
        if finite.all():
            out[start:start + len(block)] = _pearson(block, ref)
            continue
        for row, keep in enumerate(finite):
            out[start + row] = _pearson(block[row:row + 1, keep], ref[keep])[0] \
                if keep.any() else 0.0
    return out


@dataclasses.dataclass(frozen=True)
class MotionMetrics:
    """Quality of one movie: per-frame correlations, mean image and its crispness."""

    correlations: np.ndarray
    crispness: float
    mean_image: np.ndarray

    @property
    def mean_correlation(self) -> float:
        """Average frame-to-mean correlation."""
        return float(np.mean(self.correlations))


def motion_metrics(frames: np.ndarray, *, crop: int | tuple[int, int] = 0) -> MotionMetrics:
    """Return the :class:`MotionMetrics` of a (n, Y, X) movie (e.g. one corrected block)."""
    frames = np.asarray(frames)
    mean = mean_image(frames)
    return MotionMetrics(frame_correlations(frames, mean, crop=crop),
                         crispness(mean, crop=crop), mean)


@dataclasses.dataclass(frozen=True)
class MetricsComparison:
    """Metrics before and after correction."""

    before: MotionMetrics
    after: MotionMetrics

    @property
    def crispness_ratio(self) -> float:
        """``after.crispness / before.crispness`` (> 1: the mean image got sharper)."""
        return self.after.crispness / self.before.crispness if self.before.crispness else \
            float("inf")

    @property
    def correlation_gain(self) -> float:
        """Increase of the mean frame-to-mean correlation."""
        return self.after.mean_correlation - self.before.mean_correlation


def compare_metrics(raw: np.ndarray, corrected: np.ndarray, *,
                    crop: int | tuple[int, int] = 0) -> MetricsComparison:
    """Metrics of the raw and the corrected movie, on the same crop."""
    return MetricsComparison(motion_metrics(raw, crop=crop),
                             motion_metrics(corrected, crop=crop))
