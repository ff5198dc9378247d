"""The visual report of a run: summary images, figures and one self-contained HTML page."""

from __future__ import annotations

from caiman_dask.report.images import SummaryImages, summary_images
from caiman_dask.report.inputs import MotionSummary, QualityCurve, StageRow
from caiman_dask.report.moments import Moments, block_moments, combine, local_correlation
from caiman_dask.report.page import Picture
from caiman_dask.report.writer import write_report

__all__ = [
    "Moments",
    "MotionSummary",
    "Picture",
    "QualityCurve",
    "StageRow",
    "SummaryImages",
    "block_moments",
    "combine",
    "local_correlation",
    "summary_images",
    "write_report",
]
