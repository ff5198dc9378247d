"""The built-in engine: caiman-dask's own NoRMCorre block correction and patch CNMF."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from caiman_dask.cnmf.frames import FrameSource
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.patch import PatchResult
from caiman_dask.cnmf.patch import fit_patch as _fit_patch
from caiman_dask.motion.block import BlockResult, correct_block
from caiman_dask.motion.params import MotionParams


def register_block(frames: np.ndarray, template: np.ndarray, params: MotionParams, *,
                   ready: Callable[[int], None] | None = None) -> BlockResult:
    """Motion-correct a block of frames (see :func:`caiman_dask.motion.correct_block`)."""
    return correct_block(frames, template, params, ready=ready)


def fit_patch(frames: np.ndarray | FrameSource, params: CNMFParams) -> PatchResult:
    """CNMF on one (T, d1, d2) patch array or frame source (see
    :func:`caiman_dask.cnmf.fit_patch`)."""
    return _fit_patch(frames, params)
