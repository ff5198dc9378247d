"""Summary images of a stored movie, streamed over time blocks on a view.

No maths here: each task reads one block of frames and returns its
:class:`~caiman_dask.report.moments.Moments`; the client folds them in block order
(so serial and cluster runs give identical images) and keeps one block's worth of
(Y, X) statistics at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from caiman_dask.errors import ParameterError
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.movie.zarrio import open_store
from caiman_dask.progress import Progress
from caiman_dask.report.moments import Moments, block_moments, combine, local_correlation
from caiman_dask.report.moments import mean_image as moments_mean
from caiman_dask.view.base import BaseView


@dataclass(frozen=True, eq=False)
class SummaryImages:
    """Pictures of a movie for the report.

    Attributes
    ----------
    mean : ndarray
        (Y, X) float32 mean image (NaN where a pixel is never finite).
    correlation : ndarray
        (Y, X) float32 local-correlation image (CaImAn's ``local_correlations``).
    n_frames : int
        Frames summarised.
    fr : float or None
        Frame rate of the movie in Hz, if recorded.
    source : str
        The store the images come from.
    """

    mean: np.ndarray
    correlation: np.ndarray
    n_frames: int
    fr: float | None = None
    source: str = ""

    @property
    def dims(self) -> tuple[int, int]:
        """Frame shape ``(d1, d2)``."""
        return (int(self.mean.shape[0]), int(self.mean.shape[1]))


@dataclass(frozen=True)
class MomentsTask:
    """One block of frames ``[start, stop)`` of a stored movie."""

    source: ArrayRef
    start: int
    stop: int


def moments_task(task: MomentsTask) -> Moments:
    """Task: read one block and return its moments."""
    return block_moments(task.source.open()[task.start:task.stop])


def time_blocks(n_frames: int, block: int) -> list[tuple[int, int]]:
    """``[start, stop)`` blocks of ``block`` frames covering ``n_frames``."""
    return [(a, min(a + block, n_frames)) for a in range(0, n_frames, block)]


def summary_images(store: str, *, view: BaseView, block_frames: int | None = None,
                   storage_options: dict[str, Any] | None = None,
                   progress: bool = True) -> SummaryImages:
    """Mean and local-correlation images of a caiman-dask store, one task per time block.

    Parameters
    ----------
    store : str
        Path or URL of a complete caiman-dask store (raw or motion-corrected).
    view : BaseView
        Where the block tasks run (the dview of ``setup_cluster`` or a ``SerialView``).
    block_frames : int, optional
        Frames per task; default the store's time chunk (aligned reads). Each task
        holds about ``block_frames * Y * X`` float64 values, the client ~10 (Y, X) arrays.
    storage_options : dict, optional
        fsspec options for a URL.
    progress : bool, optional
        Report progress (a bar on a terminal, log lines otherwise).

    Returns
    -------
    SummaryImages
    """
    movie = open_store(store, storage_options=storage_options)
    if movie.data.ndim != 3:
        raise ParameterError(f"{store}: summary images need a (T, Y, X) movie, this one is "
                             f"{movie.shape}")
    block = int(block_frames or movie.data.chunksize[0])
    if block < 1:
        raise ParameterError(f"block_frames must be >= 1, got {block_frames}")
    ref = ArrayRef(store, storage_options)
    tasks = [MomentsTask(ref, a, b) for a, b in time_blocks(int(movie.shape[0]), block)]
    total: Moments | None = None
    with Progress("summary images", total=len(tasks), enabled=progress) as bar:
        for part in view.imap(moments_task, tasks):
            total = part if total is None else combine(total, part)
            bar.advance()
    assert total is not None  # a complete store has >= 1 frame
    return SummaryImages(mean=moments_mean(total), correlation=local_correlation(total),
                         n_frames=total.n, fr=movie.metadata.fr, source=store)
