"""Before/after quality of a correction, on a bounded sample of frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from caiman_dask.motion.metrics import MetricsComparison, compare_metrics
from caiman_dask.movie.ref import ArrayRef

SAMPLE_FRAMES = 300


def store_metrics(raw: str, corrected: str, *, crop: int | tuple[int, int],
                  n_frames: int = SAMPLE_FRAMES,
                  storage_options: dict[str, Any] | None = None) -> MetricsComparison:
    """CaImAn's metrics (frame correlation with the mean, crispness of the mean image) of
    the first ``n_frames`` frames, raw and corrected, on the same crop (use ``max_shifts``:
    corrected borders may be NaN)."""
    before = ArrayRef(raw, storage_options).open()[:n_frames].astype(np.float32)
    after = ArrayRef(corrected, storage_options).open()[:n_frames]
    return compare_metrics(before, after, crop=crop)
