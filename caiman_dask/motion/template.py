"""Templates, CaImAn-like; the driver decides which frames to read.

- :func:`template_indices`: ~50 evenly spaced frames of the movie.
- :func:`initial_template`: binned median of those frames (means of bins of 10 consecutive
  frames, then the median of the bin means).
- :func:`rigid_template`: rigid-corrects those frames against the current template
  ``niter_rig`` times, each time taking the binned median of the corrected frames
  (``niter_rig=0`` returns the initial template).
- :func:`meta_template`: NaN-median of the blocks' mean images (``BlockResult.mean_image``),
  the template of the next pass over the movie.

Templates are in raw intensities (no ``nonneg_movie`` offset, never high-pass filtered:
:func:`~caiman_dask.motion.correct_block` filters them itself when ``gSig_filt`` is set)
and NaN-free: pixels without data (NaN in every frame) take the mean of the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from caiman_dask.errors import ParameterError
from caiman_dask.motion.block import correct_block
from caiman_dask.motion.images import binned_median, fill_nonfinite, median_image
from caiman_dask.motion.params import MotionParams

TEMPLATE_FRAMES = 50
BIN_SIZE = 10


def template_indices(n_frames: int, *, n_samples: int = TEMPLATE_FRAMES) -> np.ndarray:
    """Return about ``n_samples`` evenly spaced frame indices of a movie (sorted, unique).

    Parameters
    ----------
    n_frames : int
        Frames in the movie (>= 1).
    n_samples : int
        Frames wanted; all frames when the movie is shorter.
    """
    if n_frames < 1 or n_samples < 1:
        raise ParameterError(f"template_indices needs n_frames >= 1 and n_samples >= 1, got "
                             f"{n_frames} and {n_samples}")
    count = min(n_samples, n_frames)
    return np.unique(np.linspace(0, n_frames - 1, count).round().astype(np.intp))


def _stack(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) == 0 or frames.dtype.kind not in "buif":
        raise ParameterError(f"template frames must be a non-empty real (n, Y, X) array, got "
                             f"shape {frames.shape} dtype {frames.dtype}")
    return frames


def initial_template(frames: np.ndarray, *, bin_size: int = BIN_SIZE) -> np.ndarray:
    """Binned median of ``frames`` (e.g. those at :func:`template_indices`), float32."""
    return fill_nonfinite(binned_median(_stack(frames), bin_size=bin_size))


def rigid_template(frames: np.ndarray, params: MotionParams, *,
                   template: np.ndarray | None = None, bin_size: int = BIN_SIZE) -> np.ndarray:
    """Refine a template by rigid-correcting ``frames`` against it ``niter_rig`` times.

    Parameters
    ----------
    frames : ndarray
        (n, Y, X) sample of the movie, e.g. at :func:`template_indices`.
    params : MotionParams
        ``niter_rig`` passes; registration options as for ``correct_block`` (rigid only,
        whatever ``pw_rigid`` says; no offset).
    template : ndarray, optional
        Start template; default :func:`initial_template` of ``frames``.
    bin_size : int
        Frames per bin of the binned median.

    Returns
    -------
    ndarray
        (Y, X) float32 template.
    """
    frames = _stack(frames)
    current = initial_template(frames, bin_size=bin_size) if template is None else template
    rigid = params.replace(pw_rigid=False, nonneg_movie=False)
    for _ in range(params.niter_rig):
        corrected = correct_block(frames, current, rigid).corrected
        current = fill_nonfinite(binned_median(corrected, bin_size=bin_size))
    return np.asarray(current, dtype=np.float32)


def meta_template(block_templates: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """NaN-median of per-block mean images: the template for the next pass (float32)."""
    stack = np.asarray(block_templates, dtype=np.float32)
    if stack.ndim != 3 or len(stack) == 0:
        raise ParameterError(f"meta_template needs a non-empty list of (Y, X) images, got "
                             f"shape {stack.shape}")
    return fill_nonfinite(median_image(stack))
