"""Motion correction (NoRMCorre): pure functions on arrays, no Dask.

The driver maps :func:`correct_block` over time blocks of a movie store (one task per block)
and :func:`apply_block_shifts` over the blocks of other channels. Shifts are the shifts to
apply, ``(rows, columns)``; see :mod:`caiman_dask.motion.registration`.
"""

from __future__ import annotations

from caiman_dask.motion.block import (
    BlockResult,
    BlockShifts,
    apply_block_shifts,
    correct_block,
    nonneg_offset,
)
from caiman_dask.motion.metrics import (
    MetricsComparison,
    MotionMetrics,
    compare_metrics,
    crispness,
    frame_correlations,
    motion_metrics,
)
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.rigid import (
    FLAG_AT_BOUND,
    FLAG_FLAT,
    FLAG_NONFINITE,
    UPSAMPLE_FFT,
    highpass,
    highpass_kernel,
)
from caiman_dask.motion.template import (
    initial_template,
    meta_template,
    rigid_template,
    template_indices,
)

__all__ = [
    "FLAG_AT_BOUND", "FLAG_FLAT", "FLAG_NONFINITE", "UPSAMPLE_FFT", "BlockResult",
    "BlockShifts", "MetricsComparison", "MotionMetrics", "MotionParams", "apply_block_shifts",
    "compare_metrics", "correct_block", "crispness", "frame_correlations", "highpass",
    "highpass_kernel", "initial_template", "meta_template", "motion_metrics",
    "nonneg_offset", "rigid_template", "template_indices",
]
